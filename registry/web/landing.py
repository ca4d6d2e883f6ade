"""通知落地页 The page every outgoing message links to (rules.md §8, §12: "the link works for every role
the message goes to"; issue 14).

A township's webhook group holds the doctor, the police, civil affairs, 综治 and village people, and
the county's the admins: one link cannot be a page only one role may open. ``/notices`` takes the
message's ``event``, ``township`` and ``week`` and shows each role its own view — the lists page
its role reads (``/lists/week`` for doctors and supervisors, ``/mylist`` and ``/my/attendance`` for
an account linked to its team member, the 五单存档 for the county), the overdue emergencies for the
roles that handle them, an explanation otherwise. Open to every logged-in role of the township or
above (another township's link is refused, like ``/lists/week``). It shows no patient: the message
and the page carry the township, the week and the kind of event only. ``schedules.notify`` builds the
links with ``notice_link``.
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from registry.accounts import UserRole
from registry.codes import AlertKind
from registry.errors import InvalidInput, PermissionDenied
from registry.web.auth import current
from registry.web.pages import render

router = APIRouter()

EVENT_TITLES = {"lists.weekly": "本周五单已生成", "lists.failed": "本周五单生成失败",
                "emergency.opened": AlertKind.EMERGENCY_OPENED.label, "emergency.overdue": AlertKind.EMERGENCY_OVERDUE.label,
                "appointment.proposed": "联合入户预约待答复"}


def _links(cur, event: str, township: str, week: str) -> list[tuple[str, str]]:
    """(title, href) of the pages this user's role opens for the event."""
    from registry.web.emergencies import READ_ROLES as EMERGENCY_ROLES
    from registry.web.scopes import ARCHIVE_ROLES
    from registry.web.pages import LIST_ROLES as WEEK_ROLES
    from registry.web.scopes import TASK_ROLE_OF

    role, linked = cur.user.role, cur.scope.linked
    query = f"township={township}" + (f"&week={week}" if week else "")
    links: list[tuple[str, str]] = []
    if event == "emergency.overdue" and role in EMERGENCY_ROLES:
        links.append(("超时未完成的应急处置", "/emergencies/overdue"))
    elif event.startswith("emergency.") and role in EMERGENCY_ROLES:  # an opening: every record still to complete
        links.append(("待完成的应急处置", "/emergencies/open"))
    if role in WEEK_ROLES and not linked:
        links.append(("本周五单", f"/lists/week?{query}"))
    if role in ARCHIVE_ROLES and not linked:
        links.append(("五单存档", f"/lists/archive?township={township}"))
    if role == UserRole.TOWNSHIP_DOCTOR.value:
        links.append(("今日工作", "/worklist"))
    if role == UserRole.COUNTY_ADMIN.value:
        links.append(("全县任务", "/worklist"))
    if role not in (UserRole.TOWNSHIP_DOCTOR.value, UserRole.COUNTY_ADMIN.value):
        links.append(("我的名单", "/mylist"))
    if role in TASK_ROLE_OF:
        links.append(("我的到场登记", "/my/attendance"))
    return links


@router.get("/notices", response_class=HTMLResponse, include_in_schema=False)
def notices_page(request: Request, event: str = "", township: str = "", week: str = ""):
    """通知 The landing page of a webhook message: the event and, for this user's role, the pages to open."""
    cur = current(request)
    ctx = request.app.state.ctx
    event = event if event in EVENT_TITLES else ""
    own = ctx.tree.township_of(cur.user.region_code) or cur.user.region_code
    township = township[:64] or own
    if township not in ctx.tree.descendants(cur.user.region_code) and township != own:
        raise PermissionDenied(f"乡镇 {township[:20]} 不在您的管辖范围内", code="REGION_FORBIDDEN")
    if week:
        try:
            week = date.fromisoformat(week[:10]).isoformat()
        except ValueError:
            raise InvalidInput.single("BAD_DATE", f"周次“{week[:20]}”不是有效日期，应为 YYYY-MM-DD", column="week") from None
    return render(request, "notices.html", event=event, title=EVENT_TITLES.get(event, "通知"), township=township,
                  township_name=ctx.tree.name(township), week=week, links=_links(cur, event, township, week))
