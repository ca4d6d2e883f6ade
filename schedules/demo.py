"""演示 The scheduler's step of ``jingfang demo``: today's tasks and the week's 五单."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.models import Region
from schedules.generation import generate
from schedules.jobs import recorded, week_start
from schedules.lists import write_township_lists


def run_demo_step(engine: Engine, out: Path, *, today: date, echo: Callable[[str], None] = print,
                  max_townships: int | None = 1) -> dict:
    """Generate tasks as of ``today`` and write the 五单 to ``out/lists/<code>/`` — for the first
    township only by default (PDF rendering of every township takes minutes on a small machine)."""
    counts = recorded(engine, "generate", today, "demo", lambda: generate(engine, as_of=today))
    kinds = "，".join(f"{k} {n}" for k, n in counts["open_by_kind"].items())
    echo(f"随访任务（截至 {today.isoformat()}，规则 {counts['profile']}）：待办 {counts['open']}（{kinds}）")
    for warning in counts["warnings"]:
        echo(f"警告：{warning}")
    r = Region.__table__
    with engine.connect() as conn:
        townships = conn.execute(sa.select(r.c.code, r.c.name).where(r.c.level == "township").order_by(r.c.code)).all()
    monday = week_start(today)
    written = 0
    for code, name in townships[: max_townships or len(townships)]:
        result = write_township_lists(engine, township_code=code, week=monday, out_dir=Path(out) / "lists" / code, actor="demo")
        written += len(result["files"])
        c = result["counts"]
        echo(f"一历五单 {name}：随访任务 {c['followup']}，联合入户 {c['joint']}，风险预警 {c['risk']}，"
             f"服药与针剂 {c['medication']}，帮扶救助 {c['assistance']}")
    echo(f"五单已写入 {Path(out).resolve() / 'lists'}/（{written} 个文件）")
    if max_townships and len(townships) > max_townships:
        echo(f"其他乡镇的五单：jingfang lists --week {monday.isoformat()} --township <乡镇编码> --out DIR")
    return counts
