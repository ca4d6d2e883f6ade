"""个案管理团队 The care team of a patient and the responsible member per role (rules.md §6, §6.1), in
Python and in SQL, side by side.

* **The team shown** (``care_team`` / ``care_team_select``), on a date: the patient's assignments
  valid that day; for every role without one, the members of that role serving the patient's village
  and its township (the village's parent region). Members come in member_id order.
* **The responsible member** (责任人, rules.md §6.1 [2026-12]; ``responsible_member`` /
  ``responsible_member_sql``) for one role on one date (a task's due date): the patient's assignment
  for that role valid that day (the latest ``from_on``, then the lowest member_id); else the region's
  primary member for that role, the village's first, then the township's; else none (shown as "未指定",
  ``UNASSIGNED_LABEL``). The import keeps one primary per region and role (``DUPLICATE_PRIMARY``,
  ``registry.validation.duplicate_primaries``); the lowest member_id is only a deterministic
  tie-break for rows stored before that check.
* **Who may be assigned** (``serves_patient`` / ``serves_patient_sql``, ``check_member_serves``): a
  member serving the patient's village or its township — the members the team defaults to, the
  patient page's option list (``registry.web.writes.assignable_members_select``) and the only members
  ``care_team.csv``, the form and the API accept (``MEMBER_OUT_OF_SCOPE``).

An assignment is valid on day ``d`` when ``from_on <= d`` and ``to_on`` is NULL or ``d <= to_on``
(both ends inclusive). The per-patient rules read rows with the table's attribute names; the SQL
twins are set-based for any set of patients or tasks (the web pages, the fast PostgreSQL path,
``jingfang tasks --json``, the 五单). tests/test_team_rules.py checks that both agree on random rows.
The guardian (监护人) is shown with the team by the pages (``registry.web.queries.team_views``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

import sqlalchemy as sa

from registry.codes import TASK_ROLE_ORDER
from registry.errors import Issue
from registry.models import CareTeamAssignment, Region, TeamMember
from registry.validation import MEMBER_REGION_LEVELS

MEMBER_COLUMNS = ("member_id", "name", "role", "phone", "region_code")
TASK_ROLES = tuple(r.value for r in TASK_ROLE_ORDER)  # the roles a task may require (rules.md §6)
UNASSIGNED_LABEL = "未指定"  # a required role without a responsible member (rules.md §6.1)


# ------------------------------------------------------------------------------------ Python


def serves_patient(member_region: str | None, village_code: str | None, township_code: str | None) -> bool:
    """本村或本乡镇成员 The member (serving ``member_region``) serves the patient's village
    ``village_code`` or its township ``township_code`` (rules.md §6: the team defaults to the members
    serving the patient's village and township; §6.1: the team is named from them). A member stored at
    county level (before ``NOT_TOWNSHIP_OR_VILLAGE``), of another township or of the township's other
    villages does not."""
    return member_region is not None and member_region in (village_code, township_code)


def check_member_serves(member_id: str | None, member_region: str | None, village_code: str | None,
                        township_code: str | None, patient_id: str | None = None) -> list[Issue]:
    """指派范围校验 A care-team assignment (rules.md §6.1) names a member of the patient's village or
    township (``serves_patient``) on every channel — ``care_team.csv``, the patient page, the API —
    else ``MEMBER_OUT_OF_SCOPE`` on ``member_id``. A member of another township would be made
    responsible for (and, linked to an account, would see) a patient outside their own area (rules.md
    §8). Unknown members (``member_region`` None for lack of a row) are ``UNKNOWN_MEMBER``'s, not this."""
    if not member_id or serves_patient(member_region, village_code, township_code):
        return []
    who = f"患者 {patient_id} " if patient_id else "患者"
    where = f"村(社区) {village_code}" + (f" 或其乡镇(街道) {township_code}" if township_code else "")
    return [Issue("MEMBER_OUT_OF_SCOPE", f"团队成员 {member_id} 服务的地区是 {member_region or '（空）'}，不是{who}所在的"
                  f"{where}；只能指派服务本村或本乡镇的成员", column="member_id", value=member_id)]


def valid_on(assignment: Any, on: date) -> bool:
    """有效指派 The assignment covers ``on`` (``from_on`` ≤ on ≤ ``to_on``, open when ``to_on`` is None)."""
    return assignment.from_on <= on and (assignment.to_on is None or on <= assignment.to_on)


def care_team(assignments: Iterable[Any], members: Iterable[Any], village_code: str, township_code: str | None,
              on: date) -> list:
    """个案管理团队 One patient's team on ``on``: its ``assignments`` valid that day (rows with
    ``MEMBER_COLUMNS`` plus ``from_on``/``to_on``), and for every role without one the ``members``
    of that role serving ``village_code`` or ``township_code``; by member_id, each member once."""
    current = [a for a in assignments if valid_on(a, on)]
    covered = {a.role for a in current}
    regional = [m for m in members if serves_patient(m.region_code, village_code, township_code) and m.role not in covered]
    seen: dict[str, Any] = {}
    for m in sorted(current + regional, key=lambda m: m.member_id):
        seen.setdefault(m.member_id, m)
    return list(seen.values())


def responsible_member(role: str, on: date, assignments: Iterable[Any], members: Iterable[Any], village_code: str,
                       township_code: str | None) -> str | None:
    """责任人 The member_id responsible for ``role`` on ``on`` (rules.md §6.1): the patient's valid
    assignment for the role (latest ``from_on``, then lowest member_id), else the village's primary,
    else the township's primary (lowest member_id), else None (未指定)."""
    valid = [a for a in assignments if a.role == role and valid_on(a, on)]
    if valid:
        latest = max(a.from_on for a in valid)
        return min(a.member_id for a in valid if a.from_on == latest)
    for region in (village_code, township_code):
        primaries = [m.member_id for m in members if m.role == role and m.primary and region is not None
                     and m.region_code == region]
        if primaries:
            return min(primaries)
    return None


def required(roles: str | Iterable[str]) -> tuple[str, ...]:
    """The task roles (of ``TASK_ROLES``) in a task's ``roles`` text or list."""
    wanted = set(roles.split(",") if isinstance(roles, str) else roles)
    return tuple(r for r in TASK_ROLES if r in wanted)


def responsible_members(roles: str | Iterable[str], on: date, assignments: Iterable[Any], members: Iterable[Any],
                        village_code: str, township_code: str | None) -> dict[str, str | None]:
    """责任人 ``{role: member_id or None}`` for each role a task requires (rules.md §6.1)."""
    assignments, members = list(assignments), list(members)
    return {r: responsible_member(r, on, assignments, members, village_code, township_code) for r in required(roles)}


# ------------------------------------------------------------------------------------ SQL twin


def serves_patient_sql(member_region, village_code, township_code) -> sa.ColumnElement:
    """``serves_patient`` in SQL for column expressions (a NULL township matches nothing)."""
    return sa.or_(member_region == village_code, member_region == township_code)


def valid_on_sql(a, on) -> sa.ColumnElement:
    """``valid_on`` in SQL for the assignment table (or alias) ``a`` and a date expression ``on``."""
    return sa.and_(a.c.from_on <= on, sa.or_(a.c.to_on.is_(None), a.c.to_on >= on))


def care_team_select(patients, on) -> sa.Select:
    """``care_team`` in SQL for every patient of ``patients`` (a FROM with ``patient_id`` and
    ``village_code`` columns) on ``on`` (a date or date expression): rows (patient_id, *MEMBER_COLUMNS)
    ordered by patient, member_id."""
    m = TeamMember.__table__
    a = CareTeamAssignment.__table__
    covered = CareTeamAssignment.__table__.alias("ct_covered")
    v = Region.__table__.alias("ct_village")
    on = sa.cast(on, sa.Date) if not isinstance(on, date) else on
    members = [m.c[c] for c in MEMBER_COLUMNS]
    explicit = (
        sa.select(patients.c.patient_id, *members)
        .select_from(patients.join(a, a.c.patient_id == patients.c.patient_id).join(m, m.c.member_id == a.c.member_id))
        .where(valid_on_sql(a, on))
    )
    role_covered = sa.select(covered.c.id).where(covered.c.patient_id == patients.c.patient_id,
                                                 covered.c.role == m.c.role, valid_on_sql(covered, on)).exists()
    regional = (
        sa.select(patients.c.patient_id, *members)
        .select_from(patients.join(v, v.c.code == patients.c.village_code)
                     .join(m, serves_patient_sql(m.c.region_code, patients.c.village_code, v.c.parent_code)))
        .where(sa.not_(role_covered))
    )
    both = sa.union(explicit, regional).subquery("care_team")
    return sa.select(*both.c).order_by(both.c.patient_id, both.c.member_id)


def responsible_member_sql(role: str, *, patient_id, village_code, on) -> sa.ColumnElement:
    """``responsible_member`` in SQL: a scalar expression (member_id or NULL) for column expressions
    ``patient_id``, ``village_code`` and the date ``on`` (a task's ``due_on``). Correlated, so one
    query covers any set of tasks."""
    a = CareTeamAssignment.__table__.alias("rm_assignment")
    m = TeamMember.__table__.alias("rm_member")
    r = Region.__table__.alias("rm_village")
    assigned = (sa.select(a.c.member_id)
                .where(a.c.patient_id == patient_id, a.c.role == role, valid_on_sql(a, on))
                .order_by(a.c.from_on.desc(), a.c.member_id).limit(1).scalar_subquery())
    village_primary = (sa.select(m.c.member_id)
                       .where(m.c.role == role, m.c.primary.is_(True), m.c.region_code == village_code)
                       .order_by(m.c.member_id).limit(1).scalar_subquery())
    township_primary = (sa.select(m.c.member_id).select_from(m.join(r, r.c.parent_code == m.c.region_code))
                        .where(r.c.code == village_code, m.c.role == role, m.c.primary.is_(True))
                        .order_by(m.c.member_id).limit(1).scalar_subquery())
    return sa.func.coalesce(assigned, village_primary, township_primary)


def role_required_sql(roles, role: str) -> sa.ColumnElement:
    """The task's comma-joined ``roles`` text names ``role``."""
    return ("," + roles + ",").contains("," + role + ",")


def responsible_columns(*, roles, patient_id, village_code, on) -> dict[str, sa.ColumnElement]:
    """``responsible_members`` in SQL: ``{role: member_id expression}`` for each of ``TASK_ROLES``,
    NULL where the task (its ``roles`` text column) does not require the role."""
    return {role: sa.case((role_required_sql(roles, role),
                           responsible_member_sql(role, patient_id=patient_id, village_code=village_code, on=on)),
                          else_=sa.null()).label(f"responsible_{role}")
            for role in TASK_ROLES}


# ------------------------------------------------------------------------------------ members of no township


def members_outside_townships_select(on) -> sa.Select:
    """不属乡镇或村的成员 The stored members whose region served is neither a township nor a village —
    stored before the import refused it (contract.md ``team_members.csv``: the township or village
    served; ``validation.check_member_region``, ``NOT_TOWNSHIP_OR_VILLAGE``): rows (member_id, name,
    role, region_code, level, the count of their assignments valid on ``on``) by member_id.

    The rules above never make such a member (say one stored at county level) a township's team
    member or primary: they match the patient's village and its township only. A dated assignment
    made before (every path now refuses a new one, ``check_member_serves``) still makes them that
    patient's responsible member — it was someone's explicit choice, so it is reported (the import
    summary, ``ImportResult.warnings``), not dropped."""
    m, r, a = TeamMember.__table__, Region.__table__, CareTeamAssignment.__table__
    assigned = (sa.select(sa.func.count()).where(a.c.member_id == m.c.member_id, valid_on_sql(a, on))
                .scalar_subquery())
    return (sa.select(m.c.member_id, m.c.name, m.c.role, m.c.region_code, r.c.level, assigned.label("assigned"))
            .select_from(m.outerjoin(r, r.c.code == m.c.region_code))
            .where(sa.or_(r.c.level.is_(None), r.c.level.not_in(MEMBER_REGION_LEVELS)))
            .order_by(m.c.member_id))
