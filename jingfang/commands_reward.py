"""以奖代补命令 ``jingfang reward``: the yearly payout list of a township (rules.md §11).

``jingfang reward --year Y --township CODE --out DIR`` writes the township's 以奖代补发放名单 as PDF
and XLSX (duties as of ``--as-of``, default today: provisional during the year, final after it);
without ``--out`` a Chinese text table, ``--json`` the rows with each duty met or not. Every run is
audited. Registered on the ``jingfang`` app by ``jingfang.cli``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from jingfang.commands_ledger import parse_as_of
from jingfang.options import DbOption, engine_for, report_errors
from registry.errors import InvalidInput


def reward_command(
    year: Annotated[int, typer.Option("--year", help="年度，如 2026")],
    township: Annotated[str, typer.Option("--township", help="乡镇(街道)编码")],
    out: Annotated[Optional[Path], typer.Option("--out", help="输出目录：写发放名单 PDF 和 XLSX")] = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="评定日期 YYYY-MM-DD（默认今天，北京时间）",
                                                 show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（供程序读取）")] = False,
    db: DbOption = None,
) -> None:
    """以奖代补发放名单：一个乡镇某年度的监护人、四项职责评定、状态和发放。"""
    from registry.audit import cli_actor, record_cli
    from schedules.reward_files import township_payout, write_payout

    if not 2000 <= year <= 2100:
        raise InvalidInput.single("BAD_YEAR", f"年度(--year)“{year}”无效，应为 2000 至 2100", column="year", value=year)
    day = parse_as_of(as_of)
    engine = engine_for(db)
    if out is not None:
        result = write_payout(engine, township_code=township, year=year, today=day, out_dir=out, actor=cli_actor())
        for path in result["files"]:
            typer.echo(str(path))
        typer.echo(f"共 {result['rows']} 户纳入，符合条件 {result['eligible']} 户", err=True)
        return
    data = township_payout(engine, township_code=township, year=year, today=day)
    record_cli(engine, action="export" if as_json else "read", object_type="guardian_reward",
               object_id=f"{data['township_code']}:{year}", region_code=data["township_code"],
               detail=f"as_of={day.isoformat()}")
    if as_json:
        keys = ("patient_id", "village", "period", "status_code", "eligible_flag", "duties", "amount", "paid", "reason")
        typer.echo(json.dumps([{k: r[k] for k in keys} for r in data["rows"]], ensure_ascii=False, indent=1))
        return
    from jingfang.tables import table_lines

    header = ["患者编号", "村(社区)", "符合条件", "状态", "发放"]
    body = [[r["patient_id"], r["village"], r["eligible"], r["status"], r["paid"] or "—"] for r in data["rows"]]
    typer.echo(f"{data['township_name']} {year}年以奖代补（{'年内暂评' if data['provisional'] else '年终评定'}，"
               f"截至 {day.isoformat()}，标准 {data['amount']} 元）")
    for line in table_lines(header, body, [14, 16, 8, 10, 20]):
        typer.echo(line)
    typer.echo(f"共 {len(body)} 户纳入，符合条件 {data['eligible']} 户")


def register(app: typer.Typer) -> None:
    """Add this capability's commands to ``app``."""
    app.command("reward")(report_errors(reward_command))
