"""联合入户预约 Appointments for joint visits (rules.md §6, §6.1, §8, §12; issue 14).

The township doctor proposes a local date and time (and a place note) for an open joint task
(one requiring a role besides the doctor, rules.md §6); the task's named responsible members of
its required non-doctor roles (rules.md §6.1, one home: ``registry.care_team``) see it and answer:
confirmed, or declined with a reason (``APPOINTMENT_REASON_REQUIRED``). A member may change
their answer; the latest stands (one row per appointment and member).

* Pure checks (no clock, no DB): ``check_proposal`` (the task open and joint, the time not in the
  past of ``now_local``) and ``check_reply`` (the answer coded, the reason rule).
* Set-based SQL: ``recipients_select`` — (task_id, role, member_id) of the responsible members of
  the required non-doctor roles on the task's due date, for any set of tasks.
* Writes in the caller's transaction: ``propose`` and ``reply`` (a refused write writes nothing).

The message the web layer queues (``schedules.notify.queue_appointment_message``) carries counts,
the township and a link, never a name, patient id, ID number or diagnosis (rules.md §8, §12).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.care_team import responsible_member_sql, role_required_sql
from registry.clock import now_utc
from registry.codes import AppointmentAnswer, TaskKind, TaskStatus
from registry.errors import InvalidInput, NotFound, PermissionDenied
from registry.joint_visits import NON_DOCTOR_ROLES, is_joint_sql
from registry.models import Appointment, AppointmentReply, Patient, Region, VisitTask
from registry.storable_text import bad_text

PLACE_MAX = 200
REASON_MAX = 200


# ------------------------------------------------------------------------------------ pure rules


def check_proposal(*, status: str, roles: str | Iterable[str], proposed_at: datetime, now_local: datetime) -> None:
    """预约检查 A proposal for a task of ``status`` requiring ``roles`` at local ``proposed_at``
    (rules.md §6, §6.1): the task must be open (``APPOINTMENT_TASK_CLOSED``), joint — a role
    besides the doctor (``APPOINTMENT_NOT_JOINT``) — and the time not before ``now_local``
    (``APPOINTMENT_IN_PAST``). Raises InvalidInput; returns None when all hold."""
    wanted = set(roles.split(",") if isinstance(roles, str) else roles)
    if status != TaskStatus.OPEN.value:
        raise InvalidInput.single("APPOINTMENT_TASK_CLOSED", "任务已结束，不能预约", column="task_id")
    if not any(r in wanted for r in NON_DOCTOR_ROLES):
        raise InvalidInput.single("APPOINTMENT_NOT_JOINT", "不是联合入户任务，无需预约", column="task_id")
    if proposed_at < now_local:
        raise InvalidInput.single("APPOINTMENT_IN_PAST", "预约时间：不能早于当前时间", column="proposed_at",
                                  value=proposed_at.isoformat(timespec="minutes"))


def check_reply(answer: str | None, reason: str | None) -> tuple[str, str | None]:
    """答复检查 (answer, reason) of a reply: ``answer`` one of ``AppointmentAnswer`` (``BAD_CODE``);
    declining needs a reason (``APPOINTMENT_REASON_REQUIRED``); a reason is ≤ 200 storable
    characters (``BAD_VALUE``). A confirmation keeps an optional note."""
    if answer not in {a.value for a in AppointmentAnswer}:
        raise InvalidInput.single("BAD_CODE", f"答复“{str(answer)[:20]}”无效，应为 confirmed（能参加）/ declined（不能参加）",
                                  column="answer")
    reason = (reason or "").strip() or None
    if reason is not None and (len(reason) > REASON_MAX or bad_text(reason, multiline=False)):
        raise InvalidInput.single("BAD_VALUE", "原因：过长（超过200个字符）或含不可保存的字符", column="reason")
    if answer == AppointmentAnswer.DECLINED.value and reason is None:
        raise InvalidInput.single("APPOINTMENT_REASON_REQUIRED", "原因：不能参加时必须填写原因", column="reason")
    return answer, reason


def check_place(place: str | None) -> str | None:
    """地点说明 An optional place note, ≤ 200 storable characters (``BAD_VALUE``)."""
    place = (place or "").strip() or None
    if place is not None and (len(place) > PLACE_MAX or bad_text(place, multiline=False)):
        raise InvalidInput.single("BAD_VALUE", "地点：过长（超过200个字符）或含不可保存的字符", column="place")
    return place


# ------------------------------------------------------------------------------------ SQL


def recipients_select(task_ids) -> sa.Select:
    """预约对象 (task_id, role, member_id) for the tasks of ``task_ids`` (a list or a select of ids):
    the responsible member (rules.md §6.1, ``registry.care_team.responsible_member_sql``) on the
    task's due date of each required non-doctor role; member_id NULL where nobody is (未指定)."""
    t, p = VisitTask.__table__, Patient.__table__
    parts = [
        sa.select(t.c.id.label("task_id"), sa.literal(role).label("role"),
                  responsible_member_sql(role, patient_id=t.c.patient_id, village_code=p.c.village_code,
                                         on=t.c.due_on).label("member_id"))
        .select_from(t.join(p, p.c.patient_id == t.c.patient_id))
        .where(t.c.id.in_(task_ids), role_required_sql(t.c.roles, role))
        for role in NON_DOCTOR_ROLES
    ]
    return sa.union_all(*parts)


def township_of(conn: Connection, patient_id: str) -> tuple[str, str]:
    """(code, name) of the patient's township (the village's parent region)."""
    p, v, tw = Patient.__table__, Region.__table__.alias("v"), Region.__table__.alias("tw")
    row = conn.execute(sa.select(tw.c.code, tw.c.name)
                       .select_from(p.join(v, v.c.code == p.c.village_code).join(tw, tw.c.code == v.c.parent_code))
                       .where(p.c.patient_id == patient_id)).first()
    return (row.code, row.name) if row else ("", "")


def propose(conn: Connection, *, task_id: int, proposed_at: datetime, place: str | None, actor: str,
            now_local: datetime) -> dict:
    """提出预约 Store the doctor's proposal for task ``task_id`` (caller's transaction; the caller
    checked the patient is the doctor's). Returns ``{"id", "patient_id", "recipients": [(role,
    member_id or None)]}``."""
    t = VisitTask.__table__
    task = conn.execute(sa.select(t.c.id, t.c.patient_id, t.c.status, t.c.roles).where(t.c.id == task_id)).first()
    if task is None:
        raise NotFound(f"任务 {task_id} 不存在", code="TASK_NOT_FOUND")
    check_proposal(status=task.status, roles=task.roles, proposed_at=proposed_at, now_local=now_local)
    place = check_place(place)
    new_id = conn.execute(sa.insert(Appointment.__table__).values(
        task_id=task_id, proposed_at=proposed_at.replace(second=0, microsecond=0, tzinfo=None), place=place,
        proposed_by=actor, created_at=now_utc()).returning(Appointment.__table__.c.id)).scalar_one()
    recipients = [(r.role, r.member_id) for r in conn.execute(recipients_select([task_id]))]
    return {"id": new_id, "patient_id": task.patient_id, "recipients": recipients}


def reply(conn: Connection, *, appointment_id: int, member_id: str | None, answer: str | None, reason: str | None,
          actor: str) -> dict:
    """答复预约 The linked member's own answer (caller's transaction). Only a responsible member of
    a required role on the appointment's task may answer (``APPOINTMENT_FORBIDDEN``, 403 — also
    when the appointment does not exist, so a probe learns nothing); the task must still be open."""
    answer, reason = check_reply(answer, reason)
    a, t = Appointment.__table__, VisitTask.__table__
    row = conn.execute(sa.select(a.c.task_id, t.c.status, t.c.patient_id).select_from(a.join(t, t.c.id == a.c.task_id))
                       .where(a.c.id == appointment_id)).first()
    roles = [] if row is None or not member_id else [
        r.role for r in conn.execute(recipients_select([row.task_id])) if r.member_id == member_id]
    if not roles:
        raise PermissionDenied(f"无权答复预约 {appointment_id}：您不是该任务的责任人", code="APPOINTMENT_FORBIDDEN")
    if row.status != TaskStatus.OPEN.value:
        raise InvalidInput.single("APPOINTMENT_TASK_CLOSED", "任务已结束，不能再答复预约", column="appointment_id")
    r = AppointmentReply.__table__
    values = {"role": roles[0], "answer": answer, "reason": reason, "answered_by": actor, "answered_at": now_utc()}
    done = conn.execute(sa.update(r).where(r.c.appointment_id == appointment_id, r.c.member_id == member_id)
                        .values(**values)).rowcount
    if not done:
        conn.execute(sa.insert(r).values(appointment_id=appointment_id, member_id=member_id, **values))
    return {"appointment_id": appointment_id, "patient_id": row.patient_id, "role": roles[0], "answer": answer,
            "reason": reason}


def replies_select(appointment_ids) -> sa.Select:
    """The answers to the appointments of ``appointment_ids`` (a list or a select of ids), with the
    member's name, by appointment and role."""
    from registry.models import TeamMember

    r, m = AppointmentReply.__table__, TeamMember.__table__
    return (sa.select(r.c.appointment_id, r.c.member_id, m.c.name, r.c.role, r.c.answer, r.c.reason)
            .select_from(r.join(m, m.c.member_id == r.c.member_id))
            .where(r.c.appointment_id.in_(appointment_ids)).order_by(r.c.appointment_id, r.c.role))


def replies_view(rows) -> dict[int, list[dict]]:
    """``replies_select``'s rows as ``{appointment_id: [{member_id, name, role, answer, reason}]}``."""
    out: dict[int, list[dict]] = {}
    for row in rows:
        out.setdefault(row.appointment_id, []).append(
            {"member_id": row.member_id, "name": row.name, "role": row.role, "answer": row.answer,
             "answer_label": AppointmentAnswer(row.answer).label, "reason": row.reason or ""})
    return out


def replies_of(conn: Connection, appointment_ids: list[int]) -> dict[int, list[dict]]:
    """The answers to these appointments: ``{appointment_id: [{member_id, name, role, answer, reason}]}``."""
    if not appointment_ids:
        return {}
    return replies_view(conn.execute(replies_select(appointment_ids)))


def _view(row, replies: dict[int, list[dict]]) -> dict:
    return {"id": row.id, "task_id": row.task_id, "proposed_at": row.proposed_at.strftime("%Y-%m-%d %H:%M"),
            "place": row.place or "", "replies": replies.get(row.id, [])}


def patient_appointments_select(patient_id) -> sa.Select:
    """The appointments of the patient's open tasks, newest first; ``patient_id`` a value or an SQL
    expression (the patient page's one statement, registry.web.fast)."""
    a, t = Appointment.__table__, VisitTask.__table__
    return (sa.select(a.c.id, a.c.task_id, a.c.proposed_at, a.c.place)
            .select_from(a.join(t, t.c.id == a.c.task_id))
            .where(t.c.patient_id == patient_id, t.c.status == TaskStatus.OPEN.value)
            .order_by(a.c.id.desc()))


def appointments_view(rows, replies: dict[int, list[dict]]) -> dict[int, list[dict]]:
    """``patient_appointments_select``'s rows with their replies (``replies_view``) as ``{task_id: [view]}``."""
    out: dict[int, list[dict]] = {}
    for row in rows:
        out.setdefault(row.task_id, []).append(_view(row, replies))
    return out


def appointments_of_patient(conn: Connection, patient_id: str) -> dict[int, list[dict]]:
    """预约 The appointments of the patient's open tasks, with their replies: ``{task_id: [view]}``,
    newest first."""
    rows = conn.execute(patient_appointments_select(patient_id)).all()
    return appointments_view(rows, replies_of(conn, [r.id for r in rows]))


def appointments_for_member(conn: Connection, member_id: str) -> list[dict]:
    """我的预约 The appointments of open tasks on which ``member_id`` is a responsible member
    (rules.md §6.1), with the patient's name and village (list fields only, rules.md §8) and the
    member's own answer; set-based (one query over all open appointed tasks)."""
    a, t, p, v = Appointment.__table__, VisitTask.__table__, Patient.__table__, Region.__table__
    ot = VisitTask.__table__.alias("appointed_task")
    open_appointed = (sa.select(a.c.task_id).join(ot, ot.c.id == a.c.task_id)
                      .where(ot.c.status == TaskStatus.OPEN.value).correlate(None))
    mine = recipients_select(open_appointed).subquery("mine")
    rows = conn.execute(
        sa.select(a.c.id, a.c.task_id, a.c.proposed_at, a.c.place, mine.c.role, p.c.patient_id, p.c.name,
                  v.c.name.label("village"))
        .select_from(a.join(mine, mine.c.task_id == a.c.task_id).join(t, t.c.id == a.c.task_id)
                     .join(p, p.c.patient_id == t.c.patient_id).join(v, v.c.code == p.c.village_code))
        .where(mine.c.member_id == member_id)
        .order_by(a.c.proposed_at, a.c.id)).all()
    replies = replies_of(conn, [r.id for r in rows])
    out = []
    for row in rows:
        view = _view(row, {})
        own = [x for x in replies.get(row.id, []) if x["member_id"] == member_id]
        view.update(patient_id=row.patient_id, name=row.name, village=row.village, role=row.role,
                    mine=own[0] if own else None)
        out.append(view)
    return out


def joint_tasks_select(patient_id) -> sa.Select:
    """The patient's open joint tasks (rules.md §6) by due date; ``patient_id`` a value or an SQL expression."""
    t = VisitTask.__table__
    return (sa.select(t.c.id, t.c.kind, t.c.due_on)
            .where(t.c.patient_id == patient_id, t.c.status == TaskStatus.OPEN.value, is_joint_sql(t.c.roles))
            .order_by(t.c.due_on, t.c.id))


def joint_tasks_view(rows, booked: dict[int, list[dict]]) -> list[dict]:
    """``joint_tasks_select``'s rows with their appointments (``appointments_view``)."""
    return [{"task_id": r.id, "kind_label": TaskKind(r.kind).label, "due_on": r.due_on.isoformat(),
             "appointments": booked.get(r.id, [])} for r in rows]


def joint_tasks_of_patient(conn: Connection, patient_id: str) -> list[dict]:
    """联合入户预约 The patient's open joint tasks (rules.md §6) with their appointments and replies,
    for the doctor's patient page: ``[{task_id, kind_label, due_on, appointments: [view]}]`` by due date."""
    rows = conn.execute(joint_tasks_select(patient_id)).all()
    return joint_tasks_view(rows, appointments_of_patient(conn, patient_id))
