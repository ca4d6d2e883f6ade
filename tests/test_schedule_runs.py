"""Run records of killed runs (issue 18): a `jingfang schedule` killed by SIGKILL left its
`schedule_run` row 'running' forever. Each run now records its pid and host; the next run, the
scheduler's start and `jingfang runs` mark a 'running' row whose process is gone as an error with
the reason, and leave the rows of live processes (and of other hosts) alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from jingfang.cli import app
from registry.clock import local_today, now_utc
from schedules.generation import ADVISORY_LOCK_KEY
from schedules.jobs import reap_abandoned
from schedules.models import ScheduleRun
from tests.schedule_population import populate
from tests.waiting import lock_waiters, wait_for

ROOT = Path(__file__).resolve().parent.parent
CHILD = "from jingfang.cli import main; main()"


def runs(engine) -> list[dict]:
    t = ScheduleRun.__table__
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.id)).mappings()]


def start_schedule(url: str, day) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, "schedule", "--as-of", day.isoformat(), "--db", url],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_mid_run(database, day) -> subprocess.Popen:
    """Start `jingfang schedule` and SIGKILL it while its run is recorded 'running'."""
    engine = database.engine
    if database.backend == "postgresql":
        with engine.connect() as blocker:  # the run waits for the generation lock after recording itself
            blocker.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            blocker.commit()
            proc = start_schedule(database.url, day)
            try:
                wait_for(lambda: lock_waiters(engine, "advisory"), "the run to wait for the generation lock")
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                blocker.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                blocker.commit()
        return proc
    for _ in range(5):  # SQLite: stop the process as soon as its run is recorded, then kill it
        proc = start_schedule(database.url, day)
        try:
            wait_for(lambda: runs(engine) or proc.poll() is not None, "the run record", interval=0.002)
            os.kill(proc.pid, signal.SIGSTOP)
            caught = [r["status"] for r in runs(engine)] == ["running"]
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if caught:
            return proc
        with engine.begin() as conn:  # finished before the stop: undo and try again
            conn.execute(sa.delete(ScheduleRun))
    raise AssertionError("could not catch the run mid-way")


def test_a_killed_cli_run_is_marked_by_the_next_run_and_shown_by_runs(database):
    engine = database.engine
    today = local_today()
    populate(engine, patients=200 if database.backend == "postgresql" else 2000, seed=5, today=today)
    proc = kill_mid_run(database, today)
    assert proc.returncode == -signal.SIGKILL
    [killed] = runs(engine)
    assert (killed["status"], killed["pid"], killed["host"]) == ("running", proc.pid, socket.gethostname())

    result = CliRunner().invoke(app, ["schedule", "--as-of", today.isoformat(), "--db", database.url])
    assert result.exit_code == 0, result.output
    killed, done = runs(engine)
    assert done["status"] == "ok" and done["pid"] == os.getpid()
    assert killed["status"] == "error" and killed["finished_at"] is not None
    assert killed["error"].startswith("interrupted") and f"process {proc.pid} on {socket.gethostname()} is gone" in killed["error"]

    result = CliRunner().invoke(app, ["runs", "--db", database.url])
    assert result.exit_code == 0
    line = next(x for x in result.stdout.splitlines() if x.startswith(f"#{killed['id']}\t"))
    assert "\t失败\t中断：运行结束前进程已停止" in line and "interrupted" not in line  # Chinese (issue 16)
    as_json = json.loads(CliRunner().invoke(app, ["runs", "--json", "--db", database.url]).stdout)
    assert next(r for r in as_json if r["id"] == killed["id"])["error"].startswith("interrupted")  # codes stay in JSON


def test_runs_marks_only_runs_whose_process_is_gone(database):
    """A live process's run (a CLI run beside the service) is left alone — the service's start used
    to mark every 'running' row; a pid reused by a newer process does not keep a run alive; a run of
    another host cannot be checked here and stays."""
    engine = database.engine
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        now = now_utc()
        with engine.begin() as conn:
            for pid, host, started in ((sleeper.pid, socket.gethostname(), now),  # live
                                       (sleeper.pid, socket.gethostname(), now - timedelta(hours=1)),  # pid reused
                                       (sleeper.pid, "another-host", now - timedelta(hours=1))):  # elsewhere
                conn.execute(sa.insert(ScheduleRun).values(job="generate", as_of=now.date(), started_at=started,
                                                           status="running", source="cli", pid=pid, host=host))
        assert reap_abandoned(engine) == 1
        assert [r["status"] for r in runs(engine)] == ["running", "error", "running"]
        from schedules.jobs import mark_interrupted  # the scheduler's start

        assert mark_interrupted(engine) == 0
        os.kill(sleeper.pid, signal.SIGKILL)
        sleeper.wait(timeout=30)
        result = CliRunner().invoke(app, ["runs", "--json", "--db", database.url])
        assert result.exit_code == 0, result.output
        shown = {r["id"]: r for r in json.loads(result.stdout)}
        assert [shown[i]["status"] for i in (1, 2, 3)] == ["error", "error", "running"]
        assert f"process {sleeper.pid}" in shown[1]["error"] and shown[1]["pid"] == sleeper.pid
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
