"""演示 ``jingfang demo``: a synthetic county through the real import, then the team's clockwork.

Steps: generate the county's CSV files (registry.synthetic) → import them (the same code
path as ``jingfang import``) → print the register summary → schedule today's tasks →
write the week's 五单 → write the month's rate report → create one login per role.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from jingfang import demo_accounts, demo_rates, demo_schedules
from jingfang.tables import table_lines
from registry import models
from registry.accounts import User
from registry.codes import Diagnosis, PatientStatus
from registry.errors import InvalidInput
from registry.importing import import_path
from registry.register import in_register_sql
from registry.synthetic import write_county_csv


def register_summary(engine: Engine, today: date) -> list[tuple]:
    """登记汇总 Patients per township and status, in one grouped query."""
    p, village, town = models.Patient.__table__, models.Region.__table__.alias("v"), models.Region.__table__.alias("t")
    active = in_register_sql(p, today)  # 在册 (rules.md §1)
    stmt = (
        sa.select(
            town.c.code, town.c.name,
            sa.func.count().label("all"),
            sa.func.sum(sa.case((active, 1), else_=0)).label("active"),
            sa.func.sum(sa.case((p.c.status == PatientStatus.DEAD.value, 1), else_=0)).label("dead"),
            sa.func.sum(sa.case((p.c.status == PatientStatus.MOVED_OUT.value, 1), else_=0)).label("moved_out"),
            sa.func.sum(sa.case((sa.and_(active, p.c.diagnosis == Diagnosis.SCHIZOPHRENIA.value), 1), else_=0)).label("schizophrenia"),
            sa.func.sum(sa.case((sa.and_(active, p.c.lai_drug.is_not(None)), 1), else_=0)).label("lai"),
        )
        .select_from(p.join(village, village.c.code == p.c.village_code).join(town, town.c.code == village.c.parent_code))
        .group_by(town.c.code, town.c.name)
        .order_by(town.c.code)
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(stmt)]


class Steps:
    """进度 One line per step of the demo as it starts, and its time when done (issue 16: feedback on
    long work from the first second). Lines go to ``step`` (the CLI: stderr, the summary is stdout)."""

    def __init__(self, step: Callable[[str], None] | None):
        self.step = step or (lambda _text: None)
        self.number = 0

    @contextmanager
    def __call__(self, text: str):
        self.number += 1
        self.step(f"[{self.number}/{DEMO_STEPS}] {text}……")
        began = time.perf_counter()
        yield
        self.step(f"      完成（{time.perf_counter() - began:.1f} 秒）")


DEMO_STEPS = 6


def check_target(engine: Engine, *, force: bool) -> None:
    """演示库检查 The demo never touches a live register (issue 18): a database that holds any region,
    patient or account is refused (``DEMO_DATABASE_IN_USE``) unless ``force``, and even then one
    that holds patients is refused (``DEMO_DATABASE_HAS_PATIENTS``)."""
    with engine.connect() as conn:
        regions = conn.execute(sa.select(sa.func.count()).select_from(models.Region.__table__)).scalar_one()
        patients = conn.execute(sa.select(sa.func.count()).select_from(models.Patient.__table__)).scalar_one()
        users = conn.execute(sa.select(sa.func.count()).select_from(User.__table__)).scalar_one()
    held = f"地区 {regions} 个、患者 {patients} 名、账号 {users} 个"
    if patients:
        raise InvalidInput.single(
            "DEMO_DATABASE_HAS_PATIENTS",
            f"该数据库已有登记数据（{held}）：演示只能写入空数据库（--force 也不能用于有患者的数据库）。"
            "请用 --db 指定一个新的数据库文件。")
    if (regions or users) and not force:
        raise InvalidInput.single(
            "DEMO_DATABASE_IN_USE",
            f"该数据库不是空的（{held}）：演示会写入合成的县、乡镇和村。请用 --db 指定一个新的数据库文件；"
            "确认要写入这个没有患者的数据库时加 --force（已有账号不会被更改）。")


def run_demo(engine: Engine, out: Path, *, patients: int, seed: int, today: date, echo: Callable[[str], None] = print,
             step: Callable[[str], None] | None = None, force: bool = False) -> None:
    """Run the whole demo into ``out`` (created), after ``check_target``; ``step`` receives a progress
    line per step. Files are written with umask 027 (0640 files, 0750 directories): they hold
    (synthetic) patient lists."""
    check_target(engine, force=force)
    steps = Steps(step)
    out = Path(out)
    data = out / "data"
    with steps(f"生成合成县数据（{patients} 名患者）"):
        counts = write_county_csv(data, patients=patients, seed=seed, today=today)
    echo(f"合成县数据已写入 {data}/（{counts['patients']} 名患者，{counts['followups']} 条随访）")
    with steps("导入数据（与 jingfang import 同一流程）"):
        result = import_path(engine, data, today=today)
    echo(result.summary())

    with steps("统计登记汇总"):
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
    demo_schedules.run_demo_step(engine, out, today=today, echo=echo, steps=steps)
    echo("")
    # [indicators] the last closed month's rate report and rates against targets (indicators.md "Open months")
    with steps("计算上一个已结束月份的指标并写出月报 PDF"):
        demo_rates.demo_step(engine, out, today=today, echo=echo)
    echo("")
    # [web] one login per role
    demo_accounts.create_demo_users(engine, echo=echo)
    echo("")
    echo(f"输出目录：{out.resolve()}")
