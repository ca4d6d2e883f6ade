"""预警页面 The township alerts page (rules.md §12): the link of every alert message.

``GET /alerts?township=CODE`` opens for every role an alert message goes to — the township's
doctors, police and civil affairs, and the county admin — each scoped as ``registry.web.notices``
says (names only of patients in the user's scope; never a diagnosis). ``POST /alerts/read`` marks
alerts read for the user (CSRF form). Reads are audited (rules.md §8).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from registry import audit
from registry.accounts import UserRole
from registry.web import notices
from registry.web.auth import client_ip, current, require_form_csrf
from registry.web.pages import render

router = APIRouter(include_in_schema=False)
ALERT_ROLES = tuple(r.value for r in UserRole)
HOME = {UserRole.TOWNSHIP_DOCTOR.value: "/worklist", UserRole.COUNTY_ADMIN.value: "/dashboard"}


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, township: str = ""):
    """实时预警 The alerts of the user's township (or ``township``, which must be the user's) of the
    last 30 days, unread first marked; audited."""
    cur = current(request)
    cur.scope.require_role(*ALERT_ROLES)
    ctx = request.app.state.ctx
    townships = notices.townships_of(cur, ctx.tree, township[:32])
    rows = notices.alert_rows(ctx.engine, cur, ctx.tree, townships)
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="alerts",
                 object_id=",".join(townships)[:64], region_code=cur.user.region_code,
                 detail=f"{len(rows)} 条预警", source=client_ip(request))
    return render(request, "alerts.html", rows=rows, unread=sum(1 for r in rows if not r["read"]),
                  township=township[:32], townships=[ctx.tree.name(t) for t in townships],
                  back=HOME.get(cur.user.role, "/mylist"))


@router.post("/alerts/read")
async def alerts_read(request: Request):
    """标为已读 Mark the posted alerts (``alert`` fields; ``all`` = every shown one) read."""
    cur = current(request)
    form = await request.form()
    require_form_csrf(cur, form.get("csrf_token"))
    ids = []
    for value in form.getlist("alert")[:500]:
        if isinstance(value, str) and value.isdigit() and len(value) < 10:
            ids.append(int(value))
    notices.mark_read(request.app.state.ctx.engine, cur, request.app.state.ctx.tree, ids)
    back = form.get("back")
    return RedirectResponse(back if isinstance(back, str) and back in ("/worklist", "/mylist", "/alerts") else "/alerts",
                            status_code=303)
