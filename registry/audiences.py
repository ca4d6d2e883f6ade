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
* civil affairs (民政; 帮扶救助单, rules.md §7.5 [2026-12: minimum necessary], §8): exactly the
  patients of list 5 — 贫困, no guardian (``registry.teams.has_guardian``), or a 以奖代补 guardian-year
  (``registry.models.GuardianYear``) for the current year (``today.year``). Rehabilitation is a
  column on the list, no longer a reason (issue 14: civil affairs saw 93 % of its township), and an
  open task requiring civil affairs adds nobody: the profile requires civil affairs only for 贫困 or
  no guardian (``registry.teams.civil_affairs_required``), patients already on list 5.

Attempts count on or after registration and not after today (rules.md §5 order: date, then entry
order). ``on_police_list`` / ``on_civil_affairs_list`` are the per-patient rules (``patient_facts``
reads a patient's attempts); ``police_patient_ids`` / ``civil_affairs_patient_ids`` the SQL twins
(``registry.web.scopes``). The 风险预警单's own reasons (``risk_warning_reasons``) use the same
profile threshold. tests/test_team_rules.py checks the twins agree on random rows.

A list account linked to its team member works from its own patients (rules.md §6.1 [2026-12]):
``own_patient_ids`` — the patients whose open task requiring the member's role names the member as
responsible (on the task's due date), plus those the member is responsible for today (its
assignment, or the region's primary; registry.care_team). The scopes intersect it with the lists.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

import sqlalchemy as sa

from registry.attempts import latest_complete, latest_first, rank_sql, usable_sql
from registry.care_team import responsible_member_sql, role_required_sql
from registry.codes import Classification, EconomicStatus, TaskStatus, TeamRole
from registry.models import FollowUp, GuardianYear, Patient, VisitTask
from registry.periods import add_months
from registry.profile import RoleRules
from registry.rules import classification_of, classification_sql, complete_sql, incident_sql, is_incident
from registry.teams import has_guardian_sql, incident_cutoff, police_required, police_sql

REHABILITATION_LOOKBACK_MONTHS = 12  # 社区康复 in the last 12 months puts a patient on the 帮扶救助单 audience


# ------------------------------------------------------------------------------------ Python


def patient_facts(attempts: Iterable[Any], registered_on: date, today: date, rules: RoleRules) -> dict:
    """一历事实 What the audience rules read of one patient's follow-ups (objects with FollowUp's
    attribute names): latest complete risk and classification, a recent 肇事/肇祸, 失访 at the
    latest attempt, rehabilitation in the last ``REHABILITATION_LOOKBACK_MONTHS``."""
    usable = latest_first(attempts, registered_on, today)
    latest = latest_complete(usable, registered_on, today)
    cutoff = incident_cutoff(rules, today)
    rehab_since = add_months(today, -REHABILITATION_LOOKBACK_MONTHS)
    return {
        "latest_risk": latest.risk_level if latest is not None else None,
        "latest_class": classification_of(latest) if latest is not None else None,
        "incident": any(a.visit_on >= cutoff and is_incident(a.incidents_disturbance, a.incidents_crime) for a in usable),
        "lost": bool(usable) and usable[0].lost_reason is not None,
        "rehabilitation": any(a.visit_on >= rehab_since and a.rehabilitation for a in usable),
    }


def incident_count(attempts: Iterable[Any], registered_on: date, today: date, rules: RoleRules) -> int:
    """肇事肇祸次数 The 肇事 and 肇祸 counted on the follow-ups the police rule reads (``patient_facts``'
    ``incident``: usable attempts dated on or after ``teams.incident_cutoff``, the profile's
    ``police_incident_lookback_months`` up to today; rules.md §6, §7.3): the patient page's
    风险预警单 field. Positive exactly when ``patient_facts`` finds an ``incident``."""
    cutoff = incident_cutoff(rules, today)
    return sum((a.incidents_disturbance or 0) + (a.incidents_crime or 0)
               for a in latest_first(attempts, registered_on, today) if a.visit_on >= cutoff)


def incident_label(rules: RoleRules) -> str:
    """The Chinese name of ``incident_count``: 近N个月肇事/肇祸, N the profile's lookback."""
    return f"近{rules.police_incident_lookback_months}个月肇事/肇祸"


def on_police_list(rules: RoleRules, *, latest_risk: int | None, latest_class: int | None, incident: bool,
                   lost: bool, police_task: bool) -> bool:
    """民警名单 The patient is on a police list (rules.md §6, §7.2–3, §8)."""
    return police_task or police_required(rules, latest_risk=latest_risk, latest_class=latest_class,
                                          incident=incident, locate=lost)


def on_civil_affairs_list(*, poor: bool, has_guardian: bool, guardian_year: bool) -> bool:
    """民政名单 The patient is on the 帮扶救助单, the civil-affairs list (rules.md §7.5 [2026-12], §8): 贫困,
    no guardian, or a 以奖代补 guardian-year for the current year."""
    return bool(poor or not has_guardian or guardian_year)


def assistance_reasons(*, poor: bool, has_guardian: bool, guardian_year: bool) -> list[str]:
    """帮扶原因 Why the patient is on the 帮扶救助单 (rules.md §7.5), in the rule's order; empty: not on it."""
    reasons = []
    if poor:
        reasons.append("贫困")
    if not has_guardian:
        reasons.append("无监护人")
    if guardian_year:
        reasons.append("以奖代补")
    return reasons


def risk_warning_reasons(rules: RoleRules, *, latest_risk: int | None, latest_class: int | None,
                         new_incident: bool, locate_task: bool, overdue_visit: bool,
                         emergency: bool = False, joint_missing: str | None = None) -> list[str]:
    """风险预警单 Why a patient is on the 风险预警单 (rules.md §7.3): risk at or above the profile's
    police threshold at the latest complete follow-up, a new 肇事/肇祸 (the week before), an open
    locate (失访) task, 不稳定 with a visit overdue, an emergency of the week (rules.md §9, the
    week before), the latest joint task closed 联合未到位 (§6.2; ``joint_missing``: its missing roles
    in Chinese, None when not). Empty: not on the list."""
    reasons = []
    if latest_risk is not None and latest_risk >= rules.police_min_risk:
        reasons.append(f"最近危险性{latest_risk}级")
    if new_incident:
        reasons.append("上周新发肇事/肇祸")
    if locate_task:
        reasons.append("失访")
    if latest_class == Classification.UNSTABLE and overdue_visit:
        reasons.append("不稳定且随访逾期")
    if emergency:
        reasons.append("上周应急处置")
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
    complete_ranked = (
        sa.select(f.c.patient_id, f.c.risk_level, classification_sql(f).label("cls"),
                  rank_sql(f).label("rn"))
        .select_from(joined).where(where, complete_sql(f)).subquery("latest_complete")
    )
    attempt_ranked = (
        sa.select(f.c.patient_id, f.c.lost_reason,
                  rank_sql(f).label("rn"))
        .select_from(joined).where(where).subquery("latest_attempt")
    )
    lc, la = complete_ranked.c, attempt_ranked.c
    parts = [
        sa.select(lc.patient_id).where(lc.rn == 1, police_sql(rules, latest_risk=lc.risk_level, latest_class=lc.cls,
                                                              incident=sa.false(), locate=sa.false())),
        sa.select(f.c.patient_id).select_from(joined).where(where, f.c.visit_on >= incident_cutoff(rules, today), incident_sql(f)),
        _open_tasks_with_role(TeamRole.POLICE.value, among),
    ]
    if rules.police_on_locate:
        parts.append(sa.select(la.patient_id).where(la.rn == 1, la.lost_reason.is_not(None)))
    return sa.union(*parts)


def civil_affairs_patient_ids(rules: RoleRules, today: date, among) -> sa.Select:
    """民政名单 patient_ids (of ``among``) on the 帮扶救助单: ``on_civil_affairs_list`` in SQL (``rules``
    is not read: list 5 is not a profile rule; kept so every audience has one signature)."""
    p, g = Patient.__table__, GuardianYear.__table__
    return sa.select(p.c.patient_id).where(
        p.c.patient_id.in_(among),
        sa.or_(p.c.economic_status == EconomicStatus.POOR.value,
               sa.not_(has_guardian_sql(p.c.guardian_name)),
               p.c.patient_id.in_(sa.select(g.c.patient_id).where(g.c.year == today.year))),
    )


def own_patient_ids(member_id: str, role: str, today: date, among) -> sa.CompoundSelect:
    """本人负责的患者 patient_ids (of ``among``) a linked account's member (in team ``role``) is responsible
    for (rules.md §6.1): on an open task requiring the role, or today."""
    t = VisitTask.__table__
    p = Patient.__table__
    on_task = (sa.select(t.c.patient_id).select_from(t.join(p, p.c.patient_id == t.c.patient_id))
               .where(t.c.status == TaskStatus.OPEN.value, t.c.patient_id.in_(among), role_required_sql(t.c.roles, role),
                      responsible_member_sql(role, patient_id=t.c.patient_id, village_code=p.c.village_code,
                                             on=t.c.due_on) == member_id))
    today_ = sa.select(p.c.patient_id).where(
        p.c.patient_id.in_(among),
        responsible_member_sql(role, patient_id=p.c.patient_id, village_code=p.c.village_code, on=today) == member_id)
    return sa.union(on_task, today_)
