"""联合未到位名单 The township supervision page of joint visits not done (rules.md §6.2).

``/joint-visits/incomplete`` lists the patients of the user's region (township or county, and
below) whose latest joint task closed 联合未到位, with the closing visit's date and the roles
nobody attended, until a later joint task closes 到位 (one home: ``registry.joint_visits``). For
township doctors and the county admin, and for the township's supervisors of the 风险预警单's readers
(rules.md §6.1, §6.2, §7 list 3): a police account flagged supervisor (派出所 lead) and 综治. Civil
affairs do not read list 3, so a 民政办 lead does not see it. Name, village and roles only: no diagnosis, no medication, no ID number
(rules.md §8). Every read is audited. The table collapses to cards on a phone.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from registry import audit
from registry.accounts import UserRole
from registry.joint_visits import joint_incomplete_select, missing_roles_text
from registry.models import Patient, Region
from registry.regions import villages_under
from registry.web.auth import client_ip, current
from registry.web.pages import render

router = APIRouter()
SUPERVISION_ROLES = (UserRole.TOWNSHIP_DOCTOR.value, UserRole.COUNTY_ADMIN.value, UserRole.GOVERNANCE.value)


def may_supervise(user) -> bool:
    """联合未到位名单的读者 Doctors, the county admin, 综治, and a police account flagged supervisor."""
    return user.role in SUPERVISION_ROLES or (user.role == UserRole.POLICE.value and bool(getattr(user, "supervisor", False)))


def incomplete_rows(engine, region_code: str, level: str | None) -> list[dict]:
    """The 联合未到位 patients under ``region_code``: one row each (their latest such task), by village then id."""
    p, v = Patient.__table__, Region.__table__
    among = sa.select(p.c.patient_id).where(p.c.village_code.in_(villages_under(region_code, level)))
    latest: dict[str, tuple] = {}
    with engine.connect() as conn:
        for row in conn.execute(joint_incomplete_select(among)):
            latest[row.patient_id] = (row.visit_on, row.missing_roles)  # ordered: the last one stands
        people = {r.patient_id: r for r in conn.execute(
            sa.select(p.c.patient_id, p.c.name, v.c.name.label("village"))
            .select_from(p.join(v, v.c.code == p.c.village_code)).where(p.c.patient_id.in_(sorted(latest))))} if latest else {}
    rows = [{"patient_id": pid, "name": people[pid].name, "village": people[pid].village, "visit_on": on.isoformat(),
             "missing": missing_roles_text(missing)} for pid, (on, missing) in latest.items() if pid in people]
    return sorted(rows, key=lambda r: (r["village"], r["patient_id"]))


@router.get("/joint-visits/incomplete", response_class=HTMLResponse, include_in_schema=False)
def incomplete_page(request: Request):
    """联合未到位名单 The region's patients whose latest joint visit was not done; audited."""
    cur = current(request)
    if not may_supervise(cur.user):
        cur.scope.require_role(*SUPERVISION_ROLES)  # the refusal names the roles
    ctx = request.app.state.ctx
    rows = incomplete_rows(ctx.engine, cur.user.region_code, cur.scope.region_level)
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="joint_incomplete",
                 object_id=cur.user.region_code, region_code=cur.user.region_code, detail=f"{len(rows)} 人",
                 source=client_ip(request))
    return render(request, "joint_incomplete.html", rows=rows, region_name=ctx.tree.name(cur.user.region_code))


@router.get("/my/attendance", response_class=HTMLResponse, include_in_schema=False)
def my_attendance_page(request: Request):
    """我的到场登记 A police / civil-affairs / village account's joint visits of the last 30 days, each
    with a form to record its own attendance — 到场, or 未到场 with a reason (rules.md §6.2: the
    attendee's word wins for their row). A linked account (rules.md §6.1) sees the visits it was
    responsible for. Name and village only: no diagnosis, no medication (rules.md §8). Audited."""
    from registry.web import queries
    from registry.web.scopes import TASK_ROLE_OF

    cur = current(request)
    cur.scope.require_role(*TASK_ROLE_OF)
    ctx = request.app.state.ctx
    data = queries.my_attendance(ctx.engine, cur.scope, ctx.tree, as_of=ctx.today())
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="list", object_id="my_attendance",
                 region_code=cur.user.region_code, detail=f"{data['total']} 次联合入户", source=client_ip(request))
    return render(request, "my_attendance.html", data=data, saved=bool(request.query_params.get("saved")))
