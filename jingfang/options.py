"""共用选项 What every ``jingfang`` command shares: ``--db``, the engine, and the one mapping of the
error hierarchy to stderr and the exit status (contract.md "Commands").

Exit status: 0 success, 1 invalid input (message on stderr names what and where), 2 usage error.

The command modules import the capability they drive inside each command, and ``engine_for``
imports SQLAlchemy on first use, so ``jingfang --help`` and a single command start fast (the
imports point down either way: nothing below imports this package).
"""

from __future__ import annotations

import functools
from typing import Annotated, Optional

import typer

from registry.errors import JingfangError

DbOption = Annotated[
    Optional[str],
    typer.Option("--db", help="数据库 URL（默认 JINGFANG_DATABASE_URL 或 ./jingfang.db）", show_default=False),
]


def report_errors(func):
    """Map the one exception hierarchy to stderr + exit status, once for every command."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except JingfangError as exc:
            err = typer.echo
            err(f"错误 [{exc.code}]: {exc.message}", err=True)
            for issue in exc.issues[:200]:
                err("  " + issue.render(), err=True)
            if len(exc.issues) > 200:
                err(f"  …… 另有 {len(exc.issues) - 200} 个问题未列出", err=True)
            raise typer.Exit(exc.exit_status)

    return wrapper


def engine_for(db: str | None):
    """The engine for ``--db`` (schema created / upgraded on first use)."""
    from registry.db import get_engine  # noqa: PLC0415 - start-up time

    return get_engine(db)
