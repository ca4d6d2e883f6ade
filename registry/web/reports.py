"""报表接入 The web's month argument and the 五单 download (the lists and rates are other modules').

The dashboard and the API call ``registry.rates.compute.compute_rates`` and the monthly PDF
``registry.rates.reporting.write_monthly_report`` directly.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from registry.clock import now_utc
from registry.errors import PermissionDenied
from registry.config import LOCAL_TZ
from registry.periods import Period, bad_month
from schedules import archive
from schedules.lists import LIST_READERS, LISTS, build_lists, render_list, the_list


def month_arg(month: str) -> str:
    """月份参数 'YYYY-MM' between 2000-01 and 2100-12, else InvalidInput naming the field."""
    if month != (month or "").strip():  # the web keeps refusing padded text (the CLI strips it)
        raise bad_month(month)
    return Period.parse(month).label


def _check_reader(slug: str, role: str) -> None:
    if slug not in LIST_READERS:
        raise PermissionDenied("没有这张清单", code="LIST_FORBIDDEN")
    if role not in LIST_READERS[slug]:
        raise PermissionDenied("这张清单不发给您的岗位（一历五单：每张清单只发给它的阅读对象）", code="LIST_FORBIDDEN")


def write_one_list(engine, *, week: date, township: str, slug: str, fmt: str, role: str, out_dir: Path) -> tuple[Path, dict]:
    """一单 One list of the township's week in one format (``pdf`` or ``xlsx``), for a user of
    ``role`` only if that role reads it (rules.md §7, ``schedules.lists.LIST_READERS``); the file
    and the list's row count. Nothing is queued (the web audits the download itself).

    rules.md §7 / issue 17: a week already issued is served from its archive (the bytes as issued;
    ``info["file_id"]`` names the archived file); only a week not issued yet is rendered here."""
    _check_reader(slug, role)
    with engine.connect() as conn:
        hit = archive.archived_file(conn, township, week, slug, fmt)
    if hit is not None:
        issue, stored = hit
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = Path(out_dir) / stored.file_name
        path.write_bytes(bytes(stored.content))
        counts = json.loads(issue.counts)
        return path, {"rows": counts.get(slug, 0), "title": the_title(slug), "file_id": stored.id, "version": issue.version}
    data = build_lists(engine, township_code=township, week=week)
    generated = now_utc().astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    path = render_list(data, slug, fmt, out_dir, generated)
    return path, {"rows": the_list(data, slug).size, "title": the_list(data, slug).title, "file_id": None, "version": None}


def the_title(slug: str) -> str:
    return next(title for _n, s, title, _r in LISTS if s == slug)
