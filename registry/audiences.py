"""名单受众 Who a police or civil-affairs user may see (rules.md §6, §7, §8), in Python and SQL.

A police or civil-affairs user sees only the patients on their lists (rules.md §8). Both lists
follow the rule profile's ``roles`` section, the same rule that puts police and civil affairs on
the tasks (``registry.teams``): a county profile that changes the police rule changes who the
police may see in the same release.

* police (民警; 联合入户单 and 风险预警单, rules.md §6, §7.2–3): police would be required on the
  patient's visit (``registry.teams.police_required``: the latest complete follow-up's risk or
  classification, a 肇事/肇祸 within the profile's lookback up to today), or the latest attempt did
  not reach the patient (失访, when the profile sends police on locate tasks), or an open task
  requires police.
* civil affairs (民政; 联合入户单 and 帮扶救助单, rules.md §6, §7.5): civil affairs would be required
  (``registry.teams.civil_affairs_required``: 贫困, no guardian), or a 以奖代补 guardian reward, or
  community rehabilitation recorded in the last ``REHABILITATION_LOOKBACK_MONTHS``, or an open task
  requires civil affairs.

Attempts count on or after registration and not after today (rules.md §5 order: date, then entry
order). ``on_police_list`` / ``on_civil_affairs_list`` are the per-patient rules (``patient_facts``
reads a patient's attempts); ``police_patient_ids`` / ``civil_affairs_patient_ids`` the SQL twins
(``registry.web.scopes``). The 风险预警单's own reasons (``risk_warning_reasons``) use the same
profile threshold. tests/test_team_rules.py checks the twins agree on random rows.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

import sqlalchemy as sa

from registry.attempts import rank_sql, usable_sql
from registry.codes import Classification, TaskStatus, TeamRole
from registry.models import FollowUp, Patient, VisitTask
from registry.periods import add_months
from registry.profile import RoleRules
from registry.rules import classification_of, classification_sql, complete_sql, is_complete
from registry.teams import (civil_affairs_required, civil_affairs_sql, has_guardian_sql, incident_cutoff, police_required,
                            police_sql)

REHABILITATION_LOOKBACK_MONTHS = 12  # 社区康复 in the last 12 months puts a patient on the 帮扶救助单 audience


# ------------------------------------------------------------------------------------ Python


def patient_facts(attempts: Iterable[Any], registered_on: date, today: date, rules: RoleRules) -> dict:
    """一历事实 What the audience rules read of one patient's follow-ups (objects with FollowUp's
    attribute names): latest complete risk and classification, a recent 肇事/肇祸, 失访 at the
    latest attempt, rehabilitation in the last ``REHABILITATION_LOOKBACK_MONTHS``."""
    usable = sorted((a for a in attempts if registered_on <= a.visit_on <= today),
                    key=lambda a: (a.visit_on, a.id), reverse=True)
    complete = [a for a in usable if is_complete(a.lost_reason, a.risk_level, a.hospital_status)]
    latest = complete[0] if complete else None
    cutoff = incident_cutoff(rules, today)
    rehab_since = add_months(today, -REHABILITATION_LOOKBACK_MONTHS)
    return {
        "latest_risk": latest.risk_level if latest is not None else None,
        "latest_class": classification_of(latest) if latest is not None else None,
        "incident": any(a.visit_on >= cutoff and ((a.incidents_disturbance or 0) + (a.incidents_crime or 0)) > 0
                        for a in usable),
        "lost": bool(usable) and usable[0].lost_reason is not None,
        "rehabilitation": any(a.visit_on >= rehab_since and a.rehabilitation for a in usable),
    }


def on_police_list(rules: RoleRules, *, latest_risk: int | None, latest_class: int | None, incident: bool,
                   lost: bool, police_task: bool) -> bool:
    """民警名单 The patient is on a police list (rules.md §6, §7.2–3, §8)."""
    return police_task or police_required(rules, latest_risk=latest_risk, latest_class=latest_class,
                                          incident=incident, locate=lost)


def on_civil_affairs_list(rules: RoleRules, *, poor: bool, has_guardian: bool, guardian_reward: bool,
                          rehabilitation: bool, civil_affairs_task: bool) -> bool:
    """民政名单 The patient is on a civil-affairs list (rules.md §6, §7.5, §8)."""
    return bool(civil_affairs_task or guardian_reward or rehabilitation
                or civil_affairs_required(rules, poor=poor, has_guardian=has_guardian))


def risk_warning_reasons(rules: RoleRules, *, latest_risk: int | None, latest_class: int | None,
                         new_incident: bool, locate_task: bool, overdue_visit: bool,
                         joint_missing: str | None = None) -> list[str]:
    """风险预警单 Why a patient is on the 风险预警单 (rules.md §7.3): risk at or above the profile's
    police threshold at the latest complete follow-up, a new 肇事/肇祸 (the week before), an open
    locate (失访) task, 不稳定 with a visit overdue, the latest joint task closed 联合未到位 (§6.2;
    ``joint_missing``: its missing roles in Chinese, None when not). Empty: not on the list."""
    reasons = []
    if latest_risk is not None and latest_risk >= rules.police_min_risk:
        reasons.append(f"最近危险性{latest_risk}级")
    if new_incident:
        reasons.append("上周新发肇事/肇祸")
    if locate_task:
        reasons.append("失访")
    if latest_class == Classification.UNSTABLE and overdue_visit:
        reasons.append("不稳定且随访逾期")
    if joint_missing is not None:
        reasons.append(f"联合未到位（未到：{joint_missing}）" if joint_missing else "联合未到位")
    return reasons


# ------------------------------------------------------------------------------------ SQL twin


def _usable(among, today: date):
    """The follow-ups of ``among`` (a select of patient_ids) on or after registration, not after today."""
    f = FollowUp.__table__
    p = Patient.__table__
    return f, (f.join(p, p.c.patient_id == f.c.patient_id),
               sa.and_(f.c.patient_id.in_(among), usable_sql(f, p, today)))


def _open_tasks_with_role(role: str, among):
    """patient_ids (of ``among``) with an open scheduler task requiring ``role``."""
    t = VisitTask.__table__
    return sa.select(t.c.patient_id).where(t.c.roles.contains(role), t.c.patient_id.in_(among),
                                           t.c.status == TaskStatus.OPEN.value)


def police_patient_ids(rules: RoleRules, today: date, among) -> sa.CompoundSelect:
    """民警名单 patient_ids (of ``among``) on a police list: ``on_police_list`` in SQL."""
    f, (joined, where) = _usable(among, today)
    latest_complete = (
        sa.select(f.c.patient_id, f.c.risk_level, classification_sql(f).label("cls"),
                  rank_sql(f).label("rn"))
        .select_from(joined).where(where, complete_sql(f)).subquery("latest_complete")
    )
    latest_attempt = (
        sa.select(f.c.patient_id, f.c.lost_reason,
                  rank_sql(f).label("rn"))
        .select_from(joined).where(where).subquery("latest_attempt")
    )
    lc, la = latest_complete.c, latest_attempt.c
    incident = (sa.func.coalesce(f.c.incidents_disturbance, 0) + sa.func.coalesce(f.c.incidents_crime, 0)) > 0
    parts = [
        sa.select(lc.patient_id).where(lc.rn == 1, police_sql(rules, latest_risk=lc.risk_level, latest_class=lc.cls,
                                                              incident=sa.false(), locate=sa.false())),
        sa.select(f.c.patient_id).select_from(joined).where(where, f.c.visit_on >= incident_cutoff(rules, today), incident),
        _open_tasks_with_role(TeamRole.POLICE.value, among),
    ]
    if rules.police_on_locate:
        parts.append(sa.select(la.patient_id).where(la.rn == 1, la.lost_reason.is_not(None)))
    return sa.union(*parts)


def civil_affairs_patient_ids(rules: RoleRules, today: date, among) -> sa.CompoundSelect:
    """民政名单 patient_ids (of ``among``) on a civil-affairs list: ``on_civil_affairs_list`` in SQL."""
    p = Patient.__table__
    f, (joined, where) = _usable(among, today)
    return sa.union(
        sa.select(p.c.patient_id).where(
            p.c.patient_id.in_(among),
            sa.or_(civil_affairs_sql(rules, has_guardian=has_guardian_sql(p.c.guardian_name),
                                     economic_status=p.c.economic_status),
                   p.c.guardian_reward.is_(True)),
        ),
        sa.select(f.c.patient_id).select_from(joined).where(
            where, f.c.rehabilitation.is_(True), f.c.visit_on >= add_months(today, -REHABILITATION_LOOKBACK_MONTHS)),
        _open_tasks_with_role(TeamRole.CIVIL_AFFAIRS.value, among),
    )
