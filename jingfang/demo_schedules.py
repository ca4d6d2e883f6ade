"""演示 The scheduler's step of ``jingfang demo``: today's tasks and the week's 五单."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from contextlib import nullcontext
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.models import Region
from schedules.generation import generate
from schedules.jobs import recorded, week_start
from schedules.lists import render_workers, write_townships


def run_demo_step(engine: Engine, out: Path, *, today: date, echo: Callable[[str], None] = print,
                  max_townships: int | None = None, steps=None) -> dict:
    """Generate tasks as of ``today`` and write every township's 五单 (or the first
    ``max_townships``) to ``out/lists/<code>/``, rendered in parallel processes. ``steps`` (the
    demo's progress lines, ``jingfang.demo.Steps``) announces each of the two steps."""
    from jingfang.labels import kinds_text, profile_title

    def step(text: str):
        return steps(text) if steps is not None else nullcontext()

    with step("生成今天的随访任务"):
        counts = recorded(engine, "generate", today, "demo", lambda: generate(engine, as_of=today))
    kinds = kinds_text(counts["open_by_kind"])
    echo(f"随访任务（截至 {today.isoformat()}，规则 {profile_title(counts['profile'])}）：待办 {counts['open']}（{kinds}）")
    for warning in counts["warnings"]:
        echo(f"警告：{warning}")
    r = Region.__table__
    with engine.connect() as conn:
        townships = conn.execute(sa.select(r.c.code).where(r.c.level == "township").order_by(r.c.code)).scalars().all()
    codes = list(townships[: max_townships or len(townships)])
    monday = week_start(today)
    echo(f"一历五单（{monday.isoformat()} 这一周，{len(codes)} 个乡镇，{render_workers(len(codes))} 个进程排版 PDF）：")

    def written(result: dict) -> None:
        c = result["counts"]
        echo(f"  {result['township_name']}：随访任务 {c['followup']}，联合入户 {c['joint']}，风险预警 {c['risk']}，"
             f"服药与针剂 {c['medication']}，帮扶救助 {c['assistance']}")

    with step(f"排版各乡镇五单（{len(codes)} 个乡镇）"):
        results = write_townships(engine, codes=codes, week=monday, out_root=Path(out) / "lists", actor="demo",
                                  on_written=written)
    echo(f"五单已写入 {Path(out).resolve() / 'lists'}/（{sum(len(r['files']) for r in results)} 个文件）")
    return counts
