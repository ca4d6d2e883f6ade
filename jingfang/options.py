"""共用选项 What every ``jingfang`` command shares: ``--db``, the engine, and the one mapping of the
error hierarchy to stderr and the exit status (contract.md "Commands").

Exit status: 0 success, 1 invalid input (message on stderr names what and where), 2 usage error.

The command modules import the capability they drive inside each command, and ``engine_for``
imports SQLAlchemy on first use, so ``jingfang --help`` and a single command start fast (the
imports point down either way: nothing below imports this package).
"""

from __future__ import annotations

import dataclasses
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
            for line in error_lines(exc):
                typer.echo(line, err=True)
            raise typer.Exit(exc.exit_status)

    return wrapper


def error_lines(exc: JingfangError, limit: int = 200) -> list[str]:
    """What a person reads for an error, each thing once: the message with its stable code, then
    every issue that says more than the message (a single issue repeating it adds only its place)."""
    issues = list(exc.issues)
    head = f"错误 [{exc.code}]：{exc.message}"
    if len(issues) == 1 and issues[0].message == exc.message:
        issue = issues[0]
        if issue.column and issue.column in exc.message:  # the message names it already
            issue = dataclasses.replace(issue, column=None)
        where = issue.where()
        head += f"（{where}）" if where else ""
        issues = []
    lines = [head] + ["  " + issue.render() for issue in issues[:limit]]
    if len(issues) > limit:
        lines.append(f"  …… 另有 {len(issues) - limit} 个问题未列出")
    return lines


def output_file(path, option: str = "--out"):
    """An output file whose directory must exist (a typo is an error, not a silent mkdir)."""
    from pathlib import Path  # noqa: PLC0415

    from registry.errors import InvalidInput  # noqa: PLC0415

    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise InvalidInput.single("OUT_DIR_MISSING", f"输出目录 {parent} 不存在（{option} {path}），请先创建该目录",
                                  column=option, value=str(path))
    return path


def parse_day(text: str | None, option: str = "--as-of"):
    """A date option (YYYY-MM-DD, or YYYYMMDD); today in Beijing when omitted. Bad: exit 1, BAD_DATE."""
    from datetime import date  # noqa: PLC0415

    from registry.clock import local_today  # noqa: PLC0415
    from registry.errors import InvalidInput  # noqa: PLC0415

    if text is None:
        return local_today()
    raw = text.strip()
    if len(raw) == 8 and raw.isdigit():
        raw = f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput.single("BAD_DATE", f"{option} 应为日期 YYYY-MM-DD，收到“{text[:20]}”", column=option,
                                  value=text[:20]) from None
    if not date(2000, 1, 1) <= day <= date(2100, 12, 31):
        raise InvalidInput.single("BAD_DATE", f"{option} 应在 2000-01-01 至 2100-12-31 之间，收到“{text[:20]}”",
                                  column=option, value=text[:20])
    return day


def check_township(engine, code: str) -> None:
    """--township names a stored township: unknown is REGION_NOT_FOUND, another level NOT_A_TOWNSHIP (exit 1)."""
    import sqlalchemy as sa  # noqa: PLC0415

    from registry.codes import RegionLevel  # noqa: PLC0415
    from registry.errors import InvalidInput, NotFound  # noqa: PLC0415
    from registry.models import Region  # noqa: PLC0415

    with engine.connect() as conn:
        level = conn.execute(sa.select(Region.level).where(Region.code == code)).scalar()
    if level is None:
        raise NotFound(message=f"乡镇编码“{code[:20]}”不存在（--township）", code="REGION_NOT_FOUND")
    if level != RegionLevel.TOWNSHIP.value:
        raise InvalidInput.single("NOT_A_TOWNSHIP", f"编码“{code}”是{RegionLevel(level).label}，--township 应为乡镇(街道)编码",
                                  column="--township", value=code)


def engine_for(db: str | None):
    """The engine for ``--db`` (schema created / upgraded on first use)."""
    from registry.db import get_engine  # noqa: PLC0415 - start-up time

    return get_engine(db)
