"""等待 Polling helpers for tests that drive real processes (scheduler service, web server) or
concurrent transactions."""

from __future__ import annotations

import time


def wait_for(predicate, what: str, timeout: float = 90.0, interval: float = 0.02):
    """Call ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def lock_waiters(engine, wait_event: str | None = None) -> int:
    """PostgreSQL backends of the test database now waiting on a lock (of kind ``wait_event``,
    e.g. ``advisory``; any kind when None). A new transaction each call: pg_stat_activity is
    snapshotted per transaction."""
    import sqlalchemy as sa

    sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
           " AND state = 'active' AND wait_event_type = 'Lock'"
           + (" AND wait_event = :event" if wait_event else ""))
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), {"event": wait_event} if wait_event else {}).scalar_one()



def free_port() -> int:
    """空闲端口 A free TCP port on 127.0.0.1 (for a server the test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_ended(pid: int) -> bool:
    """进程已结束 Whether process ``pid`` has ended: gone, or a zombie (state Z/X) not yet reaped.

    The process can be reaped between opening and reading its ``/proc`` file, which then raises
    ``ProcessLookupError`` (ESRCH) instead of ``FileNotFoundError``; both mean it has ended."""
    from pathlib import Path

    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until_ended(pid: int, timeout: float = 30.0) -> bool:
    """Whether process ``pid`` ends (see ``process_ended``) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_ended(pid):
            return True
        time.sleep(0.05)
    return process_ended(pid)
