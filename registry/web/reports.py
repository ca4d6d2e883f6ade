"""报表接入 The web's month argument and the 五单 download (the lists and rates are other modules').

The dashboard and the API call ``registry.rates.compute.compute_rates`` and the monthly PDF
``registry.rates.reporting.write_monthly_report`` directly.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from registry.clock import now_utc
from registry.config import LOCAL_TZ
from registry.periods import Period, bad_month
from schedules.lists import build_lists, write_pdfs, write_xlsx


def month_arg(month: str) -> str:
    """月份参数 'YYYY-MM' between 2000-01 and 2100-12, else InvalidInput naming the field."""
    if month != (month or "").strip():  # the web keeps refusing padded text (the CLI strips it)
        raise bad_month(month)
    return Period.parse(month).label


def write_lists(engine, *, week: date, township: str, out_dir: Path) -> list[Path]:
    """五单 The township's 五单 for the week (schedules.lists): five PDFs and one XLSX.

    Uses the list builder and writers directly, not ``write_township_lists``, so a download
    from the web does not queue the weekly webhook notifications again; the web audits
    the export itself (with the caller's IP).
    """
    data = build_lists(engine, township_code=township, week=week)
    generated = now_utc().astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [Path(f) for f in write_pdfs(data, out_dir, generated) + [write_xlsx(data, out_dir)]]
