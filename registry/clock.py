"""时钟 The only place that reads the clock; rules take ``today`` as a parameter."""

from __future__ import annotations

from datetime import date, datetime, time, timezone

from registry.config import LOCAL_TZ


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def local_today() -> date:
    """Today's date in Asia/Shanghai (not the host's zone)."""
    return datetime.now(LOCAL_TZ).date()


def local_time() -> time:
    """The wall-clock time of day in Asia/Shanghai (combined with the app's ``today`` by callers)."""
    return datetime.now(LOCAL_TZ).time().replace(tzinfo=None)
