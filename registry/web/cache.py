"""工作清单缓存 A short-lived cache of work-list pages, keyed by the latest scheduler run.

Tasks change only when the scheduler runs (``schedules.generation.generate``; the web runs it
through ``schedules.jobs.recorded`` after every write, which records a ``schedule_run`` row).
A cached page is served while the latest finished run is the same one it was computed
under, and for at most ``ttl`` seconds (imports of names or teams show within that time).
Every worker process keeps its own cache; the version check is one indexed query.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import sqlalchemy as sa

from schedules.models import ScheduleRun

_UNSET = object()


class WorklistCache:
    """工作清单缓存 Small LRU of computed work-list pages."""

    def __init__(self, engine, *, ttl: float = 60.0, size: int = 256):
        self.engine = engine
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, tuple[Any, float, Any]] = OrderedDict()
        self._computing: dict[tuple, threading.Lock] = {}

    def version(self, conn=None) -> Any:
        """版本 (latest run id, latest finish time) of the scheduler's runs (read on ``conn`` when given,
        so a request can share its one connection)."""
        t = ScheduleRun.__table__
        stmt = sa.select(sa.func.max(t.c.id), sa.func.max(t.c.finished_at))
        if conn is not None:
            return tuple(conn.execute(stmt).one())
        with self.engine.connect() as own:
            return tuple(own.execute(stmt).one())

    def get(self, key: tuple, compute: Callable[[], Any], conn=None, version: Any = _UNSET) -> Any:
        """取缓存 The cached value for ``key`` under the current version, else ``compute()``.

        ``version`` may be given when the caller already read it (the PostgreSQL fast path reads it
        in the same statement as the session). One computation per key at a time: concurrent misses
        wait for the first one.
        """
        if version is _UNSET:
            version = self.version(conn)
        hit = self._fresh(key, version)
        if hit is not None:
            return hit[0]
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            hit = self._fresh(key, version)
            if hit is not None:
                return hit[0]
            value = compute()
            with self._lock:
                self._items[key] = (version, time.monotonic(), value)
                self._items.move_to_end(key)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._computing.pop(key, None)
        return value

    def _fresh(self, key: tuple, version) -> tuple[Any] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == version and time.monotonic() - hit[1] < self.ttl:
                self._items.move_to_end(key)
                return (hit[2],)
        return None

    def peek(self, key: tuple, version) -> Any:
        """缓存命中 The cached value for ``key`` under ``version`` (within the TTL), else None (no computation)."""
        hit = self._fresh(key, version)
        return hit[0] if hit is not None else None

    def cached_at(self, key: tuple, value: Any) -> float | None:
        """缓存时刻 When ``value`` was cached under ``key`` (``time.monotonic()``), None when it is not the cached value."""
        with self._lock:
            hit = self._items.get(key)
        return hit[1] if hit is not None and hit[2] is value else None

    def clear(self) -> None:
        """清空 Drop every cached page."""
        with self._lock:
            self._items.clear()
