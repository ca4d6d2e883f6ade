"""应用上下文 What every request of the web application needs (``request.app.state.ctx``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Callable

from fastapi.templating import Jinja2Templates
from markupsafe import Markup

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
    _rows_html: dict = field(default_factory=dict)
    _rows_lock: threading.Lock = field(default_factory=threading.Lock)

    def worklist(self, scope, conn=None, version=None, **kwargs) -> dict:
        """工作清单 The work list for ``scope`` (cached until the scheduler runs again; see cache.py).
        The cache's version check runs on ``conn`` when given, or uses ``version`` (a 1-tuple) when
        the caller has read it already."""
        from registry.web import queries

        key = self.worklist_key(scope, **kwargs)
        extra = {"version": version[0]} if version is not None else {}
        return self.worklists.get(key, lambda: queries.worklist(self.engine, scope, self.tree, **kwargs), conn=conn, **extra)

    @staticmethod
    def worklist_key(scope, **kwargs) -> tuple:
        """The work-list cache key: role, region, date and the query's arguments."""
        return (scope.user.role, scope.user.region_code, scope.today, tuple(sorted(kwargs.items())))

    def worklist_rows_html(self, data: dict, role: str) -> Markup:
        """工作清单行 The table rows of a work-list page, rendered once per cached page.

        ``data`` is a value of the work-list cache (a new object whenever the cache recomputes
        it), so the rendered rows are reused exactly as long as the rows themselves; rendering
        100 rows is most of a work-list request's CPU otherwise.
        """
        key = (id(data), role)
        with self._rows_lock:
            hit = self._rows_html.get(key)
            if hit is not None and hit[0] is data:  # identity: the same cached rows
                return hit[1]
        html = Markup(self.templates.get_template("_worklist_rows.html").render(data=data, user_role=role))
        with self._rows_lock:
            if len(self._rows_html) >= 512:
                self._rows_html.clear()
            self._rows_html[key] = (data, html)
        return html
