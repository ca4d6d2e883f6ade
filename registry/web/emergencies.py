"""应急处置 The 应急处置记录单 on the web and the API (rules.md §9) [2026-12].

* Opened (rules.md §9: "by anyone on the patient's team") from the patient page
  (``/patients/{id}/emergencies/new``) or the API (``POST /api/patients/{id}/emergencies``) by every
  account role standing for a team member (rules.md §6; ``OPEN_ROLES``): the township doctor, the
  police, the village (村(社区)干部/网格员) and civil affairs (民政专干), each for a patient in its own
  scope (``registry.web.scopes``: a list account for the patients on its lists, a linked one for its own
  patients, rules.md §6.1; any other patient is a 403, as everywhere). 助残员 and 志愿者 have no web
  account role; 综治 and the county admin are not team members and do not open one.
* Completed (end time, measures, effect; the police sign-off when police took part) on
  ``/emergencies/{id}`` or ``PATCH /api/emergencies/{id}`` within 24 hours of the report time, by the
  doctor who fills in the record or the police (``COMPLETE_ROLES`` [decision]: the record holds "the
  doctor who filled it in" and the police sign-off). A village or civil-affairs account opens with the
  event's fields only (``OPENING_ONLY_FIELDS`` are refused as ``UNKNOWN_FIELD``) and reads only the
  records it opened itself (rules.md §8: only what its list needs); the doctor, the police and the
  county admin read every record of their patients (``READ_ROLES``).
  ``/emergencies/overdue`` lists the records past that deadline (rules in ``registry.emergencies``).
* One validation path (``registry.validation.validate_emergency``) for form and API; a refused
  write writes nothing. Each write is one transaction with its audit row; the opening is alerted
  by the real-time detector (``schedules.alerts``, rules.md §12), the 24-hour overdue by
  ``schedules.notify.queue_overdue_emergency_alerts``; then the patient's tasks are replanned (the ``post_emergency`` visit, ``schedules.generation``).
* Police, village and civil affairs never write nor read the diagnosis (rules.md §8). Every read is audited.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, select

from registry import audit, codes, emergencies as rules
from registry.accounts import UserRole
from registry.clock import now_utc
from registry.errors import InvalidInput, NotFound, PermissionDenied
from registry.models import Emergency, Patient, utcnow
from registry.validation import (EMERGENCY_COMPLETION_FIELDS, EMERGENCY_FIELDS, EMERGENCY_MEDICAL_FIELDS, PatientFacts,
                                 validate_emergency)
from registry.web import forms
from registry.web.api import ERRORS, WriteBody, body_checked, write_body
from registry.web.auth import Current, client_ip, current
from registry.web.deps import ClientIp, CurrentUser, EngineDep, api_user
from registry.web.pages import form_data, render
from registry.web.scopes import Scope
from registry.web.writes import _check_types, _clean, _reject, refresh_schedule

router = APIRouter()
# authentication before body validation (an anonymous call is 401 whatever it sends), as in registry.web.api
api = APIRouter(prefix="/api", responses=ERRORS, dependencies=[Depends(api_user)])
OPEN_ROLES, COMPLETE_ROLES = rules.OPEN_ROLES, rules.COMPLETE_ROLES  # who opens, who completes (rules.md §9)
# read every record of a patient in scope; the other OPEN_ROLES read the records they opened themselves
READ_ROLES = COMPLETE_ROLES + (UserRole.COUNTY_ADMIN.value,)
ANY_READ_ROLES = READ_ROLES + tuple(r for r in OPEN_ROLES if r not in READ_ROLES)
FIELD_NAMES = {spec.name for spec in EMERGENCY_FIELDS}
LABELS = {spec.name: spec.label for spec in EMERGENCY_FIELDS}
MULTI = {"situations": codes.EmergencySituation, "measures": codes.EmergencyMeasure}
DATETIME_FIELDS = ("reported_at", "started_at", "ended_at", "police_signed_at")


# the fields an opening-only account (village, civil affairs) does not write: the completion (end time, measures,
# effect, police sign-off) and the doctor's signature (填表医生, 填表日期)
OPENING_ONLY_FIELDS = frozenset(EMERGENCY_COMPLETION_FIELDS) | {"filled_by", "filled_on"}


def _fields_for(scope: Scope) -> set[str]:
    """The fields the caller reads: no diagnosis for a list account (rules.md §8)."""
    return FIELD_NAMES if scope.full_record else FIELD_NAMES - set(EMERGENCY_MEDICAL_FIELDS)


def _writable(scope: Scope) -> set[str]:
    """The fields the caller writes: an opening-only account the event's fields alone."""
    fields = _fields_for(scope)
    return fields if scope.role in COMPLETE_ROLES else fields - OPENING_ONLY_FIELDS


def _own_only(scope: Scope) -> bool:
    """An opening-only account (village, civil affairs) reads only the records it opened."""
    return scope.role not in READ_ROLES



def _stored(record: Emergency) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELD_NAMES}


def _save(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, now: datetime, source: str | None,
          emergency_id: int | None) -> Emergency:
    scope.require_role(*(OPEN_ROLES if emergency_id is None else COMPLETE_ROLES))
    raw = _clean(raw_in)
    issues = _check_types(raw, _writable(scope))
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        record = None
        if emergency_id is not None:
            record = session.get(Emergency, emergency_id)
            if record is None or record.patient_id != patient_id:
                raise NotFound(f"应急处置记录 {emergency_id} 不存在", code="EMERGENCY_NOT_FOUND")
        values, more = validate_emergency(raw, PatientFacts.of(patient), now_local=rules.local_wall_clock(now),
                                          stored=_stored(record) if record is not None else None)
        issues += more
        if issues:
            raise _reject(issues)
        opened = record is None
        if opened:
            record = Emergency(patient_id=patient_id, opened_by=scope.user.username, **values)
        else:
            for name, value in values.items():
                setattr(record, name, value)
            record.updated_at = utcnow()
        was_complete = record.completed_at is not None
        complete = rules.is_complete(record)
        record.completed_at = (record.completed_at or now) if complete else None
        session.add(record)
        session.flush()
        what = "登记" if opened else ("完成" if complete and not was_complete else "修改")
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="emergency",
                     object_id=f"{patient_id}/{record.id}", region_code=patient.village_code, detail=f"应急处置{what}",
                     source=source)
        session.commit()
    refresh_schedule(engine, today=rules.local_wall_clock(now).date(), patient_ids=[patient_id])
    return record


def open_emergency(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, now: datetime,
                   source: str | None) -> Emergency:
    """登记应急处置 Open a record for a patient in the caller's scope, by any team member's account
    (``OPEN_ROLES``, rules.md §9)."""
    return _save(engine, scope, patient_id, raw_in, now=now, source=source, emergency_id=None)


def _checked(engine, scope: Scope, emergency_id: int) -> str:
    """The record's patient, or PermissionDenied without naming it when outside the caller's scope
    (an opening-only account: also when another user opened it) — and the same answer when there is
    no such record, so a probe of record numbers cannot learn which exist elsewhere (rules.md §8, as
    ``Scope.check_patient`` for patient numbers)."""
    with Session(engine) as session:
        record = session.get(Emergency, emergency_id)
        try:
            if record is None:
                raise PermissionDenied("no such record")
            patient_id, opened_by = record.patient_id, record.opened_by
            scope.check_patient(session, patient_id)
            if _own_only(scope) and opened_by != scope.user.username:
                raise PermissionDenied("not the opener")
        except PermissionDenied:
            raise PermissionDenied(f"无权查看应急处置记录 {emergency_id}", code="PATIENT_FORBIDDEN") from None
    return patient_id


def update_emergency(engine, scope: Scope, emergency_id: int, raw_in: dict[str, Any], *, now: datetime,
                     source: str | None) -> Emergency:
    """补全应急处置 Fill in or complete a record (fields not sent keep their values): the doctor or the
    police (``COMPLETE_ROLES``)."""
    scope.require_role(*COMPLETE_ROLES)
    patient_id = _checked(engine, scope, emergency_id)
    return _save(engine, scope, patient_id, raw_in, now=now, source=source, emergency_id=emergency_id)


# ---------------------------------------------------------------- reads

def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _labels(enum_cls, stored: str | None) -> str:
    by_value = {str(m.value): m.label for m in enum_cls}
    return "、".join(by_value.get(c, c) for c in rules.split_codes(stored))


def view(record: Emergency, scope: Scope, now: datetime) -> dict[str, Any]:
    """记录视图 The record as the caller may see it: list accounts without the diagnosis (rules.md §8)."""
    out = {name: _fmt(getattr(record, name)) for name in _fields_for(scope)}
    out["situations_label"] = _labels(codes.EmergencySituation, record.situations)
    out["measures_label"] = _labels(codes.EmergencyMeasure, record.measures)
    if "diagnosis_certainty" in out and record.diagnosis_certainty:
        out["diagnosis_certainty_label"] = codes.DiagnosisCertainty(record.diagnosis_certainty).label
    out.update(id=record.id, patient_id=record.patient_id, opened_by=record.opened_by,
               complete=rules.is_complete(record), overdue=rules.emergency_overdue(record, now),
               deadline=_fmt(rules.deadline(record)), post_emergency_due=_fmt(rules.post_emergency_due(record)))
    return out


def read_emergency(engine, scope: Scope, emergency_id: int, *, now: datetime, source: str | None) -> tuple[dict, Emergency]:
    """读取应急处置 One record, checked against the caller's scope and audited."""
    scope.require_role(*ANY_READ_ROLES)
    patient_id = _checked(engine, scope, emergency_id)
    with Session(engine, expire_on_commit=False) as session:
        record = session.get(Emergency, emergency_id)
        patient = session.get(Patient, patient_id)
    audit.record(engine, actor=scope.user.username, action="read", object_type="emergency",
                 object_id=f"{patient_id}/{emergency_id}", region_code=patient.village_code, source=source)
    return {**view(record, scope, now), "name": patient.name}, record


def patient_emergencies(engine, scope: Scope, patient_id: str, *, now: datetime) -> list[dict]:
    """患者的应急处置 A patient's records, latest first (the caller has been checked for the patient;
    an opening-only account: the records it opened)."""
    stmt = select(Emergency).where(Emergency.patient_id == patient_id)
    if _own_only(scope):
        stmt = stmt.where(Emergency.opened_by == scope.user.username)
    with Session(engine) as session:
        rows = session.exec(stmt.order_by(Emergency.reported_at.desc(), Emergency.id.desc())).all()
    return [view(r, scope, now) for r in rows]


def overdue_rows(engine, scope: Scope, *, now: datetime) -> list[dict]:
    """超时未完成 The caller's records not complete 24 hours after the report time (one set-based
    query, ``registry.emergencies.overdue_sql``), oldest first; no diagnosis. An opening-only account:
    the records it opened."""
    return _incomplete_rows(engine, scope, now=now, condition=rules.overdue_sql(now, Emergency.__table__))


def open_rows(engine, scope: Scope, *, now: datetime) -> list[dict]:
    """待完成 Every record of the caller's not yet complete (``registry.emergencies.complete_sql``), the
    overdue ones included and marked: what the doctor and the police still owe within the 24 hours
    (rules.md §9), oldest report first; no diagnosis. An opening-only account: the records it opened."""
    return _incomplete_rows(engine, scope, now=now, condition=sa.not_(rules.complete_sql(Emergency.__table__)))


def _incomplete_rows(engine, scope: Scope, *, now: datetime, condition) -> list[dict]:
    scope.require_role(*ANY_READ_ROLES)
    e, p = Emergency.__table__, Patient.__table__
    stmt = (sa.select(e.c.id, e.c.patient_id, p.c.name, p.c.village_code, e.c.reported_at, e.c.situations,
                      e.c.ended_at, e.c.measures, e.c.effect, e.c.participant_police, e.c.police_signed_by,
                      rules.overdue_sql(now, e).label("overdue"))
            .select_from(e.join(p, p.c.patient_id == e.c.patient_id))
            .where(condition, scope.patient_clause(),
                   e.c.opened_by == scope.user.username if _own_only(scope) else sa.true())
            .order_by(e.c.reported_at, e.c.id))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out = []
    for r in rows:
        missing = [label for ok, label in ((r.ended_at is not None, "结束时间"), (bool(rules.split_codes(r.measures)), "处置措施"),
                                           (bool((r.effect or "").strip()), "处置效果"),
                                           (not (r.participant_police or "").strip() or bool((r.police_signed_by or "").strip()), "公安签字"))
                   if not ok]
        out.append({"id": r.id, "patient_id": r.patient_id, "name": r.name, "village_code": r.village_code,
                    "reported_at": _fmt(r.reported_at), "deadline": _fmt(r.reported_at + rules.DEADLINE),
                    "situations": _labels(codes.EmergencySituation, r.situations), "missing": "、".join(missing),
                    "overdue": bool(r.overdue)})
    return out


# ---------------------------------------------------------------- pages

FORM_SECTIONS = [
    ("事件", ["situations", "reported_at", "reporter", "reporter_identity", "report_route", "place"]),
    ("处置", ["started_at", "ended_at", "scene", "measures", "measures_other", "effect"]),
    ("参与人员", ["participant_doctor", "participant_psychiatrist", "participant_nurse", "participant_police", "police_organ"]),
    ("诊断", ["diagnosis", "diagnosis_certainty"]),
    ("签字", ["filled_by", "filled_on", "police_signed_by", "police_signed_at"]),
]


def _widget(name: str) -> str:
    if name in MULTI:
        return "multi"
    if name in DATETIME_FIELDS:
        return "datetime"
    if name == "filled_on":
        return "date"
    if name == "diagnosis_certainty":
        return "select"
    if name in ("scene", "effect"):
        return "textarea"
    return "text"


def _choices(name: str) -> list[tuple[str, str]]:
    enum_cls = MULTI.get(name) or (codes.DiagnosisCertainty if name == "diagnosis_certainty" else None)
    return [(str(m.value), m.label) for m in enum_cls] if enum_cls else []


def _sections(scope: Scope, *, writing: bool = False) -> list[dict]:
    allowed = _writable(scope) if writing else _fields_for(scope)
    required = {spec.name for spec in EMERGENCY_FIELDS if spec.required}
    return [{"title": title, "fields": [{"name": n, "label": LABELS[n], "widget": _widget(n), "choices": _choices(n),
                                         "required": n in required} for n in names if n in allowed]}
            for title, names in FORM_SECTIONS if any(n in allowed for n in names)]


def _form_values(data: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = dict(data)
    for name in MULTI:
        values[name + "_set"] = set(rules.split_codes(data.get(name, "").replace("、", ",")))
    return values


def _form(request: Request, cur: Current, patient_id: str, values: dict, errors: dict, *, emergency_id: int | None = None,
          status_code: int = 200, record: dict | None = None):
    action = f"/emergencies/{emergency_id}" if emergency_id else f"/patients/{patient_id}/emergencies/new"
    return render(request, "emergency_form.html", status_code=status_code, patient_id=patient_id, action=action,
                  sections=_sections(cur.scope, writing=True), values=_form_values(values), errors=errors, record=record,
                  can_complete=cur.scope.role in COMPLETE_ROLES)


async def _posted(request: Request, cur: Current) -> dict[str, str]:
    form = await request.form()
    data = await form_data(request, cur)
    for name in MULTI:  # checkboxes: every ticked value
        if name in form:
            data[name] = ",".join(v for v in form.getlist(name) if isinstance(v, str))
    for name in DATETIME_FIELDS:  # <input type=datetime-local> sends 2026-12-06T10:30
        if data.get(name):
            data[name] = data[name].replace("T", " ")
    return data


@router.get("/patients/{patient_id}/emergencies/new", response_class=HTMLResponse, include_in_schema=False)
def new_emergency_page(request: Request, patient_id: Annotated[str, PathParam(max_length=64)]):
    """登记应急处置 The empty record for a patient in the caller's scope (any team member's account)."""
    cur = current(request)
    cur.scope.require_role(*OPEN_ROLES)
    with Session(request.app.state.ctx.engine) as session:
        cur.scope.check_patient(session, patient_id)
    now_local = rules.local_wall_clock(now_utc())
    values = {"reported_at": now_local.strftime("%Y-%m-%d %H:%M")}
    if cur.scope.role == UserRole.TOWNSHIP_DOCTOR.value:
        values |= {"filled_by": cur.user.display_name, "filled_on": now_local.date().isoformat()}
    return _form(request, cur, patient_id, values, {})


@router.post("/patients/{patient_id}/emergencies/new", response_class=HTMLResponse, include_in_schema=False)
async def new_emergency_submit(request: Request, patient_id: Annotated[str, PathParam(max_length=64)]):
    """登记应急处置 Save the record, or show the form again with its errors (nothing written)."""
    cur = current(request)
    data = await _posted(request, cur)
    try:
        record = open_emergency(request.app.state.ctx.engine, cur.scope, patient_id, data, now=now_utc(),
                                source=client_ip(request))
    except InvalidInput as exc:
        return _form(request, cur, patient_id, data, forms.errors_by_field(exc.issues), status_code=422)
    return RedirectResponse(f"/emergencies/{record.id}?saved=1", status_code=303)


@router.get("/patients/{patient_id}/emergencies", response_class=HTMLResponse, include_in_schema=False)
def patient_emergencies_page(request: Request, patient_id: Annotated[str, PathParam(max_length=64)]):
    """患者的应急处置 A patient's records (doctor, police for its patients, county admin; village and civil
    affairs: the records they opened); audited."""
    cur = current(request)
    cur.scope.require_role(*ANY_READ_ROLES)
    engine = request.app.state.ctx.engine
    with Session(engine) as session:
        patient = cur.scope.check_patient(session, patient_id)
    rows = patient_emergencies(engine, cur.scope, patient_id, now=now_utc())
    audit.record(engine, actor=cur.user.username, action="read", object_type="emergency", object_id=patient_id,
                 region_code=patient.village_code, detail=f"应急处置 {len(rows)} 条", source=client_ip(request))
    return render(request, "patient_emergencies.html", patient_id=patient_id, name=patient.name, rows=rows,
                  can_write=cur.scope.role in OPEN_ROLES and patient.status == codes.PatientStatus.ACTIVE.value)


EmergencyId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def read_incomplete(engine, scope: Scope, which: str, *, source: str | None) -> list[dict]:
    """待完成 / 超时未完成 The caller's ``open`` records (not yet complete) or ``overdue`` ones (past the
    24 hours), read and audited once for the page and the API alike (rules.md §8, §9)."""
    rows = (open_rows if which == "open" else overdue_rows)(engine, scope, now=now_utc())
    late = sum(r["overdue"] for r in rows)
    detail = f"待完成 {len(rows)} 条（超时 {late} 条）" if which == "open" else f"超时未完成 {len(rows)} 条"
    audit.record(engine, actor=scope.user.username, action="read", object_type="emergency", object_id=which,
                 region_code=scope.user.region_code, detail=detail, source=source)
    return rows


@router.get("/emergencies/overdue", response_class=HTMLResponse, include_in_schema=False)
def overdue_page(request: Request):
    """超时未完成的应急处置 The caller's records past the 24-hour deadline; audited."""
    cur = current(request)
    rows = read_incomplete(request.app.state.ctx.engine, cur.scope, "overdue", source=client_ip(request))
    return render(request, "emergencies_overdue.html", rows=rows)


@router.get("/emergencies/open", response_class=HTMLResponse, include_in_schema=False)
def open_page(request: Request):
    """待完成的应急处置 The caller's records not yet complete, overdue ones marked; audited."""
    cur = current(request)
    rows = read_incomplete(request.app.state.ctx.engine, cur.scope, "open", source=client_ip(request))
    return render(request, "emergencies_overdue.html", rows=rows, open_list=True)


@router.get("/emergencies/{emergency_id}", response_class=HTMLResponse, include_in_schema=False)
def emergency_page(request: Request, emergency_id: EmergencyId, saved: int = 0):
    """应急处置记录单 The record, with the form to complete it for the roles that write."""
    cur = current(request)
    record, _row = read_emergency(request.app.state.ctx.engine, cur.scope, emergency_id, now=now_utc(), source=client_ip(request))
    if cur.scope.role not in COMPLETE_ROLES:
        return render(request, "emergency_form.html", patient_id=record["patient_id"], action=None, sections=_sections(cur.scope),
                      values=_form_values(record), errors={}, record=record, saved=saved, can_complete=False)
    return render(request, "emergency_form.html", patient_id=record["patient_id"], action=f"/emergencies/{emergency_id}",
                  sections=_sections(cur.scope), values=_form_values(record), errors={}, record=record, saved=saved,
                  can_complete=True)


@router.post("/emergencies/{emergency_id}", response_class=HTMLResponse, include_in_schema=False)
async def emergency_submit(request: Request, emergency_id: EmergencyId):
    """补全应急处置 Save the completed record, or show the form again with its errors."""
    cur = current(request)
    data = await _posted(request, cur)
    engine = request.app.state.ctx.engine
    try:
        update_emergency(engine, cur.scope, emergency_id, data, now=now_utc(), source=client_ip(request))
    except InvalidInput as exc:
        record, _row = read_emergency(engine, cur.scope, emergency_id, now=now_utc(), source=client_ip(request))
        return _form(request, cur, record["patient_id"], data, forms.errors_by_field(exc.issues), emergency_id=emergency_id,
                     status_code=422, record=record)
    return RedirectResponse(f"/emergencies/{emergency_id}?saved=1", status_code=303)


@router.get("/emergencies/{emergency_id}/pdf", include_in_schema=False)
def emergency_pdf(request: Request, emergency_id: EmergencyId):
    """应急处置记录单 PDF The record for the paper file (the role's fields); audited as an export."""
    from registry.emergency_pdf import emergency_pdf_bytes  # noqa: PLC0415 - WeasyPrint is heavy

    cur = current(request)
    record, _row = read_emergency(request.app.state.ctx.engine, cur.scope, emergency_id, now=now_utc(), source=client_ip(request))
    audit.record(request.app.state.ctx.engine, actor=cur.user.username, action="export", object_type="emergency",
                 object_id=f"{record['patient_id']}/{emergency_id}", region_code=cur.user.region_code, detail="应急处置记录单 PDF",
                 source=client_ip(request))
    body = emergency_pdf_bytes(record, sections=_sections(cur.scope))
    return Response(body, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="emergency-{emergency_id}.pdf"'})


# ---------------------------------------------------------------- API

EmergencyBody = write_body(
    "EmergencyBody", "应急处置记录单 The record's fields (rules.md §9): situations and measures as a list or "
    "comma-separated codes, times \"YYYY-MM-DD HH:MM\" (Asia/Shanghai).", [(s.name, s.label) for s in EMERGENCY_FIELDS])


def _api_body(body: WriteBody) -> dict[str, Any]:
    fields = body_checked(body)
    return {k: (",".join(str(v) for v in val) if isinstance(val, list) and k in MULTI else val) for k, val in fields.items()}


@api.post("/patients/{patient_id}/emergencies", status_code=201,
             summary="登记应急处置（患者团队成员：乡镇精防医生、民警、村(社区)干部、民政专干；限本人范围内患者）")
def api_open(cur: CurrentUser, engine: EngineDep, ip: ClientIp, patient_id: Annotated[str, PathParam(min_length=1, max_length=64)],
             body: EmergencyBody) -> dict:
    """登记应急处置 Open a record: the 应急处置记录单 fields (``situations`` a list or "1,2";
    times "YYYY-MM-DD HH:MM", Asia/Shanghai). Bad input: 422 with the codes of
    ``registry.validation.check_emergency``; nothing written. Village and civil-affairs accounts send
    the event's fields only (the completion and the doctor's signature are ``UNKNOWN_FIELD``)."""
    record = open_emergency(engine, cur.scope, patient_id, _api_body(body), now=now_utc(), source=ip)
    return view(record, cur.scope, now_utc())


@api.patch("/emergencies/{emergency_id}", summary="补全应急处置（乡镇精防医生、民警）")
def api_update(cur: CurrentUser, engine: EngineDep, ip: ClientIp, emergency_id: EmergencyId, body: EmergencyBody) -> dict:
    """补全应急处置 Fill in or complete a record; fields not sent keep their values."""
    record = update_emergency(engine, cur.scope, emergency_id, _api_body(body), now=now_utc(), source=ip)
    return view(record, cur.scope, now_utc())


@api.get("/emergencies/overdue", summary="超时未完成的应急处置（乡镇精防医生、民警、县级管理员）")
def api_overdue(cur: CurrentUser, engine: EngineDep, ip: ClientIp) -> list[dict]:
    """超时未完成 The caller's records not complete 24 hours after the report time."""
    return read_incomplete(engine, cur.scope, "overdue", source=ip)


@api.get("/emergencies/open", summary="待完成的应急处置（含超时，按角色与地区）")
def api_open_list(cur: CurrentUser, engine: EngineDep, ip: ClientIp) -> list[dict]:
    """待完成 The caller's records not yet complete (``overdue`` marks those past the 24 hours)."""
    return read_incomplete(engine, cur.scope, "open", source=ip)


@api.get("/emergencies/{emergency_id}", summary="应急处置记录单（按角色裁剪字段）")
def api_read(cur: CurrentUser, engine: EngineDep, ip: ClientIp, emergency_id: EmergencyId) -> dict:
    """应急处置记录单 One record (police: without the diagnosis); audited."""
    record, _row = read_emergency(engine, cur.scope, emergency_id, now=now_utc(), source=ip)
    return record


router.include_router(api)
