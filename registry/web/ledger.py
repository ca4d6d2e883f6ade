"""台账页面 The 易肇事肇祸台账 page and JSON read for police, doctors and admins (rules.md §10, §8).

``/ledger`` and ``GET /api/ledger?as_of=`` show the ledger of the user's region (township or
county, and below) as of a date (default today): entries and exits from the one rule
(``registry.ledger`` via ``schedules.ledger_files.ledger_rows``), with name, masked ID (first 6
and last 4, rules.md §8), village, address and guardian — never diagnosis or medication. Police
(民警) and 综治 see their township's ledger (rules.md §10 "Police and 综治 see their township's
ledger"; 综治 was left out when its account role came, issue 14, and gained the page in the privacy
audit); civil affairs (民政) and the village do not. Every
read is audited. The table collapses to cards on a phone (``table.list`` + ``data-label``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from registry import audit
from registry.accounts import UserRole
from registry.errors import InvalidInput
from registry.web.auth import Current, client_ip, current
from registry.web.deps import CurrentUser
from registry.web.pages import render
from schedules.ledger_files import ledger_rows

router = APIRouter()
LEDGER_ROLES = (UserRole.POLICE.value, UserRole.GOVERNANCE.value, UserRole.TOWNSHIP_DOCTOR.value,
                UserRole.COUNTY_ADMIN.value)
JSON_KEYS = ("patient_id", "entered_on", "reason", "left_on", "left_reason")


def as_of_arg(text: str, today: date) -> date:
    """截至日期 ``as_of`` (YYYY-MM-DD, 2000–2100; blank: today), else InvalidInput naming the field."""
    if not text:
        return today
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or not date(2000, 1, 1) <= day <= date(2100, 12, 31):
        raise InvalidInput.single("BAD_DATE", f"截至日期“{text[:20]}”无效，应为 YYYY-MM-DD（2000-01-01 至 2100-12-31）",
                                  column="as_of", value=text[:20])
    return day


def _read(request: Request, cur: Current, as_of: str) -> tuple[date, list[dict]]:
    cur.scope.require_role(*LEDGER_ROLES)
    ctx = request.app.state.ctx
    day = as_of_arg(as_of, ctx.today())
    rows = ledger_rows(ctx.engine, as_of=day, region_code=cur.user.region_code, level=cur.scope.region_level)
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="ledger",
                 object_id=day.isoformat(), region_code=cur.user.region_code,
                 detail=f"{len(rows)} 条，在账 {sum(1 for r in rows if r['on_ledger'])} 人", source=client_ip(request))
    return day, rows


@router.get("/ledger", response_class=HTMLResponse, include_in_schema=False)
def ledger_page(request: Request, as_of: str = ""):
    """易肇事肇祸台账 The region's ledger as of a date; audited."""
    cur = current(request)
    day, rows = _read(request, cur, as_of[:20])
    return render(request, "ledger.html", as_of=day.isoformat(), rows=rows,
                  on_ledger=sum(1 for r in rows if r["on_ledger"]))


@router.get("/api/ledger", summary="易肇事肇祸台账（民警、综治干部、乡镇精防医生、县级管理员）")
def ledger_api(request: Request, cur: CurrentUser, as_of: Annotated[str, Query(max_length=10)] = "") -> list[dict]:
    """易肇事肇祸台账 The contract.md ``ledger --json`` elements of the user's region as of ``as_of``
    (default today), by patient then date; ``left_on``/``left_reason`` null while on the ledger."""
    _day, rows = _read(request, cur, as_of)
    return [{"patient_id": r["patient_id"], "entered_on": r["entered_on"], "reason": r["reason_code"],
             "left_on": r["left_on"] or None, "left_reason": r["left_reason_code"]} for r in rows]
