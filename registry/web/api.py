"""JSON 接口 The JSON API under /api/ (OpenAPI at /openapi.json).

Authentication: ``POST /api/session`` with username and password returns a bearer token;
send ``Authorization: Bearer <token>``. A browser session cookie also works, with the
session's CSRF token in an ``X-CSRF-Token`` header on writes. Errors are
``{"error": CODE, "message": 中文}`` with a 4xx status; codes are stable.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from registry import audit
from registry.accounts import UserRole, authenticate, end_session, start_session
from registry.errors import InvalidInput, NotAuthenticated
from registry.web import fast, queries, writes
from registry.web.auth import Current, client_ip, current, require_api_csrf, token_from
from registry.periods import Period
from registry.web.reports import compute_rates_safe, month_arg
from registry.web.writes import bad_text


class ErrorBody(BaseModel):
    """错误 The JSON error body."""
    error: str = Field(description="稳定的错误代码")
    message: str = Field(description="中文说明")
    issues: list[dict] | None = None


ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 503)}
router = APIRouter(prefix="/api", responses=ERRORS)


class LoginBody(BaseModel):
    """登录 Username and password."""
    model_config = ConfigDict(strict=True, extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class AttendanceBody(BaseModel):
    """到场 Whether the caller attended."""
    model_config = ConfigDict(strict=True, extra="forbid")
    attended: bool


class SessionOut(BaseModel):
    """会话 A new session token and its CSRF token."""
    token: str
    csrf_token: str
    username: str
    role: str
    region_code: str


def checked(value: str, field: str) -> str:
    """文本校验 The value, or 422 BAD_TEXT when SQL cannot store it."""
    if bad_text(value):
        raise InvalidInput.single("BAD_TEXT", f"{field} 含有无效字符", column=field)
    return value


def body_checked(body: dict[str, Any]) -> dict[str, Any]:
    """请求体校验 Refuse text SQL cannot store anywhere in a body."""
    for key, value in body.items():
        checked(str(key), "字段名")
        if isinstance(value, str):
            checked(value, str(key)[:40])
        elif isinstance(value, list):
            for item in value:
                checked(str(item), str(key)[:40])
    return body


def api_user(request: Request) -> Current:
    """接口用户 The current user plus the CSRF check for cookie writes."""
    cur = current(request)
    require_api_csrf(request, cur)
    return cur


# Authentication runs before body validation, so an anonymous call is 401 whatever it sends.
authed = APIRouter(dependencies=[Depends(api_user)])


def _as_of(ctx, as_of: date | None) -> date:
    if as_of is None:
        return ctx.today()
    if not (date(2000, 1, 1) <= as_of <= date(2100, 12, 31)):
        raise InvalidInput.single("BAD_DATE", "日期(as_of)应在 2000-01-01 至 2100-12-31 之间", column="as_of")
    return as_of


PatientId = Annotated[str, Path(min_length=1, max_length=64, description="患者编号")]


@router.post("/session", response_model=SessionOut, summary="登录，取得令牌")
def login(request: Request, body: LoginBody):
    """登录 Username and password → bearer token."""
    ctx = request.app.state.ctx
    with Session(ctx.engine, expire_on_commit=False) as session:
        checked(body.username, "username")
        checked(body.password, "password")
        try:
            user = authenticate(session, body.username, body.password)
        except Exception:
            audit.record(session.connection(), actor=body.username or "?", action="login", object_type="session", detail="接口登录失败",
                         source=client_ip(request))
            session.commit()
            raise
        token, row = start_session(session, user, source=client_ip(request))
        audit.record(session.connection(), actor=user.username, action="login", object_type="session", region_code=user.region_code,
                     detail="接口登录", source=client_ip(request))
        session.commit()
    return SessionOut(token=token, csrf_token=row.csrf_token, username=user.username, role=user.role, region_code=user.region_code)


@authed.delete("/session", summary="退出登录")
def logout(request: Request) -> dict:
    """退出 End this session."""
    cur = api_user(request)
    token, _via = token_from(request)
    with Session(request.app.state.ctx.engine) as session:
        end_session(session, token or "")
        audit.record(session.connection(), actor=cur.user.username, action="logout", object_type="session", source=client_ip(request))
        session.commit()
    return {"ok": True}


@authed.get("/me", summary="当前用户")
def me(request: Request) -> dict:
    """当前用户 Who is logged in, role and region."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    return {"username": cur.user.username, "display_name": cur.user.display_name, "role": cur.user.role,
            "role_label": UserRole(cur.user.role).label, "region_code": cur.user.region_code,
            "region_name": ctx.tree.name(cur.user.region_code)}


@authed.get("/worklist", summary="工作清单（逾期优先，按危险性、逾期天数、到期日排序）")
def worklist(request: Request, as_of: date | None = None, all: bool = False,
             limit: Annotated[int, Query(ge=1, le=5000)] = 500, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict:
    """工作清单 Overdue first, then rules.md §5 order."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    day = _as_of(ctx, as_of)
    with ctx.engine.begin() as conn:  # one connection: the cache's version check and the audit row
        data = ctx.worklist(cur.scope, conn=conn, as_of=day, horizon_days=None if all else 7, limit=limit, offset=offset)
        audit.record(conn, actor=cur.user.username, action="read", object_type="worklist", object_id=cur.user.region_code,
                     region_code=cur.user.region_code, detail=f"{data['total']} 项", source=client_ip(request))
    return data


@authed.get("/patients", summary="检索患者（编号、姓名或身份证号）")
def search(request: Request, q: Annotated[str, Query(max_length=100)] = "",
           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    """患者检索 By number, name or ID number, within scope."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    checked(q, "q")
    rows = queries.search_patients(ctx.engine, cur.scope, ctx.tree, q, limit=limit)
    audit.record(ctx.engine, actor=cur.user.username, action="search", object_type="patient", region_code=cur.user.region_code,
                     detail=f"检索“{q}”，{len(rows)} 条", source=client_ip(request))
    return {"q": q, "patients": rows}


@authed.post("/patients", status_code=201, summary="新患者建档（乡镇精防医生）")
def register(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict:
    """新患者建档 Register a patient (township doctor)."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    patient = writes.register_patient(ctx.engine, cur.scope, body_checked(body), today=ctx.today(), source=client_ip(request))
    return {"patient_id": patient.patient_id}


def api_token(request: Request) -> None:
    """令牌 Only that a token is present, so an anonymous call is 401 before any validation; the read
    itself checks the session (on PostgreSQL in the same statement as the record, see fast.py)."""
    token, _via = token_from(request)
    if not token:
        raise NotAuthenticated("请先登录", code="NOT_AUTHENTICATED")


# the patient read checks its own session: one statement for doctors and admins on PostgreSQL
reads = APIRouter(dependencies=[Depends(api_token)])


@reads.get("/patients/{patient_id}", summary="患者一历（按角色裁剪字段）")
async def patient(request: Request, patient_id: PatientId) -> dict:
    """一历 The patient record, shaped by role (the same record as the web page, audited the same way)."""
    checked(patient_id, "patient_id")
    fast_read = await fast.patient_page_async(request, patient_id, client_ip(request))
    if fast_read is not None:  # PostgreSQL, doctor or admin: session, scope, record and audit row in one statement
        _cur, record = fast_read
        return record
    return await run_in_threadpool(_patient_generic, request, patient_id)


def _patient_generic(request: Request, patient_id: str) -> dict:
    cur = api_user(request)
    ctx = request.app.state.ctx
    source = client_ip(request)

    def audit_read(conn, p) -> None:  # rules.md §8: in the read's own transaction
        audit.record(conn, actor=cur.user.username, action="read", object_type="patient", object_id=patient_id,
                     region_code=p.village_code, source=source)

    return queries.patient_record(ctx.engine, cur.scope, ctx.tree, patient_id, as_of=ctx.today(), on_read=audit_read)


@authed.post("/patients/{patient_id}/follow-ups", status_code=201, summary="录入随访（乡镇精防医生）")
def follow_up(request: Request, patient_id: PatientId, body: Annotated[dict[str, Any], Body()]) -> dict:
    """随访录入 Record a follow-up (township doctor)."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    checked(patient_id, "patient_id")
    fu = writes.record_follow_up(ctx.engine, cur.scope, patient_id, body_checked(body), today=ctx.today(),
                                 source=client_ip(request))
    return {"id": fu.id, "patient_id": patient_id, "visit_on": fu.visit_on.isoformat()}


@authed.post("/patients/{patient_id}/status", summary="登记死亡或迁出（乡镇精防医生）")
def status(request: Request, patient_id: PatientId, body: Annotated[dict[str, Any], Body()]) -> dict:
    """死亡/迁出 Record a death or move-out (township doctor)."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    checked(patient_id, "patient_id")
    p = writes.record_status(ctx.engine, cur.scope, patient_id, body_checked(body), today=ctx.today(), source=client_ip(request))
    return {"patient_id": p.patient_id, "status": p.status, "status_on": p.status_on.isoformat()}


@authed.post("/patients/{patient_id}/health-checks", status_code=201, summary="登记健康体检（乡镇精防医生）")
def health_check(request: Request, patient_id: PatientId, body: Annotated[dict[str, Any], Body()]) -> dict:
    """健康体检 Record a health check: {"checked_on": "YYYY-MM-DD"}."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    checked(patient_id, "patient_id")
    on = writes.record_health_check(ctx.engine, cur.scope, patient_id, body_checked(body), today=ctx.today(),
                                    source=client_ip(request))
    return {"patient_id": patient_id, "checked_on": on.isoformat()}


@authed.post("/patients/{patient_id}/injections", status_code=201, summary="登记长效针剂注射（乡镇精防医生）")
def injection(request: Request, patient_id: PatientId, body: Annotated[dict[str, Any], Body()]) -> dict:
    """长效针剂注射 Record an injection given: {"given_on": "YYYY-MM-DD"}."""
    cur = api_user(request)
    ctx = request.app.state.ctx
    checked(patient_id, "patient_id")
    on = writes.record_injection(ctx.engine, cur.scope, patient_id, body_checked(body), today=ctx.today(),
                                 source=client_ip(request))
    return {"patient_id": patient_id, "given_on": on.isoformat()}


@authed.post("/follow-ups/{follow_up_id}/attendance", summary="联合入户到场登记（民警、民政专干）")
def attendance(request: Request, follow_up_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: AttendanceBody) -> dict:
    """到场登记 Police / civil affairs confirm their attendance."""
    cur = api_user(request)
    row = writes.record_attendance(request.app.state.ctx.engine, cur.scope, follow_up_id, body.attended, source=client_ip(request))
    return {"follow_up_id": follow_up_id, "role": row.role, "attended": row.attended}


@authed.get("/rates", summary="月度指标（县级管理员）")
def rates(request: Request, month: Annotated[str, Query(max_length=7)] = "") -> dict:
    """月度指标 The month's indicators (county admin)."""
    cur = api_user(request)
    cur.scope.require_role(UserRole.COUNTY_ADMIN.value)
    ctx = request.app.state.ctx
    today = ctx.today()
    month = month_arg(month or Period.of(today).label)
    data = compute_rates_safe(ctx.engine, month=month, region_code=cur.user.region_code)
    if data is None:
        from registry.web.reports import Unavailable

        raise Unavailable("指标模块尚未安装", code="RATES_UNAVAILABLE")
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="rates", object_id=month,
                     region_code=cur.user.region_code, source=client_ip(request))
    return data


@authed.get("/audit", summary="审计日志（县级管理员）")
def audit_log(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
              actor: Annotated[str, Query(max_length=100)] = "", action: Annotated[str, Query(max_length=20)] = "") -> dict:
    """审计日志 The latest audit rows (county admin)."""
    cur = api_user(request)
    cur.scope.require_role(UserRole.COUNTY_ADMIN.value)
    checked(actor, "actor")
    checked(action, "action")
    return {"rows": queries.audit_rows(request.app.state.ctx.engine, cur.scope, limit=limit, actor=actor or None,
                                       action=action or None)}


router.include_router(reads)
router.include_router(authed)
