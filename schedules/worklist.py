"""工作清单 Open tasks as of a date, for a region and everything below it (rules.md §5 sorting).

Sorted by risk level (desc; unknown last), days overdue (desc), due date, then patient and kind.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.care_team import TASK_ROLES, responsible_columns
from registry.codes import TaskStatus
from registry.errors import NotFound
from registry.models import Patient, Region, TeamMember
from registry.regions import region_subtree
from registry.models import VisitTask

CONTRACT_KEYS = ("patient_id", "kind", "due_on", "overdue", "roles", "joint", "rule", "members")


def check_region(engine: Engine, code: str) -> None:
    r = Region.__table__
    with engine.connect() as conn:
        if conn.execute(sa.select(r.c.code).where(r.c.code == code)).first() is None:
            raise NotFound(message=f"地区编码“{code[:20]}”不存在", code="REGION_NOT_FOUND")


def sort_key(task: dict):
    """rules.md §5: risk desc, days overdue desc, due date (then patient, kind for a stable order)."""
    risk = task["risk_level"] if task["risk_level"] is not None else -1
    return (-risk, -task["days_overdue"], task["due_on"], task["patient_id"], task["kind"])


def open_tasks(engine: Engine, *, as_of: date, region_code: str | None = None, kinds: tuple[str, ...] | None = None) -> list[dict]:
    """待办任务 Open tasks as of ``as_of`` (tasks whose basis is on or before that date).

    Each dict: the contract JSON keys plus task_id, village_code, township_code, risk_level,
    days_overdue, calendar_estimated, window_start, window_end, basis, people. ``members`` is the
    responsible member_id per required role on the task's due date (rules.md §6.1, contract.md
    [2026-12]; None where none), computed in the same query from registry.care_team's SQL, so it
    follows every assignment change; ``people`` the same with name and phone (or None).
    """
    t = VisitTask.__table__
    p = Patient.__table__
    v = Region.__table__.alias("v")
    stmt = (
        sa.select(
            t.c.id, t.c.patient_id, t.c.kind, t.c.basis, t.c.due_on, t.c.roles, t.c.joint, t.c.rule, t.c.risk_level,
            t.c.calendar_estimated, t.c.window_start, t.c.window_end, p.c.village_code, v.c.parent_code,
            *responsible_columns(roles=t.c.roles, patient_id=t.c.patient_id, village_code=p.c.village_code,
                                 on=t.c.due_on).values(),
        )
        .select_from(t.join(p, p.c.patient_id == t.c.patient_id).join(v, v.c.code == p.c.village_code))
        .where(t.c.status == TaskStatus.OPEN.value, t.c.basis_on <= as_of)
    )
    if kinds:
        stmt = stmt.where(t.c.kind.in_(list(kinds)))
    if region_code:
        check_region(engine, region_code)
        sub = region_subtree(region_code)
        stmt = stmt.where(p.c.village_code.in_(sa.select(sub.c.code)))
    m = TeamMember.__table__
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
        wanted = sorted({getattr(r, f"responsible_{role}") for r in rows for role in TASK_ROLES} - {None})
        info = {}
        for start in range(0, len(wanted), 5000):
            info.update({x.member_id: {"member_id": x.member_id, "name": x.name, "phone": x.phone} for x in conn.execute(
                sa.select(m.c.member_id, m.c.name, m.c.phone).where(m.c.member_id.in_(wanted[start:start + 5000])))})
    tasks = []
    for r in rows:
        days = (as_of - r.due_on).days
        roles = r.roles.split(",")
        members = {role: getattr(r, f"responsible_{role}") for role in TASK_ROLES if role in roles}
        tasks.append({
            "patient_id": r.patient_id,
            "kind": r.kind,
            "due_on": r.due_on.isoformat(),
            "overdue": as_of > r.due_on,
            "roles": roles,
            "joint": bool(r.joint),
            "rule": r.rule,
            "members": members,
            "people": {role: info.get(mid) for role, mid in members.items()},
            "task_id": r.id,
            "basis": r.basis,
            "village_code": r.village_code,
            "township_code": r.parent_code,
            "risk_level": r.risk_level,
            "days_overdue": max(days, 0),
            "calendar_estimated": bool(r.calendar_estimated),
            "window_start": r.window_start.isoformat() if r.window_start else None,
            "window_end": r.window_end.isoformat() if r.window_end else None,
        })
    tasks.sort(key=sort_key)
    return tasks


def contract_json(tasks: list[dict]) -> list[dict]:
    """Only the keys contract.md shows for ``jingfang tasks --json``."""
    return [{k: t[k] for k in CONTRACT_KEYS} for t in tasks]
