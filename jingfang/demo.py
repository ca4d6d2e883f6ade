"""演示 ``jingfang demo``: a synthetic county through the real import, then the team's clockwork.

Steps: generate the county's CSV files (registry.synthetic) → import them (the same code
path as ``jingfang import``) → print the register summary → schedule today's tasks →
write the week's 五单 → write the month's rate report → create one login per role.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from jingfang import demo_accounts, demo_rates, demo_schedules
from jingfang.tables import table_lines
from registry import models
from registry.codes import Diagnosis
from registry.importing import import_path
from registry.synthetic import write_county_csv


def register_summary(engine: Engine, today: date) -> list[tuple]:
    """登记汇总 Patients per township and status, in one grouped query."""
    p, village, town = models.Patient.__table__, models.Region.__table__.alias("v"), models.Region.__table__.alias("t")
    active = sa.and_(p.c.status == "active", p.c.registered_on <= today)
    stmt = (
        sa.select(
            town.c.code, town.c.name,
            sa.func.count().label("all"),
            sa.func.sum(sa.case((active, 1), else_=0)).label("active"),
            sa.func.sum(sa.case((p.c.status == "dead", 1), else_=0)).label("dead"),
            sa.func.sum(sa.case((p.c.status == "moved_out", 1), else_=0)).label("moved_out"),
            sa.func.sum(sa.case((sa.and_(active, p.c.diagnosis == Diagnosis.SCHIZOPHRENIA.value), 1), else_=0)).label("schizophrenia"),
            sa.func.sum(sa.case((sa.and_(active, p.c.lai_drug.is_not(None)), 1), else_=0)).label("lai"),
        )
        .select_from(p.join(village, village.c.code == p.c.village_code).join(town, town.c.code == village.c.parent_code))
        .group_by(town.c.code, town.c.name)
        .order_by(town.c.code)
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(stmt)]


def run_demo(engine: Engine, out: Path, *, patients: int, seed: int, today: date, echo: Callable[[str], None] = print) -> None:
    """Run the whole demo into ``out`` (created)."""
    out = Path(out)
    data = out / "data"
    counts = write_county_csv(data, patients=patients, seed=seed, today=today)
    echo(f"合成县数据已写入 {data}/（{counts['patients']} 名患者，{counts['followups']} 条随访）")
    result = import_path(engine, data, today=today)
    echo(result.summary())

    rows = register_summary(engine, today)
    echo("")
    echo(f"登记汇总（截至 {today.isoformat()}）")
    totals = [0, 0, 0, 0, 0]
    body = []
    for code, name, _all, active, dead, moved, schizo, lai in rows:
        vals = [active or 0, dead or 0, moved or 0, schizo or 0, lai or 0]
        totals = [t + v for t, v in zip(totals, vals)]
        body.append([name, *vals])
    body.append(["合计", *totals])
    for line in table_lines(["乡镇", "在册", "死亡", "迁出", "精神分裂症", "长效针剂"], body, [12, 8, 8, 8, 12, 10]):
        echo(line)
    echo("")

    # --- capability steps (each capability adds its own step below) ---
    # [scheduler] generate today's tasks and write the week's 五单
    demo_schedules.run_demo_step(engine, out, today=today, echo=echo)
    echo("")
    # [indicators] the last closed month's rate report and rates against targets (indicators.md "Open months")
    demo_rates.demo_step(engine, out, today=today, echo=echo)
    echo("")
    # [web] one login per role
    demo_accounts.create_demo_users(engine, echo=echo)
    echo("")
    echo(f"输出目录：{out.resolve()}")
