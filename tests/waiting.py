"""等待 Polling helper for tests that drive real processes (scheduler service, web server)."""

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
