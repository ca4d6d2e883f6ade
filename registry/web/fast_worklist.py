"""快速工作清单 A fresh work list on PostgreSQL in one statement (issue 17: the province's work lists).

``queries.worklist`` (the generic path: SQLite, list roles) reads a page in five queries through the
ORM and shapes it with ORM objects. Here the same page — the rows in work-list order with their
patients and, for joint visits, the responsible member of each required role besides the doctor
(rules.md §6.1); the total and overdue counts; the health checks owed per village; the member filter's
choices — comes from one statement returning JSON, shaped by lean Python into the identical dict
(tests/test_web_fast.py compares both paths).

The statement is built from the generic path's own pieces (``queries.open_tasks_where``,
``worklist_filters``, ``worklist_order``, ``member_options_select``; the scope's region clause;
``registry.care_team``'s responsible-member SQL), compiled once per shape — the scope's region level,
which filters are given, the member's role, the sort, whether there is a horizon — with every
value a parameter, and kept for the process. The scope's open tasks are read once (a CTE) for the
rows, the counts and the health-check section; the responsible members are looked up only for the
page's joint rows.

Only full-record roles (doctor, county admin) take this path (``WebContext.worklist``); list roles'
membership is the generic path's SQL.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from registry.care_team import TASK_ROLES, responsible_member_sql, role_required_sql
from registry.codes import TaskKind
from registry.models import Patient, TeamMember, VisitTask
from registry.regions import LiveRegionTree
from registry.web import queries
from registry.web.fast import Statement, _Raw
from registry.web.scopes import Scope

Member = namedtuple("Member", "member_id name phone")
CALL_ROLES = tuple(r for r in TASK_ROLES if r != "doctor")  # the roles a joint visit's row names (rules.md §6.1)
_DIALECT = postgresql.psycopg.dialect()
_KIND_LABELS = {k.value: k.label for k in TaskKind}


def _param(name: str, type_) -> sa.BindParameter:
    return sa.bindparam(name, type_=type_)


def build(scope: Scope, *, horizon: bool, village: bool, kind: bool, member: bool, member_role: str | None, sort: str,
          apart: bool) -> sa.Select:
    """The page's statement for a shape: every value a ``wl_*`` parameter (``params``)."""
    t = VisitTask.__table__
    as_of, week_end = _param("wl_as_of", sa.Date), _param("wl_week_end", sa.Date)
    filters = queries.worklist_filters(
        scope, village=_param("wl_village", sa.String) if village else None, kind=_param("wl_kind", sa.String) if kind else None,
        member=_param("wl_member", sa.String) if member else None, member_role=member_role,
        exclude_kind=queries.HEALTH_CHECK if apart and not kind else None)
    where = queries.open_tasks_where(scope, as_of=as_of, horizon_end=_param("wl_horizon_end", sa.Date) if horizon else None,
                                     region=_param("wl_region", sa.String))
    checks = apart and not kind
    if not checks:  # no health-check section: the kind clause narrows the scan itself
        where.append(filters[0])
    # the scope's open tasks (with the filters besides the kind): the rows, the counts and the section
    base = (sa.select(t.c.id, t.c.patient_id, t.c.kind, t.c.due_on, t.c.roles, t.c.joint, t.c.rule, t.c.risk_level,
                      Patient.name, Patient.village_code, filters[0].label("in_rows"))
            .select_from(t.join(Patient, Patient.patient_id == t.c.patient_id)).where(*where, *filters[1:]).cte("wl_base"))
    order = queries.worklist_order(base.c, as_of=as_of, week_end=week_end, sort=sort)
    page = (sa.select(base.c.patient_id, base.c.name, base.c.village_code, base.c.kind, base.c.due_on, base.c.risk_level,
                      base.c.roles, base.c.joint, base.c.rule, sa.func.row_number().over(order_by=order).label("n"))
            .where(base.c.in_rows).order_by(*order)
            .limit(_param("wl_limit", sa.Integer)).offset(_param("wl_offset", sa.Integer)).subquery("wl_page"))
    # rules.md §6.1: the responsible member of each required role besides the doctor, joint visits only
    chosen = (sa.select(*page.c, *[sa.case((sa.and_(page.c.joint, role_required_sql(page.c.roles, role)),
                                            responsible_member_sql(role, patient_id=page.c.patient_id,
                                                                   village_code=page.c.village_code, on=page.c.due_on)))
                                   .label(f"rm_{role}") for role in CALL_ROLES]).subquery("wl_chosen"))
    m = TeamMember.__table__.alias("wl_member")
    people = sa.case((chosen.c.joint, sa.func.json_build_object(*[part for role in CALL_ROLES for part in (
        sa.literal(role), sa.select(sa.func.json_build_array(m.c.member_id, m.c.name, m.c.phone))
        .where(m.c.member_id == chosen.c[f"rm_{role}"]).scalar_subquery())])))
    rows = sa.select(sa.func.json_agg(postgresql.aggregate_order_by(sa.func.json_build_array(
        chosen.c.patient_id, chosen.c.name, chosen.c.village_code, chosen.c.kind, chosen.c.due_on, chosen.c.risk_level,
        chosen.c.roles, chosen.c.joint, chosen.c.rule, people), chosen.c.n))).scalar_subquery()
    late = sa.case((base.c.due_on < as_of, 1), else_=0)
    total = sa.select(sa.func.count()).where(base.c.in_rows).scalar_subquery()
    overdue = sa.select(sa.func.coalesce(sa.func.sum(late), 0)).where(base.c.in_rows).scalar_subquery()
    columns = [rows, total, overdue]
    if checks:
        per_village = (sa.select(base.c.village_code, sa.func.count().label("n"), sa.func.sum(late).label("late"))
                       .where(base.c.kind == queries.HEALTH_CHECK).group_by(base.c.village_code).subquery("wl_checks"))
        columns.append(sa.select(sa.func.json_agg(sa.func.json_build_array(*per_village.c))).scalar_subquery())
    if apart:  # the filter choices (their order: the subquery's, the only thing at its level)
        codes = _param("wl_codes", postgresql.ARRAY(sa.String))
        members = queries.member_options_select(TeamMember.__table__.c.region_code == sa.any_(codes)).subquery("wl_options")
        columns.append(sa.select(sa.func.json_agg(sa.func.json_build_array(*members.c))).scalar_subquery())
    return sa.select(*columns)


class _Compiled:
    """A shape's statement as PostgreSQL text (``fast.Statement``) and its constant parameters."""

    def __init__(self, stmt: sa.Select):
        compiled = stmt.compile(dialect=_DIALECT)
        self.statement = Statement(compiled.string)
        self.constants = {k: v for k, v in compiled.params.items() if not k.startswith("wl_")}


_SHAPES: dict[tuple, _Compiled] = {}
_SHAPES_LOCK = threading.Lock()


def _compiled(scope: Scope, **shape) -> _Compiled:
    key = (scope.region_level, tuple(sorted(shape.items())))
    hit = _SHAPES.get(key)
    if hit is None:
        hit = _Compiled(build(scope, **shape))
        with _SHAPES_LOCK:
            _SHAPES[key] = hit
    return hit


def worklist(engine, scope: Scope, tree: LiveRegionTree, *, as_of: date, horizon_days: int | None = queries.WORKLIST_HORIZON_DAYS,
             limit: int | None = None, offset: int = 0, village: str | None = None, kind: str | None = None,
             member: str | None = None, sort: str = "", health_checks_apart: bool = False) -> dict:
    """今日工作清单（快速） ``queries.worklist`` in one statement (two with a member filter: its role first);
    the same arguments, the same dict."""
    if not scope.full_record:
        raise ValueError("the one-statement work list is for the full-record roles")
    village, kind, member = village or None, kind or None, member or None
    week_end = as_of + timedelta(days=queries.WORKLIST_HORIZON_DAYS)
    with _Raw(engine) as conn:
        member_role = None
        if member is not None:
            member_role = conn.execute("SELECT role FROM team_member WHERE member_id = %s", (member,)).fetchone()
            member_role = member_role[0] if member_role else None
        shape = _compiled(scope, horizon=horizon_days is not None, village=village is not None, kind=kind is not None,
                          member=member is not None, member_role=member_role, sort=sort, apart=health_checks_apart)
        params = {**shape.constants, "wl_as_of": as_of, "wl_week_end": week_end, "wl_region": scope.user.region_code,
                  "wl_horizon_end": as_of + timedelta(days=horizon_days) if horizon_days is not None else None,
                  "wl_village": village, "wl_kind": kind, "wl_member": member, "wl_limit": limit, "wl_offset": offset,
                  "wl_codes": sorted(scope.region_codes) if health_checks_apart else None}
        result = shape.statement.run(conn, params).fetchone()
    return shaped(result, scope, tree, as_of=as_of, week_end=week_end, offset=offset, kind=kind,
                  health_checks_apart=health_checks_apart)


_ROLE_LABELS: dict[str, tuple[list[str], list[str]]] = {}


def _roles(text: str) -> tuple[list[str], list[str]]:
    """A task's roles and their labels (new lists per row)."""
    hit = _ROLE_LABELS.get(text)
    if hit is None:
        roles = text.split(",")
        hit = _ROLE_LABELS[text] = (roles, [queries.role_label(r) for r in roles])
    return list(hit[0]), list(hit[1])


def shaped(result, scope: Scope, tree: LiveRegionTree, *, as_of: date, week_end: date, offset: int, kind: str | None,
           health_checks_apart: bool) -> dict:
    """The statement's row shaped as ``queries.worklist`` shapes its page."""
    week = week_end.isoformat()
    villages: dict[str, str] = {}
    rows = []
    for patient_id, name, village_code, task_kind, due, risk, role_text, joint, rule, chosen in result[0] or ():
        due_on = date.fromisoformat(due)
        late = as_of > due_on
        roles, labels = _roles(role_text)
        village = villages.get(village_code)
        if village is None:
            village = villages[village_code] = tree.name(village_code)
        call = []
        if joint:  # rules.md §6.1: the named responsible person per required role besides the doctor (未指定 without one)
            for r in roles:
                if r != "doctor":
                    m = chosen.get(r)
                    call.append(queries.person_view(r, Member(*m) if m else None))
        kind_label = _KIND_LABELS.get(task_kind)
        rows.append({
            "patient_id": patient_id, "name": name, "village": village, "village_code": village_code, "kind": task_kind,
            "kind_label": kind_label if kind_label is not None else queries.label(TaskKind, task_kind),
            "due_on": due, "overdue": late, "days_overdue": (as_of - due_on).days if late else 0,
            "this_week": due <= week, "risk_level": risk, "roles": roles, "role_labels": labels, "joint": bool(joint),
            "call": call, "rule": rule,
        })
    out = {"as_of": as_of.isoformat(), "total": int(result[1]), "overdue": int(result[2] or 0), "offset": offset,
           "rows": rows}
    column = 3
    if health_checks_apart and not kind:
        out["health_checks"] = queries.health_check_view(tree, result[column] or ())
        column += 1
    if health_checks_apart:
        out["options"] = queries.options_view(scope, tree, result[column] or ())
    return out
