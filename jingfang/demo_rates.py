"""演示 The rates step of ``jingfang demo``: the last closed month's county report and the rates against
targets, printed as a table (indicators.md "Open months": never the unfinished month by default)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy.engine import Engine

from jingfang.commands_rates import rates_table, region_names
from registry.periods import Period
from registry.rates.compute import compute_rates_and_counts
from registry.rates.reporting import write_monthly_report


def demo_step(engine: Engine, out_dir: Path | str, *, today: date, echo=print) -> Path:
    """演示 ``jingfang demo``: write the last closed month's county report and print rates against targets."""
    month = Period.last_closed(today).label
    doc, counts = compute_rates_and_counts(engine, month=month, today=today)
    for line in rates_table(doc, region_names(engine)):
        echo(line)
    # the report reuses the counts just computed (the month is computed once, not twice)
    path = write_monthly_report(engine, month=month, region_code=doc["region"],
                                out_path=Path(out_dir) / f"月报-{month}-{doc['region']}.pdf", today=today,
                                variant=doc["variant"], counts=counts)
    echo(f"月报：{path}")
    return path
