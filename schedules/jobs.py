"""调度作业 The jobs the scheduler runs, each recorded in ``schedule_run`` (start, end, counts, error).

Job callables are module-level functions taking only plain arguments, so APScheduler can
store them in its SQLAlchemy job store. Every job is idempotent: generation by its unique key,
the weekly lists by the outbox's (webhook, dedupe key) and by the 五单 archive (rules.md §7: a
township's week once issued is written again from its archive, never recomputed; schedules.archive).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.clock import local_today, now_utc
from registry.db import get_engine
from registry.periods import Period, previous_month  # noqa: F401  (previous_month: re-exported for callers)
from registry.rates.reporting import publish_month
from schedules.generation import generate
from schedules.lists import write_all_townships
from schedules.models import ScheduleRun
from schedules.notify import FAILED, SENT, deliver_due, due_count, queue_overdue_emergency_alerts

log = logging.getLogger(__name__)


INTERRUPTED = "interrupted: the process stopped before the run ended"


def _host() -> str:
    return socket.gethostname()[:255]


def _process_start(pid: int) -> datetime | None:
    """When process ``pid`` started (Linux /proc), or None when it cannot be told."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        if fields[0] == b"Z":  # a zombie has ended; only its exit status is left
            return datetime.max.replace(tzinfo=timezone.utc)
        ticks = os.sysconf("SC_CLK_TCK")
        return datetime.fromtimestamp(boot + int(fields[19]) / ticks, timezone.utc)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_alive(pid: int, started_at: datetime) -> bool:
    """Whether the process that began a run at ``started_at`` still runs on this host: ``pid`` exists
    and did not start after the run did (a reused pid belongs to another process)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    began = _process_start(pid)
    return began is None or began <= started_at + timedelta(seconds=2)


def reap_abandoned(engine: Engine, *, legacy: bool = False) -> int:
    """放弃的运行 Mark 'running' rows whose process is gone (killed: SIGKILL, power cut) as errors with
    the reason. Only this host's processes can be checked; a run of another host stays until that
    host's next run. ``legacy`` (the scheduler's start) also marks rows stored without a pid (before
    migration 0009). Called before every recorded run, by the service's start and by ``runs``."""
    t = ScheduleRun.__table__
    host = _host()
    with engine.begin() as conn:
        rows = conn.execute(sa.select(t.c.id, t.c.pid, t.c.host, t.c.started_at).where(t.c.status == "running")).all()
        gone = []
        for row in rows:
            if row.pid is None:
                if legacy:
                    gone.append((row.id, INTERRUPTED))
            elif row.host == host and not process_alive(row.pid, row.started_at):
                gone.append((row.id, f"{INTERRUPTED} (process {row.pid} on {row.host} is gone; abandoned run)"))
        for run_id, reason in gone:
            conn.execute(sa.update(t).where(t.c.id == run_id, t.c.status == "running")
                         .values(status="error", finished_at=now_utc(), error=reason))
    for run_id, reason in gone:
        log.warning("run #%d: %s", run_id, reason)
    return len(gone)


def _start(engine: Engine, job: str, as_of: date | None, source: str) -> int:
    reap_abandoned(engine)
    with engine.begin() as conn:
        return conn.execute(
            sa.insert(ScheduleRun).values(job=job, as_of=as_of, started_at=now_utc(), status="running", source=source,
                                          pid=os.getpid(), host=_host())
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
    failed = counts.get("failed") if isinstance(counts, dict) else None
    # a job of several units (the townships' lists) that completed some: an error naming the failed ones
    _finish(engine, run_id, counts=counts,
            error="failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()) if failed else None)
    return counts


def mark_interrupted(engine: Engine) -> int:
    """Runs left 'running' by a killed process are marked as errors (called when the service starts).
    A run whose process still works (a CLI run beside the service) is left alone."""
    return reap_abandoned(engine, legacy=True)


def run_generation(db_url: str | None = None, as_of: str | None = None, source: str = "scheduler",
                   full: bool = False) -> dict:
    """每日生成 Generate tasks for ``as_of`` (default: today in Asia/Shanghai): incremental — only the
    patients changed since the last run are replanned (``generate(incremental=True)``; it falls back
    to a full run when it must) — unless ``full``."""
    engine = get_engine(db_url)
    day = date.fromisoformat(as_of) if as_of else local_today()
    counts = recorded(engine, "generate", day, source, lambda: generate(engine, as_of=day, incremental=not full))
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


def run_monthly_reports(db_url: str | None = None, out_dir: str | None = None, today: str | None = None,
                        source: str = "scheduler") -> dict:
    """每月报告 On the 1st: freeze the month just ended and write the county's and every township's
    PDF report (issue 3, ``registry.rates.reporting.publish_month``). Idempotent: frozen counts give the
    same files again."""
    engine = get_engine(db_url)
    day = date.fromisoformat(today) if today else local_today()
    month = Period.last_closed(day).label  # indicators.md "Open months": the month just ended
    first = date.fromisoformat(month + "-01")

    def publish() -> dict:
        paths = publish_month(engine, month=month, out_dir=out_dir, today=day)
        return {"month": month, "reports": len(paths), "files": [p.name for p in paths][:50]}

    return recorded(engine, "reports", first, source, publish)


def run_delivery(db_url: str | None = None, source: str = "scheduler") -> dict:
    """通知投递 Deliver due outbox messages (only recorded when something was due)."""
    engine = get_engine(db_url)
    queue_overdue_emergency_alerts(engine)  # rules.md §9: the county hears of an overdue record within a minute
    if not due_count(engine):
        return {SENT: 0, FAILED: 0, "retry": 0}
    return recorded(engine, "deliver", None, source, lambda: deliver_due(engine))


def run_alerts(db_url: str | None = None, source: str = "scheduler") -> dict:
    """实时预警 Detect new alert events (rules.md §12, ``schedules.alerts.detect``) and deliver the
    due outbox at once, so an alert reaches its webhooks within a minute of the write. Recorded
    only when it found something (it runs every 20 s)."""
    from schedules.alerts import detect

    engine = get_engine(db_url)
    counts = detect(engine)
    if any(counts.values()):
        recorded(engine, "alerts", None, source, lambda: counts)
    if counts.get("queued") or due_count(engine):
        run_delivery(db_url, source=source)
    return counts


def recent_runs(engine: Engine, limit: int = 20) -> list[dict]:
    t = ScheduleRun.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).mappings().all()
    return [
        {
            "id": r["id"], "job": r["job"], "as_of": r["as_of"].isoformat() if r["as_of"] else None,
            "started_at": r["started_at"].isoformat(), "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
            "status": r["status"], "counts": json.loads(r["counts"]) if r["counts"] else None,
            "error": r["error"], "source": r["source"], "pid": r["pid"], "host": r["host"],
        }
        for r in rows
    ]
