"""查询 Read models for pages and API: work list, 一历 (patient record), search, audit.

Every function takes a :class:`~registry.web.scopes.Scope` and returns plain dicts shaped
for the caller's role (rules.md §8: police / civil affairs never get diagnosis,
medication or an unmasked ID). Queries are set-based: one query per kind of row.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from types import SimpleNamespace

from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from registry import codes, ids
from registry.accounts import UserRole
from registry.models import AuditLog, FollowUp, FollowUpParticipant, HealthCheck, Injection, Patient
from registry.rules import classification_of, is_complete
from registry.attempts import latest_first_sql
from registry.audiences import REHABILITATION_LOOKBACK_MONTHS, incident_count, incident_label
from registry.care_team import (UNASSIGNED_LABEL, care_team_select, responsible_columns, responsible_member_sql,
                                 role_required_sql)
from registry.codes import TaskKind, TaskStatus
from registry.models import TeamMember, VisitTask
from registry.periods import add_months
from registry.profile import RoleRules, current_profile
from registry.regions import LiveRegionTree
from registry.web.scopes import Scope

WORKLIST_HORIZON_DAYS = 7  # 随访任务单: due in the next 7 days and overdue (rules.md §7.1)


def label(enum_cls, value) -> str:
    """编码名称 The Chinese label of a coded value (blank when unknown)."""
    if value is None or value == "":
        return ""
    try:
        return enum_cls(value).label
    except ValueError:
        return str(value)


def role_label(role: str) -> str:
    """角色名称 The Chinese label of a care-team role or of the guardian (``codes.TeamRole``, ``codes.FamilyRole``)."""
    for enum_cls in (codes.TeamRole, codes.FamilyRole):
        try:
            return enum_cls(role).label
        except ValueError:
            continue
    return str(role)


def age_on(birth: date, today: date) -> int:
    """年龄 Age in whole years on a date."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


# ---------------------------------------------------------------- tasks

def worklist_sort_key(task: dict, as_of: date | None = None):
    """排序 The work-list order as a Python key (the SQL in ``_worklist_rows`` is the one used):
    this week's visits first — overdue or due within 7 days of ``as_of`` (issue 16, "the week
    first"; rules.md §7.1's horizon) —, then overdue first (issue 4), then rules.md §5: risk level
    desc, days overdue desc, due date."""
    risk = task.get("risk_level")
    later = as_of is not None and str(task.get("due_on")) > (as_of + timedelta(days=WORKLIST_HORIZON_DAYS)).isoformat()
    return (
        1 if later else 0,
        0 if task.get("overdue") else 1,
        -(risk if risk is not None else -1),
        -(task.get("days_overdue") or 0),
        str(task.get("due_on")),
        str(task.get("patient_id")),
    )


WORKLIST_SORTS = {"": "优先级", "due": "到期日", "village": "村(社区)"}  # each after the week first
HEALTH_CHECK = TaskKind.HEALTH_CHECK.value


def worklist(engine, scope: Scope, tree: LiveRegionTree, *, as_of: date, horizon_days: int | None = WORKLIST_HORIZON_DAYS,
             limit: int | None = None, offset: int = 0, village: str | None = None, kind: str | None = None,
             member: str | None = None, sort: str = "", health_checks_apart: bool = False) -> dict:
    """今日工作清单 Tasks in the user's scope: this week's first (overdue or due within 7 days), then later.

    Joint visits carry the responsible member to call for every required role besides the doctor
    (rules.md §6.1: named, with phone; "未指定" where nobody is responsible).
    The page needs only the first ``limit`` rows, so the filter, the order and the limit
    run in SQL on the scheduler's ``visit_task`` table (the same rows as
    ``schedules.worklist.open_tasks``: open, basis on or before ``as_of``, in the region).

    Filters (issue 16): ``village`` (a village code), ``kind`` (a TaskKind), ``member`` (a team
    member's id: the tasks that member is responsible for, rules.md §6.1); ``sort`` one of ``WORKLIST_SORTS`` (after the week first). ``health_checks_apart``: the
    health checks owed en masse leave the rows and come as their own section, counted per
    village (``data["health_checks"]``), so the week's visits are not buried under them.
    """
    week_end = as_of + timedelta(days=WORKLIST_HORIZON_DAYS)
    horizon_end = as_of + timedelta(days=horizon_days) if horizon_days is not None else None
    with Session(engine) as session:
        member_role = member_role_of(session, member) if member else None
        filters = worklist_filters(scope, village=village or None, kind=kind or None, member=member or None,
                                   member_role=member_role,
                                   exclude_kind=HEALTH_CHECK if health_checks_apart and not kind else None)
        (total, overdue), tasks, patients = _worklist_rows(session, scope, as_of=as_of, week_end=week_end,
                                                           horizon_end=horizon_end, limit=limit, offset=offset,
                                                           filters=filters, sort=sort)
        people = responsible_people(session, tasks)
        checks = (_health_check_section(session, scope, tree, as_of=as_of, horizon_end=horizon_end,
                                        more_filters=filters[1:])
                  if health_checks_apart and not kind else None)
    rows = []
    for t in tasks:
        p = patients[t["patient_id"]]
        roles = list(t.get("roles") or [])
        # rules.md §6.1: the named responsible person per required role besides the doctor (未指定 without one)
        call = [people[t["task_id"]][r] for r in roles if r != "doctor"] if t["joint"] else []
        rows.append({
            "patient_id": p.patient_id,
            "name": p.name,
            "village": tree.name(p.village_code),
            "village_code": p.village_code,
            "kind": t["kind"],
            "kind_label": label(TaskKind, t["kind"]),
            "due_on": str(t["due_on"]),
            "overdue": bool(t.get("overdue")),
            "days_overdue": int(t.get("days_overdue") or 0),
            "this_week": str(t["due_on"]) <= week_end.isoformat(),
            "risk_level": t.get("risk_level"),
            "roles": roles,
            "role_labels": [role_label(r) for r in roles],
            "joint": bool(t.get("joint")),
            "call": call,
            "rule": t.get("rule"),
        })
    out = {"as_of": as_of.isoformat(), "total": total, "overdue": overdue, "offset": offset,
           "rows": [task_fields(scope, r) for r in rows]}
    if checks is not None:
        out["health_checks"] = checks
    if health_checks_apart:  # the page's filter choices, cached with the page
        out["options"] = worklist_options(engine, scope, tree)
    return out


def worklist_options(engine, scope: Scope, tree: LiveRegionTree) -> dict:
    """筛选项 The work-list filter choices in the scope: villages, task kinds, team members."""
    m = TeamMember.__table__
    with engine.connect() as conn:
        members = conn.execute(member_options_select(m.c.region_code.in_(sorted(scope.region_codes)))).all()
    return options_view(scope, tree, members)


def member_options_select(in_region) -> sa.Select:
    """The team members of the scope's regions (``in_region``: a clause on ``team_member.region_code``) for the
    member filter: (member_id, name, role) by role, name, member_id."""
    m = TeamMember.__table__
    return sa.select(m.c.member_id, m.c.name, m.c.role).where(in_region).order_by(m.c.role, m.c.name, m.c.member_id)


def options_view(scope: Scope, tree: LiveRegionTree, members) -> dict:
    """筛选项 The filter choices from the scope's villages (the region tree) and ``members`` (rows of
    ``member_options_select``: member_id, name, role)."""
    villages = sorted(c for c in scope.region_codes if tree.level(c) == "village")
    return {"villages": [(c, tree.name(c)) for c in villages],
            "kinds": list(KIND_OPTIONS),
            "members": [(member_id, f"{name}（{role_label(role)}）") for member_id, name, role in members if role != "doctor"],
            "sorts": list(WORKLIST_SORTS.items())}


KIND_OPTIONS = tuple((k.value, k.label) for k in TaskKind)


def member_role_of(session_or_conn, member: str) -> str | None:
    """The team role of member ``member`` (None when there is no such member): the member filter's role."""
    m = TeamMember.__table__
    return session_or_conn.execute(sa.select(m.c.role).where(m.c.member_id == member)).scalar()


def worklist_filters(scope: Scope, *, village, kind, member, member_role: str | None, exclude_kind: str | None,
                     village_column=None) -> list:
    """The filter clauses on ``visit_task`` joined to ``patient`` (first: the kind clause; the rest apply to
    every section). ``village``, ``kind``, ``member``: values or bind parameters (None: no filter);
    ``member_role``: the member's role (``member_role_of``; None for an unknown member: no rows)."""
    t = VisitTask.__table__
    village_column = Patient.village_code if village_column is None else village_column
    kind_clause = [t.c.kind == kind] if kind is not None else ([t.c.kind != exclude_kind] if exclude_kind else [])
    out: list = [sa.and_(sa.true(), *kind_clause)]
    if village is not None:
        out.append(village_column == village)
    if member is not None:
        if member_role is None:
            out.append(sa.false())
        else:
            # rules.md §6.1: the tasks this member is responsible for (registry.care_team)
            out.append(role_required_sql(t.c.roles, member_role))
            out.append(responsible_member_sql(member_role, patient_id=t.c.patient_id, village_code=village_column,
                                              on=t.c.due_on) == member)
    return out


def open_tasks_where(scope: Scope, *, as_of, horizon_end, region=None) -> list:
    """The scope's open tasks on ``as_of`` due by ``horizon_end`` (None: any date), as the work list counts
    them (the rows ``schedules.worklist.open_tasks`` gives): clauses on ``visit_task`` joined to ``patient``.
    ``region``: see ``Scope.patient_clause``."""
    t = VisitTask.__table__
    where = [t.c.status == TaskStatus.OPEN.value, t.c.basis_on <= as_of, scope.patient_clause(region)]
    if horizon_end is not None:
        where.append(t.c.due_on <= horizon_end)
    return where


def worklist_order(cols, *, as_of, week_end, sort: str) -> list:
    """排序 The work-list order (``worklist_sort_key`` in Python) on columns ``cols`` (``due_on``,
    ``risk_level``, ``patient_id``, ``kind``, ``village_code``): the week first (issue 16, due by
    ``week_end``); then issue 4: overdue first; then rules.md §5: risk desc (unknown last), days
    overdue desc, due date (a chosen ``sort`` replaces the last three)."""
    later = sa.case((cols.due_on < as_of, 0), else_=1)  # 0 = overdue, sorts first
    after_week = sa.case((cols.due_on <= week_end, 0), else_=1)
    by = {"due": [cols.due_on], "village": [cols.village_code, cols.due_on]}.get(sort, [])
    return [after_week, *(by or [later, sa.func.coalesce(cols.risk_level, -1).desc()]), cols.due_on, cols.patient_id,
            cols.kind]


def _health_check_section(session: Session, scope: Scope, tree: LiveRegionTree, *, as_of: date, horizon_end: date | None,
                          more_filters: list) -> dict:
    """健康体检（集中） The health checks owed, counted: total, overdue, per village (most first)."""
    t = VisitTask.__table__
    where = [*open_tasks_where(scope, as_of=as_of, horizon_end=horizon_end), t.c.kind == HEALTH_CHECK, *more_filters]
    overdue = sa.case((t.c.due_on < as_of, 1), else_=0)
    rows = session.execute(
        sa.select(Patient.village_code, sa.func.count(), sa.func.sum(overdue))
        .select_from(t.join(Patient, Patient.patient_id == t.c.patient_id)).where(*where)
        .group_by(Patient.village_code)).all()
    return health_check_view(tree, rows)


def health_check_view(tree: LiveRegionTree, rows) -> dict:
    """健康体检（集中） The section from (village_code, count, overdue count) rows."""
    villages = sorted(({"village_code": code, "village": tree.name(code), "total": int(n), "overdue": int(late or 0)}
                       for code, n, late in rows), key=lambda v: (-v["total"], v["village_code"]))
    return {"total": sum(v["total"] for v in villages), "overdue": sum(v["overdue"] for v in villages), "villages": villages}


def _worklist_rows(session: Session, scope: Scope, *, as_of: date, week_end: date, horizon_end: date | None,
                   limit: int | None, offset: int = 0, filters: list | None = None, sort: str = ""):
    """(total, first ``limit`` task dicts in work-list order, their patients) for the scope."""
    t = VisitTask.__table__
    where = [*open_tasks_where(scope, as_of=as_of, horizon_end=horizon_end), *(filters or [])]
    if not scope.full_record:  # list roles: only the visits they take part in (rules.md §6, §6.1)
        where.append(scope.task_clause(t))
    joined = t.join(Patient, Patient.patient_id == t.c.patient_id)
    later = sa.case((t.c.due_on < as_of, 0), else_=1)  # 0 = overdue
    cols = SimpleNamespace(due_on=t.c.due_on, risk_level=t.c.risk_level, patient_id=t.c.patient_id, kind=t.c.kind,
                           village_code=Patient.village_code)
    # one pass: narrow task rows with the totals as window aggregates; the patients are fetched
    # afterwards for the page's rows only
    stmt = (
        sa.select(t.c.patient_id, t.c.kind, t.c.due_on, t.c.roles, t.c.joint, t.c.rule, t.c.risk_level, t.c.id,
                  sa.func.count().over().label("total"), sa.func.sum(1 - later).over().label("overdue_total"))
        .select_from(joined).where(*where)
        .order_by(*worklist_order(cols, as_of=as_of, week_end=week_end, sort=sort))
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    tasks = []
    total = overdue_total = None
    for row in session.execute(stmt):
        total, overdue_total = row.total, row.overdue_total
        overdue = as_of > row.due_on
        tasks.append({"patient_id": row.patient_id, "kind": row.kind, "due_on": row.due_on.isoformat(), "overdue": overdue,
                      "days_overdue": (as_of - row.due_on).days if overdue else 0, "roles": row.roles.split(","),
                      "joint": bool(row.joint), "rule": row.rule, "risk_level": row.risk_level, "task_id": row.id})
    if total is None:  # an empty page (or none at all): count without the rows
        total, overdue_total = session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(1 - later), 0)).select_from(joined).where(*where)).one()
    pids = sorted({task["patient_id"] for task in tasks})
    patients = {p.patient_id: p for p in session.exec(select(Patient).where(Patient.patient_id.in_(pids)))} if pids else {}
    return (int(total), int(overdue_total or 0)), tasks, patients


def patient_tasks(session: Session, patient_id: str, *, as_of: date) -> list[dict]:
    """患者待办 One patient's open tasks (the rows ``schedules.worklist.open_tasks`` gives for them), each
    with its responsible person per required role (rules.md §6.1)."""
    t = VisitTask.__table__
    rows = session.execute(sa.select(t.c.id, t.c.kind, t.c.due_on, t.c.roles, t.c.joint, t.c.rule, t.c.risk_level).where(
        t.c.patient_id == patient_id, t.c.status == TaskStatus.OPEN.value, t.c.basis_on <= as_of).order_by(t.c.due_on, t.c.kind)).all()
    people = responsible_people(session, [{"task_id": r.id} for r in rows])
    return [task_view(patient_id, r.kind, r.due_on, r.roles, r.joint, r.rule, r.risk_level, as_of=as_of,
                      people=list(people.get(r.id, {}).values())) for r in rows]


# A task's fields a list account does not read (rules.md §7–§8, minimum necessary): ``rule`` names the clause
# that set the due date — the patient's classification (不稳定, 基本稳定), a hospital stay (住院) or the doctor's
# own date — which is on none of their lists; civil affairs' lists (联合入户单, 帮扶救助单) carry no risk level.
LIST_TASK_HIDDEN = {"rule"}
CIVIL_AFFAIRS_TASK_HIDDEN = LIST_TASK_HIDDEN | {"risk_level"}


def task_fields(scope: Scope, task: dict) -> dict:
    """任务字段 A task (work-list row or patient-page task) with only the fields the caller's lists need:
    everything for doctors and county admins; no ``rule`` for list accounts, and no ``risk_level`` for
    civil affairs (rules.md §7.2, §7.5, §8)."""
    if scope.full_record:
        return task
    hidden = CIVIL_AFFAIRS_TASK_HIDDEN if scope.role == UserRole.CIVIL_AFFAIRS.value else LIST_TASK_HIDDEN
    return {k: v for k, v in task.items() if k not in hidden}


def task_view(patient_id: str, kind: str, due_on: date, roles: str, joint, rule, risk_level, *, as_of: date,
              people: list[dict] | None = None) -> dict:
    """待办 One open task shaped for the patient page (the ORM and the PostgreSQL fast path share it);
    ``people``: ``person_view`` per required role (rules.md §6.1)."""
    role_list = roles.split(",")
    return {"patient_id": patient_id, "kind": kind, "kind_label": label(TaskKind, kind),
            "due_on": due_on.isoformat(), "overdue": as_of > due_on, "roles": role_list,
            "role_labels": [role_label(x) for x in role_list], "joint": bool(joint), "rule": rule,
            "risk_level": risk_level, "people": people or []}


# ---------------------------------------------------------------- team

def teams_for(session: Session, patients: list[Patient], on: date) -> dict[str, list[dict]]:
    """个案管理团队 Each patient's team on ``on`` (rules.md §6, §6.1; one home: registry.care_team).
    One query for any number of patients."""
    pt = Patient.__table__
    among = sa.select(pt.c.patient_id, pt.c.village_code).where(
        pt.c.patient_id.in_([p.patient_id for p in patients])).subquery("team_patients")
    members: dict[str, list] = {}
    for row in session.execute(care_team_select(among, on)):
        members.setdefault(row.patient_id, []).append(row[1:])
    return team_views(patients, members)


def person_view(role: str, member) -> dict:
    """责任人 One required role's responsible person as shown (rules.md §6.1): name and phone, or
    "未指定" (``member`` None)."""
    if member is None:
        return {"role": role, "role_label": role_label(role), "member_id": None, "name": UNASSIGNED_LABEL, "phone": "",
                "unassigned": True}
    return {"role": role, "role_label": role_label(role), "member_id": member.member_id, "name": member.name,
            "phone": member.phone or "", "unassigned": False}


def responsible_people(session: Session, tasks: list[dict]) -> dict[int, dict[str, dict]]:
    """责任人 ``{task_id: {role: person_view}}`` for each required role of ``tasks`` (dicts with
    ``task_id``), on each task's due date (rules.md §6.1; one home: registry.care_team). Two queries."""
    ids = [t["task_id"] for t in tasks]
    if not ids:
        return {}
    t = VisitTask.__table__
    pt = Patient.__table__
    cols = responsible_columns(roles=t.c.roles, patient_id=t.c.patient_id, village_code=pt.c.village_code, on=t.c.due_on)
    rows = session.execute(sa.select(t.c.id, t.c.roles, *cols.values())
                           .select_from(t.join(pt, pt.c.patient_id == t.c.patient_id)).where(t.c.id.in_(ids))).all()
    wanted = {m for r in rows for m in r[2:] if m is not None}
    m = TeamMember.__table__
    members = {r.member_id: r for r in session.execute(
        sa.select(m.c.member_id, m.c.name, m.c.phone).where(m.c.member_id.in_(sorted(wanted))))} if wanted else {}
    out: dict[int, dict[str, dict]] = {}
    for r in rows:
        chosen = dict(zip(cols, r[2:]))
        out[r.id] = {role: person_view(role, members.get(chosen[role])) for role in r.roles.split(",") if role in chosen}
    return out


def team_views(patients, members: dict[str, list]) -> dict[str, list[dict]]:
    """个案管理团队 The teams as shown: each patient's team rows ``(member_id, name, role, phone,
    region_code)`` (``members[patient_id]``, from registry.care_team) by role then name, then the guardian."""
    order = {r: i for i, r in enumerate(m.value for m in codes.TeamRole)}

    def member(row) -> tuple:
        member_id, name, role, phone = row[0], row[1], row[2], row[3]
        return ((order.get(role, 99), name),
                {"member_id": member_id, "name": name, "role": role, "role_label": role_label(role),
                 "phone": phone or ""})

    out: dict[str, list[dict]] = {}
    for p in patients:
        own = [member(row) for row in members.get(p.patient_id, ())]
        team = [d for _k, d in sorted(own, key=lambda kv: kv[0])]
        if p.guardian_name:
            guardian = codes.FamilyRole.GUARDIAN
            team.append({"member_id": None, "name": p.guardian_name, "role": guardian.value, "role_label": guardian.label,
                         "phone": p.guardian_phone or ""})
        out[p.patient_id] = team
    return out


# ---------------------------------------------------------------- the patient record (一历)

def _medication(text: str | None) -> list[dict] | str:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, list) else text


def follow_up_view(fu: FollowUp, participants: list) -> dict:
    """随访记录 One follow-up shaped for the 一历 timeline (participants: one row per person with ``role``,
    ``member_id``, ``member_name`` and ``attended``, rules.md §6.2)."""
    cls = classification_of(fu)
    return {
        "id": fu.id,
        "visit_on": fu.visit_on.isoformat(),
        "mode": fu.mode, "mode_label": label(codes.FollowUpMode, fu.mode),
        "met_with": fu.met_with,
        "complete": is_complete(fu.lost_reason, fu.risk_level, fu.hospital_status),
        "lost_reason": fu.lost_reason, "lost_reason_label": label(codes.LostReason, fu.lost_reason),
        "risk_level": fu.risk_level,
        "insight_label": label(codes.Insight, fu.insight),
        "symptoms_label": "、".join(label(codes.Symptom, int(s)) for s in (fu.symptoms or "").split(",") if s.strip().isdigit()),
        "symptoms_obvious": fu.symptoms_obvious,
        "hospital_status_label": label(codes.HospitalStatus, fu.hospital_status),
        "adherence": fu.adherence, "adherence_label": label(codes.Adherence, fu.adherence),
        "incidents": {"轻度滋事": fu.incidents_mild, "肇事": fu.incidents_disturbance, "肇祸": fu.incidents_crime,
                      "其他危害行为": fu.incidents_other, "自伤": fu.self_harm, "自杀未遂": fu.suicide_attempt},
        "classification": int(cls) if cls is not None else None,
        "classification_label": cls.label if cls is not None else "",
        "classification_recorded": fu.classification is not None,
        "medication": _medication(fu.medication),
        "advised_medication": _medication(fu.advised_medication),
        "lai": {"drug": fu.lai_drug, "interval_weeks": fu.lai_interval_weeks, "dose": fu.lai_dose} if fu.lai_drug else None,
        "psych_support_patient": fu.psych_support_patient,
        "psych_support_family": fu.psych_support_family,
        "rehabilitation": fu.rehabilitation,
        "rehabilitation_measures": fu.rehabilitation_measures,
        "referral": fu.referral,
        "next_visit_on": fu.next_visit_on.isoformat() if fu.next_visit_on else None,
        "doctor_signature": fu.doctor_signature,
        "participants": [{"role": p.role, "role_label": role_label(p.role), "member_id": p.member_id,
                          "name": p.member_name or "", "attended": p.attended} for p in participants],
    }


def participant_order(fp) -> tuple:
    """The order of a follow-up's attendance rows on both databases: by role, the role's unnamed row
    first, then its members by id (the fast path's SQL says the same)."""
    return (fp.c.follow_up_id, fp.c.role, sa.func.coalesce(fp.c.member_id, ""))


def patient_record(engine, scope: Scope, tree: LiveRegionTree, patient_id: str, *, as_of: date,
                   on_read: Callable[[Connection, Patient], None] | None = None) -> dict:
    """一历 The patient's longitudinal record, shaped for the caller's role (rules.md §7, §8).

    ``on_read(connection, patient)`` runs after the reads in the same transaction, which is then
    committed: the read's audit row (rules.md §8) costs no second connection. ``engine`` may be a
    Session (opened with ``expire_on_commit=False``) that the caller owns and closes.
    """
    own = not isinstance(engine, Session)
    session = Session(engine, expire_on_commit=False) if own else engine
    try:
        p = scope.check_patient(session, patient_id)
        follow_ups = list(session.exec(select(FollowUp).where(FollowUp.patient_id == p.patient_id)
                                       .order_by(*latest_first_sql(FollowUp.__table__))))
        fu_ids = [f.id for f in follow_ups]
        parts: dict[int, list] = {}  # follow_up_id → one row per person (rules.md §6.2)
        if fu_ids:
            fp, tm = FollowUpParticipant.__table__, TeamMember.__table__  # only the columns the view needs
            for row in session.execute(
                    sa.select(fp.c.follow_up_id, fp.c.role, fp.c.attended, fp.c.member_id, tm.c.name.label("member_name"))
                    .select_from(fp.outerjoin(tm, tm.c.member_id == fp.c.member_id))
                    .where(fp.c.follow_up_id.in_(fu_ids)).order_by(*participant_order(fp))):
                parts.setdefault(row.follow_up_id, []).append(row)
        hc = HealthCheck.__table__
        checks = [d.isoformat() for d in session.execute(
            sa.select(hc.c.checked_on).where(hc.c.patient_id == p.patient_id).order_by(hc.c.checked_on.desc())).scalars()]
        team = teams_for(session, [p], as_of)[p.patient_id]
        tasks = patient_tasks(session, p.patient_id, as_of=as_of)
        inj = Injection.__table__
        injections = [injection_view(*r) for r in session.execute(
            sa.select(inj.c.given_on, inj.c.drug, inj.c.dose).where(inj.c.patient_id == p.patient_id).order_by(inj.c.given_on.desc()))]
        if on_read is not None:
            on_read(session.connection(), p)
            session.commit()
    finally:
        if own:
            session.close()
    return shape_record(scope, tree, p, follow_ups, parts, checks, team, tasks, as_of=as_of, injections=injections)


def injection_view(given_on: date, drug: str | None, dose: str | None) -> dict:
    """注射记录 One injection of the LAI history as the record shows it."""
    return {"given_on": given_on.isoformat(), "drug": drug or "", "dose": dose or ""}


def shape_record(scope: Scope, tree: LiveRegionTree, p, follow_ups: list, parts: dict, checks: list[str], team: list[dict],
                 tasks: list[dict], *, as_of: date, injections: list[dict] = ()) -> dict:
    """一历 The record from its read rows, shaped for the caller's role (rules.md §7, §8).

    ``p`` and ``follow_ups`` are Patient / FollowUp objects or objects with the same attributes
    (the PostgreSQL fast path, ``registry.web.fast``); ``parts`` maps follow-up id → participant
    rows (``role``, ``attended``, ``member_id``, ``member_name``: one per person); follow-ups newest first. Every role gets the identity block,
    its tasks and the team; then police get the 风险预警单 fields, civil affairs the 帮扶救助单
    fields, doctors and county admins the full record.
    """
    views = [follow_up_view(f, parts.get(f.id, [])) for f in follow_ups]
    record = identity_fields(scope, tree, p, as_of=as_of)
    # list roles see only the tasks they take part in, with only their lists' fields
    record["tasks"] = [task_fields(scope, t) for t in tasks if scope.takes_part(t)]
    record["team"] = team
    if scope.role == UserRole.CIVIL_AFFAIRS.value:
        record.update(civil_affairs_fields(p, views, follow_ups, scope.role, as_of=as_of, member=_member_of(scope)))
    elif not scope.full_record:  # police, 综治, 村(社区): the 风险预警单 fields (never diagnosis or medication)
        record.update(police_fields(views, follow_ups, scope.role, as_of=as_of, registered_on=p.registered_on,
                                    member=_member_of(scope)))
    else:
        record.update(full_record_fields(p, views, follow_ups, checks, as_of=as_of))
        record["injections"] = list(injections)  # the LAI history, newest first (doctors and county admins)
    return record


def identity_fields(scope: Scope, tree: LiveRegionTree, p, *, as_of: date) -> dict:
    """身份信息 Who and where the patient is: what every role sees (the ID number masked unless the
    caller is the township doctor, rules.md §8)."""
    return {
        "patient_id": p.patient_id,
        "name": p.name,
        "sex_label": label(codes.Sex, p.sex),
        "age": age_on(p.birth_date, as_of),
        "id_number": (p.id_number or "") if scope.sees_unmasked_id else ids.mask(p.id_number),
        "id_masked": not scope.sees_unmasked_id,
        "village_code": p.village_code,
        "village": tree.name(p.village_code),
        "township": tree.name(tree.township_of(p.village_code)),
        "address": p.address or "",
        "phone": p.phone or "",
        "guardian_name": p.guardian_name or "",
        "guardian_phone": p.guardian_phone or "",
        "status": p.status,
        "status_label": label(codes.PatientStatus, p.status),
        "status_on": p.status_on.isoformat() if p.status_on else None,
    }


def _latest_complete(views: list[dict]) -> dict | None:
    """The newest complete follow-up's view (views newest first), or None."""
    return next((v for v in views if v["complete"]), None)


def _rehabilitation_12m(follow_ups: list, as_of: date) -> bool:
    """社区康复 Community rehabilitation recorded on a follow-up in the 12 months up to ``as_of``
    (``registry.audiences.REHABILITATION_LOOKBACK_MONTHS``)."""
    since = add_months(as_of, -REHABILITATION_LOOKBACK_MONTHS)
    return any(f.rehabilitation for f in follow_ups if since <= f.visit_on <= as_of)


def _member_of(scope: Scope) -> str | None:
    return getattr(scope.user, "member_id", None) or None


def police_fields(views: list[dict], follow_ups: list, role: str, *, as_of: date, registered_on: date,
                  member: str | None = None, rules: RoleRules | None = None) -> dict:
    """风险预警单 The police's list fields only (rules.md §7.3): no diagnosis, no medication. The
    肇事/肇祸 count and its label follow the profile's police lookback (``registry.audiences``;
    ``rules``: the selected profile's by default)."""
    rules = rules or current_profile().roles
    latest_complete = _latest_complete(views)
    return {
        "risk_level": latest_complete["risk_level"] if latest_complete else None,
        "last_visit_on": views[0]["visit_on"] if views else None,
        "lost": bool(views and views[0]["lost_reason"] is not None),
        "incidents": incident_count(follow_ups, registered_on, as_of, rules),
        "incidents_label": incident_label(rules),
        "joint_visits": _joint_visits(views, role, member),
    }


def civil_affairs_fields(p, views: list[dict], follow_ups: list, role: str, *, as_of: date, member: str | None = None) -> dict:
    """帮扶救助单 Civil affairs' list fields only (rules.md §7.5)."""
    return {
        "economic_status_label": label(codes.EconomicStatus, p.economic_status),
        "guardian_reward": p.guardian_reward,
        "rehabilitation": _rehabilitation_12m(follow_ups, as_of),
        "joint_visits": _joint_visits(views, role, member),
    }


def supplement_fields(p) -> dict:
    """个人信息补充表 The supplement's fields as the record shows them (codes with their Chinese labels)."""
    return {
        "guardian_relation": p.guardian_relation or "",
        "guardian_address": p.guardian_address or "",
        "village_contact": p.village_contact or "",
        "village_contact_phone": p.village_contact_phone or "",
        "household_type": p.household_type,
        "household_type_label": label(codes.HouseholdType, p.household_type),
        "employment": p.employment,
        "employment_label": label(codes.Employment, p.employment),
        "first_onset_on": p.first_onset_on.isoformat() if p.first_onset_on else None,
        "past_lockup": p.past_lockup,
        "past_lockup_label": label(codes.PastLockup, p.past_lockup),
        "outpatient_treatment": p.outpatient_treatment,
        "outpatient_treatment_label": label(codes.OutpatientTreatment, p.outpatient_treatment),
        "admissions": p.admissions,
        "diagnosing_hospital": p.diagnosing_hospital or "",
    }


def full_record_fields(p, views: list[dict], follow_ups: list, checks: list[str], *, as_of: date) -> dict:
    """一历 The full record for doctors and county admins: registration, diagnosis, the LAI plan, the
    follow-up timeline, the risk history, health checks and assistance (rules.md §7)."""
    latest_complete = _latest_complete(views)
    risk_history = [{"visit_on": v["visit_on"], "risk_level": v["risk_level"], "classification_label": v["classification_label"]}
                    for v in reversed(views) if v["complete"]]
    return {
        "birth_date": p.birth_date.isoformat(),
        "diagnosis": p.diagnosis,
        "diagnosis_label": label(codes.Diagnosis, p.diagnosis),
        "diagnosed_on": p.diagnosed_on.isoformat() if p.diagnosed_on else None,
        "registered_on": p.registered_on.isoformat(),
        "report_type_label": label(codes.ReportType, p.report_type),
        "consent_label": label(codes.Consent, p.consent),
        "economic_status_label": label(codes.EconomicStatus, p.economic_status),
        "guardian_reward": p.guardian_reward,
        "status_detail": p.status_detail or "",
        "lai_plan": {"drug": p.lai_drug, "interval_weeks": p.lai_interval_weeks, "last_on": p.lai_last_on.isoformat()
                     if p.lai_last_on else None, "dose": p.lai_dose} if p.lai_drug else None,
        "follow_ups": views,
        "risk_history": risk_history,
        "latest_classification_label": latest_complete["classification_label"] if latest_complete else "",
        "latest_risk_level": latest_complete["risk_level"] if latest_complete else None,
        "health_checks": checks,
        "supplement": supplement_fields(p),
        "assistance": {
            "economic_status_label": label(codes.EconomicStatus, p.economic_status),
            "guardian_reward": p.guardian_reward,
            "psych_support": sum(1 for f in follow_ups if f.psych_support_patient or f.psych_support_family),
            "rehabilitation": _rehabilitation_12m(follow_ups, as_of),
        },
    }


def _joint_visits(views: list[dict], role: str, member: str | None = None) -> list[dict]:
    """Follow-ups with a participant row for ``role`` (the joint visits this user's department takes
    part in), each with the user's own row (rules.md §6.2, per person): ``member``'s, or for an
    account linked to no member the role's unnamed row; ``recorded`` False when there is none."""
    out = []
    for v in views:
        rows = [p for p in v["participants"] if p["role"] == role]
        if rows:
            mine = [p for p in rows if (p.get("member_id") or None) == member]
            out.append({"follow_up_id": v["id"], "visit_on": v["visit_on"], "recorded": bool(mine),
                        "attended": bool(mine and mine[0]["attended"])})
    return out


# ---------------------------------------------------------------- search and lists

def search_patients(engine, scope: Scope, tree: LiveRegionTree, q: str, *, limit: int = 50) -> list[dict]:
    """患者检索 By patient number, name (substring) or full ID number, within scope."""
    q = q.strip()
    clause = scope.patient_clause()
    with Session(engine) as session:
        stmt = select(Patient).where(clause)
        if q:
            stmt = stmt.where(sa.or_(Patient.patient_id == q, Patient.name.contains(q, autoescape=True), Patient.id_number == q.upper()))
        stmt = stmt.order_by(Patient.patient_id).limit(limit)
        rows = list(session.exec(stmt))
    return [brief(p, scope, tree) for p in rows]


def brief(p: Patient, scope: Scope, tree: LiveRegionTree) -> dict:
    """患者摘要 One search/list row (diagnosis only for full-record roles)."""
    return {
        "patient_id": p.patient_id,
        "name": p.name,
        "sex_label": label(codes.Sex, p.sex),
        "age": age_on(p.birth_date, scope.today),
        "village": tree.name(p.village_code),
        "id_number": ids.mask(p.id_number),
        "status_label": label(codes.PatientStatus, p.status),
        **({"diagnosis_label": label(codes.Diagnosis, p.diagnosis)} if scope.full_record else {}),
    }


def audit_rows(engine, scope: Scope, *, limit: int = 200, actor: str | None = None, action: str | None = None) -> list[dict]:
    """审计日志 Latest audit rows for the admin's region (rows without a region are shown too)."""
    with Session(engine) as session:
        stmt = select(AuditLog).where(sa.or_(AuditLog.region_code.is_(None), AuditLog.region_code.in_(sorted(scope.region_codes))))
        if actor:
            stmt = stmt.where(AuditLog.actor == actor)
        if action:
            stmt = stmt.where(AuditLog.action == action)
        rows = session.exec(stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(limit)).all()
    from registry.config import LOCAL_TZ

    return [{"id": r.id, "at": r.at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S"), "actor": r.actor, "action": r.action,
             "action_label": AUDIT_ACTION_LABELS.get(r.action, r.action),
             "object_type": r.object_type, "object_label": AUDIT_OBJECT_LABELS.get(r.object_type, r.object_type),
             "object_id": r.object_id, "region_code": r.region_code, "detail": r.detail, "detail_text": audit_detail_text(r.detail),
             "source": r.source, "source_label": AUDIT_SOURCE_LABELS.get(r.source or "", r.source or "")} for r in rows]


# 审计日志 What the audit page prints for the stored codes (issue 16: Chinese on the page; the
# codes stay in the table).
AUDIT_ACTION_LABELS = {"read": "查看", "search": "检索", "export": "导出", "write": "录入", "login": "登录",
                       "logout": "退出", "import": "导入", "sign_in": "签到回录",
                       "import_change": "导入改动身份信息", "account": "账号管理", "refused": "拒绝访问"}
AUDIT_OBJECT_LABELS = {
    "patient": "患者", "follow_up": "随访", "follow_up_participant": "随访参与人", "health_check": "体检",
    "injection": "长效针剂注射", "import": "导入", "list": "清单", "lists": "五单", "five_lists": "五单",
    "monthly_report": "月报", "rates": "指标", "session": "登录会话", "webhook": "通知地址", "worklist": "任务清单",
    "patient_history": "变更记录", "patient_transfer": "迁出/迁入",  # issue 13
    "list_archive": "五单存档", "list_row": "五单存档行",
    "emergency": "应急处置",
    "register": "登记数据",  # jingfang export, /export (issue 13)
    # the rest the code writes (the walk found them in English on the page; test_web_links checks all are here)
    "alerts": "实时预警", "appointment": "联合入户预约", "appointment_reply": "预约答复", "care_team": "团队指派",
    "guardian_reward": "以奖代补", "guardian_year": "以奖代补年度", "joint_incomplete": "联合未到位名单",
    "ledger": "肇事肇祸台账", "request": "页面请求", "tasks": "任务", "user": "账号",
}
AUDIT_SOURCE_LABELS = {"cli": "命令行", "demo": "演示", "scheduler": "调度服务", "api": "接口", "web": "网页"}


def audit_detail_text(detail: str | None) -> str:
    """A detail as a person reads it: the 五单 counts stored as JSON become '随访任务单 6，……'."""
    if not detail or not detail.startswith("{"):
        return detail or ""
    try:
        counts = json.loads(detail)
    except ValueError:
        return detail
    if not isinstance(counts, dict):
        return detail
    from schedules.lists import LISTS

    titles = {row[1]: row[2] for row in LISTS}
    return "，".join(f"{titles.get(k, k)} {v}" for k, v in counts.items())


# ---------------------------------------------------------------- gaps (rules.md §6.1)

GAP_ROWS = 500  # rows shown; the counts cover every gap


def team_gaps(engine, scope: Scope, tree: LiveRegionTree, *, as_of: date, limit: int = GAP_ROWS) -> dict:
    """缺位清单 Open tasks whose required role has no responsible member (rules.md §6.1: "未指定",
    counted on the township's gap list): counts per role and the rows (patient, village, task, due
    date, missing roles), for doctors and county admins. One set-based query (registry.care_team)."""
    scope.require_role(UserRole.TOWNSHIP_DOCTOR.value, UserRole.COUNTY_ADMIN.value)
    t = VisitTask.__table__
    pt = Patient.__table__
    cols = responsible_columns(roles=t.c.roles, patient_id=t.c.patient_id, village_code=pt.c.village_code, on=t.c.due_on)
    inner = (sa.select(t.c.id, t.c.patient_id, t.c.kind, t.c.due_on, t.c.roles, pt.c.name, pt.c.village_code, *cols.values())
             .select_from(t.join(pt, pt.c.patient_id == t.c.patient_id))
             .where(t.c.status == TaskStatus.OPEN.value, t.c.basis_on <= as_of, scope.patient_clause())
             .subquery("gap_tasks"))
    missing = {role: sa.and_(role_required_sql(inner.c.roles, role), inner.c[f"responsible_{role}"].is_(None))
               for role in cols}
    with Session(engine) as session:
        rows = session.execute(sa.select(inner).where(sa.or_(*missing.values()))
                               .order_by(inner.c.due_on, inner.c.patient_id, inner.c.kind)).all()
    counts = {role: 0 for role in cols}
    out = []
    for r in rows:
        roles = r.roles.split(",")
        gone = [role for role in cols if role in roles and getattr(r, f"responsible_{role}") is None]
        for role in gone:
            counts[role] += 1
        if len(out) < limit:
            out.append({"patient_id": r.patient_id, "name": r.name, "village": tree.name(r.village_code),
                        "kind": r.kind, "kind_label": label(TaskKind, r.kind), "due_on": r.due_on.isoformat(),
                        "overdue": as_of > r.due_on, "missing": gone, "missing_labels": [role_label(x) for x in gone]})
    return {"as_of": as_of.isoformat(), "total": len(rows),
            "counts": [{"role": role, "role_label": role_label(role), "count": n} for role, n in counts.items()],
            "rows": out}


SELF_ATTENDANCE_DAYS = 30  # the follow-ups of the last 30 days on the attendee's own page [decision]


def my_attendance(engine, scope: Scope, tree: LiveRegionTree, *, as_of: date, days: int = SELF_ATTENDANCE_DAYS,
                  limit: int = 200) -> dict:
    """我的联合入户 The joint visits of the last ``days`` days on which this police / civil-affairs /
    village account records its own attendance (rules.md §6.2; ``Scope.attendance_clause``): the
    patient's name and village, the visit's date and mode, the task's outcome and the account's own
    row (到场 / 未到场 with the reason, who recorded it). Never a diagnosis or medication (rules.md §8).
    One set-based query."""
    from registry.web.scopes import TASK_ROLE_OF

    role = TASK_ROLE_OF.get(scope.role)
    if role is None:
        from registry.errors import PermissionDenied

        raise PermissionDenied("本人到场登记仅限民警、民政专干和村(社区)人员", code="ROLE_FORBIDDEN")
    t, pt, f, fp = VisitTask.__table__, Patient.__table__, FollowUp.__table__, FollowUpParticipant.__table__
    member = _member_of(scope)  # the account's own row (per person): its member's, else the role's unnamed row
    own = fp.c.member_id == member if member else fp.c.member_id.is_(None)
    query = (sa.select(t.c.id.label("task_id"), t.c.kind, t.c.due_on, t.c.joint_outcome, t.c.missing_roles,
                       pt.c.patient_id, pt.c.name, pt.c.village_code, f.c.id.label("follow_up_id"), f.c.visit_on, f.c.mode,
                       fp.c.attended, fp.c.reason, fp.c.source)
             .select_from(t.join(pt, pt.c.patient_id == t.c.patient_id).join(f, f.c.id == t.c.closed_by)
                          .outerjoin(fp, sa.and_(fp.c.follow_up_id == f.c.id, fp.c.role == role, own)))
             .where(scope.attendance_clause(t, pt.c.village_code), f.c.visit_on >= as_of - timedelta(days=days),
                    f.c.visit_on <= as_of)
             .order_by(f.c.visit_on.desc(), f.c.id.desc(), t.c.id))
    with Session(engine) as session:
        rows = session.execute(query).all()
    out, seen = [], set()
    for r in rows:
        if r.follow_up_id in seen:  # one follow-up may close more than one task: one row per follow-up
            continue
        seen.add(r.follow_up_id)
        out.append({"follow_up_id": r.follow_up_id, "patient_id": r.patient_id, "name": r.name,
                    "village": tree.name(r.village_code), "visit_on": r.visit_on.isoformat(),
                    "mode_label": label(codes.FollowUpMode, r.mode), "kind_label": label(TaskKind, r.kind),
                    "outcome_label": label(codes.JointOutcome, r.joint_outcome) if r.joint_outcome else "",
                    "recorded": r.source is not None, "attended": bool(r.attended), "reason": r.reason or "",
                    "source": r.source or "", "source_label": label(codes.AttendanceSource, r.source) if r.source else "未登记"})
    return {"as_of": as_of.isoformat(), "days": days, "role": role, "role_label": role_label(role),
            "total": len(out), "rows": out[:limit]}
