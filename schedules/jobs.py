"""调度作业 The jobs the scheduler runs, each recorded in ``schedule_run`` (start, end, counts, error).

Job callables are module-level functions taking only plain arguments, so APScheduler can
store them in its SQLAlchemy job store. Every job is idempotent: generation by its unique key,
the weekly lists by the outbox's (webhook, dedupe key) and by overwriting the same files.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.clock import local_today, now_utc
from registry.db import get_engine
from registry.rates.reporting import publish_month
from schedules.generation import generate
from schedules.lists import write_all_townships
from schedules.models import ScheduleRun
from schedules.notify import deliver_due, due_count

log = logging.getLogger(__name__)


def _start(engine: Engine, job: str, as_of: date | None, source: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            sa.insert(ScheduleRun).values(job=job, as_of=as_of, started_at=now_utc(), status="running", source=source)
            .returning(ScheduleRun.__table__.c.id)
        ).scalar_one()


def _finish(engine: Engine, run_id: int, *, counts: dict | None = None, error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(ScheduleRun).where(ScheduleRun.__table__.c.id == run_id).values(
                finished_at=now_utc(),
                status="error" if error else "ok",
                counts=json.dumps(counts, ensure_ascii=False)[:4000] if counts is not None else None,
                error=error[:4000] if error else None,
            )
        )


def recorded(engine: Engine, job: str, as_of: date | None, source: str, fn):
    """Run ``fn()`` with a run record; errors are recorded and re-raised."""
    run_id = _start(engine, job, as_of, source)
    try:
        counts = fn()
    except BaseException as exc:
        _finish(engine, run_id, error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        raise
    _finish(engine, run_id, counts=counts)
    return counts


def mark_interrupted(engine: Engine) -> int:
    """Runs left 'running' by a killed process are marked as errors (called when the service starts)."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(ScheduleRun).where(ScheduleRun.__table__.c.status == "running")
            .values(status="error", finished_at=now_utc(), error="interrupted: the process stopped before the run ended")
        )
        return result.rowcount or 0


def run_generation(db_url: str | None = None, as_of: str | None = None, source: str = "scheduler") -> dict:
    """每日生成 Generate tasks for ``as_of`` (default: today in Asia/Shanghai)."""
    engine = get_engine(db_url)
    day = date.fromisoformat(as_of) if as_of else local_today()
    counts = recorded(engine, "generate", day, source, lambda: generate(engine, as_of=day))
    for warning in counts.get("warnings", []):
        log.warning(warning)  # e.g. a year with no holiday table (rules.md §5)
    return counts


def week_start(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


def run_weekly_lists(db_url: str | None = None, out_dir: str | None = None, week: str | None = None,
                     source: str = "scheduler") -> dict:
    """每周五单 Write the 五单 of every township for the week and queue the notifications."""
    engine = get_engine(db_url)
    monday = week_start(date.fromisoformat(week) if week else local_today())
    out = Path(out_dir or "out/lists")
    return recorded(engine, "lists", monday, source, lambda: write_all_townships(engine, week=monday, out_dir=out))


def previous_month(day: date) -> str:
    """The month before ``day``'s, as YYYY-MM (the month a report on the 1st is about)."""
    last = day.replace(day=1) - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


def run_monthly_reports(db_url: str | None = None, out_dir: str | None = None, today: str | None = None,
                        source: str = "scheduler") -> dict:
    """每月报告 On the 1st: freeze the month just ended and write the county's and every township's
    PDF report (issue 3, ``registry.reporting.publish_month``). Idempotent: frozen counts give the
    same files again."""
    engine = get_engine(db_url)
    day = date.fromisoformat(today) if today else local_today()
    month = previous_month(day)
    first = date.fromisoformat(month + "-01")

    def publish() -> dict:
        paths = publish_month(engine, month=month, out_dir=out_dir, today=day)
        return {"month": month, "reports": len(paths), "files": [p.name for p in paths][:50]}

    return recorded(engine, "reports", first, source, publish)


def run_delivery(db_url: str | None = None, source: str = "scheduler") -> dict:
    """通知投递 Deliver due outbox messages (only recorded when something was due)."""
    engine = get_engine(db_url)
    if not due_count(engine):
        return {"sent": 0, "failed": 0, "retry": 0}
    return recorded(engine, "deliver", None, source, lambda: deliver_due(engine))


def recent_runs(engine: Engine, limit: int = 20) -> list[dict]:
    t = ScheduleRun.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).mappings().all()
    return [
        {
            "id": r["id"], "job": r["job"], "as_of": r["as_of"].isoformat() if r["as_of"] else None,
            "started_at": r["started_at"].isoformat(), "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
            "status": r["status"], "counts": json.loads(r["counts"]) if r["counts"] else None,
            "error": r["error"], "source": r["source"],
        }
        for r in rows
    ]
