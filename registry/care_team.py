"""个案管理团队 The care team of a patient (rules.md §6), in Python and in SQL, side by side.

A patient's team is its explicit assignments (``care_team_assignment``); a patient without any gets
the members serving its village and its township (the village's parent region). Members come in
member_id order. ``care_team`` is the per-patient rule; ``care_team_select`` the same rule
set-based for any set of patients (the web's patient page and work list, the fast PostgreSQL
path, the 五单). tests/test_team_rules.py checks that both agree on random rows. The guardian
(监护人) is shown with the team by the pages (``registry.web.queries.team_views``).
"""

from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa

from registry.models import CareTeamAssignment, Region, TeamMember

MEMBER_COLUMNS = ("member_id", "name", "role", "phone", "region_code")


def care_team(explicit: Iterable[Any], members: Iterable[Any], village_code: str, township_code: str | None) -> list:
    """个案管理团队 One patient's team: its ``explicit`` assignment rows if any, else the ``members``
    serving ``village_code`` or ``township_code``; rows with ``MEMBER_COLUMNS`` attributes, by member_id."""
    own = list(explicit)
    if not own:
        own = [m for m in members if m.region_code in (village_code, township_code)]
    return sorted(own, key=lambda m: m.member_id)


def care_team_select(patients) -> sa.Select:
    """``care_team`` in SQL for every patient of ``patients`` (a FROM with ``patient_id`` and
    ``village_code`` columns): rows (patient_id, *MEMBER_COLUMNS) ordered by patient, member_id."""
    m = TeamMember.__table__
    a = CareTeamAssignment.__table__
    v = Region.__table__.alias("ct_village")
    members = [m.c[c] for c in MEMBER_COLUMNS]
    explicit = (
        sa.select(patients.c.patient_id, *members)
        .select_from(patients.join(a, a.c.patient_id == patients.c.patient_id).join(m, m.c.member_id == a.c.member_id))
    )
    assigned = sa.select(a.c.patient_id).where(a.c.patient_id == patients.c.patient_id).exists()
    regional = (
        sa.select(patients.c.patient_id, *members)
        .select_from(patients.join(v, v.c.code == patients.c.village_code)
                     .join(m, sa.or_(m.c.region_code == patients.c.village_code, m.c.region_code == v.c.parent_code)))
        .where(sa.not_(assigned))
    )
    both = sa.union_all(explicit, regional).subquery("care_team")
    return sa.select(*both.c).order_by(both.c.patient_id, both.c.member_id)
