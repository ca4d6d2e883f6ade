"""JSON 接口 The JSON API under /api/ (OpenAPI at /openapi.json).

Authentication: ``POST /api/session`` with username and password returns a bearer token;
send ``Authorization: Bearer <token>``. A browser session cookie also works, with the
session's CSRF token in an ``X-CSRF-Token`` header on writes. Errors are
``{"error": CODE, "message": 中文}`` with a 4xx status; codes are stable.

A handler's needs are its signature (``registry.web.deps``: ``CurrentUser``, ``EngineDep``,
``SessionDep``, ``Today``, ``ClientIp``); write bodies are typed models whose fields are the
import contract's (``registry.validation``): the model types the shape for the OpenAPI schema,
the values are checked by the one validation path with its codes.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, WithJsonSchema, create_model, model_validator

from registry import accounts, audit, codes
from registry.accounts import UserRole, end_session, start_session
from registry.errors import InvalidInput, NotAuthenticated, TooManyRequests
from registry.rates.compute import compute_rates
from registry.validation import (CARE_TEAM_FIELDS, FOLLOW_UP_EXTRA_FIELDS, Channel, FOLLOW_UP_FIELDS, HEALTH_CHECK_FIELDS, PATIENT_EXTRA_FIELDS,
                                 PATIENT_FIELDS)
from registry.web import queries, reads, writes
from registry.web.auth import token_from
from registry.web.deps import ClientIp, Ctx, CurrentUser, EngineDep, SessionDep, Today, api_user
from registry.web.reports import month_arg
from registry.periods import Period
from registry.web.writes import bad_text


class ErrorBody(BaseModel):
    """错误 The JSON error body."""
    error: str = Field(description="稳定的错误代码")
    message: str = Field(description="中文说明")
    issues: list[dict] | None = None


ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api", responses=ERRORS)


class LoginBody(BaseModel):
    """登录 Username and password."""
    model_config = ConfigDict(strict=True, extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class PasswordBody(BaseModel):
    """修改密码 The current password and the new one."""
    model_config = ConfigDict(strict=True, extra="forbid")
    old_password: str = Field(max_length=256)
    new_password: str = Field(max_length=256)


class AttendanceBody(BaseModel):
    """到场 Whether the caller attended (and, when absent, why)."""
    model_config = ConfigDict(strict=True, extra="forbid")
    attended: bool
    reason: str | None = Field(default=None, max_length=200, title="未到场原因")


class ParticipantRow(BaseModel):
    """参加人员 One person's attendance on a joint visit (rules.md §6.2): a member of the role, or without
    ``member_id`` the role's unnamed row."""
    model_config = ConfigDict(strict=True, extra="forbid")
    role: str = Field(max_length=20, title="角色")
    member_id: str | None = Field(default=None, max_length=64, title="成员编号")
    present: bool = Field(title="到场")
    reason: str | None = Field(default=None, max_length=200, title="未到场原因")


class ParticipantsBody(BaseModel):
    """联合入户参加人员 The doctor's record of who attended."""
    model_config = ConfigDict(strict=True, extra="forbid")
    participants: list[ParticipantRow] = Field(max_length=30)


class SessionOut(BaseModel):
    """会话 A new session token and its CSRF token."""
    token: str
    csrf_token: str
    username: str
    role: str
    region_code: str


# ---------------------------------------------------------------- write bodies

_NULL = {"type": "null"}
_SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, _NULL]}
_SHAPES = {  # the fields that may also be lists (contract: symptoms a list, medication a list of objects)
    "symptoms": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}, _NULL]},
    "medication": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, _NULL]},
    "advised_medication": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, _NULL]},
}


class WriteBody(BaseModel):
    """写入请求体 A JSON object of field → value with the import contract's field names.

    The model types the shape (which fields, JSON strings, numbers, booleans, lists where the
    contract allows them) for the OpenAPI schema; every value is checked by ``registry.validation``
    through ``registry.web.writes``, which refuses with its codes (422 ``INVALID_INPUT`` with
    ``BAD_DATE``, ``BAD_CODE``, ``BAD_VALUE``, ``UNKNOWN_FIELD``, ``REQUIRED`` …). So a field of
    any JSON type, and an unknown field, pass the model and are refused there.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})
    _order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data, handler):
        body = handler(data)
        if isinstance(data, dict):
            body._order = list(data)
        return body

    def as_sent(self) -> dict[str, Any]:
        """The body as sent: field → value in the sender's order, unknown fields included."""
        values = {name: getattr(self, name) for name in self.model_fields_set} | (self.model_extra or {})
        return {name: values[name] for name in self._order if name in values}


def write_body(name: str, doc: str, fields: list[tuple[str, str]]) -> type[WriteBody]:
    """A ``WriteBody`` documenting ``fields`` ((name, Chinese label) pairs), every one optional."""
    return create_model(name, __base__=WriteBody, __doc__=doc, **{
        field: (Annotated[Any, WithJsonSchema(_SHAPES.get(field, _SCALAR))], Field(None, title=label))
        for field, label in fields})


def _specs(specs, names=None, skip=()) -> list[tuple[str, str]]:
    return [(s.name, s.label) for s in specs if (names is None or s.name in names) and s.name not in skip]


PatientBody = write_body("PatientBody", "新患者建档 The 个人信息补充表 fields (import contract patients.csv).",
                         _specs(PATIENT_FIELDS + PATIENT_EXTRA_FIELDS, writes.patient_field_names()))
FollowUpBody = write_body(
    "FollowUpBody", "随访 The 2018 随访服务记录表 fields (import contract followups.csv) and joint-visit attendance "
    "(attended_<role>: 1 到场 / 0 未到场; absent = 未邀请; attended_doctor 0: the doctor did not attend, rules.md §6.2).",
    _specs(FOLLOW_UP_FIELDS + FOLLOW_UP_EXTRA_FIELDS, writes.follow_up_field_names(), skip=("patient_id",))
    + [(f"attended_{role}", f"到场({codes.TeamRole(role).label})") for role in writes.FORM_ROLES])
StatusBody = write_body("StatusBody", "死亡/迁出 status (dead | moved_out), its date and detail.",
                        _specs(PATIENT_FIELDS + PATIENT_EXTRA_FIELDS, {"status", "status_on", "status_detail"}))
HealthCheckBody = write_body("HealthCheckBody", "健康体检 The check's date.", _specs(HEALTH_CHECK_FIELDS, {"checked_on"}))
InjectionBody = write_body("InjectionBody", "长效针剂注射 The injection's date.", [("given_on", "注射日期")])
AssignmentBody = write_body("AssignmentBody", "团队指派 A dated assignment (import contract care_team.csv; role defaults "
                            "to the member's own, to_on blank = open).", _specs(CARE_TEAM_FIELDS, skip=("patient_id",)))
EndAssignmentBody = write_body("EndAssignmentBody", "结束指派 The last day the assignment counts (default today).",
                               [("to_on", "结束日期")])


def checked(value: str, field: str) -> str:
    """文本校验 The value, or 422 BAD_TEXT when SQL cannot store it."""
    if bad_text(value):
        raise InvalidInput.single("BAD_TEXT", f"{field} 含有无效字符", column=field)
    return value


def body_checked(body: WriteBody) -> dict[str, Any]:
    """请求体校验 The body as sent, refusing text SQL cannot store anywhere in it."""
    fields = body.as_sent()
    for key, value in fields.items():
        checked(str(key), "字段名")
        # a text value is checked by registry.validation.parse_fields (BAD_TEXT naming the field),
        # the same check as the import's and the form's
        if isinstance(value, list):
            for item in value:
                checked(str(item), str(key)[:40])
    return fields


# Authentication runs before body validation, so an anonymous call is 401 whatever it sends.
authed = APIRouter(dependencies=[Depends(api_user)])


def _as_of(today: date, as_of: date | None) -> date:
    if as_of is None:
        return today
    if not (date(2000, 1, 1) <= as_of <= date(2100, 12, 31)):
        raise InvalidInput.single("BAD_DATE", "日期应在 2000-01-01 至 2100-12-31 之间", column="as_of")
    return as_of


PatientId = Annotated[str, Path(min_length=1, max_length=64, description="患者编号")]


@router.post("/session", response_model=SessionOut, summary="登录，取得令牌")
def login(body: LoginBody, session: SessionDep, ip: ClientIp):
    """登录 Username and password → bearer token."""
    checked(body.username, "username")
    checked(body.password, "password")
    try:
        user = accounts.login(session, body.username, body.password, source=ip)
    except (NotAuthenticated, TooManyRequests) as exc:
        audit.record(session.connection(), actor=body.username or "?", action="login", object_type="session",
                     detail="接口登录被限制" if isinstance(exc, TooManyRequests) else "接口登录失败", source=ip)
        session.commit()
        raise
    token, row = start_session(session, user, source=ip)
    audit.record(session.connection(), actor=user.username, action="login", object_type="session", region_code=user.region_code,
                 detail="接口登录", source=ip)
    session.commit()
    return SessionOut(token=token, csrf_token=row.csrf_token, username=user.username, role=user.role, region_code=user.region_code)


@authed.delete("/session", summary="退出登录")
def logout(request: Request, cur: CurrentUser, session: SessionDep, ip: ClientIp) -> dict:
    """退出 End this session."""
    token, _via = token_from(request)
    end_session(session, token or "")
    audit.record(session.connection(), actor=cur.user.username, action="logout", object_type="session", source=ip)
    session.commit()
    return {"ok": True}


@authed.post("/me/password", summary="修改本人密码")
def change_password(cur: CurrentUser, session: SessionDep, ip: ClientIp, body: PasswordBody) -> dict:
    """修改密码 Change one's own password (policy: ≥10 characters, not the user name, not common); the
    account's other sessions end."""
    checked(body.old_password, "old_password")
    checked(body.new_password, "new_password")
    ended = accounts.change_password(session, cur.user, cur.session.token_hash, body.old_password, body.new_password,
                                     source=ip)
    session.commit()
    return {"ok": True, "sessions_ended": ended}


@authed.get("/me", summary="当前用户")
def me(cur: CurrentUser, ctx: Ctx) -> dict:
    """当前用户 Who is logged in, role and region."""
    return {"username": cur.user.username, "display_name": cur.user.display_name, "role": cur.user.role,
            "role_label": UserRole(cur.user.role).label, "region_code": cur.user.region_code,
            "region_name": ctx.tree.name(cur.user.region_code)}


@authed.get("/worklist", summary="工作清单（逾期优先，按危险性、逾期天数、到期日排序）")
def worklist(cur: CurrentUser, ctx: Ctx, today: Today, ip: ClientIp, as_of: date | None = None, all: bool = False,
             limit: Annotated[int, Query(ge=1, le=5000)] = 500, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict:
    """工作清单 Overdue first, then rules.md §5 order."""
    day = _as_of(today, as_of)
    with ctx.engine.begin() as conn:  # one connection: the cache's version check and the audit row
        data = ctx.worklist(cur.scope, conn=conn, as_of=day, horizon_days=None if all else 7, limit=limit, offset=offset)
        audit.record(conn, actor=cur.user.username, action="read", object_type="worklist", object_id=cur.user.region_code,
                     region_code=cur.user.region_code, detail=f"{data['total']} 项", source=ip)
    return data


@authed.get("/patients", summary="检索患者（编号、姓名或身份证号）")
def search(cur: CurrentUser, ctx: Ctx, ip: ClientIp, q: Annotated[str, Query(max_length=100)] = "",
           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    """患者检索 By number, name or ID number, within scope."""
    checked(q, "q")
    rows = queries.search_patients(ctx.engine, cur.scope, ctx.tree, q, limit=limit)
    audit.record(ctx.engine, actor=cur.user.username, action="search", object_type="patient", region_code=cur.user.region_code,
                 detail=f"检索“{q}”，{len(rows)} 条", source=ip)
    return {"q": q, "patients": rows}


@authed.post("/patients", status_code=201, summary="新患者建档（乡镇精防医生）")
def register(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, body: PatientBody) -> dict:
    """新患者建档 Register a patient (township doctor)."""
    patient = writes.register_patient(engine, cur.scope, body_checked(body), today=today, source=ip, channel=Channel.API)
    return {"patient_id": patient.patient_id}


def api_token(request: Request) -> None:
    """令牌 Only that a token is present, so an anonymous call is 401 before any validation; the read
    itself checks the session (on PostgreSQL in the same statement as the record, see fast.py)."""
    token, _via = token_from(request)
    if not token:
        raise NotAuthenticated("请先登录", code="NOT_AUTHENTICATED")


# the patient read checks its own session: one statement for doctors and admins on PostgreSQL
reads_router = APIRouter(dependencies=[Depends(api_token)])


@reads_router.get("/patients/{patient_id}", summary="患者一历（按角色裁剪字段）")
async def patient(request: Request, patient_id: PatientId) -> dict:
    """一历 The patient record, shaped by role: the same read as the web page (``reads.patient_read``),
    audited the same way."""
    checked(patient_id, "patient_id")
    _cur, record = await reads.patient_read(request, patient_id)
    return record


@authed.post("/patients/{patient_id}/follow-ups", status_code=201, summary="录入随访（乡镇精防医生）")
def follow_up(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId,
              body: FollowUpBody,
              idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=64,
                                                            description="提交幂等键：重试同一提交时不重复记录（8–64 位字母、数字、-、_）")] = None) -> dict:
    """随访录入 Record a follow-up (township doctor). A retry with the same ``Idempotency-Key`` answers
    the first submit's follow-up and records nothing (issue 16)."""
    checked(patient_id, "patient_id")
    fu = writes.record_follow_up(engine, cur.scope, patient_id, body_checked(body), today=today, source=ip,
                                 idempotency_key=idempotency_key, channel=Channel.API)
    return {"id": fu.id, "patient_id": patient_id, "visit_on": fu.visit_on.isoformat()}


@authed.post("/patients/{patient_id}/status", summary="登记死亡或迁出（乡镇精防医生）")
def status(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId, body: StatusBody) -> dict:
    """死亡/迁出 Record a death or move-out (township doctor)."""
    checked(patient_id, "patient_id")
    p = writes.record_status(engine, cur.scope, patient_id, body_checked(body), today=today, source=ip, channel=Channel.API)
    return {"patient_id": p.patient_id, "status": p.status, "status_on": p.status_on.isoformat()}


@authed.post("/patients/{patient_id}/health-checks", status_code=201, summary="登记健康体检（乡镇精防医生）")
def health_check(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId,
                 body: HealthCheckBody) -> dict:
    """健康体检 Record a health check: {"checked_on": "YYYY-MM-DD"}."""
    checked(patient_id, "patient_id")
    on = writes.record_health_check(engine, cur.scope, patient_id, body_checked(body), today=today, source=ip, channel=Channel.API)
    return {"patient_id": patient_id, "checked_on": on.isoformat()}


@authed.post("/patients/{patient_id}/injections", status_code=201, summary="登记长效针剂注射（乡镇精防医生）")
def injection(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId,
              body: InjectionBody) -> dict:
    """长效针剂注射 Record an injection given: {"given_on": "YYYY-MM-DD"}."""
    checked(patient_id, "patient_id")
    on = writes.record_injection(engine, cur.scope, patient_id, body_checked(body), today=today, source=ip, channel=Channel.API)
    return {"patient_id": patient_id, "given_on": on.isoformat()}


@authed.post("/follow-ups/{follow_up_id}/attendance", summary="联合入户到场登记（民警、民政专干）")
def attendance(cur: CurrentUser, engine: EngineDep, ip: ClientIp,
               follow_up_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: AttendanceBody) -> dict:
    """到场登记 Police / civil affairs confirm their attendance."""
    row = writes.record_attendance(engine, cur.scope, follow_up_id, body.attended, source=ip, reason=body.reason)
    return {"follow_up_id": follow_up_id, "role": row.role, "member_id": row.member_id, "attended": row.attended}


@authed.get("/patients/{patient_id}/team", summary="团队指派（乡镇精防医生）")
def team(cur: CurrentUser, engine: EngineDep, ip: ClientIp, patient_id: PatientId) -> dict:
    """团队指派 The patient's dated assignments and the members that may be assigned (rules.md §6.1)."""
    checked(patient_id, "patient_id")
    cur.scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    data = writes.assignments_of(engine, cur.scope, patient_id)
    audit.record(engine, actor=cur.user.username, action="read", object_type="care_team", object_id=patient_id,
                 region_code=cur.user.region_code, source=ip)
    return {"patient_id": patient_id, "assignments": data["rows"], "members": data["members"]}


@authed.post("/patients/{patient_id}/team", status_code=201, summary="指派团队成员（乡镇精防医生）")
def assign(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId,
           body: AssignmentBody) -> dict:
    """指派团队成员 {"member_id", "role"?, "from_on", "to_on"?} (rules.md §6.1)."""
    checked(patient_id, "patient_id")
    new_id = writes.assign_member(engine, cur.scope, patient_id, body_checked(body), today=today, source=ip,
                                  channel=Channel.API)
    return {"patient_id": patient_id, "id": new_id}


@authed.post("/patients/{patient_id}/team/{assignment_id}/end", summary="结束团队指派（乡镇精防医生）")
def end_assignment(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp, patient_id: PatientId,
                   assignment_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: EndAssignmentBody) -> dict:
    """结束指派 {"to_on"?} — the last day it counts (default today)."""
    checked(patient_id, "patient_id")
    end = writes.end_assignment(engine, cur.scope, patient_id, assignment_id, body_checked(body), today=today, source=ip)
    return {"patient_id": patient_id, "id": assignment_id, "to_on": end.isoformat()}


@authed.get("/gaps", summary="责任人缺位（乡镇精防医生、县级管理员）")
def gaps(cur: CurrentUser, ctx: Ctx, today: Today, ip: ClientIp) -> dict:
    """责任人缺位 Open tasks whose required role has no responsible member (rules.md §6.1)."""
    data = queries.team_gaps(ctx.engine, cur.scope, ctx.tree, as_of=today)
    audit.record(ctx.engine, actor=cur.user.username, action="read", object_type="list", object_id="gaps",
                 region_code=cur.user.region_code, detail=f"{data['total']} 个任务缺责任人", source=ip)
    return data


@authed.post("/follow-ups/{follow_up_id}/participants", summary="联合入户参加人员到场登记（乡镇精防医生）")
def participants(cur: CurrentUser, engine: EngineDep, ip: ClientIp,
                 follow_up_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: ParticipantsBody) -> dict:
    """参加人员到场 The doctor records each person's attendance; an attendee's own record is kept (rules.md §6.2)."""
    out = writes.record_participants(engine, cur.scope, follow_up_id, [r.model_dump() for r in body.participants], source=ip)
    return {"follow_up_id": follow_up_id, **out}


@authed.get("/rates", summary="月度指标（县级管理员）")
def rates(cur: CurrentUser, engine: EngineDep, today: Today, ip: ClientIp,
          month: Annotated[str, Query(max_length=7)] = "") -> dict:
    """月度指标 The month's indicators (county admin; registry.rates.indicators, contract.md JSON)."""
    cur.scope.require_role(UserRole.COUNTY_ADMIN.value)
    # indicators.md "Open months": the last closed month by default; an open month on request is cut at today
    month = month_arg(month or Period.last_closed(today).label)
    data = compute_rates(engine, month=month, region_code=cur.user.region_code, today=today)
    audit.record(engine, actor=cur.user.username, action="read", object_type="rates", object_id=month,
                 region_code=cur.user.region_code, source=ip)
    return data


@authed.get("/audit", summary="审计日志（县级管理员）")
def audit_log(cur: CurrentUser, engine: EngineDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
              actor: Annotated[str, Query(max_length=100)] = "", action: Annotated[str, Query(max_length=20)] = "") -> dict:
    """审计日志 The latest audit rows (county admin)."""
    cur.scope.require_role(UserRole.COUNTY_ADMIN.value)
    checked(actor, "actor")
    checked(action, "action")
    return {"rows": queries.audit_rows(engine, cur.scope, limit=limit, actor=actor or None, action=action or None)}


router.include_router(reads_router)
router.include_router(authed)
