"""调度服务 The long-running scheduler process (APScheduler 3.11, job store in the project database).

* daily generation at 06:00 Asia/Shanghai (``schedules.jobs:run_generation``);
* the weekly 五单 on Monday 07:00 (``schedules.jobs:run_weekly_lists``);
* the monthly rate reports on the 1st at 08:00 (``schedules.jobs:run_monthly_reports``, issue 3);
* the notification delivery loop every minute (``schedules.jobs:run_delivery``);
* the real-time alert detector every 20 s (``schedules.jobs:run_alerts``, rules.md §12), which
  delivers what it queued at once.

Jobs live in ``apscheduler_jobs`` (SQLAlchemyJobStore on the project database). They are added
only when absent, so a stored ``next_run_time`` survives a restart and a run missed while the
process was down fires once on start (``coalesce=True``, generous ``misfire_grace_time``).
Because APScheduler advances ``next_run_time`` before a job finishes, a run killed midway is not
re-fired by APScheduler: on start the service also marks interrupted runs and catches up today's
generation and this week's lists from ``schedule_run`` (both jobs are idempotent). Run one
scheduler process per database (APScheduler 3 does not share a job store between processes).
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, time, timedelta
from pathlib import Path

import sqlalchemy as sa

from registry.clock import local_today
from registry.config import LOCAL_TZ
from registry.db import get_engine
from schedules import jobs
from schedules.alerts import DETECT_SECONDS
from schedules.models import ScheduleRun

log = logging.getLogger(__name__)

DAILY = time(6, 0)
WEEKLY = time(7, 0)
MONTHLY = time(8, 0)
MISFIRE_GRACE = 20 * 3600


def reports_dir(out_dir: str) -> str | None:
    """Monthly reports go beside the lists (``<out>/../reports``) unless JINGFANG_REPORT_DIR is set."""
    from registry.config import get_settings

    if get_settings().report_dir:
        return None  # publish_month reads it
    return str(Path(out_dir).parent / "reports")


def job_specs(db_url: str | None, out_dir: str) -> list[dict]:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    return [
        {"id": "daily_generation", "func": "schedules.jobs:run_generation",
         "trigger": CronTrigger(hour=DAILY.hour, minute=DAILY.minute, timezone=LOCAL_TZ), "kwargs": {"db_url": db_url}},
        {"id": "weekly_lists", "func": "schedules.jobs:run_weekly_lists",
         "trigger": CronTrigger(day_of_week="mon", hour=WEEKLY.hour, minute=WEEKLY.minute, timezone=LOCAL_TZ),
         "kwargs": {"db_url": db_url, "out_dir": out_dir}},
        {"id": "monthly_reports", "func": "schedules.jobs:run_monthly_reports",
         "trigger": CronTrigger(day=1, hour=MONTHLY.hour, minute=MONTHLY.minute, timezone=LOCAL_TZ),
         "kwargs": {"db_url": db_url, "out_dir": reports_dir(out_dir)}},
        {"id": "deliver_notifications", "func": "schedules.jobs:run_delivery",
         "trigger": IntervalTrigger(seconds=60, timezone=LOCAL_TZ), "kwargs": {"db_url": db_url}},
        {"id": "detect_alerts", "func": "schedules.jobs:run_alerts",
         "trigger": IntervalTrigger(seconds=DETECT_SECONDS, timezone=LOCAL_TZ), "kwargs": {"db_url": db_url}},
    ]


def build_scheduler(db_url: str | None, out_dir: str):
    """A background scheduler on the project's job store (jobs run in its thread pool)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    engine = get_engine(db_url)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, metadata=sa.MetaData())},
        timezone=LOCAL_TZ,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE},
    )
    return scheduler


def install_jobs(scheduler, db_url: str | None, out_dir: str) -> None:
    """Add each job unless stored already (keeping its next_run_time); refresh its arguments."""
    for spec in job_specs(db_url, out_dir):
        if scheduler.get_job(spec["id"]) is None:
            scheduler.add_job(spec["func"], spec["trigger"], id=spec["id"], kwargs=spec["kwargs"], replace_existing=False)
        else:
            scheduler.modify_job(spec["id"], kwargs=spec["kwargs"])


def _done(engine, job: str, as_of) -> bool:
    """Whether ``job`` ran successfully for ``as_of``. A web write's run replans its own patient
    only (``registry.web.writes.refresh_schedule``, source "web"): it is not the day's generation."""
    t = ScheduleRun.__table__
    full = sa.or_(t.c.source.is_(None), t.c.source != "web")
    with engine.connect() as conn:
        return conn.execute(
            sa.select(t.c.id).where(t.c.job == job, t.c.as_of == as_of, t.c.status == "ok", full).limit(1)
        ).first() is not None


def catch_up(db_url: str | None, out_dir: str, now: datetime | None = None) -> list[str]:
    """Run today's generation / this week's lists now if their time has passed without a good run."""
    engine = get_engine(db_url)
    now = now or datetime.now(LOCAL_TZ)
    today = now.date()
    ran = []
    if now.time() >= DAILY and not _done(engine, "generate", today):
        jobs.run_generation(db_url, today.isoformat(), source="catch-up")
        ran.append("generate")
    monday = jobs.week_start(today)
    if (today > monday or now.time() >= WEEKLY) and not _done(engine, "lists", monday):
        jobs.run_weekly_lists(db_url, out_dir, monday.isoformat(), source="catch-up")
        ran.append("lists")
    first = today.replace(day=1)
    if (today > first or now.time() >= MONTHLY) and not _done(engine, "reports", (first - timedelta(days=1)).replace(day=1)):
        jobs.run_monthly_reports(db_url, reports_dir(out_dir), today.isoformat(), source="catch-up")
        ran.append("reports")
    return ran


def run_service(db_url: str | None = None, out_dir: str = "out/lists", *, stop_event: threading.Event | None = None) -> None:
    """Run the scheduler until SIGTERM / SIGINT (or ``stop_event``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("weasyprint", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    engine = get_engine(db_url)
    interrupted = jobs.mark_interrupted(engine)
    if interrupted:
        log.warning("已将 %d 个中断的运行记为失败", interrupted)
    scheduler = build_scheduler(db_url, out_dir)
    scheduler.start(paused=True)  # load the stored jobs, then add the missing ones
    install_jobs(scheduler, db_url, out_dir)
    stop_event = stop_event or threading.Event()

    def stop(signum, _frame):
        log.info("收到信号 %s：正在停止", signum)
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    try:
        ran = catch_up(db_url, out_dir)
        if ran:
            log.info("已补运行：%s（今天 %s）", "、".join(ran), local_today())
    except Exception:  # recorded in schedule_run; the service keeps running
        log.exception("补运行失败")
    scheduler.resume()
    log.info("调度服务已运行（北京时间）：每天 06:00 生成任务，每周一 07:00 写出五单，"
             "每月1日 08:00 生成月报，每分钟投递通知，每 20 秒检测实时预警")
    try:
        while not stop_event.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
