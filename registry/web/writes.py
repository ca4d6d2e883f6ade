"""录入 Writes from forms and the API: follow-ups, new patients, death/move-out, attendance, care-team
assignments (rules.md §6.1).

One validation path (``registry.validation``, shared with the importer); each write is ONE
transaction together with its audit row; afterwards the scheduler refreshes the tasks so
a done visit leaves the work list (rules.md §5 idempotency: the generator is re-runnable).
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from registry import audit, codes, joint_visits
from registry.accounts import UserRole
from registry.care_team import check_member_serves, serves_patient_sql
from registry.codes import TeamRole
from registry.errors import Conflict, InvalidInput, Issue, PermissionDenied
from registry.injections import record_last_injection, sync_last_injection
from registry.models import (CareTeamAssignment, FollowUp, FollowUpParticipant, Patient, Region, TeamMember, VisitTask,
                             utcnow)
from registry.storable_text import bad_text
from registry.validation import (
    CARE_TEAM_FIELDS,
    PARTICIPANT_FIELDS,
    Channel,
    FieldError,
    FieldSpec,
    PatientFacts,
    applies,
    check_assignment,
    check_participant,
    check_village,
    iso_date,
    latest_reached_visits_sql,
    parse_fields,
    validate_follow_up,
    validate_health_check,
    validate_injection,
    validate_patient,
    validate_status_change,
)
from registry.web.scopes import Scope
from schedules import generation
from schedules.jobs import recorded

JOINT_ROLES = ("police", "village", "civil_affairs")
# the roles with an unnamed row on the follow-up form: the joint roles and the doctor (rules.md §6
# "doctor: always", §6.2: recorded absent on a visit the doctor did not attend — e.g. one led by the
# police or the village — the doctor is a missing role, as participants.csv can record; session 12)
FORM_ROLES = (TeamRole.DOCTOR.value, *JOINT_ROLES)


def _reject(issues: list[Issue]) -> InvalidInput:
    first = issues[0]
    more = f"（共 {len(issues)} 处问题）" if len(issues) > 1 else ""
    return InvalidInput(message=first.message + more, code="INVALID_INPUT", issues=issues)


def refresh_schedule(engine, *, today: date, patient_ids: list[str] | None = None) -> None:
    """刷新任务 Re-run the scheduler so tasks closed by this write leave the lists (schedules.generation).

    Only the written patient is replanned (``patient_ids``): a write costs one patient's
    generation, not the county's. Recorded as a ``schedule_run`` (source "web"), which also
    tells every web worker's work-list cache that the tasks changed (registry/web/cache.py).
    """
    recorded(engine, "generate", today, "web", lambda: generation.generate(engine, as_of=today, patient_ids=patient_ids))


def _clean(raw: dict[str, Any]) -> dict[str, str]:
    """Form/API values as the stripped strings the validators take (JSON numbers/bools too)."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if bad_text(str(key)):
            out[str(key).encode("utf-8", "replace").decode().replace("\x00", "")[:40] or "?"] = "\x00invalid"
            continue
        # a value with a control or bidi character passes through: validation.parse_fields refuses it
        # with BAD_TEXT naming the field (the one validation path)
        if isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif isinstance(value, (int, float, str)):
            out[key] = str(value)
        elif isinstance(value, list) and key in ("symptoms",):
            out[key] = ",".join(str(v) for v in value)
        elif isinstance(value, (list, dict)) and key in ("medication", "advised_medication"):
            out[key] = json.dumps(value, ensure_ascii=False)
        else:
            out[key] = "\x00invalid"
    return out


def _check_types(raw: dict[str, str], allowed: set[str]) -> list[Issue]:
    issues = [Issue("UNKNOWN_FIELD", f"未知字段：{k[:40]}", column=k[:40]) for k in raw if k not in allowed]
    issues += [Issue("BAD_VALUE", f"字段 {k} 的值类型无效或含有无效字符", column=k) for k, v in raw.items() if v == "\x00invalid"]
    return issues


def _medication_json(text_: str) -> str:
    """Medication as stored: a JSON list of {drug, ...}; a form's lines become one entry each."""
    try:
        parsed = json.loads(text_)
        if isinstance(parsed, list):
            return text_
    except ValueError:
        pass
    lines = [line.strip() for line in text_.splitlines() if line.strip()]
    return json.dumps([{"drug": line} for line in lines], ensure_ascii=False)


def follow_up_field_names() -> set[str]:
    """随访字段 Field names a follow-up form/body may carry."""
    from registry.validation import FOLLOW_UP_EXTRA_FIELDS, FOLLOW_UP_FIELDS

    return ({f.name for f in FOLLOW_UP_FIELDS + FOLLOW_UP_EXTRA_FIELDS} | {f"attended_{r}" for r in FORM_ROLES}
            | {f"reason_{r}" for r in FORM_ROLES})


def patient_field_names() -> set[str]:
    """患者字段 Field names a registration form/body may carry."""
    from registry.validation import PATIENT_EXTRA_FIELDS, PATIENT_FIELDS

    return {f.name for f in PATIENT_FIELDS + PATIENT_EXTRA_FIELDS}


IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")


def check_idempotency_key(key: str | None) -> str | None:
    """提交幂等键 A form's idempotency key (8–64 letters, digits, ``-``, ``_``), or None when absent."""
    if not key:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidInput.single("BAD_VALUE", "提交编号无效，请重新打开随访表", column="idempotency_key")
    return key


def _earlier_submit(session: Session, patient_id: str, key: str | None) -> FollowUp | None:
    """The follow-up an earlier submit with ``key`` recorded (issue 16), else None."""
    if key is None:
        return None
    earlier = session.exec(select(FollowUp).where(FollowUp.idempotency_key == key)).first()
    if earlier is not None and earlier.patient_id != patient_id:
        raise Conflict("该提交编号已用于另一名患者的随访，请重新打开随访表", code="IDEMPOTENCY_KEY_REUSED")
    return earlier


def latest_reached_on(session: Session, patient_id: str) -> date | None:
    """最近访到日期 The stored patient's latest follow-up that reached them
    (``validation.latest_reached_visits_sql``, rules.md §3), for ``STATUS_BEFORE_VISIT``."""
    f = FollowUp.__table__
    row = session.connection().execute(latest_reached_visits_sql(f).where(f.c.patient_id == patient_id)).first()
    return row[1] if row is not None else None


def record_follow_up(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, today: date, source: str | None,
                     channel: Channel = Channel.FORM, idempotency_key: str | None = None) -> FollowUp:
    """随访录入 Validate and store one follow-up (+ joint-visit attendance), one transaction.

    Attendance is per person (rules.md §6.2 [2026-12]): ``attended_<role>`` / ``reason_<role>`` the
    role's unnamed row, ``attended@<member_id>`` / ``reason@<member_id>`` a named member's row (the
    member's role; an unknown member or one in no joint role is refused with the rest).

    The checks are ``registry.validation.validate_follow_up``, the importer's, on ``channel``.
    ``idempotency_key`` (the web form's, issue 16): a submit whose key is already stored returns
    that follow-up and records nothing — a retried submit never records the visit twice; two
    submits racing each other meet the unique constraint and the loser returns the winner's row."""
    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    submit_key = check_idempotency_key(idempotency_key)
    raw = _clean(raw_in)
    raw["patient_id"] = patient_id
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        earlier = _earlier_submit(session, patient_id, submit_key)
        if earlier is not None:
            return earlier
        named = _pop_named_attendance(raw)  # the form's rows for named members (rules.md §6.2, per person)
        issues = _check_types(raw, follow_up_field_names())
        attended, more = _role_attendance(raw)
        issues += more
        # a death date recorded on the form becomes the status date (below): not before a visit that reached
        # the patient (validation.status_before_visit, via check_follow_up)
        latest = latest_reached_on(session, patient_id) if raw.get("death_on") else None
        values, more = validate_follow_up(raw, today=today, patient=PatientFacts.of(patient), channel=channel, extra=True,
                                          latest_reached=latest)
        issues += more
        visit_on = values.get("visit_on")
        for key, label in (("medication", "用药情况"), ("advised_medication", "用药指导")):
            if values.get(key):
                values[key] = _medication_json(values[key])
                if len(values[key]) > 1000:
                    issues.append(Issue("TOO_LONG", f"{label}：用药记录过长（超过1000个字符）", column=key))
        if issues:
            raise _reject(issues)
        reasons = {r: (raw.pop(f"reason_{r}", None) or "").strip() or None for r in FORM_ROLES}
        for role, reason in reasons.items():
            if reason is not None and (len(reason) > 200 or bad_text(reason, multiline=False)):
                raise _reject([Issue("BAD_VALUE", f"未到场原因（{codes.TeamRole(role).label}）：过长（超过200个字符）或含不可保存的字符",
                                     column=f"reason_{role}")])
        people = _named_attendance(session, named)
        seq = (session.exec(select(sa.func.max(FollowUp.seq)).where(FollowUp.patient_id == patient_id,
                                                                    FollowUp.visit_on == visit_on)).one() or 0) + 1
        columns = set(FollowUp.model_fields)
        fu = FollowUp(**{k: v for k, v in values.items() if k in columns}, seq=seq, idempotency_key=submit_key)
        session.add(fu)
        try:
            session.flush()
        except sa.exc.IntegrityError:
            if submit_key is None:
                raise
            session.rollback()  # a concurrent submit with the same key won the race
            earlier = _earlier_submit(session, patient_id, submit_key)
            if earlier is None:
                raise
            return earlier
        for role, present in attended.items():  # rules.md §6.2: recorded by the doctor on the form (the role's unnamed row)
            session.add(FollowUpParticipant(follow_up_id=fu.id, role=role, attended=present,
                                            reason=reasons[role], source=codes.AttendanceSource.DOCTOR.value,
                                            recorded_by=scope.user.username, recorded_at=utcnow()))
        for member_id, role, present, reason in people:  # one row per named member
            session.add(FollowUpParticipant(follow_up_id=fu.id, role=role, member_id=member_id, attended=present,
                                            reason=reason, source=codes.AttendanceSource.DOCTOR.value,
                                            recorded_by=scope.user.username, recorded_at=utcnow()))
        if values.get("death_on"):
            patient.status, patient.status_on = codes.PatientStatus.DEAD.value, values["death_on"]
            patient.status_detail = values.get("death_cause")
            patient.updated_at = utcnow()
            session.add(patient)
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="follow_up", object_id=f"{patient_id}/{fu.id}",
                     region_code=patient.village_code, detail=f"随访 {visit_on}", source=source)
        session.commit()
    refresh_schedule(engine, today=today, patient_ids=[patient_id])
    return fu


def _role_attendance(raw: dict[str, str]) -> tuple[dict[str, bool], list[Issue]]:
    """联合入户到场 The form's and the API's ``attended_<role>`` (the role's unnamed row, rules.md §6.2),
    taken out of ``raw``: {role: present} for each one given. Parsed as ``participants.csv``'s
    ``present`` is (``validation.PARTICIPANT_FIELDS``: 1 到场 / 0 未到场, or 是/否); blank = not invited.
    Any other value is ``BAD_CODE`` naming the field — it was stored as 未到场 before (input audit)."""
    present_spec = next(s for s in PARTICIPANT_FIELDS if s.name == "present")
    out: dict[str, bool] = {}
    issues: list[Issue] = []
    for role in FORM_ROLES:  # the joint roles' unnamed rows and the doctor's own (session 12)
        field = f"attended_{role}"
        cell = raw.pop(field, None)
        if cell is None or cell == "\x00invalid":  # absent; or a non-scalar, refused by _check_types
            continue
        values, more = parse_fields({field: cell}, [FieldSpec(field, f"到场({codes.TeamRole(role).label})", present_spec.parse)])
        issues += more
        if values.get(field) is not None:
            out[role] = values[field]
    return out, issues


def register_patient(engine, scope: Scope, raw_in: dict[str, Any], *, today: date, source: str | None,
                     channel: Channel = Channel.FORM) -> Patient:
    """新患者建档 Register a new patient in a village under the doctor's township.

    The checks are ``registry.validation.validate_patient`` and ``check_village``, the importer's;
    status and status date are not taken (validation.DELIBERATE_DIFFERENCES)."""
    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    raw = _clean(raw_in)
    issues = _check_types(raw, patient_field_names())
    raw.pop("status", None)
    raw.pop("status_on", None)  # a new registration is 在册; death/move-out is its own form
    values, more = validate_patient(raw, today=today, extra=True)
    issues += more
    with Session(engine, expire_on_commit=False) as session:
        village = values.get("village_code")
        if village:
            region = session.get(Region, village)
            village_issues = check_village(village, {village: region.level} if region is not None else {})
            issues += village_issues
            if not village_issues and village not in scope.region_codes:
                issues.append(Issue("VILLAGE_OUT_OF_SCOPE", f"村编码 {village} 不在您的管辖范围内", column="village_code"))
        pid = values.get("patient_id")
        if pid and session.get(Patient, pid) is not None:
            issues.append(Issue("PATIENT_EXISTS", f"患者编号 {pid} 已存在", column="patient_id"))
        if issues:
            raise _reject(issues)
        columns = set(Patient.model_fields)
        patient = Patient(**{k: v for k, v in values.items() if k in columns and v is not None})
        session.add(patient)
        if patient.lai_last_on is not None:  # the plan's last injection is an injection row (registry.injections)
            session.flush()
            record_last_injection(session.connection(), [pid])
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="patient", object_id=pid,
                     region_code=village, detail="新患者建档", source=source)
        try:
            session.commit()
        except sa.exc.IntegrityError:
            raise Conflict(f"患者编号 {pid} 已存在", code="PATIENT_EXISTS") from None
    refresh_schedule(engine, today=today, patient_ids=[pid])
    return patient


def record_status(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, today: date, source: str | None,
                  channel: Channel = Channel.FORM) -> Patient:
    """死亡/迁出 Record a death or a move-out; the scheduler cancels the open tasks (rules.md §5).

    The checks are ``registry.validation.validate_status_change`` (the patient row's status rules),
    including the date not before the latest visit that reached the patient (``STATUS_BEFORE_VISIT``)."""
    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    raw = _clean(raw_in)
    issues = _check_types(raw, {"status", "status_on", "status_detail"})
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        values, more = validate_status_change(raw, PatientFacts.of(patient), today=today, channel=channel,
                                              latest_reached=latest_reached_on(session, patient_id))
        issues += more
        if issues:
            raise _reject(issues)
        status, on, detail = values["status"], values["status_on"], values.get("status_detail")
        patient.status, patient.status_on, patient.status_detail = status, on, detail
        patient.updated_at = utcnow()
        session.add(patient)
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="patient", object_id=patient_id,
                     region_code=patient.village_code, detail=f"状态改为{codes.PatientStatus(status).label} {on}", source=source)
        session.commit()
    refresh_schedule(engine, today=today, patient_ids=[patient_id])
    return patient


def record_attendance(engine, scope: Scope, follow_up_id: int, attended: bool, *, source: str | None,
                      reason: str | None = None) -> FollowUpParticipant:
    """联合入户到场 An attendee records their own attendance on a joint visit (rules.md §6.2).

    Police / civil-affairs / village accounts. Attendance is per person: the row is the account's
    own — for an account linked to a team member (``user.member_id``, rules.md §6.1) that member's
    row of the role, otherwise the role's unnamed row; the rows of colleagues of the same role are
    never touched. Allowed on a follow-up that closed a joint task requiring the account's role
    (``Scope.attendance_clause``: a linked account only where it was the responsible member), or on
    a follow-up where the doctor already recorded a row of the account's role for a patient in the
    account's scope; the row is created when there is none. Absent with a reason is a valid record.
    The attendee's own record (source ``self``) wins over the doctor's for that row
    (``registry.joint_visits.attendance_replaces``); the task the follow-up closed gets its 到位 /
    联合未到位 again, same transaction."""
    from registry.web.scopes import TASK_ROLE_OF

    role = TASK_ROLE_OF.get(scope.role)
    if role is None:
        raise PermissionDenied("到场登记仅限民警、民政专干和村(社区)人员", code="ROLE_FORBIDDEN")
    reason = _attendance_reason(reason, "reason")
    forbidden = PermissionDenied(f"无权操作随访记录 {follow_up_id}", code="PATIENT_FORBIDDEN")
    with Session(engine, expire_on_commit=False) as session:
        fu = session.get(FollowUp, follow_up_id)
        if fu is None:
            raise forbidden
        t, pt = VisitTask.__table__, Patient.__table__
        own_task = session.execute(
            sa.select(t.c.id).select_from(t.join(pt, pt.c.patient_id == t.c.patient_id))
            .where(t.c.closed_by == follow_up_id, scope.attendance_clause(t, pt.c.village_code)).limit(1)).first()
        member_id = getattr(scope.user, "member_id", None) or None  # accounts linked to members (rules.md §6.1)
        if own_task is None:
            try:  # never name the patient of a follow-up the caller cannot see (issue 18)
                scope.check_patient(session, fu.patient_id)
            except PermissionDenied:
                raise forbidden from None
            invited = session.exec(select(FollowUpParticipant.id).where(FollowUpParticipant.follow_up_id == follow_up_id,
                                                                        FollowUpParticipant.role == role).limit(1)).first()
            if invited is None:
                raise PermissionDenied("这次随访没有邀请您的部门参加联合入户", code="NOT_A_PARTICIPANT")
        patient = session.get(Patient, fu.patient_id)
        row = _person_row(session, follow_up_id, role, member_id)
        if row is None and member_id is not None:
            # rules.md §6.2 (session 12): with no row of their own, a named attendee's record takes
            # over the role's unnamed row the doctor recorded — the doctor's "someone of the role" is
            # taken to be them, and their word wins (joint_visits.takes_over_unnamed)
            unnamed = _person_row(session, follow_up_id, role, None)
            if unnamed is not None and joint_visits.takes_over_unnamed(unnamed.source):
                row, row.member_id = unnamed, member_id
        if row is None:
            row = FollowUpParticipant(follow_up_id=follow_up_id, role=role, member_id=member_id)
        _apply_attendance(row, attended=attended, reason=reason, source=codes.AttendanceSource.SELF.value,
                          recorded_by=scope.user.username)
        session.add(row)
        session.flush()
        joint_visits.refresh_for_follow_ups(session.connection(), [follow_up_id])
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="follow_up_participant",
                     object_id=f"{fu.patient_id}/{follow_up_id}/{_person_label(role, member_id)}", region_code=patient.village_code,
                     detail="本人登记" + ("到场" if attended else "未到场" + (f"（{reason}）" if reason else "")),
                     source=source)
        session.commit()
        return row


def _attendance_reason(reason: str | None, column: str) -> str | None:
    reason = (reason or "").strip() or None
    if reason is not None and (len(reason) > 200 or bad_text(reason, multiline=False)):
        raise InvalidInput.single("BAD_VALUE", "未到场原因：过长（超过200个字符）或含不可保存的字符", column=column)
    return reason


NAMED_ATTENDED, NAMED_REASON = "attended@", "reason@"  # the form's per-member fields: attended@<member_id>


def _pop_named_attendance(raw: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """The follow-up form's rows for named members, taken out of ``raw``: ``{member_id: (flag,
    reason)}`` for each ``attended@<member_id>`` given (1 到场 / 0 未到场; blank: not invited)."""
    flags = {k[len(NAMED_ATTENDED):]: raw.pop(k) for k in [k for k in raw if k.startswith(NAMED_ATTENDED)]}
    reasons = {k[len(NAMED_REASON):]: raw.pop(k) for k in [k for k in raw if k.startswith(NAMED_REASON)]}
    return {m: (flag, (reasons.get(m) or "").strip() or None) for m, flag in flags.items() if flag != ""}


def _named_attendance(session: Session, named: dict[str, tuple[str, str | None]]
                      ) -> list[tuple[str, str, bool, str | None]]:
    """(member_id, role, present, reason) for the form's named rows: the member exists (the role is the
    member's, rules.md §6.1; any team role, as participants.csv and the API take); the flag is 1 / 0;
    the reason is storable."""
    if not named:
        return []
    found = {m: (role, name) for m, role, name in session.exec(
        select(TeamMember.member_id, TeamMember.role, TeamMember.name).where(TeamMember.member_id.in_(list(named)))).all()}
    issues, out = [], []
    for member_id, (flag, reason) in named.items():
        column = f"{NAMED_ATTENDED}{member_id[:40]}"
        if member_id not in found:  # any team role, as participants.csv and the API take (validation.check_participant)
            issues.append(Issue("UNKNOWN_MEMBER", f"团队成员编号 {member_id[:64]} 不存在", column=column))
            continue
        role, name = found[member_id]  # the message names the person, never the form's field (issue 16)
        if flag not in ("1", "0"):
            issues.append(Issue("BAD_VALUE", f"到场（{name}）：应为 1 到场 / 0 未到场", column=column))
        elif reason is not None and (len(reason) > 200 or bad_text(reason, multiline=False)):
            issues.append(Issue("BAD_VALUE", f"未到场原因（{name}）：过长（超过200个字符）或含不可保存的字符",
                                column=f"{NAMED_REASON}{member_id[:40]}"))
        else:
            out.append((member_id, role, flag == "1", reason))
    if issues:
        raise _reject(issues)
    return out


def _person_row(session: Session, follow_up_id: int, role: str, member_id: str | None) -> FollowUpParticipant | None:
    """One person's attendance row on a follow-up (rules.md §6.2): the member's row of the role, or
    with no member the role's unnamed row (models.FollowUpParticipant's two keys)."""
    fp = FollowUpParticipant
    person = fp.member_id == member_id if member_id else fp.member_id.is_(None)
    return session.exec(select(fp).where(fp.follow_up_id == follow_up_id, fp.role == role, person)).first()


def _spoken_for(session: Session, follow_up_id: int, role: str) -> bool:
    """Whether a named person of ``role`` recorded their own attendance (source ``self``) on the
    follow-up (``registry.joint_visits.unnamed_kept_out``)."""
    fp = FollowUpParticipant
    return session.exec(select(fp.id).where(fp.follow_up_id == follow_up_id, fp.role == role,
                                            fp.member_id.is_not(None),
                                            fp.source == codes.AttendanceSource.SELF.value).limit(1)).first() is not None


def _person_label(role: str, member_id: str | None) -> str:
    """A person's row as the API answers and the audit names it: ``police`` (the role's unnamed row)
    or ``police:M-01`` (a member's)."""
    return f"{role}:{member_id}" if member_id else role


def _apply_attendance(row: FollowUpParticipant, *, attended: bool, reason: str | None, source: str, recorded_by: str) -> bool:
    """Write one attendance record onto the person's ``row`` unless the precedence rule keeps the
    row's own (rules.md §6.2, ``registry.joint_visits.attendance_replaces``); True when written."""
    if not joint_visits.attendance_replaces(row.source, source):
        return False
    row.attended, row.reason, row.source = attended, reason, source
    row.recorded_by, row.recorded_at = recorded_by, utcnow()
    return True


def record_participants(engine, scope: Scope, follow_up_id: int, rows: list[dict[str, Any]], *,
                        source: str | None) -> dict[str, list[str]]:
    """联合入户参加人员 The doctor records each participant's attendance on a follow-up (rules.md §6.2).

    ``rows``: ``{"role", "member_id"?, "present", "reason"?}``; one per person — per role and member,
    and at most one without a member (the role's unnamed row). Rows not named are left alone. A row
    the attendee recorded from their own account keeps their word (``kept``); the others are written
    (``written``), each named ``role`` or ``role:member_id``. The task the follow-up closed gets its
    到位 / 联合未到位 again; one transaction."""
    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    issues: list[Issue] = []
    clean: list[tuple[str, str | None, bool, str | None]] = []
    seen: set[tuple[str, str | None]] = set()
    role_spec = next(s for s in PARTICIPANT_FIELDS if s.name == "role")
    for n, raw in enumerate(rows, start=1):
        member, present = raw.get("member_id"), raw.get("present")
        # the role as participants.csv reads it (any team role, code or label: rules.md §6.2 counts the
        # doctor recorded absent), the one validation path
        parsed, more = parse_fields({"role": str(raw.get("role") or "")}, [role_spec])
        role = parsed.get("role")
        if more:
            issues += [_row_issue(n, i) for i in more]
            continue
        person = (role, member if isinstance(member, str) else None)
        if person in seen:
            who = f"成员 {member}" if person[1] else f"{codes.TeamRole(role).label}的未具名人员"
            issues.append(Issue("DUPLICATE", f"第{n}行 {who} 重复", column="member_id" if person[1] else "role"))
        seen.add(person)
        if not isinstance(present, bool):
            issues.append(Issue("BAD_VALUE", f"第{n}行 到场：应为 true / false", column="present"))
        if member is not None and not (isinstance(member, str) and 0 < len(member) <= 64
                                       and not bad_text(member, multiline=False)):
            issues.append(Issue("BAD_VALUE", f"第{n}行 成员编号无效", column="member_id"))
        try:
            reason = _attendance_reason(raw.get("reason"), "reason")
        except InvalidInput as exc:
            issues += exc.issues
            continue
        clean.append((role, member, bool(present), reason))
    if issues:
        raise _reject(issues)
    out: dict[str, list[str]] = {"written": [], "kept": []}
    with Session(engine, expire_on_commit=False) as session:
        fu = session.get(FollowUp, follow_up_id)
        if fu is None:
            raise PermissionDenied(f"无权操作随访记录 {follow_up_id}", code="PATIENT_FORBIDDEN")
        try:
            patient = scope.check_patient(session, fu.patient_id)
        except PermissionDenied:
            raise PermissionDenied(f"无权操作随访记录 {follow_up_id}", code="PATIENT_FORBIDDEN") from None
        if issues := _member_issues(session, clean):
            raise _reject(issues)
        for role, member, present, reason in clean:
            row = _person_row(session, follow_up_id, role, member)
            if member is None and joint_visits.unnamed_kept_out(_spoken_for(session, follow_up_id, role), row is not None):
                # rules.md §6.2 (session 12): an unnamed row is not created where a person of the
                # role recorded their own attendance (joint_visits.unnamed_kept_out): name whom you mean
                out["kept"].append(_person_label(role, member))
                continue
            if row is None:
                row = FollowUpParticipant(follow_up_id=follow_up_id, role=role, member_id=member,
                                          source=codes.AttendanceSource.DOCTOR.value)
            written = _apply_attendance(row, attended=present, reason=reason, source=codes.AttendanceSource.DOCTOR.value,
                                        recorded_by=scope.user.username)
            out["written" if written else "kept"].append(_person_label(role, member))
            session.add(row)
        session.flush()
        joint_visits.refresh_for_follow_ups(session.connection(), [follow_up_id])
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="follow_up_participant",
                     object_id=f"{fu.patient_id}/{follow_up_id}", region_code=patient.village_code,
                     detail="医生登记到场：" + ",".join(out["written"]) + (f"；本人已登记保留：{','.join(out['kept'])}"
                                                                     if out["kept"] else ""), source=source)
        session.commit()
    return out


def _row_issue(n: int, issue: Issue) -> Issue:
    """An issue of the n-th row of a list body, its message naming the row."""
    return Issue(issue.code, f"第{n}行 {issue.message}", column=issue.column, value=issue.value)


def _member_issues(session: Session, clean: list[tuple[str, str | None, bool, str | None]]) -> list[Issue]:
    """``validation.check_participant`` per row against the stored members (the import's check):
    a named member exists and the row's role is the member's own (``UNKNOWN_MEMBER``, ``ROLE_MISMATCH``)."""
    members = sorted({m for _, m, _, _ in clean if m})
    roles = dict(session.exec(select(TeamMember.member_id, TeamMember.role).where(TeamMember.member_id.in_(members))).all()) \
        if members else {}
    return [_row_issue(n, i) for n, (role, member, _, _) in enumerate(clean, start=1)
            for i in check_participant({"role": role, "member_id": member}, roles.get(member))]


def _event_raw(raw_in: dict[str, Any], field: str, patient_id: str) -> tuple[dict[str, str], list[Issue]]:
    raw = _clean(raw_in)
    issues = _check_types(raw, {field})
    raw["patient_id"] = patient_id
    return raw, issues


def record_health_check(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, today: date,
                        source: str | None, channel: Channel = Channel.FORM) -> date:
    """健康体检 Record an annual health check; it closes that year's health-check task (rules.md §5).

    The checks are ``registry.validation.validate_health_check``, the importer's."""
    from registry.models import HealthCheck  # noqa: PLC0415

    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        raw, issues = _event_raw(raw_in, "checked_on", patient_id)
        values, more = validate_health_check(raw, PatientFacts.of(patient), today=today, channel=channel)
        issues += more
        on = values.get("checked_on")
        if on is not None and applies("DUPLICATE", channel) and session.exec(
                select(HealthCheck).where(HealthCheck.patient_id == patient_id, HealthCheck.checked_on == on)).first():
            issues.append(Issue("DUPLICATE", f"体检日期 {on} 已登记", column="checked_on"))
        if issues:
            raise _reject(issues)
        session.add(HealthCheck(patient_id=patient_id, checked_on=on))
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="health_check",
                     object_id=f"{patient_id}/{on}", region_code=patient.village_code, detail=f"体检 {on}", source=source)
        session.commit()
    refresh_schedule(engine, today=today, patient_ids=[patient_id])
    return on


def record_injection(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, today: date,
                     source: str | None, channel: Channel = Channel.FORM) -> date:
    """长效针剂注射 Record an injection given: one ``injection`` row (the plan's drug and dose) and the LAI
    plan's last injection date moves to it (rules.md §5; contract.md: the latest row).

    The checks are ``registry.validation.validate_injection``; an injection already recorded on that
    date is ``DUPLICATE``."""
    from registry.models import Injection  # noqa: PLC0415

    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        raw, issues = _event_raw(raw_in, "given_on", patient_id)
        values, more = validate_injection(raw, PatientFacts.of(patient), today=today, channel=channel)
        issues += more
        on = values.get("given_on")
        if on is not None and not issues and session.exec(
                select(Injection).where(Injection.patient_id == patient_id, Injection.given_on == on)).first():
            issues.append(Issue("DUPLICATE", f"注射日期 {on} 已登记", column="given_on"))
        if issues:
            raise _reject(issues)
        session.add(Injection(patient_id=patient_id, given_on=on, drug=patient.lai_drug, dose=patient.lai_dose))
        session.flush()
        sync_last_injection(session.connection(), [patient_id])  # the plan's last injection = the latest row
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="injection",
                     object_id=f"{patient_id}/{on}", region_code=patient.village_code,
                     detail=f"长效针剂 {patient.lai_drug} {on}", source=source)
        session.commit()
    refresh_schedule(engine, today=today, patient_ids=[patient_id])
    return on


# ---------------------------------------------------------------- care-team assignments (rules.md §6.1)

def assignment_rows_select(patient_id) -> sa.Select:
    """The patient's dated assignments with the member's name and phone, newest first (rules.md §6.1);
    ``patient_id`` a value or an SQL expression (the patient page's one statement, registry.web.fast)."""
    a, m = CareTeamAssignment.__table__, TeamMember.__table__
    return (sa.select(a.c.id, a.c.role, a.c.from_on, a.c.to_on, m.c.member_id, m.c.name, m.c.phone)
            .join(m, m.c.member_id == a.c.member_id).where(a.c.patient_id == patient_id)
            .order_by(a.c.from_on.desc(), a.c.id.desc()))


def assignable_members_select(village_code) -> sa.Select:
    """The members the doctor may assign to a patient of ``village_code`` (a value or an SQL
    expression): those of the village and of its township (rules.md §6.1,
    ``care_team.serves_patient_sql`` — the rule ``assign_member`` checks), by role and id."""
    m, r = TeamMember.__table__, Region.__table__
    township = sa.select(r.c.parent_code).where(r.c.code == village_code).scalar_subquery()
    return (sa.select(m.c.member_id, m.c.name, m.c.role).where(serves_patient_sql(m.c.region_code, village_code, township))
            .order_by(m.c.role, m.c.member_id))


def assignments_view(rows, members) -> dict:
    """团队指派 The assignment panel from ``assignment_rows_select``'s and ``assignable_members_select``'s rows."""
    return {"rows": [{"id": r.id, "role": r.role, "role_label": codes.TeamRole(r.role).label, "member_id": r.member_id,
                      "name": r.name, "phone": r.phone or "", "from_on": r.from_on.isoformat(),
                      "to_on": r.to_on.isoformat() if r.to_on else None} for r in rows],
            "members": [{"member_id": r.member_id, "label": f"{r.name}（{codes.TeamRole(r.role).label}）", "role": r.role}
                        for r in members]}


def assignments_of(engine, scope: Scope, patient_id: str) -> dict:
    """团队指派 The patient's dated assignments (newest first) with the member's name and phone, and the
    members of the patient's region the doctor may assign (rules.md §6.1)."""

    with Session(engine) as session:
        patient = scope.check_patient(session, patient_id)
        rows = session.execute(assignment_rows_select(patient_id)).all()
        members = session.execute(assignable_members_select(patient.village_code)).all()
    return assignments_view(rows, members)


def assign_member(engine, scope: Scope, patient_id: str, raw_in: dict[str, Any], *, today: date, source: str | None,
                  channel: Channel = Channel.FORM) -> int:
    """指派团队成员 Add a dated assignment to the patient's team (rules.md §6.1): the import's fields
    (``validation.CARE_TEAM_FIELDS``) and checks (``validation.check_assignment``; a member of the
    patient's village or township, ``care_team.check_member_serves``); the role defaults to the member's own. One transaction with its audit row. Returns the assignment id."""

    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        raw = _clean(raw_in)
        issues = _check_types(raw, {"member_id", "role", "from_on", "to_on"})
        raw["patient_id"] = patient_id
        member = session.get(TeamMember, raw.get("member_id", "")) if raw.get("member_id") else None
        if not raw.get("role") and member is not None:
            raw["role"] = member.role
        values, more = parse_fields(raw, CARE_TEAM_FIELDS)
        issues += more + check_assignment(values, member.role if member else None)
        if member is not None:  # a member of the patient's village or township (the form's options)
            township = session.execute(sa.select(Region.parent_code).where(Region.code == patient.village_code)).scalar()
            issues += check_member_serves(member.member_id, member.region_code, patient.village_code, township, patient_id)
        a = CareTeamAssignment.__table__
        if not issues and session.execute(sa.select(a.c.id).where(
                a.c.patient_id == patient_id, a.c.member_id == values["member_id"], a.c.role == values["role"],
                a.c.from_on == values["from_on"])).first():
            issues.append(Issue("DUPLICATE", f"成员 {values['member_id']} 自 {values['from_on']} 起已指派", column="from_on"))
        if issues:
            raise _reject(issues)
        row = CareTeamAssignment(patient_id=patient_id, member_id=values["member_id"], role=values["role"],
                                 from_on=values["from_on"], to_on=values.get("to_on"))
        session.add(row)
        session.flush()
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="care_team",
                     object_id=f"{patient_id}/{row.id}", region_code=patient.village_code,
                     detail=f"指派{codes.TeamRole(row.role).label} {row.member_id} 自 {row.from_on}"
                            + (f" 至 {row.to_on}" if row.to_on else ""), source=source)
        session.commit()
        new_id = row.id
    refresh_schedule(engine, today=today, patient_ids=[patient_id])  # the work-list caches learn of the change
    return new_id


def end_assignment(engine, scope: Scope, patient_id: str, assignment_id: int, raw_in: dict[str, Any], *, today: date,
                   source: str | None) -> date:
    """结束指派 End an assignment on ``to_on`` (default today; the last day it counts, rules.md §6.1)."""

    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value)
    with Session(engine, expire_on_commit=False) as session:
        patient = scope.check_patient(session, patient_id)
        row = session.get(CareTeamAssignment, assignment_id)
        if row is None or row.patient_id != patient_id:
            raise PermissionDenied(f"无权操作团队指派 {assignment_id}", code="PATIENT_FORBIDDEN")
        raw = _clean(raw_in)
        try:
            end = iso_date(raw["to_on"]) if raw.get("to_on") else today
        except FieldError as exc:
            raise _reject([Issue(exc.code, f"结束日期：{exc.message}", column="to_on")]) from None
        issues = check_assignment({"from_on": row.from_on, "to_on": end}, row.role)
        if issues:
            raise _reject(issues)
        row.to_on = end
        session.add(row)
        audit.record(session.connection(), actor=scope.user.username, action="write", object_type="care_team",
                     object_id=f"{patient_id}/{row.id}", region_code=patient.village_code,
                     detail=f"结束指派 {row.member_id} 于 {end}", source=source)
        session.commit()
    refresh_schedule(engine, today=today, patient_ids=[patient_id])
    return end
