"""指标命令 ``jingfang rates`` and ``jingfang report`` (contract.md "Commands", "JSON")."""


import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from jingfang.options import DbOption, engine_for, output_file, report_errors
from jingfang.tables import table_lines

MonthOption = Annotated[Optional[str], typer.Option("--month", help="统计月份 YYYY-MM（默认：上一个已结束的月份；"
                                                   "本月须明确指定，按“月中”截至今天统计）", show_default=False)]


def default_month(month: str | None) -> str:
    """统计月份 The argument, else the last closed month (indicators.md "Open months")."""
    from registry.clock import local_today  # noqa: PLC0415
    from registry.periods import Period  # noqa: PLC0415

    return month or Period.last_closed(local_today()).label


def month_heading(doc: dict) -> str:
    """``2026-06（截至 2026-06-30）``, or ``2026-12（月中，截至 2026-12-06）`` for an open month."""
    from registry.periods import Period  # noqa: PLC0415

    is_open = Period.parse(doc["month"]).as_of.isoformat() != doc["as_of"]
    return f"{doc['month']}（{'月中，' if is_open else ''}截至 {doc['as_of']}"
RegionOption = Annotated[Optional[str], typer.Option("--region", help="地区编码（默认顶级地区）", show_default=False)]
VariantOption = Annotated[Optional[str], typer.Option("--variant", help="规范管理口径：按季度 或 按次数（默认取规则配置）",
                                                      show_default=False)]
TargetsOption = Annotated[Optional[str], typer.Option("--targets", help="目标集名称或 JSON 文件（default、taishan-2019、"
                                                      "pilot-2021、shaoxing-2024）", show_default=False)]


def region_names(engine) -> dict[str, str]:
    """Region code → name, for printing (one query)."""
    import sqlalchemy as sa  # noqa: PLC0415

    from registry.models import Region  # noqa: PLC0415

    with engine.connect() as conn:
        return dict(conn.execute(sa.select(Region.code, Region.name)).all())


def rates_table(doc: dict, names: dict[str, str] | None = None) -> list[str]:
    """Plain-text view of a rates document: the region, then one line per child (named when
    ``names`` is given)."""
    names = names or {}
    from registry.rates.indicators import INDICATORS  # noqa: PLC0415
    from registry.rates.indicators import VARIANT_NAMES  # noqa: PLC0415
    from registry.rates.reporting import format_rate  # noqa: PLC0415

    variant = VARIANT_NAMES.get(doc["variant"], doc["variant"])
    lines = [f"{names.get(doc['region'], '')}（{doc['region']}） {month_heading(doc)}，规范管理口径 {variant}）"]
    body = []
    for ind in INDICATORS:
        v = doc["indicators"][ind.key]
        met = "" if v["met"] is None else ("达标" if v["met"] else "未达标")
        rate = "" if ind.unit == "count" else format_rate(v["rate"], ind.unit)
        den = "" if v["denominator"] is None else v["denominator"]
        target = "" if v["target"] is None else f"{v['target'] * 100:g}%"
        body.append([ind.name, v["numerator"], den, rate, target, met])
    lines += table_lines(["指标", "分子", "分母", "率", "目标", ""], body, [30, 10, 10, 10, 8, 8])
    if doc["children"]:
        lines.append("")
        keys = ["registered", "management_rate", "standard_management_rate", "treatment_rate"]
        rows = []
        for child in doc["children"]:
            ind = child["indicators"]
            label = f"{names[child['region']]}" if child["region"] in names else child["region"]
            rows.append([label, ind["registered"]["numerator"],
                         *(format_rate(ind[k]["rate"], "percent") for k in keys[1:])])
        lines += table_lines(["下级地区", "在册", "管理率", "规范管理率", "治疗率"], rows, [16, 8, 10, 12, 10])
    return lines


def register(app: typer.Typer) -> None:
    """Add ``rates`` and ``report`` to ``app``."""

    @app.command("rates")
    @report_errors
    def rates(month: MonthOption = None, region: RegionOption = None,
              as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（供程序读取）")] = False,
              variant: VariantOption = None, targets: TargetsOption = None, db: DbOption = None) -> None:
        """月度考核指标：在册、管理率、规范管理率、治疗率等。"""
        from registry.rates.compute import compute_rates  # noqa: PLC0415

        from registry.audit import record_cli  # noqa: PLC0415

        engine = engine_for(db)
        month = default_month(month)
        doc = compute_rates(engine, month=month, region_code=region, variant=variant, targets=targets)
        record_cli(engine, action="export" if as_json else "read", object_type="rates", object_id=month,
                   region_code=region, detail="JSON" if as_json else "表格")
        if as_json:
            typer.echo(json.dumps(doc, ensure_ascii=False, indent=1))
        else:
            for line in rates_table(doc, region_names(engine)):
                typer.echo(line)

    @app.command("report")
    @report_errors
    def report(out: Annotated[Path, typer.Option("--out", help="输出 PDF 文件（所在目录须已存在）")],
               month: MonthOption = None,
               region: RegionOption = None, variant: VariantOption = None, targets: TargetsOption = None,
               db: DbOption = None) -> None:
        """月度指标 PDF 报告。"""
        from registry import pdf  # noqa: PLC0415
        from registry.periods import Period  # noqa: PLC0415

        month = default_month(month)
        Period.parse(month)  # a bad month or region is refused before anything is said or written
        out_path = output_file(out)
        # the render process starts first (forked before the heavy imports and the database): it
        # imports WeasyPrint and warms up on the second core while this one reads the month
        with pdf.background_renderer() as renderer:
            from registry.rates.reporting import write_monthly_report  # noqa: PLC0415

            from registry.audit import record_cli  # noqa: PLC0415
            from schedules.worklist import check_region  # noqa: PLC0415

            engine = engine_for(db)
            if region:
                check_region(engine, region)
            typer.echo(f"正在生成 {month} 月报……", err=True)
            path = write_monthly_report(engine, month=month, region_code=region, out_path=out_path,
                                        variant=variant, targets=targets, renderer=renderer)
        record_cli(engine, action="export", object_type="monthly_report", object_id=month, region_code=region,
                   detail=str(path)[-200:])
        typer.echo(f"月报已写入 {path}")
