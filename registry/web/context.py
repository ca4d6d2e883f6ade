"""应用上下文 What every request of the web application needs (``request.app.state.ctx``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Callable

from fastapi.templating import Jinja2Templates

from registry.regions import LiveRegionTree


@dataclass
class WebContext:
    """应用上下文 What every request needs: the engine, the region tree, the clock, settings."""

    engine: object
    tree: LiveRegionTree
    today: Callable[[], date]
    secure_cookies: bool
    templates: Jinja2Templates
    worklists: object = None  # registry.web.cache.WorklistCache
    fast_reads: bool = True  # the PostgreSQL one-statement reads (registry.web.fast); tests switch them off to compare
    fast_pool: object = None  # psycopg_pool.AsyncConnectionPool (registry.web.fast.open_pool), opened in the lifespan
    cache_partials: bool = True  # tests switch it off to compare the cached partials with fresh renders
    _partials: dict = field(default_factory=dict)
    _partials_lock: threading.Lock = field(default_factory=threading.Lock)

    def worklist(self, scope, conn=None, version=None, **kwargs) -> dict:
        """工作清单 The work list for ``scope`` (cached until the scheduler runs again; see cache.py).
        The cache's version check runs on ``conn`` when given, or uses ``version`` (a 1-tuple) when
        the caller has read it already."""
        from registry.web import fast, fast_worklist, queries

        key = self.worklist_key(scope, **kwargs)
        extra = {"version": version[0]} if version is not None else {}
        # PostgreSQL, doctor and county admin: the page in one statement (fast_worklist); else the generic path
        compute = fast_worklist.worklist if scope.full_record and fast.enabled(self) else queries.worklist
        return self.worklists.get(key, lambda: compute(self.engine, scope, self.tree, **kwargs), conn=conn, **extra)

    @staticmethod
    def worklist_key(scope, **kwargs) -> tuple:
        """The work-list cache key: the scope's (``Scope.cache_key``: role, region, date, a linked account's
        member) and the query's arguments."""
        return (*scope.cache_key, tuple(sorted(kwargs.items())))

    def cached_partial(self, template: str, data: dict, **inputs) -> bytes:
        """缓存片段 ``template`` rendered with ``data`` and ``inputs``, as UTF-8, once per cached ``data``.

        ``data`` is a value of the work-list cache (a new object whenever the cache recomputes it),
        so a partial that depends only on ``data`` and ``inputs`` (hashable values, or dicts of
        them) is reused exactly as long as ``data`` itself: the key is the identity of ``data``
        and the inputs. Rendering a work list's 100 rows and its filter form (hundreds of village
        and member options) is most of a work-list request's CPU otherwise; the page joins the
        bytes as they are (``pages.render_around``).
        """
        if not self.cache_partials:
            return self.templates.get_template(template).render(data=data, **inputs).encode()
        key = (template, id(data), tuple(sorted((k, _frozen(v)) for k, v in inputs.items())))
        with self._partials_lock:
            hit = self._partials.get(key)
            if hit is not None and hit[0] is data:  # identity: the same cached page
                return hit[1]
        html = self.templates.get_template(template).render(data=data, **inputs).encode()
        with self._partials_lock:
            if len(self._partials) >= 2 * getattr(self.worklists, "size", 256):  # ~ the cached pages (and stale ones)
                self._partials.clear()
            self._partials[key] = (data, html)
        return html


def _frozen(value):
    """A hashable stand-in for a partial's input (dicts as their sorted items)."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    return value
