"""修改与迁移 Web and API glue for patient edits with history and moves between townships (issue 13).

The rules are ``registry.patient_edits`` (pure); here: the scope (a doctor of the patient's
township or a county admin; police and civil affairs never edit: 403), the row lock, the history
rows (``patient_change``) and the audit row in the write's one transaction, then the replan of
that patient (``writes.refresh_schedule``, as a saved follow-up does). A refused write writes
nothing (rules.md §8; ARCHITECTURE §2).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from registry import audit, codes, patient_edits
from registry.accounts import UserRole
from registry.errors import Conflict, Issue, PermissionDenied
from registry.config import LOCAL_TZ
from registry.ids import mask
from registry.injections import record_last_injection
from registry.models import Patient, PatientChange, PatientTransfer, Region, utcnow
from registry.validation import FieldSpec, check_village, identifier, parse_fields, text
from registry.web.scopes import Scope
from registry.errors import InvalidInput
from registry.web.writes import _check_types, _clean, latest_reached_on, refresh_schedule

EDIT_ROLES = (UserRole.TOWNSHIP_DOCTOR.value, UserRole.COUNTY_ADMIN.value)
PENDING = codes.TransferOutcome.PENDING.value
# history fields whose values are region codes (shown with the region's name)
REGION_FIELDS = frozenset({"village_code", patient_edits.TRANSFER_OUT, patient_edits.TRANSFER_ACCEPTED,
                           patient_edits.TRANSFER_REFUSED})


def _reject(issues: list[Issue]) -> InvalidInput:
    """Nothing written: one issue gives its own code (e.g. ``REASON_REQUIRED``), several ``INVALID_INPUT``."""
    more = f"（共 {len(issues)} 处问题）" if len(issues) > 1 else ""
    code = issues[0].code if len({i.code for i in issues}) == 1 else "INVALID_INPUT"
    return InvalidInput(message=issues[0].message + more, code=code, issues=issues)


def current_values(patient: Patient) -> dict[str, Any]:
    """The stored row as typed values of the editable fields."""
    return {s.name: getattr(patient, s.name, None) for s in patient_edits.editable_specs()}


def _locked_patient(session: Session, scope: Scope, patient_id: str) -> Patient:
    """The patient in scope (403 otherwise), its row locked for the write (PostgreSQL)."""
    patient = scope.check_patient(session, patient_id)
    if session.get_bind().dialect.name == "postgresql":
        session.refresh(patient, with_for_update=True)
    return patient


def _pending(session: Session, patient_id: str) -> PatientTransfer | None:
    return session.exec(select(PatientTransfer).where(PatientTransfer.patient_id == patient_id,
                                                      PatientTransfer.outcome == PENDING)).first()


def _pending_index_refused(error: sa.exc.IntegrityError) -> bool:
    """Whether the database refused a second pending move (the partial unique index; SQLite names the column)."""
    text = str(error.orig)
    return "uq_patient_transfer_pending" in text or "patient_transfer.patient_id" in text


def township_of(session: Session, village_code: str) -> str | None:
    """The township (parent) of a village."""
    region = session.get(Region, village_code)
    return region.parent_code if region is not None else None


def _history_rows(session: Session, patient_id: str, actor: str, changes, reason: str | None, at) -> None:
    for change in changes:
        session.add(PatientChange(patient_id=patient_id, at=at, actor=actor, field=change.field,
                                  old_value=change.old, new_value=change.new, reason=reason))


def edit_patient(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, today: date,
                 source: str | None) -> patient_edits.Edit:
    """修改患者信息 Validate and store a change of a patient's fields with its history rows and audit row,
    one transaction; then replan the patient when the schedule reads a changed field."""
    scope.require_role(*EDIT_ROLES)
    raw = _clean(raw_in)
    with Session(engine, expire_on_commit=False) as session:
        patient = _locked_patient(session, scope, patient_id)
        issues = _check_types(raw, patient_edits.editable_names())
        edit, more = patient_edits.plan_edit(current_values(patient), {k: v for k, v in raw.items()
                                                                        if k in patient_edits.editable_names()}, today=today,
                                                      latest_reached=latest_reached_on(session, patient_id))
        issues += more
        if "village_code" in edit.changed and not any(i.column == "village_code" for i in issues):
            issues += _village_issues(session, scope, patient, edit.values["village_code"])
        if issues:
            raise _reject(issues)
        if not edit.changes:
            return edit
        at = utcnow()
        for change in edit.changes:
            setattr(patient, change.field, edit.values[change.field])
        patient.updated_at = at
        session.add(patient)
        _history_rows(session, patient_id, scope.user.username, edit.changes, edit.reason, at)
        if edit.changed & {"lai_last_on", "lai_drug", "lai_dose"}:  # the plan's last injection is a history row
            session.flush()
            record_last_injection(session.connection(), [patient_id])
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="patient",
                     object_id=patient_id, region_code=patient.village_code,
                     detail=f"修改 {len(edit.changes)} 项：{'、'.join(sorted(edit.changed))}"[:1000], source=source)
        session.commit()
    if edit.replans:
        refresh_schedule(engine, today=today, patient_ids=[patient_id])
    return edit


def _village_issues(session: Session, scope: Scope, patient: Patient, village: str) -> list[Issue]:
    """A new village: a village, in the editor's scope, and (for a doctor) in the patient's own township —
    a move to another township is 迁出 (``request_transfer``)."""
    region = session.get(Region, village)
    issues = check_village(village, {village: region.level} if region is not None else {})
    if issues:
        return issues
    if village not in scope.region_codes:
        return [Issue("VILLAGE_OUT_OF_SCOPE", f"村编码 {village} 不在您的管辖范围内", column="village_code", value=village)]
    if region.parent_code != township_of(session, patient.village_code):
        if scope.role != UserRole.COUNTY_ADMIN.value:
            return [Issue("OTHER_TOWNSHIP", f"村编码 {village} 属于其他乡镇：迁往其他乡镇请使用“迁出”", column="village_code",
                          value=village)]
        if _pending(session, patient.patient_id) is not None:
            return [Issue("TRANSFER_PENDING", "该患者有待接收的迁出申请，请先等待接收方处理", column="village_code")]
    return []


# ---------------------------------------------------------------- history

def history(engine, scope: Scope, patient_id: str, *, source: str | None) -> dict:
    """变更记录 The patient's change history, newest first, and its moves; audited as a read.
    Full-record roles only (a change may name a diagnosis); ID numbers masked except for the doctor."""
    scope.require_role(*EDIT_ROLES)
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        rows = session.exec(select(PatientChange).where(PatientChange.patient_id == patient_id)
                            .order_by(PatientChange.at.desc(), PatientChange.id.desc())).all()
        moves = session.exec(select(PatientTransfer).where(PatientTransfer.patient_id == patient_id)
                             .order_by(PatientTransfer.requested_at.desc(), PatientTransfer.id.desc())).all()
        audit.record(session.connection(), actor=scope.user.username, action="read", object_type="patient_history",
                     object_id=patient_id, region_code=patient.village_code, detail=f"{len(rows)} 条", source=source)
        names = dict(session.exec(select(Region.code, Region.name)).all())
        session.commit()
        name = patient.name
    unmasked = scope.sees_unmasked_id

    def value(field: str, v: str | None) -> str | None:
        return mask(v) if field == "id_number" and v and not unmasked else v

    def show(field: str, v: str | None) -> str:
        if v is not None and v in names and field in REGION_FIELDS:
            return f"{names[v]}（{v}）"
        return patient_edits.shown(field, value(field, v))

    changes = [{"at": r.at.isoformat(), "at_local": local_time(r.at), "actor": r.actor, "field": r.field, "label": patient_edits.field_label(r.field),
                "old_value": value(r.field, r.old_value), "new_value": value(r.field, r.new_value),
                "old_shown": show(r.field, r.old_value), "new_shown": show(r.field, r.new_value), "reason": r.reason}
               for r in rows]
    return {"patient_id": patient_id, "name": name, "changes": changes,
            "transfers": [named(transfer_view(t), names) for t in moves]}


def named(view: dict, names: dict[str, str]) -> dict:
    """A move with its townships' names (pages show names, the JSON keeps the codes too)."""
    return {**view, "from_township_name": names.get(view["from_township"], view["from_township"]),
            "to_township_name": names.get(view["to_township"], view["to_township"])}


def local_time(at) -> str:
    """A stored UTC instant as a person reads it: Asia/Shanghai, to the minute."""
    return at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def transfer_view(t: PatientTransfer) -> dict:
    """A move as JSON: its townships, dates, who and outcome (with its Chinese label)."""
    return {"id": t.id, "patient_id": t.patient_id, "from_township": t.from_township, "to_township": t.to_township,
            "from_village": t.from_village, "to_village": t.to_village,
            "requested_at": t.requested_at.isoformat(), "requested_by": t.requested_by,
            "requested_local": local_time(t.requested_at),
            "decided_at": t.decided_at.isoformat() if t.decided_at else None, "decided_by": t.decided_by,
            "decided_local": local_time(t.decided_at) if t.decided_at else None,
            "outcome": t.outcome, "outcome_label": codes.TransferOutcome(t.outcome).label, "reason": t.reason,
            "refusal_reason": t.refusal_reason}


# ---------------------------------------------------------------- 迁出/迁入

TRANSFER_FIELDS = [FieldSpec("to_township", "迁入乡镇", identifier(32)),
                   FieldSpec("reason", "迁出原因", text(255))]
DECISION_FIELDS = [FieldSpec("village_code", "接收村(社区)", identifier(32)),
                   FieldSpec("reason", "拒收原因", text(255))]


def request_transfer(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, today: date,
                     source: str | None) -> PatientTransfer:
    """迁出 The sending township (its doctor or the county admin) moves a 在册 patient out to a named
    township: a pending move (待接收) and a history row; the patient stays until accepted."""
    scope.require_role(*EDIT_ROLES)
    raw = _clean(raw_in)
    issues = _check_types(raw, {s.name for s in TRANSFER_FIELDS})
    values, more = parse_fields(raw, TRANSFER_FIELDS)
    issues += more
    with Session(engine, expire_on_commit=False) as session:
        patient = _locked_patient(session, scope, patient_id)
        from_township = township_of(session, patient.village_code)
        to = values.get("to_township")
        region = session.get(Region, to) if to else None
        if not any(i.column == "to_township" for i in issues):
            issues += patient_edits.check_transfer_request(
                status=patient.status, from_township=from_township, to_township=to,
                to_level=region.level if region is not None else None, pending=_pending(session, patient_id) is not None)
        if issues:
            if any(i.code == "TRANSFER_PENDING" for i in issues) and len(issues) == 1:
                raise Conflict(issues[0].message, code="TRANSFER_PENDING")
            raise _reject(issues)
        at = utcnow()
        move = PatientTransfer(patient_id=patient_id, from_township=from_township, to_township=to,
                               from_village=patient.village_code, requested_at=at, requested_by=scope.user.username,
                               reason=values.get("reason"))
        session.add(move)
        try:
            session.flush()
        except sa.exc.IntegrityError as error:  # a concurrent request's move came first (uq_patient_transfer_pending)
            session.rollback()
            if not _pending_index_refused(error):
                raise
            raise Conflict(patient_edits.TRANSFER_PENDING_MESSAGE, code="TRANSFER_PENDING") from None
        _history_rows(session, patient_id, scope.user.username,
                      [patient_edits.FieldChange(patient_edits.TRANSFER_OUT, from_township, to)], values.get("reason"), at)
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="patient_transfer",
                     object_id=patient_id, region_code=patient.village_code, detail=f"迁出至 {to}（待接收）", source=source)
        session.commit()
    return move


def pending_transfers(engine, scope: Scope, *, source: str | None) -> dict:
    """待接收 The moves into the caller's region waiting for a decision (with the fields a receiving doctor
    needs to decide), and the moves out of it (both sides keep the history); audited as a read."""
    scope.require_role(*EDIT_ROLES)
    regions = sorted(scope.region_codes)
    with Session(engine, expire_on_commit=False) as session:
        incoming = session.exec(
            select(PatientTransfer, Patient).join(Patient, Patient.patient_id == PatientTransfer.patient_id)
            .where(PatientTransfer.to_township.in_(regions), PatientTransfer.outcome == PENDING)
            .order_by(PatientTransfer.requested_at, PatientTransfer.id)).all()
        recent = session.exec(
            select(PatientTransfer).where(sa.or_(PatientTransfer.from_township.in_(regions),
                                                 PatientTransfer.to_township.in_(regions)))
            .order_by(PatientTransfer.requested_at.desc(), PatientTransfer.id.desc()).limit(200)).all()
        names = dict(session.exec(select(Region.code, Region.name)).all())
        villages = session.exec(select(Region.code, Region.name, Region.parent_code)
                                .where(Region.level == codes.RegionLevel.VILLAGE.value,
                                       Region.parent_code.in_(regions)).order_by(Region.code)).all()
        audit.record(session.connection(), actor=scope.user.username, action="read", object_type="patient_transfer",
                     object_id=scope.user.region_code, region_code=scope.user.region_code,
                     detail=f"待接收 {len(incoming)} 人", source=source)
        session.commit()

    pending = []
    for t, p in incoming:
        pending.append({**named(transfer_view(t), names), "name": p.name, "sex_label": codes.Sex(p.sex).label,
                        "birth_date": p.birth_date.isoformat(), "diagnosis_label": codes.Diagnosis(p.diagnosis).label,
                        "villages": [(c, f"{n}（{c}）") for c, n, parent in villages if parent == t.to_township]})
    return {"pending": pending, "transfers": [named(transfer_view(t), names) for t in recent]}


def decide_transfer(engine, scope: Scope, transfer_id: int, accept: bool, raw_in: dict[str, Any], *, today: date,
                    source: str | None) -> PatientTransfer:
    """接收/拒收 The receiving township accepts (the patient's village becomes the chosen village of that
    township and the registration date today: first visit due within 14 days, rules.md §5
    "transferred in"; replanned at once) or refuses with a reason (the patient stays, 在册)."""
    scope.require_role(*EDIT_ROLES)
    raw = _clean(raw_in)
    issues = _check_types(raw, {s.name for s in DECISION_FIELDS})
    values, more = parse_fields(raw, DECISION_FIELDS)
    issues += more
    with Session(engine, expire_on_commit=False) as session:
        query = select(PatientTransfer).where(PatientTransfer.id == transfer_id)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        move = session.exec(query).first()
        if move is None or move.to_township not in scope.region_codes:
            raise PermissionDenied(f"无权处理迁移申请 {transfer_id}", code="TRANSFER_FORBIDDEN")
        if move.outcome != PENDING:
            raise Conflict(f"该迁移申请已{codes.TransferOutcome(move.outcome).label}", code="TRANSFER_DECIDED")
        patient = session.get(Patient, move.patient_id, with_for_update=session.get_bind().dialect.name == "postgresql")
        village = values.get("village_code") if accept else None
        region = session.get(Region, village) if village else None
        issues += patient_edits.check_transfer_decision(
            accept=accept, village=village, village_parent=region.parent_code if region else None,
            village_level=region.level if region else None, to_township=move.to_township, reason=values.get("reason"))
        if accept and not issues and patient.status != codes.PatientStatus.ACTIVE.value:
            issues.append(Issue("PATIENT_NOT_ACTIVE", "接收：患者已不在册，不能接收", column="village_code"))
        if issues:
            raise _reject(issues)
        at = utcnow()
        move.decided_at, move.decided_by = at, scope.user.username
        actor = scope.user.username
        if accept:
            move.outcome, move.to_village = codes.TransferOutcome.ACCEPTED.value, village
            changes = patient_edits.accept_changes({"village_code": patient.village_code,
                                                    "registered_on": patient.registered_on},
                                                   village=village, accepted_on=today)
            patient.village_code, patient.registered_on = village, today
            patient.updated_at = at
            session.add(patient)
            reason = f"自 {move.from_township} 迁入"
            _history_rows(session, patient.patient_id, actor,
                          [patient_edits.FieldChange(patient_edits.TRANSFER_ACCEPTED, move.from_township, move.to_township),
                           *changes], reason, at)
            detail = f"接收迁入，村 {village}"
        else:
            move.outcome, move.refusal_reason = codes.TransferOutcome.REFUSED.value, values.get("reason")
            _history_rows(session, patient.patient_id, actor,
                          [patient_edits.FieldChange(patient_edits.TRANSFER_REFUSED, move.to_township, move.from_township)],
                          values.get("reason"), at)
            detail = "拒绝接收，退回迁出乡镇"
        session.add(move)
        audit.record(session.connection(), actor=actor, action="write", object_type="patient_transfer",
                     object_id=patient.patient_id, region_code=move.to_township, detail=detail, source=source)
        session.commit()
    if accept:
        refresh_schedule(engine, today=today, patient_ids=[move.patient_id])
    return move
