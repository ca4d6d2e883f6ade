"""五单 kill -9 (issue 18): the scheduler killed in the middle of the Monday job — one township's lists
written and recorded, the next one's open — then restarted: every township gets its lists, and no
township's message is queued twice in the outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from datetime import time as dt_time

import sqlalchemy as sa

from registry.clock import local_today, now_utc
from registry.config import LOCAL_TZ
from registry.importing import import_path
from registry.models import Region
from schedules.jobs import week_start
from schedules.models import OutboxMessage, ScheduleRun
from schedules.notify import add_webhook
from tests.test_schedule_service import CHILD, ROOT, _drop_job_store, runs, stop, wait_log  # noqa: F401
from tests.waiting import wait_for

PARKED = "PARKED BETWEEN TOWNSHIPS"
# The second export audit row of the run (township T2's, its transaction open; T's committed): the
# child logs PARKED and waits there until it is killed.
PARK_AT_SECOND_TOWNSHIP = (
    "import sys, threading, sqlalchemy as sa; seen = [];"
    " sa.event.listen(sa.engine.Engine, 'after_cursor_execute', lambda conn, cursor, statement, *rest:"
    " 'INSERT INTO AUDIT_LOG' in statement.upper() and (seen.append(1) or len(seen) == 2)"
    f" and (print({PARKED!r}, file=sys.stderr, flush=True), threading.Event().wait()));"
)


def start(url: str, out, park: bool) -> subprocess.Popen:
    morning = datetime.combine(local_today(), dt_time(9, 0), tzinfo=LOCAL_TZ)
    return subprocess.Popen(
        [sys.executable, "-c", (PARK_AT_SECOND_TOWNSHIP if park else "") + CHILD, "scheduler", "--db", url, "--out", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "JF_TEST_NOW": str(morning.timestamp()), "JINGFANG_RENDER_WORKERS": "1"},
    )


def test_the_monday_job_killed_between_townships_then_restarted(database, small_county, tmp_path):
    engine, today = database.engine, local_today()
    monday = week_start(today)
    import_path(engine, small_county, today=today)
    with engine.begin() as conn:
        conn.execute(sa.insert(Region).values(code="T2", name="二镇", level="township", parent_code="C"))
        last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        for job, as_of in (("generate", today), ("reports", last_month)):  # only the lists are due
            conn.execute(sa.insert(ScheduleRun).values(job=job, as_of=as_of, started_at=now_utc(), finished_at=now_utc(),
                                                       status="ok", counts="{}", source="test"))
    add_webhook(engine, name="county", url="http://127.0.0.1:9/hook", fmt="generic", secret="s" * 32, region_code="C")
    out = tmp_path / "lists"
    proc = start(database.url, out, park=True)
    try:
        wait_log(proc, PARKED, timeout=180)
        assert [r["status"] for r in runs(engine) if r["job"] == "lists"] == ["running"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with engine.connect() as conn:
        keys = conn.execute(sa.select(OutboxMessage.dedupe_key)).scalars().all()
    assert keys == [f"lists:T:{monday}"]  # T done, T2 not

    proc = start(database.url, out, park=False)
    try:
        wait_for(lambda: [r for r in runs(engine) if r["job"] == "lists" and r["status"] == "ok"], "the restarted lists run",
                 timeout=180)
    finally:
        stop(proc)
    lists_runs = [r for r in runs(engine) if r["job"] == "lists"]
    assert [r["status"] for r in lists_runs] == ["error", "ok"] and "interrupted" in lists_runs[0]["error"]
    for code in ("T", "T2"):
        assert len(list((out / code).glob(f"{monday}_{code}_*"))) == 10  # 5 PDFs + 5 workbooks
    with engine.connect() as conn:
        keys = conn.execute(sa.select(OutboxMessage.dedupe_key)).scalars().all()
    assert sorted(keys) == [f"lists:T2:{monday}", f"lists:T:{monday}"]
