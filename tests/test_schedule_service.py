"""The scheduler process: APScheduler job store in the project database, catch-up on start,
run records, and SIGKILL mid-generation followed by a restart → no lost and no duplicate tasks."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry.clock import local_today, now_utc
from registry.config import LOCAL_TZ
from registry.web.writes import refresh_schedule
from schedules.generation import generate
from schedules.jobs import week_start
from registry.models import VisitTask
from schedules.models import GenerationBasis, ScheduleRun
from tests.schedule_population import populate
from tests.test_schedule_generation import planned, stored
from tests.waiting import lock_waiters, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _drop_job_store(database):
    """APScheduler creates its own table; drop it so later tests see only the project's schema."""
    yield
    with database.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS apscheduler_jobs")


# The child runs with its clock moved to 09:00 Asia/Shanghai of today (time-machine, ticking): the
# catch-up it is tested for happens only after 06:00 local time, and the suite may run at night.
CHILD = (
    "import os, time_machine; time_machine.travel(float(os.environ['JF_TEST_NOW']), tick=True).start();"
    " from jingfang.cli import main; main()"
)
PARKED = "PARKED MID-RUN"
# Prepended to CHILD by start_scheduler(park_mid_run=True): right after the generation's statement
# that writes the tasks ([WITH …] INSERT INTO visit_task …, its transaction still open) the child logs
# PARKED and waits there until it is killed — the signal the test waits for, no guessed delay.
PARK_MID_RUN = (
    "import sys, threading, sqlalchemy as sa;"
    " sa.event.listen(sa.engine.Engine, 'after_cursor_execute', lambda conn, cursor, statement, *rest:"
    " 'INSERT INTO VISIT_TASK' in statement.upper()"
    f" and (print({PARKED!r}, file=sys.stderr, flush=True), threading.Event().wait()));"
)


def start_scheduler(url: str, out: Path, park_mid_run: bool = False) -> subprocess.Popen:
    morning = datetime.combine(local_today(), dt_time(9, 0), tzinfo=LOCAL_TZ)
    code = PARK_MID_RUN + CHILD if park_mid_run else CHILD
    return subprocess.Popen(
        [sys.executable, "-c", code, "scheduler", "--db", url, "--out", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "JF_TEST_NOW": str(morning.timestamp())},
    )


def wait_log(proc: subprocess.Popen, text: str, timeout: float = 90.0) -> None:
    """Read the scheduler's log until ``text`` appears (e.g. it has finished its start-up); fail
    when the scheduler exits first or after ``timeout`` seconds."""
    wanted = text.encode("utf-8")
    deadline = time.monotonic() + timeout
    fd, seen = proc.stderr.fileno(), b""
    while wanted not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for the scheduler to log {text!r}")
        if not select.select([fd], [], [], remaining)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"the scheduler exited before logging {text!r}")
        seen = seen[-len(wanted):] + chunk  # a match may straddle two reads


def runs(engine) -> list[dict]:
    t = ScheduleRun.__table__
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.id)).mappings()]


def skip_lists_this_week(engine, today: date) -> None:
    """The weekly lists and last month's reports already ran: catch-up then only generates (keeps the
    test small; the reports job has its own test)."""
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    with engine.begin() as conn:
        for job, as_of in (("lists", week_start(today)), ("reports", last_month)):
            conn.execute(sa.insert(ScheduleRun).values(job=job, as_of=as_of, started_at=now_utc(),
                                                       finished_at=now_utc(), status="ok", counts="{}", source="test"))


def no_duplicates(engine) -> bool:
    t = VisitTask.__table__
    with engine.connect() as conn:
        return not conn.execute(sa.select(t.c.patient_id).group_by(t.c.patient_id, t.c.kind, t.c.basis)
                                .having(sa.func.count() > 1)).first()


def restart_completes_the_run(database, out: Path, today: date) -> None:
    """Restart the scheduler after a killed run: the killed run is recorded as interrupted, the new
    run completes, and the tasks are exactly the plan, without a duplicate."""
    engine = database.engine
    proc = start_scheduler(database.url, out)
    try:
        wait_for(lambda: [r for r in runs(engine) if r["job"] == "generate" and r["status"] == "ok"], "the restarted run")
    finally:
        stop(proc)
    generate_runs = [r for r in runs(engine) if r["job"] == "generate"]
    assert generate_runs[-2]["status"] == "error" and "interrupted" in generate_runs[-2]["error"]
    assert no_duplicates(engine)
    assert stored(engine) == planned(engine, today)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_scheduler_catches_up_and_records_runs(database, tmp_path):
    today = local_today()
    populate(database.engine, patients=60, seed=21, today=today)
    skip_lists_this_week(database.engine, today)
    proc = start_scheduler(database.url, tmp_path)
    try:
        done = wait_for(lambda: [r for r in runs(database.engine) if r["job"] == "generate" and r["status"] == "ok"],
                        "the catch-up generation")
        assert done[0]["as_of"] == today and done[0]["source"] == "catch-up"
        assert json.loads(done[0]["counts"])["created"] > 0
        with database.engine.connect() as conn:
            jobs = wait_for(lambda: set(conn.execute(sa.text("SELECT id FROM apscheduler_jobs")).scalars()) or None,
                            "the stored jobs")
        assert jobs == {"daily_generation", "weekly_lists", "monthly_reports", "deliver_notifications", "detect_alerts"}
    finally:
        stop(proc)
    assert proc.returncode == 0
    # a second start keeps the stored jobs and does not generate today again
    proc = start_scheduler(database.url, tmp_path)
    try:
        wait_log(proc, "调度服务已运行")
    finally:
        stop(proc)
    assert [r["job"] for r in runs(database.engine) if r["job"] == "generate"] == ["generate"]
    assert stored(database.engine) == planned(database.engine, today)


def test_a_web_write_run_is_not_the_days_generation(database, tmp_path):
    """A doctor's save replans one patient (source "web"): catch-up on start still runs the
    county's generation for the day, which the killed 06:00 run never finished."""
    from schedules.service import catch_up

    today = local_today()
    populate(database.engine, patients=30, seed=8, today=today)
    skip_lists_this_week(database.engine, today)
    with database.engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT min(patient_id) FROM patient")).scalar_one()
    refresh_schedule(database.engine, today=today, patient_ids=[pid])
    assert [(r["job"], r["source"], r["status"]) for r in runs(database.engine)][-1] == ("generate", "web", "ok")
    morning = datetime.combine(today, dt_time(9, 0), tzinfo=LOCAL_TZ)
    assert catch_up(database.url, str(tmp_path), now=morning) == ["generate"]
    assert [r["source"] for r in runs(database.engine) if r["job"] == "generate"] == ["web", "catch-up"]
    assert stored(database.engine) == planned(database.engine, today)
    # the day's generation is done now: a second start does not run it again
    assert catch_up(database.url, str(tmp_path), now=morning) == []


def test_sigkill_mid_generation_then_restart(database, tmp_path):
    today = local_today()
    engine = database.engine
    if database.backend == "postgresql":
        populate(engine, patients=400, seed=22, today=today)
        generate(engine, as_of=today - timedelta(days=20))
        before = stored(engine)
        skip_lists_this_week(engine, today)
        with engine.begin() as conn:  # a patient with an open task dies: the run must cancel that task
            conn.execute(sa.text(
                "UPDATE patient SET status = 'dead', status_on = :d WHERE patient_id ="
                " (SELECT min(patient_id) FROM visit_task WHERE status = 'open')"
            ), {"d": today - timedelta(days=1)})
        blocker = engine.connect()
        tx = blocker.begin()
        # hold every stored task: the child blocks mid-transaction (after its inserts) on the rows it updates
        blocker.execute(sa.text("SELECT id FROM visit_task FOR UPDATE")).all()
        proc = start_scheduler(database.url, tmp_path)
        try:
            wait_for(lambda: lock_waiters(engine), "the generation to block mid-transaction")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            tx.rollback()
            blocker.close()
    else:
        populate(engine, patients=300, seed=22, today=today)
        before = stored(engine)
        skip_lists_this_week(engine, today)
        proc = start_scheduler(database.url, tmp_path, park_mid_run=True)
        try:
            wait_log(proc, PARKED)  # the tasks are written, the transaction is open
            assert [r["status"] for r in runs(engine) if r["job"] == "generate"] == ["running"]
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert stored(engine) == before  # nothing of the killed run is visible
    assert [r["status"] for r in runs(engine) if r["job"] == "generate"][-1] == "running"
    restart_completes_the_run(database, tmp_path, today)


def test_monthly_reports_job_publishes_last_month_once(database, tmp_path):
    """On the 1st the service freezes the month just ended and writes the county's and every
    township's PDF (issue 3); a second run is recorded and gives the same files."""
    from schedules.jobs import previous_month, run_monthly_reports

    assert previous_month(date(2026, 1, 1)) == "2025-12"
    assert previous_month(date(2026, 3, 31)) == "2026-02"
    populate(database.engine, patients=40, seed=23, today=date(2026, 10, 20))
    counts = run_monthly_reports(database.url, str(tmp_path), "2026-11-01", source="test")
    assert counts["month"] == "2026-10" and counts["reports"] >= 2
    files = sorted(p.name for p in (tmp_path / "2026-10").glob("*.pdf"))
    assert len(files) == counts["reports"]
    with database.engine.connect() as conn:
        frozen = conn.execute(sa.text("SELECT count(*) FROM indicator_snapshot WHERE month = '2026-10'")).scalar_one()
    assert frozen > 0
    run_monthly_reports(database.url, str(tmp_path), "2026-11-01", source="test")
    recorded_runs = [r for r in runs(database.engine) if r["job"] == "reports"]
    assert [r["status"] for r in recorded_runs] == ["ok", "ok"]


@pytest.mark.postgresql_only
def test_sigkill_mid_sharded_generation_then_restart(database, tmp_path, monkeypatch):
    """A sharded run (PostgreSQL, three shards, each its own transaction) killed while every shard
    waits mid-transaction: nothing of it becomes visible, its orphaned backends roll back, and the
    restarted scheduler completes the run without a duplicate."""
    monkeypatch.setenv("JINGFANG_GENERATION_SHARDS", "3")  # inherited by the child
    monkeypatch.setenv("JINGFANG_GENERATION_SHARD_PATIENTS", "1")
    today = local_today()
    engine = database.engine
    populate(engine, patients=400, seed=23, today=today)
    generate(engine, as_of=today - timedelta(days=20))
    skip_lists_this_week(engine, today)
    with engine.begin() as conn:  # every open task edited behind the scheduler's back: each shard must update
        conn.execute(sa.update(VisitTask).where(VisitTask.status == "open").values(risk_level=99))
        # only a full run is sharded: without a basis (as after a first import) the daily run is one
        conn.execute(sa.delete(GenerationBasis))
    before = stored(engine)
    blocker = engine.connect()
    tx = blocker.begin()
    blocker.execute(sa.text("SELECT id FROM visit_task FOR UPDATE")).all()
    proc = start_scheduler(database.url, tmp_path)
    try:
        wait_for(lambda: lock_waiters(engine) == 3, "all three shards to block mid-transaction")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        tx.rollback()  # the orphaned shards now finish their statements, find no client and roll back
        blocker.close()
    assert proc.returncode == -signal.SIGKILL
    assert stored(engine) == before
    restart_completes_the_run(database, tmp_path, today)


def test_jobs_fire_at_six_daily_and_seven_on_mondays_shanghai_time():
    """Issue 5: daily generation at 06:00 Asia/Shanghai, the weekly lists on Monday at 07:00."""
    from schedules.service import job_specs

    triggers = {spec["id"]: spec["trigger"] for spec in job_specs(None, "/tmp/out")}
    at = lambda text: datetime.fromisoformat(text)  # noqa: E731
    daily, weekly = triggers["daily_generation"], triggers["weekly_lists"]
    assert daily.get_next_fire_time(None, at("2026-06-10T05:59:00+08:00")) == at("2026-06-10T06:00:00+08:00")
    assert daily.get_next_fire_time(None, at("2026-06-10T06:00:01+08:00")) == at("2026-06-11T06:00:00+08:00")
    # 06:00 in Shanghai is 22:00 UTC the day before
    assert daily.get_next_fire_time(None, at("2026-06-09T21:00:00+00:00")) == at("2026-06-09T22:00:00+00:00")
    assert weekly.get_next_fire_time(None, at("2026-06-10T09:00:00+08:00")) == at("2026-06-15T07:00:00+08:00")
    assert weekly.get_next_fire_time(None, at("2026-06-15T06:59:00+08:00")) == at("2026-06-15T07:00:00+08:00")
