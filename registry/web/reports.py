"""报表接入 Thin adapters to the indicator and list modules (owned by other capabilities).

They raise a clear JingfangError when the module is not installed yet, never a 500.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from registry.errors import InvalidInput, JingfangError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class Unavailable(JingfangError):
    """功能未就绪 A module this page needs is not installed."""

    http_status = 503


def month_arg(month: str) -> str:
    """月份参数 'YYYY-MM' between 2000-01 and 2100-12, else InvalidInput naming the field."""
    m = _MONTH.match(month or "")
    if not m or not (1 <= int(m.group(2)) <= 12) or not (2000 <= int(m.group(1)) <= 2100):
        raise InvalidInput.single("BAD_MONTH", f"月份(month)“{str(month)[:20]}”无效，应为 YYYY-MM（2000-01 至 2100-12）",
                                  column="month", value=str(month)[:20])
    return month


def compute_rates_safe(engine, *, month: str, region_code: str) -> dict | None:
    """月度指标 The month's indicators (registry.indicators.compute_rates, contract.md JSON), or None."""
    try:
        from registry.rates.compute import compute_rates  # noqa: PLC0415
    except ImportError:
        return None
    return compute_rates(engine, month=month, region_code=region_code)


def write_report_safe(engine, *, month: str, region_code: str, out_path: Path) -> Path:
    """月报 Write the monthly PDF (registry.reporting) to ``out_path``."""
    try:
        from registry.rates.reporting import write_monthly_report  # noqa: PLC0415
    except ImportError:
        raise Unavailable("月报模块尚未安装", code="REPORT_UNAVAILABLE") from None
    write_monthly_report(engine, month=month, region_code=region_code, out_path=out_path)
    return out_path


def write_lists_safe(engine, *, week: date, township: str, out_dir: Path) -> list[Path]:
    """The township's 五单 for the week (schedules.lists): five PDFs and one XLSX.

    Uses the list builder and writers directly, not ``write_township_lists``, so a download
    from the web does not queue the weekly webhook notifications again; the web audits
    the export itself (with the caller's IP).
    """
    try:
        from schedules.lists import build_lists, write_pdfs, write_xlsx  # noqa: PLC0415
    except ImportError:
        raise Unavailable("五单模块尚未安装", code="LISTS_UNAVAILABLE") from None
    from registry.clock import now_utc
    from registry.config import LOCAL_TZ

    data = build_lists(engine, township_code=township, week=week)
    generated = now_utc().astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [Path(f) for f in write_pdfs(data, out_dir, generated) + [write_xlsx(data, out_dir)]]
