"""台账命令 ``jingfang ledger``: the 易肇事肇祸台账 (rules.md §10; contract.md "Commands").

``--json`` prints the contract's array (``[{"patient_id", "entered_on", "reason", "left_on",
"left_reason"}]``, every entry that began on or before DATE, by patient then date); without it a
Chinese text table; ``--out DIR`` (with ``--township``) writes the township's PDF and XLSX.
Registered on the ``jingfang`` app by ``jingfang.cli``.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from jingfang.options import DbOption, engine_for, report_errors
from registry.errors import InvalidInput


def parse_as_of(text: str | None) -> date:
    """``--as-of``: an ISO date (default today, Beijing time); a bad one is invalid input (exit 1)."""
    from registry.clock import local_today

    if text is None:
        return local_today()
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        day = None
    if day is None or not date(2000, 1, 1) <= day <= date(2100, 12, 31):
        raise InvalidInput.single("BAD_DATE", f"截至日期(--as-of)“{text[:20]}”无效，应为 YYYY-MM-DD（2000-01-01 至 2100-12-31）",
                                  column="as_of", value=text[:20])
    return day


def ledger_command(
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="截至日期 YYYY-MM-DD（默认今天，北京时间）",
                                                 show_default=False)] = None,
    township: Annotated[Optional[str], typer.Option("--township", help="乡镇(街道)编码（默认全部）")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（供程序读取）")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="输出目录：写该乡镇台账 PDF 和 XLSX（需 --township）")] = None,
    db: DbOption = None,
) -> None:
    """易肇事肇祸台账：截至该日的入账和出账记录，可只看一个乡镇。"""
    from registry.audit import cli_actor, record_cli
    from registry.ledger import entries_from_rows, ledger_select
    from registry.models import Patient
    from registry.regions import villages_under
    from schedules.ledger_files import ledger_rows, region_row, write_township_ledger

    import sqlalchemy as sa

    day = parse_as_of(as_of)
    engine = engine_for(db)
    if out is not None:
        if township is None:
            raise InvalidInput.single("TOWNSHIP_REQUIRED", "写台账文件(--out)需要指定乡镇(--township)", column="township")
        result = write_township_ledger(engine, township_code=township, as_of=day, out_dir=out, actor=cli_actor())
        for path in result["files"]:
            typer.echo(str(path))
        typer.echo(f"共 {result['rows']} 条入账记录，在账 {result['on_ledger']} 人", err=True)
        return
    level = None
    if township is not None:
        township, _name, level = region_row(engine, township, township=True)
    detail = f"as_of={day.isoformat()}"
    if as_json:
        among = None
        if township is not None:
            p = Patient.__table__
            among = sa.select(p.c.patient_id).where(p.c.village_code.in_(villages_under(township, level)))
        with engine.connect() as conn:
            entries = entries_from_rows(conn.execute(ledger_select(day, among=among)))
        record_cli(engine, action="export", object_type="ledger", object_id=township, region_code=township, detail=detail)
        typer.echo(json.dumps([e.as_json() for e in entries], ensure_ascii=False, indent=1))
        return
    from jingfang.tables import table_lines

    rows = ledger_rows(engine, as_of=day, region_code=township, level=level)
    record_cli(engine, action="read", object_type="ledger", object_id=township, region_code=township, detail=detail)
    header = ["患者编号", "村(社区)", "入账日期", "入账原因", "出账日期", "出账原因"]
    body = [[r["patient_id"], r["village"], r["entered_on"], r["reason"], r["left_on"] or "—", r["left_reason"] or "在账"]
            for r in rows]
    typer.echo(f"易肇事肇祸台账（截至 {day.isoformat()}）")
    for line in table_lines(header, body, [14, 16, 12, 18, 12, 18]):
        typer.echo(line)
    typer.echo(f"共 {len(rows)} 条入账记录，在账 {sum(1 for r in rows if r['on_ledger'])} 人")


def register(app: typer.Typer) -> None:
    """Add this capability's commands to ``app``."""
    app.command("ledger")(report_errors(ledger_command))
