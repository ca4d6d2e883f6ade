"""联合随访到位 A joint visit done or not done, and whose attendance record stands (rules.md §6.2).

The one home of the rule, Python and its SQL twin side by side (pattern: ``registry.attempts``):

* ``joint_outcome`` — a follow-up closes a joint task (one requiring a role besides the doctor,
  rules.md §6) as 到位 only when it is a home visit (mode 2, 家庭访视) and every required role has
  a participant marked present; otherwise 联合未到位 with the missing roles in contract order
  (doctor, police, village, civil_affairs; a phone call or clinic visit misses every non-doctor
  role). The doctor is required always (rules.md §6) and present by default: the 精防医生 records
  the follow-up, so no doctor row means the doctor was there [decision]; but when the follow-up's
  participants record the doctor absent (a doctor-role row marked not present) and no doctor-role
  row marked present, the doctor is missing too, whatever the mode. ``joint_outcome_sql`` /
  ``missing_roles_sql`` are the same rule over ``visit_task`` joined to the closing ``follow_up``.
* ``closing_follow_up_sql`` — which follow-up closed a visit task: the first attempt after the
  task's basis in the rules.md §5 order (date, then entry order), dated on or after registration
  for a task based on the registration. ``closing_follow_up`` is its Python twin. A
  ``post_emergency`` task (rules.md §9, doctor + police + village: a joint task like any other,
  §6) is closed by the first complete home visit on or after the emergency's end, by (date, entry
  order): ``registry.emergencies.closing_post_emergency`` / ``closing_post_emergency_sql``, the
  same rule the generation closes it by (``closes_post_emergency``).
* ``attendance_replaces`` — the attendee's own record (source ``self``) wins over the doctor's
  for that row; otherwise the newer record replaces the older. Rows are per person (a member of a
  role, or the role's one unnamed row): a record only ever meets the same person's row, and a role
  is present when any of its rows is (``_present_sql``: EXISTS).
* ``takes_over_unnamed`` / ``unnamed_kept_out`` — the role's unnamed row and a named attendee's
  own record (rules.md §6.2, session 12 [decision]). The unnamed row is the doctor's "someone of
  the role", without a name. A named person who records their own attendance on a follow-up where
  they have no row takes that row over (it becomes their row, with their record): the doctor's
  anonymous "police present" and the officer's "I was absent" are one person's two records, and
  the attendee's word wins — the role is no longer present on the strength of an anonymous tick
  (before session 12 both rows stood and the role stayed present). Where the doctor named the
  person *and* kept an unnamed row (the form's 其他人员, the import's two rows), they are two
  people and both stay. Once a person of the role has recorded their own attendance, no unnamed
  row of the role is created on that follow-up (the API answers ``kept``, the import skips it):
  whoever else came is named. Either order ends in the same rows.
* ``refresh_outcomes`` — the set-based UPDATE storing ``closed_by``, ``joint_outcome`` and
  ``missing_roles`` on closed visit and post-emergency tasks (``ASSESSED_KIND_VALUES``); called
  where tasks close (``schedules.generation``) and where attendance changes (web writes,
  ``participants.csv`` import).

``tests/test_joint_visits.py`` compares the twins on random rows on both databases.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

import sqlalchemy as sa

from registry.codes import (VISIT_KINDS, AttendanceSource, FollowUpMode, JointOutcome, TaskKind, TaskStatus, TeamRole)
from registry.emergencies import closing_post_emergency_sql
from registry.models import FollowUp, FollowUpParticipant, Patient, VisitTask

DOCTOR = TeamRole.DOCTOR.value
NON_DOCTOR_ROLES = (TeamRole.POLICE.value, TeamRole.VILLAGE.value, TeamRole.CIVIL_AFFAIRS.value)  # contract order
VISIT_KIND_VALUES = [k.value for k in VISIT_KINDS]
# the kinds whose closing follow-up is recorded and assessed (rules.md §6, §6.2, §9): every visit
# kind, and the post-emergency visit (doctor + police + village)
ASSESSED_KIND_VALUES = VISIT_KIND_VALUES + [TaskKind.POST_EMERGENCY.value]
FOLLOW_UP_BASIS = "follow_up:"


# ----------------------------------------------------------------------------- Python


def joint_outcome(roles: Iterable[str], mode: int | None, present_roles: Iterable[str],
                  absent_roles: Iterable[str] = ()) -> tuple[JointOutcome | None, tuple[str, ...]]:
    """联合随访结果 (outcome, missing roles) of a task requiring ``roles`` closed by a follow-up of
    ``mode`` whose participant rows mark ``present_roles`` present and ``absent_roles`` not
    present (rules.md §6.2).

    Not a joint task (doctor only): (None, ()). Missing roles come in contract order, the doctor
    first: the doctor (required always, rules.md §6) is missing only when recorded absent and
    not also recorded present [decision: no doctor row, the doctor who records it was there]."""
    required = [r for r in NON_DOCTOR_ROLES if r in set(roles)]
    if not required:
        return None, ()
    recorded = set(present_roles)
    doctor_missing = DOCTOR in set(absent_roles) and DOCTOR not in recorded
    present = recorded if mode == FollowUpMode.HOME.value else set()
    missing = ((DOCTOR,) if doctor_missing else ()) + tuple(r for r in required if r not in present)
    return (JointOutcome.INCOMPLETE if missing else JointOutcome.COMPLETE), missing


def closing_follow_up(basis: str, basis_on: date, registered_on: date, attempts: Iterable[Any]) -> Any | None:
    """结束任务的随访 The follow-up that closes a visit task with ``basis`` / ``basis_on``: the first
    attempt (objects with ``id``, ``visit_on``) after the basis in the rules.md §5 order — after the
    basis follow-up by (date, entry order), or dated on or after ``basis_on`` for a registration basis
    — and on or after registration. None when no attempt follows the basis."""
    if basis.startswith(FOLLOW_UP_BASIS):
        key = (basis_on, int(basis[len(FOLLOW_UP_BASIS):]))
        after = [a for a in attempts if (a.visit_on, a.id) > key]
    else:
        after = [a for a in attempts if a.visit_on >= basis_on]
    after = [a for a in after if a.visit_on >= registered_on]
    return min(after, key=lambda a: (a.visit_on, a.id)) if after else None


def attendance_replaces(existing_source: str | None, incoming_source: str) -> bool:
    """到场记录优先 Whether a new record from ``incoming_source`` replaces the row's record from
    ``existing_source`` (None: no row yet) on the same person's row — (follow-up, role, member), or
    the role's unnamed row; other people's rows of the role are never compared (rules.md §6.2
    [2026-12], per person). The attendee's own record wins for their row: the doctor never
    overwrites it; the attendee may correct their own."""
    if existing_source is None:
        return True
    return not (existing_source == AttendanceSource.SELF.value and incoming_source != AttendanceSource.SELF.value)


def takes_over_unnamed(unnamed_source: str) -> bool:
    """接管未具名记录 Whether a named attendee's own record, on a follow-up where they have no row,
    takes over the role's unnamed row recorded by ``unnamed_source`` (rules.md §6.2): the doctor's
    yes — it was "someone of the role", now named by their own word; another attendee's own
    record (an account linked to no member) no — it is that person's row."""
    return unnamed_source != AttendanceSource.SELF.value


def unnamed_kept_out(person_recorded_own: bool, unnamed_exists: bool) -> bool:
    """不再新建未具名记录 Whether a doctor's (or an import's) record for the role's unnamed row is left
    out (rules.md §6.2): when there is no unnamed row yet and a named person of the role recorded
    their own attendance on the follow-up (``person_recorded_own``) — the record would otherwise
    bring back what that person's record took over. An existing unnamed row is the doctor's own
    and is written as usual (``attendance_replaces``)."""
    return person_recorded_own and not unnamed_exists


# ----------------------------------------------------------------------------- SQL twins


def _role_in(roles_col, role: str) -> sa.ColumnElement[bool]:
    return (sa.literal(",") + roles_col + sa.literal(",")).like(f"%,{role},%")


def _present_sql(f_id, role: str, attended: bool = True) -> sa.ColumnElement[bool]:
    """A participant row of ``role`` on follow-up ``f_id`` marked present (``attended``) or not."""
    fp = FollowUpParticipant.__table__
    return (sa.select(fp.c.follow_up_id)
            .where(fp.c.follow_up_id == f_id, fp.c.role == role, fp.c.attended.is_(attended))
            .exists())


def missing_roles_sql(roles_col, mode_col, f_id) -> sa.ColumnElement[str]:
    """``joint_outcome``'s missing roles in SQL: comma-separated in contract order (the doctor
    first), '' when none (``roles_col`` the task's roles text, ``mode_col`` / ``f_id`` the closing
    follow-up's). The doctor: missing when recorded absent and not recorded present."""
    home = sa.func.coalesce(mode_col, 0) == FollowUpMode.HOME.value  # NULL mode: not a home visit
    doctor = sa.case((sa.and_(_present_sql(f_id, DOCTOR, attended=False), sa.not_(_present_sql(f_id, DOCTOR))),
                      DOCTOR + ","), else_="")
    parts = [doctor] + [sa.case((sa.and_(_role_in(roles_col, r), sa.not_(sa.and_(home, _present_sql(f_id, r)))), r + ","),
                                else_="") for r in NON_DOCTOR_ROLES]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + part
    return sa.func.rtrim(joined, ",")


def is_joint_sql(roles_col) -> sa.ColumnElement[bool]:
    """Any role besides the doctor in the roles text (``registry.teams.is_joint``)."""
    return sa.or_(*[_role_in(roles_col, r) for r in NON_DOCTOR_ROLES])


def joint_outcome_sql(roles_col, mode_col, f_id) -> sa.ColumnElement[str]:
    """``joint_outcome``'s outcome code in SQL: NULL for a doctor-only task."""
    return sa.case(
        (sa.not_(is_joint_sql(roles_col)), sa.null()),
        (missing_roles_sql(roles_col, mode_col, f_id) == "", JointOutcome.COMPLETE.value),
        else_=JointOutcome.INCOMPLETE.value,
    )


def closing_follow_up_sql(t) -> sa.ScalarSelect:
    """``closing_follow_up`` in SQL: the id of the follow-up that closes visit task ``t`` (NULL: none)."""
    f = FollowUp.__table__.alias("fc")
    p = Patient.__table__.alias("pc")
    basis_id = sa.case((t.c.basis.like(FOLLOW_UP_BASIS + "%"),
                        sa.cast(sa.func.substr(t.c.basis, len(FOLLOW_UP_BASIS) + 1), sa.Integer)))
    after = sa.case(
        (t.c.basis.like(FOLLOW_UP_BASIS + "%"),
         sa.case((sa.or_(f.c.visit_on > t.c.basis_on, sa.and_(f.c.visit_on == t.c.basis_on, f.c.id > basis_id)), 1),
                 else_=0)),
        else_=sa.case((f.c.visit_on >= t.c.basis_on, 1), else_=0),
    ) == 1
    return (sa.select(f.c.id)
            .select_from(f.join(p, p.c.patient_id == f.c.patient_id))
            .where(f.c.patient_id == t.c.patient_id, after, f.c.visit_on >= p.c.registered_on)
            .order_by(f.c.visit_on, f.c.id)
            .limit(1)
            .scalar_subquery())


def refresh_outcomes(conn: sa.Connection, where: sa.ColumnElement[bool], *, set_closed_by: bool = False) -> int:
    """到位判定 Store the outcome (rules.md §6.2) on the closed visit and post-emergency tasks of
    ``visit_task`` matching ``where``, set-based: with ``set_closed_by``, first record which
    follow-up closed each (tasks closed just now: a visit task by a later attempt,
    ``closing_follow_up_sql``; a post-emergency task by the first complete home visit after the
    emergency, ``registry.emergencies.closing_post_emergency_sql``); then ``joint_outcome`` /
    ``missing_roles`` from that follow-up's mode and participants (NULL for doctor-only tasks).
    Returns the rows updated."""
    t = VisitTask.__table__
    f = FollowUp.__table__
    closed_visit = sa.and_(t.c.status == TaskStatus.DONE.value, t.c.kind.in_(ASSESSED_KIND_VALUES), where)
    if set_closed_by:
        unset = sa.and_(closed_visit, t.c.closed_by.is_(None))
        conn.execute(sa.update(t).where(unset, t.c.kind.in_(VISIT_KIND_VALUES))
                     .values(closed_by=closing_follow_up_sql(t)))
        conn.execute(sa.update(t).where(unset, t.c.kind == TaskKind.POST_EMERGENCY.value)
                     .values(closed_by=closing_post_emergency_sql(t)))
    mode = sa.select(f.c.mode).where(f.c.id == t.c.closed_by).scalar_subquery()
    joint = is_joint_sql(t.c.roles)
    result = conn.execute(
        sa.update(t).where(closed_visit, t.c.closed_by.is_not(None))
        .values(joint_outcome=sa.case((joint, joint_outcome_sql(t.c.roles, mode, t.c.closed_by))),
                missing_roles=sa.case((joint, missing_roles_sql(t.c.roles, mode, t.c.closed_by))))
    )
    return result.rowcount or 0


def refresh_for_follow_ups(conn: sa.Connection, follow_up_ids: list[int]) -> int:
    """Recompute the outcome of the tasks closed by these follow-ups (their attendance changed)."""
    if not follow_up_ids:
        return 0
    return refresh_outcomes(conn, VisitTask.__table__.c.closed_by.in_(follow_up_ids))


def latest_joint_incomplete_sql(patient_id_col) -> sa.ColumnElement[bool]:
    """联合未到位 The patient's latest joint task (by closing follow-up date, then id) closed 联合未到位:
    on the 风险预警单 and the supervisor's page until a later joint task closes 到位 (rules.md §6.2)."""
    t = VisitTask.__table__.alias("jt")
    later = VisitTask.__table__.alias("jl")
    f = FollowUp.__table__.alias("jf")
    fl = FollowUp.__table__.alias("jfl")
    no_later_complete = ~(
        sa.select(later.c.id)
        .select_from(later.join(fl, fl.c.id == later.c.closed_by))
        .where(later.c.patient_id == t.c.patient_id, later.c.joint_outcome == JointOutcome.COMPLETE.value,
               sa.or_(fl.c.visit_on > f.c.visit_on, sa.and_(fl.c.visit_on == f.c.visit_on, fl.c.id > f.c.id)))
        .exists()
    )
    return (sa.select(t.c.id)
            .select_from(t.join(f, f.c.id == t.c.closed_by))
            .where(t.c.patient_id == patient_id_col, t.c.joint_outcome == JointOutcome.INCOMPLETE.value,
                   no_later_complete)
            .exists())


def latest_joint_incomplete(outcomes: Iterable[tuple[date, int, str]]) -> bool:
    """Python twin of ``latest_joint_incomplete_sql``: ``outcomes`` are (closing follow-up date,
    closing follow-up id, outcome) of a patient's closed joint tasks. True when a task closed
    联合未到位 and no task closed 到位 by a later follow-up."""
    rows = list(outcomes)
    complete = [(d, i) for d, i, o in rows if o == JointOutcome.COMPLETE.value]
    return any(o == JointOutcome.INCOMPLETE.value and not any(c > (d, i) for c in complete) for d, i, o in rows)


def joint_incomplete_select(among) -> sa.Select:
    """联合未到位名单 (patient_id, visit_on, missing_roles) of the patients of ``among`` (a select of
    patient_ids) whose latest joint task closed 联合未到位 (``latest_joint_incomplete_sql``), one row
    per such task, oldest closing follow-up first (a reader keeps the last row per patient)."""
    t, f = VisitTask.__table__, FollowUp.__table__
    return (sa.select(t.c.patient_id, f.c.visit_on, t.c.missing_roles)
            .select_from(t.join(f, f.c.id == t.c.closed_by))
            .where(t.c.patient_id.in_(among), t.c.joint_outcome == JointOutcome.INCOMPLETE.value,
                   latest_joint_incomplete_sql(t.c.patient_id))
            .order_by(t.c.patient_id, f.c.visit_on, f.c.id))


def missing_roles_text(missing: str | None) -> str:
    """缺席角色 The missing roles in Chinese: '民警、村(社区)两委成员/网格员'."""
    return "、".join(TeamRole(r).label for r in (missing or "").split(",") if r)
