"""联合入户角色 The roles a task requires (rules.md §6), in Python and in SQL, side by side.

The rule, parameterised by the rule profile's ``roles`` section (``registry.profile.RoleRules``;
the default profile ``national-2018`` states rules.md §6):

* doctor (精防医生): always; health-check and injection tasks need the doctor only.
* police (民警): the latest complete follow-up has risk ≥ ``police_min_risk`` or a classification in
  ``police_classifications`` (不稳定), or a follow-up dated within ``police_incident_lookback_months``
  up to today counts a 肇事 or 肇祸, or the task is a locate (失访) task (``police_on_locate``).
* village (村(社区)两委/网格员): whenever police is required (``village_when_police``), or the
  patient has no guardian (``village_when_no_guardian``).
* civil_affairs (民政专干): economic status 贫困 (``civil_affairs_when_poor``), or no guardian
  (``civil_affairs_when_no_guardian``).

A task requiring any role besides the doctor is a joint visit (联合入户). ``required_roles`` is the
per-patient rule (``schedules.planning``); ``required_roles_sql`` builds the same rule from column
expressions (``schedules.generation.plan_select``); the web audiences (``registry.audiences``) use
``police_required`` / ``police_sql``. tests/test_team_rules.py checks the twins agree on random rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from registry.codes import TASK_ROLE_ORDER, EconomicStatus, TeamRole
from registry.periods import add_months
from registry.profile import RoleRules

ROLE_ORDER = tuple(r.value for r in TASK_ROLE_ORDER)  # the order of the roles text
DOCTOR_ONLY = (TeamRole.DOCTOR.value,)  # health-check and injection tasks (rules.md §6)


def incident_cutoff(rules: RoleRules, today: date) -> date:
    """肇事肇祸回溯 The first day a 肇事/肇祸 still counts: today minus the lookback months (clamped)."""
    return add_months(today, -rules.police_incident_lookback_months)


def police_required(rules: RoleRules, *, latest_risk: int | None, latest_class: int | None, incident: bool,
                    locate: bool) -> bool:
    """需民警 Police on the task (rules.md §6): ``latest_risk`` / ``latest_class`` of the latest complete
    follow-up (None without one), ``incident`` a 肇事/肇祸 since ``incident_cutoff``, ``locate`` a locate task."""
    return bool(
        (latest_risk is not None and latest_risk >= rules.police_min_risk)
        or incident
        or (latest_class is not None and int(latest_class) in rules.police_classifications)
        or (locate and rules.police_on_locate)
    )


def civil_affairs_required(rules: RoleRules, *, poor: bool, has_guardian: bool) -> bool:
    """需民政 Civil affairs on the task (rules.md §6): 贫困, or no guardian."""
    return bool((poor and rules.civil_affairs_when_poor) or (not has_guardian and rules.civil_affairs_when_no_guardian))


def required_roles(rules: RoleRules, *, latest_risk: int | None, latest_class: int | None, incident: bool,
                   locate: bool, has_guardian: bool, poor: bool) -> tuple[str, ...]:
    """联合入户角色 The roles a visit task requires, in ``ROLE_ORDER`` (rules.md §6)."""
    police = police_required(rules, latest_risk=latest_risk, latest_class=latest_class, incident=incident, locate=locate)
    village = (police and rules.village_when_police) or (not has_guardian and rules.village_when_no_guardian)
    civil = civil_affairs_required(rules, poor=poor, has_guardian=has_guardian)
    wanted = {TeamRole.DOCTOR.value: True, TeamRole.POLICE.value: police, TeamRole.VILLAGE.value: village,
              TeamRole.CIVIL_AFFAIRS.value: civil}
    return tuple(r for r in ROLE_ORDER if wanted[r])


def is_joint(roles) -> bool:
    """联合入户 Any role besides the doctor (rules.md §6)."""
    return any(r != TeamRole.DOCTOR.value for r in roles)


# ------------------------------------------------------------------------------------ SQL twin


def police_sql(rules: RoleRules, *, latest_risk, latest_class, incident, locate) -> sa.ColumnElement:
    """``police_required`` in SQL: ``latest_risk``/``latest_class`` columns (NULL without a complete
    follow-up), ``incident`` and ``locate`` boolean expressions."""
    terms = [latest_risk >= rules.police_min_risk, incident]
    if rules.police_classifications:
        terms.append(latest_class.in_(list(rules.police_classifications)))
    if rules.police_on_locate:
        terms.append(locate)
    return sa.or_(*terms)


@dataclass(frozen=True)
class RoleColumns:
    """The SQL of each required role, the comma-joined ``roles`` text and ``joint``."""

    police: sa.ColumnElement
    village: sa.ColumnElement
    civil_affairs: sa.ColumnElement

    @property
    def roles(self) -> sa.ColumnElement:
        """``doctor[,police][,village][,civil_affairs]`` (the ``visit_task.roles`` text)."""
        return (
            sa.literal(TeamRole.DOCTOR.value)
            + sa.case((self.police, "," + TeamRole.POLICE.value), else_="")
            + sa.case((self.village, "," + TeamRole.VILLAGE.value), else_="")
            + sa.case((self.civil_affairs, "," + TeamRole.CIVIL_AFFAIRS.value), else_="")
        )

    @property
    def joint(self) -> sa.ColumnElement:
        """联合入户 True when any role besides the doctor is required."""
        return sa.case((sa.or_(self.police, self.village, self.civil_affairs), True), else_=False)


def required_roles_sql(rules: RoleRules, *, latest_risk, latest_class, incident, locate, has_guardian,
                       economic_status) -> RoleColumns:
    """``required_roles`` in SQL from column expressions: ``has_guardian`` a boolean expression,
    ``economic_status`` the patient's coded column (贫困 = ``EconomicStatus.POOR``)."""
    police = police_sql(rules, latest_risk=latest_risk, latest_class=latest_class, incident=incident, locate=locate)
    no_guardian = sa.not_(has_guardian)
    village_terms = []
    if rules.village_when_police:
        village_terms.append(police)
    if rules.village_when_no_guardian:
        village_terms.append(no_guardian)
    village = sa.or_(*village_terms) if village_terms else sa.false()
    civil = civil_affairs_sql(rules, has_guardian=has_guardian, economic_status=economic_status)
    return RoleColumns(police=police, village=village, civil_affairs=civil)


def civil_affairs_sql(rules: RoleRules, *, has_guardian, economic_status) -> sa.ColumnElement:
    """``civil_affairs_required`` in SQL (贫困 = ``EconomicStatus.POOR``)."""
    no_guardian = sa.not_(has_guardian)
    terms = []
    if rules.civil_affairs_when_poor:
        terms.append(economic_status == int(EconomicStatus.POOR))
    if rules.civil_affairs_when_no_guardian:
        terms.append(no_guardian)
    return sa.or_(*terms) if terms else sa.false()


def has_guardian_sql(guardian_name) -> sa.ColumnElement:
    """有监护人 A guardian name that is not blank (the Python rule: ``bool((name or "").strip())``)."""
    return sa.and_(guardian_name.is_not(None), sa.func.trim(guardian_name) != "")


def has_guardian(guardian_name: str | None) -> bool:
    """有监护人 A guardian name that is not blank."""
    return bool((guardian_name or "").strip(" "))  # SQL TRIM strips spaces only
