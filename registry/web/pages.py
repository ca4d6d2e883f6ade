"""网页 Server-rendered Chinese pages for the four roles (issue 4).

Forms post back to the same URL; on bad input the page is rendered again with what was
typed, each bad field marked with its Chinese message (never a 500).
"""

from __future__ import annotations

import secrets
import tempfile
import urllib.parse
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

from typing import Annotated

from fastapi import APIRouter, Path as PathParam, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from sqlmodel import Session, select

from registry import accounts, appointments, audit, emergencies
from registry.accounts import UserRole, end_session, start_session
from registry.errors import InvalidInput, NotAuthenticated, PermissionDenied, TooManyRequests
from registry.rates.compute import compute_rates
from registry.rates.indicators import BY_KEY
from registry.codes import AppointmentAnswer, PatientStatus, TaskKind
from registry.models import Region, TeamMember
from registry.periods import Period
from registry.rates.reporting import write_monthly_report
from registry.web import fast, forms, notices, queries, reads, scopes, writes
from registry.web.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Current, client_ip, current, new_login_csrf, require_form_csrf
from registry.web.reports import month_arg

router = APIRouter(include_in_schema=False)

HOME = {
    UserRole.TOWNSHIP_DOCTOR.value: "/worklist",
    UserRole.COUNTY_ADMIN.value: "/dashboard",
    UserRole.POLICE.value: "/mylist",
    UserRole.CIVIL_AFFAIRS.value: "/mylist",
    UserRole.GOVERNANCE.value: "/mylist",
    UserRole.VILLAGE.value: "/mylist",
}


def page_context(request: Request, context: dict) -> dict:
    """页面上下文 What every page's frame shows: the user, role and region in the header, today in the
    footer (the error page's too)."""
    ctx = request.app.state.ctx
    cur = getattr(request.state, "current", None)
    context.setdefault("cur", cur)
    context.setdefault("role_label", UserRole(cur.user.role).label if cur else "")
    context.setdefault("region_name", ctx.tree.name(cur.user.region_code) if cur else "")
    context.setdefault("today", ctx.today().isoformat())
    # an emergency alert links its record for the roles that read every record (rules.md §9)
    context.setdefault("reads_emergencies", bool(cur) and cur.user.role in emergencies.COMPLETE_ROLES + (UserRole.COUNTY_ADMIN.value,))
    return context


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """渲染页面 Render a template with the user, role and region in the context."""
    return request.app.state.ctx.templates.TemplateResponse(request, template, page_context(request, context),
                                                            status_code=status_code)


# where render_around's template puts the inner part: no page text can hold a NUL character (storable_text)
_SLOT = f"\x00slot-{secrets.token_hex(8)}\x00"


def render_around(request: Request, template: str, inner: bytes, **context) -> HTMLResponse:
    """渲染页面（嵌入片段） ``render`` for a page whose ``inner_html`` is ``inner``, UTF-8 HTML rendered
    already (a cached partial): only the page around it is rendered, and the bytes are joined, not
    decoded and encoded again (the work list's body is ~150 KB)."""
    page = request.app.state.ctx.templates.get_template(template).render(
        request=request, inner_html=Markup(_SLOT), **page_context(request, context))
    head, tail = page.split(_SLOT)  # the template puts it exactly once (ValueError otherwise)
    return HTMLResponse(b"".join((head.encode(), inner, tail.encode())))


async def form_data(request: Request, cur: Current) -> dict[str, str]:
    """表单数据 The posted form as strings, after the CSRF check."""
    form = await request.form()
    require_form_csrf(cur, form.get("csrf_token"))
    data: dict[str, str] = {}
    for key in form.keys():
        if key == "csrf_token":
            continue
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        data[key] = ",".join(values) if key == "symptoms" else (values[-1] if values else "")
        if key in forms.DATE_FIELDS:
            data[key] = forms.typed_date(data[key])
        elif key in forms.ONE_LINE_FIELDS:
            data[key] = forms.one_line(data[key])
    return data


def text_param(value: str, label: str, max_len: int = 100) -> str:
    """查询参数 A query-string value safe to pass to SQL, or a 422 naming the parameter."""
    if writes.bad_text(value):
        raise InvalidInput.single("BAD_TEXT", f"{label} 含有无效字符", column=label)
    return value[:max_len]


def _audit_read(request: Request, cur: Current, *, action: str, object_type: str, object_id: str | None,
                region_code: str | None, detail: str | None = None) -> None:
    audit.record(request.app.state.ctx.engine, actor=cur.user.username, action=action, object_type=object_type,
                     object_id=object_id, region_code=region_code, detail=detail, source=client_ip(request))


def _record_read(request: Request, cur: Current, patient_id: str) -> dict:
    """一历读取（表单） The record shown by a form page or its 422 re-render, audited as a read (rules.md §8,
    issue 18: an error re-render shows the 一历 too)."""
    ctx = request.app.state.ctx
    record = queries.patient_record(ctx.engine, cur.scope, ctx.tree, patient_id, as_of=ctx.today())
    _audit_read(request, cur, action="read", object_type="patient", object_id=record["patient_id"],
                region_code=record.get("village_code"), detail="表单页")
    return record


# ---------------------------------------------------------------- login

@router.get("/", response_class=HTMLResponse)
def home(request: Request):
    """首页 Send each role to its own home page."""
    try:
        cur = current(request)
    except NotAuthenticated:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME[cur.user.role], status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    """登录页 The login form (with its double-submit CSRF cookie)."""
    token = new_login_csrf()
    response = render(request, "login.html", csrf_token=token, username="", error=None)
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    """登录 Check the password, start a session, audit the attempt."""
    ctx = request.app.state.ctx
    form = await request.form()
    username = str(form.get("username") or "").strip()[:64]
    password = str(form.get("password") or "")
    if writes.bad_text(username) or writes.bad_text(password):
        username, password = "", ""  # never reaches SQL; answered as a failed login
    sent, cookie = str(form.get("csrf_token") or ""), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or sent != cookie:
        token = new_login_csrf()
        response = render(request, "login.html", status_code=403, csrf_token=token, username=username,
                          error="登录表单已过期，请重试")
        _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response
    with Session(ctx.engine, expire_on_commit=False) as session:
        try:
            user = accounts.login(session, username, password, source=client_ip(request))
        except (NotAuthenticated, TooManyRequests) as exc:
            throttled = isinstance(exc, TooManyRequests)
            audit.record(session.connection(), actor=username or "?", action="login", object_type="session",
                         detail="登录被限制" if throttled else "登录失败", source=client_ip(request))
            session.commit()
            response = render(request, "login.html", status_code=exc.http_status, csrf_token=cookie, username=username,
                              error=exc.message)
            if throttled:
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        token, _row = start_session(session, user, source=client_ip(request))
        audit.record(session.connection(), actor=user.username, action="login", object_type="session", region_code=user.region_code,
                     detail="登录成功", source=client_ip(request))
        session.commit()
    response = RedirectResponse(HOME[user.role], status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token, max_age=12 * 3600)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request):
    """退出 End the session."""
    cur = current(request)
    await form_data(request, cur)
    ctx = request.app.state.ctx
    with Session(ctx.engine) as session:
        end_session(session, request.cookies.get(SESSION_COOKIE, ""))
        audit.record(session.connection(), actor=cur.user.username, action="logout", object_type="session", region_code=cur.user.region_code,
                     source=client_ip(request))
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _account(request: Request, cur: Current) -> dict:
    """我的账号 Role, region, supervisor flag and the linked team member (rules.md §6.1)."""
    ctx = request.app.state.ctx
    member = None
    if cur.user.member_id:
        with Session(ctx.engine) as session:
            row = session.get(TeamMember, cur.user.member_id)
            member = {"member_id": row.member_id, "name": row.name, "phone": row.phone or ""} if row else None
    return {"role_label": UserRole(cur.user.role).label, "region": ctx.tree.name(cur.user.region_code),
            "supervisor": cur.user.supervisor, "member": member}


@router.get("/account/password", response_class=HTMLResponse)
def password_page(request: Request, saved: int = 0):
    """修改密码 The logged-in user's password form."""
    cur = current(request)
    return render(request, "password.html", error=None, saved=bool(saved), account=_account(request, cur))


@router.post("/account/password", response_class=HTMLResponse)
async def password_submit(request: Request):
    """修改密码 Change one's own password (policy applies); the account's other sessions end."""
    cur = current(request)
    data = await form_data(request, cur)
    new = data.get("new_password", "")
    if new != data.get("new_password2", ""):
        return render(request, "password.html", status_code=422, error="两次输入的新密码不一致", saved=False,
                      account=_account(request, cur))
    ctx = request.app.state.ctx
    try:
        with Session(ctx.engine, expire_on_commit=False) as session:
            accounts.change_password(session, cur.user, cur.session.token_hash, data.get("old_password", ""), new,
                                     source=client_ip(request))
            session.commit()
    except InvalidInput as exc:
        return render(request, "password.html", status_code=422, error=exc.message, saved=False,
                      account=_account(request, cur))
    return RedirectResponse("/account/password?saved=1", status_code=303)


def _set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=request.app.state.ctx.secure_cookies)


# ---------------------------------------------------------------- work lists

PAGE_ROWS = 100


def worklist_filters(village: str, kind: str, member: str, sort: str) -> tuple:
    """工作清单筛选 The page's filters as the work list's keyword arguments (a hashable tuple: part of
    the cache key and of the fast path's peek key), or a 422 naming the bad parameter."""
    village, member = text_param(village, "村(社区)", 32), text_param(member, "团队成员", 64)
    if kind and kind not in {k.value for k in TaskKind}:
        raise InvalidInput.single("BAD_VALUE", f"任务类型“{kind[:20]}”无效", column="kind")
    if sort not in queries.WORKLIST_SORTS:
        raise InvalidInput.single("BAD_VALUE", f"排序“{sort[:20]}”无效", column="sort")
    return (("health_checks_apart", True), ("kind", kind or None), ("member", member or None), ("sort", sort),
            ("village", village or None))


def int_param(query, name: str, default: int) -> int:
    """整数参数 An integer query-string value (the last one given), or the 422 INVALID_REQUEST that
    FastAPI's own validation gives (``app.validation_error``)."""
    raw = query.getlist(name)
    if not raw:
        return default
    try:
        return int(raw[-1].strip())
    except ValueError:
        raise InvalidInput.single("INVALID_REQUEST", f"{name} 的值无效", column=name) from None


@router.get("/worklist", response_class=HTMLResponse)
async def worklist_page(request: Request):
    """今日工作清单 The work list page (doctor, county admin): this week's visits first, the health checks
    owed en masse in their own section; filters by village, kind and team member (issue 16).

    Query: ``all`` (1: every open task), ``page``, ``village``, ``kind``, ``member``, ``sort``. They
    are read here rather than declared as FastAPI parameters: its per-parameter validation was a
    fifth of a cached work list's CPU (the page is not in the OpenAPI schema)."""
    ctx = request.app.state.ctx
    query = request.query_params
    all, page = int_param(query, "all", 0), int_param(query, "page", 1)
    page = min(max(page, 1), 100_000)
    filters = worklist_filters(*(query.getlist(name)[-1] if name in query else "" for name in ("village", "kind", "member", "sort")))
    fast_read = await fast.worklist_page_async(request, client_ip(request), limit=PAGE_ROWS, offset=(page - 1) * PAGE_ROWS,
                                               horizon_days=None if all else 7, filters=filters)
    if fast_read is not None:  # PostgreSQL: one statement (session, version, notices, audit row); see fast.py
        cur, data, notice = fast_read
        return _worklist_response(request, ctx, cur, data, all, page, filters, notice)
    return await run_in_threadpool(_worklist_generic, request, all, page, filters)


def _worklist_generic(request: Request, all: int, page: int, filters: tuple = ()):
    ctx = request.app.state.ctx
    # one connection and transaction: session lookup, the cache's version check and the audit row
    with Session(ctx.engine, expire_on_commit=False) as session:
        cur = current(request, session)
        cur.scope.require_role(UserRole.TOWNSHIP_DOCTOR.value, UserRole.COUNTY_ADMIN.value)
        conn = session.connection()
        data = ctx.worklist(cur.scope, conn=conn, as_of=ctx.today(), horizon_days=None if all else 7, limit=PAGE_ROWS,
                            offset=(page - 1) * PAGE_ROWS, **dict(filters))
        audit.record(conn, actor=cur.user.username, action="read", object_type="worklist", object_id=cur.user.region_code,
                     region_code=cur.user.region_code, detail=f"{data['total']} 项", source=client_ip(request))
        notice = notices.notices(conn, cur, ctx.tree)
        session.commit()
    return _worklist_response(request, ctx, cur, data, all, page, filters, notice)


def _worklist_response(request: Request, ctx, cur: Current, data: dict, all: int, page: int, filters: tuple = (),
                       notice: dict | None = None) -> HTMLResponse:
    pages = max(1, -(-data["total"] // PAGE_ROWS))
    chosen = {k: v for k, v in filters if k in ("village", "kind", "member", "sort") and v}
    query = urlencode({**chosen, **({"all": 1} if all else {})})
    # the filter form, the rows and the pager depend only on the cached page and these inputs: rendered once
    body = ctx.cached_partial("_worklist_body.html", data, user_role=cur.user.role, show_all=bool(all), chosen=chosen,
                              page=page, pages=pages, query=query)
    return render_around(request, "worklist.html", body, notices=notice, data=data, show_all=bool(all), chosen=chosen,
                         week_query=urlencode(chosen), all_query=urlencode({**chosen, "all": 1}))


@router.get("/mylist", response_class=HTMLResponse)
def my_list_page(request: Request):
    """民警/民政名单 Only the patients on the user's lists, only the list fields (rules.md §8)."""
    return my_list(request, current(request))


def my_list(request: Request, cur: Current, *, status_code: int = 200, reply_errors: dict | None = None,
            reply_values: dict | None = None) -> HTMLResponse:
    """我的名单 The page, or its 422 re-render after a refused appointment answer: ``reply_errors`` and
    ``reply_values`` keyed by appointment id, shown next to that appointment's form (the answer and
    the reason typed are kept)."""
    cur.scope.require_role(*scopes.LIST_ROLES)
    ctx = request.app.state.ctx
    data = ctx.worklist(cur.scope, as_of=ctx.today(), horizon_days=None, limit=300)
    patients = queries.search_patients(ctx.engine, cur.scope, ctx.tree, "", limit=500)
    _audit_read(request, cur, action="read", object_type="list", object_id=cur.user.role, region_code=cur.user.region_code,
                detail=f"{len(patients)} 名患者")
    booked = []
    if cur.user.member_id:  # a linked account answers for its own member (rules.md §6.1)
        with ctx.engine.connect() as conn:
            booked = appointments.appointments_for_member(conn, cur.user.member_id)
    return render(request, "mylist.html", status_code=status_code, data=data, patients=patients, appointments=booked,
                  answers=[(a.value, a.label) for a in AppointmentAnswer],
                  notices=notices.notices(ctx.engine, cur, ctx.tree), reply_errors=reply_errors or {},
                  reply_values=reply_values or {})


# ---------------------------------------------------------------- patient record

@router.get("/patients/new", response_class=HTMLResponse)
def new_patient_page(request: Request):
    """新患者建档 The registration form."""
    cur = current(request)
    cur.scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    return _patient_form(request, cur, {"registered_on": request.app.state.ctx.today().isoformat(), "report_type": "2",
                                        "consent": "1"}, {})


def _patient_form(request: Request, cur: Current, values: dict, errors: dict, status_code: int = 200):
    ctx = request.app.state.ctx
    with Session(ctx.engine) as session:
        villages = session.exec(select(Region.code, Region.name).where(Region.level == "village",
                                                                       Region.code.in_(sorted(cur.scope.region_codes)))
                                .order_by(Region.code)).all()
    return render(request, "patient_form.html", status_code=status_code, sections=forms.PATIENT_SECTIONS, values=values,
                  errors=errors, villages=[(c, f"{n}（{c}）") for c, n in villages])


@router.post("/patients/new", response_class=HTMLResponse)
async def new_patient(request: Request):
    """新患者建档 Save a registration or show the form again with its errors."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        patient = writes.register_patient(ctx.engine, cur.scope, data, today=ctx.today(), source=client_ip(request))
    except InvalidInput as exc:
        return _patient_form(request, cur, data, forms.errors_by_field(exc.issues), status_code=422)
    return RedirectResponse(f"/patients/{patient.patient_id}", status_code=303)


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
async def patient_page(request: Request, patient_id: str):
    """一历 The patient record (full or list fields by role); audited (``reads.patient_page_read``)."""
    cur, record, panels = await reads.patient_page_read(request, patient_id)
    if not cur.scope.full_record:  # a team member's account opens an emergency record (rules.md §9)
        return render(request, "patient_limited.html", p=record,
                      can_open_emergency=cur.scope.role in emergencies.OPEN_ROLES)
    # the doctor's panels (团队指派, 联合入户预约; rules.md §6.1) come with the record (reads.patient_page_read)
    return render(request, "patient.html", p=record, assignments=panels["assignments"],
                  appointment_tasks=panels["appointment_tasks"])


def patient_page_again(request: Request, cur: Current, patient_id: str, **errors) -> HTMLResponse:
    """一历（422） The patient page again after a refused form on it (health check, injection, team
    assignment, appointment), with the doctor's panels as the page has them and ``errors`` (the
    template's ``*_errors`` / ``*_values``) next to the form that was sent."""
    record = _record_read(request, cur, patient_id)
    panels = reads.panels_of(request.app.state.ctx, cur, patient_id)
    return render(request, "patient.html", status_code=422, p=record, assignments=panels["assignments"],
                  appointment_tasks=panels["appointment_tasks"], **errors)


@router.post("/patients/{patient_id}/team", response_class=HTMLResponse)
async def assignment_submit(request: Request, patient_id: str):
    """指派团队成员 Add a dated assignment from the patient page (rules.md §6.1)."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        writes.assign_member(ctx.engine, cur.scope, patient_id, data, today=ctx.today(), source=client_ip(request))
    except InvalidInput as exc:
        return patient_page_again(request, cur, patient_id, team_errors=forms.errors_by_field(exc.issues), team_values=data)
    return RedirectResponse(f"/patients/{patient_id}?saved=1", status_code=303)


@router.post("/patients/{patient_id}/team/{assignment_id}/end", response_class=HTMLResponse)
async def assignment_end(request: Request, patient_id: str, assignment_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]):
    """结束指派 End an assignment (default today) from the patient page (rules.md §6.1)."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        writes.end_assignment(ctx.engine, cur.scope, patient_id, assignment_id, data, today=ctx.today(),
                              source=client_ip(request))
    except InvalidInput as exc:
        return patient_page_again(request, cur, patient_id, team_errors=forms.errors_by_field(exc.issues), team_values=data)
    return RedirectResponse(f"/patients/{patient_id}?saved=1", status_code=303)


@router.get("/patients/{patient_id}/follow-ups/new", response_class=HTMLResponse)
def follow_up_page(request: Request, patient_id: str):
    """随访录入 The 2018 follow-up form."""
    cur = current(request)
    cur.scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    return _follow_up_form(request, cur, patient_id, {"visit_on": request.app.state.ctx.today().isoformat(),
                                                      "doctor_signature": cur.user.display_name,
                                                      "idempotency_key": secrets.token_urlsafe(18)}, {})


def _follow_up_form(request: Request, cur: Current, patient_id: str, values: dict, errors: dict, status_code: int = 200):
    record = _record_read(request, cur, patient_id)
    joint_roles = sorted({r for t in record["tasks"] for r in t.get("roles") or [] if r in writes.JOINT_ROLES},
                         key=writes.JOINT_ROLES.index)
    # attendance per person (rules.md §6.2): a row for each member of the patient's team in a joint
    # role (attended@<member_id>), and each role's unnamed row (attended_<role>) for anyone else
    people = {r: [m for m in record.get("team", []) if m["role"] == r and m.get("member_id")] for r in writes.JOINT_ROLES}
    return render(request, "follow_up_form.html", status_code=status_code, p=record, sections=forms.FOLLOW_UP_SECTIONS,
                  values=values, errors=errors, joint_roles=joint_roles or list(writes.JOINT_ROLES),
                  attendance_choices=forms.ATTENDANCE_CHOICES, doctor_choices=forms.DOCTOR_ATTENDANCE_CHOICES,
                  suggested=set(joint_roles), people=people)


@router.post("/patients/{patient_id}/follow-ups/new", response_class=HTMLResponse)
async def follow_up_submit(request: Request, patient_id: str):
    """随访录入 Save a follow-up or show the form again with its errors."""
    cur = current(request)
    data = await form_data(request, cur)
    data = {k: v for k, v in data.items() if not (k.startswith(("attended_", writes.NAMED_ATTENDED)) and v == "")}
    key = data.pop("idempotency_key", "") or None
    ctx = request.app.state.ctx
    try:
        fu = writes.record_follow_up(ctx.engine, cur.scope, patient_id, data, today=ctx.today(), source=client_ip(request),
                                     idempotency_key=key)
    except InvalidInput as exc:
        # the same key goes back into the form: nothing was recorded under it
        return _follow_up_form(request, cur, patient_id, {**data, "idempotency_key": key or secrets.token_urlsafe(18)},
                               forms.errors_by_field(exc.issues), status_code=422)
    # the page after the save names the key, so the device's draft of this form is cleared (static/app.js)
    return RedirectResponse(f"/patients/{patient_id}?saved=1&fu={fu.id}", status_code=303)


@router.get("/patients/{patient_id}/status", response_class=HTMLResponse)
def status_page(request: Request, patient_id: str):
    """死亡/迁出 The status form."""
    cur = current(request)
    cur.scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    return _status_form(request, cur, patient_id, {"status": PatientStatus.DEAD.value, "status_on": request.app.state.ctx.today().isoformat()}, {})


def _status_form(request, cur, patient_id, values, errors, status_code=200):
    record = _record_read(request, cur, patient_id)
    return render(request, "status_form.html", status_code=status_code, p=record, values=values, errors=errors)


@router.post("/patients/{patient_id}/status", response_class=HTMLResponse)
async def status_submit(request: Request, patient_id: str):
    """死亡/迁出 Save a death or move-out, or show the form again."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        writes.record_status(ctx.engine, cur.scope, patient_id, data, today=ctx.today(), source=client_ip(request))
    except InvalidInput as exc:
        return _status_form(request, cur, patient_id, data, forms.errors_by_field(exc.issues), status_code=422)
    return RedirectResponse(f"/patients/{patient_id}", status_code=303)


@router.post("/patients/{patient_id}/health-check", response_class=HTMLResponse)
async def health_check_submit(request: Request, patient_id: str):
    """健康体检 Record a health check from the patient page."""
    return await _event_submit(request, patient_id, writes.record_health_check)


@router.post("/patients/{patient_id}/injection", response_class=HTMLResponse)
async def injection_submit(request: Request, patient_id: str):
    """长效针剂注射 Record an injection from the patient page."""
    return await _event_submit(request, patient_id, writes.record_injection)


async def _event_submit(request: Request, patient_id: str, write):
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    try:
        write(ctx.engine, cur.scope, patient_id, data, today=ctx.today(), source=client_ip(request))
    except InvalidInput as exc:
        return patient_page_again(request, cur, patient_id, event_errors=forms.errors_by_field(exc.issues), event_values=data)
    return RedirectResponse(f"/patients/{patient_id}?saved=1", status_code=303)


@router.get("/gaps", response_class=HTMLResponse)
def gaps_page(request: Request):
    """缺位清单 Open tasks with a required role nobody is responsible for (rules.md §6.1); doctors and
    county admins."""
    cur = current(request)
    ctx = request.app.state.ctx
    data = queries.team_gaps(ctx.engine, cur.scope, ctx.tree, as_of=ctx.today())
    _audit_read(request, cur, action="read", object_type="list", object_id="gaps", region_code=cur.user.region_code,
                detail=f"{data['total']} 个任务缺责任人")
    return render(request, "gaps.html", data=data)


@router.post("/follow-ups/{follow_up_id}/attendance")
async def attendance_submit(request: Request, follow_up_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]):
    """到场登记 Police / civil affairs / village record their own attendance: 到场, or 未到场 with a reason
    (rules.md §6.2; from ``/my/attendance`` or the patient page)."""
    cur = current(request)
    data = await form_data(request, cur)
    ctx = request.app.state.ctx
    writes.record_attendance(ctx.engine, cur.scope, follow_up_id, data.get("attended") == "1", source=client_ip(request),
                             reason=data.get("reason") if data.get("attended") != "1" else None)
    back = data.get("back", "/mylist")
    ok = back.startswith("/patients/") or back == "/my/attendance"
    return RedirectResponse((back if ok else "/mylist") + ("?saved=1" if back == "/my/attendance" else ""), status_code=303)


# ---------------------------------------------------------------- search, lists, dashboard, audit

@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, q: str = ""):
    """患者检索 Search within scope; audited."""
    cur = current(request)
    cur.scope.require_role(UserRole.TOWNSHIP_DOCTOR.value, UserRole.COUNTY_ADMIN.value)
    ctx = request.app.state.ctx
    q = text_param(q, "检索词")
    results = queries.search_patients(ctx.engine, cur.scope, ctx.tree, q) if q.strip() else []
    if q.strip():
        _audit_read(request, cur, action="search", object_type="patient", object_id=None, region_code=cur.user.region_code,
                    detail=f"检索“{q}”，{len(results)} 条")
    return render(request, "search.html", q=q, results=results)


def _week_and_township(request: Request, cur: Current, week: str, township: str) -> tuple[date, str]:
    """The Monday of ``week`` (default this week) and the user's own township (``township`` may
    only name it: the link in a weekly-lists message carries both)."""
    ctx = request.app.state.ctx
    day = ctx.today()
    if week:
        try:
            day = date.fromisoformat(week)
        except ValueError:
            raise InvalidInput.single("BAD_DATE", f"周次“{week[:20]}”不是有效日期，应为 YYYY-MM-DD", column="week") from None
        if not date(2000, 1, 1) <= day <= date(2100, 12, 31):
            raise InvalidInput.single("BAD_DATE", "周次应在 2000-01-01 至 2100-12-31 之间", column="week")
    monday = day - timedelta(days=day.weekday())
    cur.scope.require_township_lists()  # rules.md §6.1: the supervisor's; a linked member works from its own
    own = ctx.tree.township_of(cur.user.region_code) or cur.user.region_code
    if township and township != own:
        raise PermissionDenied(f"乡镇 {township[:20]} 不在您的管辖范围内", code="REGION_FORBIDDEN")
    return monday, own


LIST_ROLES = (UserRole.TOWNSHIP_DOCTOR.value, *scopes.LIST_ROLES)


@router.get("/lists/week", response_class=HTMLResponse)
def week_lists(request: Request, week: str = "", township: str = ""):
    """本周五单 The lists of the user's township for a week that the user's role reads (rules.md §7:
    each list to its readers alone), each a PDF and an XLSX link (``/lists/week/<list>.pdf``)."""
    from schedules.lists import lists_for_role

    cur = current(request)
    cur.scope.require_role(*LIST_ROLES)
    from schedules.archive import latest_issue

    monday, own = _week_and_township(request, cur, week, township)
    with request.app.state.ctx.engine.connect() as conn:
        issue = latest_issue(conn, own, monday)
    from registry.web.scopes import ARCHIVE_ROLES

    this_monday = request.app.state.ctx.today() - timedelta(days=request.app.state.ctx.today().weekday())
    # the archive link only for a role that may open it (综治 reads the week's lists, not the archive)
    return render(request, "lists_week.html", monday=monday, sunday=monday + timedelta(days=6), township=own,
                  township_name=request.app.state.ctx.tree.name(own), lists=lists_for_role(cur.user.role),
                  one_week=timedelta(days=7), issue=issue, archive=cur.user.role in ARCHIVE_ROLES,
                  this_monday=this_monday)


@router.get("/lists/week/{slug}.{fmt}")
def week_list_file(request: Request, slug: Annotated[str, PathParam(max_length=20)], fmt: Annotated[str, PathParam(max_length=5)],
                   week: str = "", township: str = ""):
    """一单下载 One list of the week as PDF or XLSX, only for that list's readers (police never get
    the 随访任务单 or the 服药与针剂单); served from the issued archive when the week was issued
    (rules.md §7, issue 17); recorded in ``list_download`` and audited as an export."""
    from registry.web.reports import write_one_list

    cur = current(request)
    cur.scope.require_role(*LIST_ROLES)
    if fmt not in ("pdf", "xlsx"):
        raise InvalidInput.single("BAD_FORMAT", "格式应为 pdf 或 xlsx", column="format")
    monday, own = _week_and_township(request, cur, week, township)
    ctx = request.app.state.ctx
    with tempfile.TemporaryDirectory() as tmp:
        path, info = write_one_list(ctx.engine, week=monday, township=own, slug=slug, fmt=fmt, role=cur.user.role,
                                    out_dir=Path(tmp))
        content = path.read_bytes()
    from schedules.archive import record_download

    with ctx.engine.begin() as conn:  # who downloaded what and when (list_download) and the export audit row
        record_download(conn, township_code=own, week=monday, slug=slug, fmt=fmt, content=content, actor=cur.user.username,
                        role=cur.user.role, channel="web", file_id=info["file_id"], source=client_ip(request),
                        detail=f"{info['title']} {fmt.upper()}，{info['rows']} 行，"
                               + (f"存档第{info['version']}版" if info["file_id"] else "即时生成（未签发）"))
    media = "application/pdf" if fmt == "pdf" else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    ascii_name = f"{monday}_{own}_{slug}.{fmt}"
    return Response(content, media_type=media, headers={
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(path.name)}"})


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, month: str = ""):
    """指标看板 The month's indicators per township against targets."""
    cur = current(request)
    cur.scope.require_role(UserRole.COUNTY_ADMIN.value)
    ctx = request.app.state.ctx
    today = ctx.today()
    # indicators.md "Open months": the last closed month by default; the open one on request (月中)
    month = month or Period.last_closed(today).label
    month_arg(month)
    period = Period.requested(month, today)
    rates = compute_rates(ctx.engine, month=month, region_code=cur.user.region_code, today=today)
    _audit_read(request, cur, action="read", object_type="rates", object_id=month, region_code=cur.user.region_code)
    return render(request, "dashboard.html", month=month, rates=rates, tree=ctx.tree, indicators=BY_KEY,
                  month_title=period.title(), open_month=period.is_open, current_month=Period.of(today).label)


@router.get("/reports/monthly.pdf")
def monthly_pdf(request: Request, month: str = ""):
    """月报下载 The monthly PDF; audited as an export."""
    cur = current(request)
    cur.scope.require_role(UserRole.COUNTY_ADMIN.value)
    ctx = request.app.state.ctx
    today = ctx.today()
    month = month or Period.last_closed(today).label  # indicators.md "Open months"
    month_arg(month)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"report-{month}.pdf"
        write_monthly_report(ctx.engine, month=month, region_code=cur.user.region_code, out_path=out, today=today)
        content = out.read_bytes()
    _audit_read(request, cur, action="export", object_type="monthly_report", object_id=month, region_code=cur.user.region_code)
    return Response(content, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="jingfang-{cur.user.region_code}-{month}.pdf"'})


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, actor: str = "", action: str = ""):
    """审计日志 The latest audit rows of the admin's region."""
    cur = current(request)
    cur.scope.require_role(UserRole.COUNTY_ADMIN.value)
    ctx = request.app.state.ctx
    actor, action = text_param(actor, "用户"), text_param(action, "操作", 20)
    rows = queries.audit_rows(ctx.engine, cur.scope, actor=actor or None, action=action or None)
    return render(request, "audit.html", rows=rows, actor=actor, action=action, action_labels=queries.AUDIT_ACTION_LABELS)


# The hot pages (the work list, the patient page: issue 4's benchmark) are matched first: FastAPI
# matches a request by trying the routes in order, twice (the app's included routers, then the
# router's own), with a little bookkeeping per route. The sort is stable, so the registration form
# (GET /patients/new) stays before /patients/{patient_id}; POST /patients/new only partially matches
# the hot GET routes and is found further on as before.
_HOT_PAGES = frozenset({"/worklist", "/patients/new", "/patients/{patient_id}"})
router.routes.sort(key=lambda route: 0 if getattr(route, "path", None) in _HOT_PAGES and "GET" in (getattr(route, "methods", None) or ()) else 1)
