"""命令行 The ``jingfang`` command (contract.md "Commands").

Exit status: 0 success, 1 invalid input (message on stderr names what and where),
2 usage error. Every command takes ``--db URL`` (or ``JINGFANG_DATABASE_URL``).
Each capability registers its own commands from its own module.
"""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Optional

import typer

from registry.errors import JingfangError

app = typer.Typer(
    name="jingfang",
    help="精防 Jingfang：严重精神障碍患者登记与随访调度。",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
    from registry.db import get_engine

    return get_engine(db)


def _register_all() -> None:
    from registry import cli_rates, cli_registry
    from registry.web import cli as web_cli
    from schedules import cli as schedules_cli

    for module in (cli_registry, schedules_cli, cli_rates, web_cli):
        module.register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
