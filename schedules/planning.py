"""随访计划 Pure planning: from one patient's record, the tasks the team owes (rules.md §5–§6).

No clock and no database: ``today`` is a parameter, inputs are plain objects. This module is the
readable statement of the rules; ``schedules.generation`` applies the same rules set-based in
SQL over the whole population, and the tests check that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, Iterable

from registry.codes import Classification, HospitalStatus, LostReason
from registry.periods import add_months
from registry.teams import DOCTOR_ONLY, incident_cutoff, is_joint, required_roles
from registry.rules import classification_of, is_complete, is_incident
from registry import register
from registry.attempts import latest_first
from registry.rules import is_reached
from registry.doctor_date import doctor_date_applies
from schedules.calendar import WorkCalendar
from registry.profile import Interval, Profile

def add_interval(day: date, interval: Interval) -> date:
    """Months first (clamped), then days."""
    return add_months(day, interval.months) + timedelta(days=interval.days)


@dataclass(frozen=True)
class Attempt:
    """随访尝试 The fields of one follow-up attempt the schedule needs (any FollowUp-like object works)."""

    id: int
    visit_on: date
    lost_reason: int | None = None
    risk_level: int | None = None
    hospital_status: int | None = None
    classification: int | None = None
    insight: int | None = None
    symptoms_obvious: bool | None = None
    symptoms: str | None = None
    sf_self_care: int | None = None
    sf_housework: int | None = None
    sf_work: int | None = None
    sf_study: int | None = None
    sf_social: int | None = None
    adverse_reaction_serious: bool | None = None
    physical_illness_serious: bool | None = None
    incidents_disturbance: int | None = None
    incidents_crime: int | None = None
    next_visit_on: date | None = None  # 下次随访日期 (rules.md §5, the doctor's own date)


@dataclass(frozen=True)
class PatientRecord:
    """一历 What the schedule reads of one patient's record."""

    patient_id: str
    registered_on: date
    status: str = "active"
    status_on: date | None = None
    report_type: int = 2
    consent: int = 1
    has_guardian: bool = True
    poor: bool = False
    lai_drug: str | None = None
    lai_interval_weeks: int | None = None
    lai_last_on: date | None = None
    attempts: tuple[Any, ...] = ()
    health_checks: tuple[date, ...] = ()


@dataclass(frozen=True)
class PlannedTask:
    """计划任务 One task as planned: due date before (nominal) and after the working-day shift."""

    patient_id: str
    kind: str
    basis: str
    basis_on: date
    nominal_due_on: date
    due_on: date
    roles: tuple[str, ...]
    rule: str
    risk_level: int | None = None
    window_start: date | None = None
    window_end: date | None = None
    calendar_estimated: bool = False

    @property
    def joint(self) -> bool:
        """联合入户 Any role besides the doctor (rules.md §6)."""
        return is_joint(self.roles)


def cancel_reason(record: PatientRecord, today: date) -> str | None:
    """Why a patient gets no tasks at all (rules.md §5 last row), or None (``registry.register``)."""
    return register.cancel_reason(record.status, record.status_on, record.report_type, record.consent, today)


def _order(attempts: Iterable[Any], registered_on: date, today: date) -> list[Any]:
    """Attempts on or after registration and not after today, latest first (``registry.attempts``)."""
    return latest_first(attempts, registered_on, today)


def _complete(a) -> bool:
    """有效随访 (rules.md §3, ``registry.rules.is_complete``)."""
    return is_complete(a.lost_reason, a.risk_level, a.hospital_status)


def visit_task(record: PatientRecord, profile: Profile, today: date) -> tuple[str, str, date, Interval, Any | None]:
    """The one visit task of a patient: (kind, basis, basis_on, interval, latest complete attempt)."""
    ordered = _order(record.attempts, record.registered_on, today)
    complete = [a for a in ordered if _complete(a)]
    latest_complete = complete[0] if complete else None
    if not ordered:
        return ("first_visit", f"registration:{record.registered_on.isoformat()}", record.registered_on,
                profile.visit["first_visit"], latest_complete)
    latest = ordered[0]
    basis = f"follow_up:{latest.id}"
    if _complete(latest):
        if latest.hospital_status == HospitalStatus.IN_HOSPITAL:
            return "discharge_check", basis, latest.visit_on, profile.visit["in_hospital"], latest_complete
        cls = classification_of(latest)
        if cls == Classification.UNSTABLE:
            key = "unstable"
        elif cls == Classification.FAIRLY_STABLE:
            previous = complete[1] if len(complete) > 1 else None
            prev_cls = classification_of(previous) if previous is not None else None
            key = "fairly_stable_new" if prev_cls in (None, Classification.STABLE) else "fairly_stable_continuing"
        else:
            key = "stable"
        return "follow_up", basis, latest.visit_on, profile.visit[key], latest_complete
    if is_reached(latest.lost_reason):  # reached, but no risk level: redo the visit [decision]
        return "retry", basis, latest.visit_on, profile.visit["incomplete"], latest_complete
    streak = 0
    for a in ordered:
        if is_reached(a.lost_reason):
            break
        streak += 1
    if latest.lost_reason == LostReason.THREE_MISSES or streak >= profile.lost_after_misses:
        return "locate", basis, latest.visit_on, profile.visit["locate"], latest_complete
    return "retry", basis, latest.visit_on, profile.visit["retry"], latest_complete


def visit_roles(record: PatientRecord, profile: Profile, today: date, kind: str, latest_complete) -> tuple[str, ...]:
    """联合入户角色 Roles required on a visit task (rules.md §6)."""
    rules = profile.roles
    cutoff = incident_cutoff(rules, today)
    incident = any(
        cutoff <= a.visit_on and is_incident(a.incidents_disturbance, a.incidents_crime)
        for a in _order(record.attempts, record.registered_on, today)
    )
    return required_roles(
        rules,
        latest_risk=latest_complete.risk_level if latest_complete is not None else None,
        latest_class=classification_of(latest_complete) if latest_complete is not None else None,
        incident=incident, locate=kind == "locate", has_guardian=record.has_guardian, poor=record.poor,
    )


def plan_patient(record: PatientRecord, profile: Profile, today: date) -> list[PlannedTask]:
    """计划 Every open task a patient should have as of ``today`` (nominal dates, no calendar shift)."""
    if not register.eligible(record.registered_on, record.status, record.status_on, record.report_type, record.consent,
                             today):  # 应管 (rules.md §1, §5)
        return []
    tasks = []
    kind, basis, basis_on, interval, latest_complete = visit_task(record, profile, today)
    due, clause = add_interval(basis_on, interval), interval.clause
    if kind in ("follow_up", "discharge_check"):  # the latest attempt is the latest complete one
        latest = latest_complete
        # rules.md §5 [decision, 2026-12]: the doctor's own date, when earlier (registry.doctor_date)
        if doctor_date_applies(due, latest.visit_on, getattr(latest, "next_visit_on", None), True):
            due, clause = latest.next_visit_on, profile.doctor_date_clause
    tasks.append(PlannedTask(
        patient_id=record.patient_id, kind=kind, basis=basis, basis_on=basis_on, nominal_due_on=due, due_on=due,
        roles=visit_roles(record, profile, today, kind, latest_complete), rule=profile.rule(clause),
        risk_level=latest_complete.risk_level if latest_complete is not None else None,
    ))
    risk = tasks[0].risk_level
    # 健康体检 (基本公卫3): one per calendar year for a patient with consent, whatever the report type
    # (rules.md §5; registry.register.health_check_owed), done by any check dated in that year [decision: due June 30]
    year = today.year
    owed = register.health_check_owed(record.registered_on, record.status, record.status_on, record.report_type,
                                      record.consent, today)
    if owed and not any(d.year == year and d <= today for d in record.health_checks):
        due = date(year, profile.health_check_month, profile.health_check_day)
        tasks.append(PlannedTask(
            patient_id=record.patient_id, kind="health_check", basis=f"year:{year}", basis_on=date(year, 1, 1),
            nominal_due_on=due, due_on=due, roles=DOCTOR_ONLY, rule=profile.rule(profile.health_check_clause),
            risk_level=risk,
        ))
    # 长效针剂 (规范2018): last injection + interval, window −3 … +7 days
    if record.lai_drug and record.lai_interval_weeks and record.lai_last_on and record.lai_last_on <= today:
        due = record.lai_last_on + timedelta(weeks=record.lai_interval_weeks)
        tasks.append(PlannedTask(
            patient_id=record.patient_id, kind="injection", basis=f"lai:{record.lai_last_on.isoformat()}",
            basis_on=record.lai_last_on, nominal_due_on=due, due_on=due, roles=DOCTOR_ONLY,
            rule=profile.rule(profile.lai_clause), risk_level=risk,
            window_start=due - timedelta(days=profile.lai_window_before),
            window_end=due + timedelta(days=profile.lai_window_after),
        ))
    return tasks


def shift_to_working_day(task: PlannedTask, calendar: WorkCalendar, profile: Profile) -> PlannedTask:
    """工作日顺延 Move the due date to the previous working day (rules.md §5 [decision])."""
    if profile.holiday_policy == "none":
        return task
    shifted, estimated = calendar.previous_working_day(task.nominal_due_on)
    return replace(task, due_on=shifted, calendar_estimated=estimated)


def plan(record: PatientRecord, profile: Profile, today: date, calendar: WorkCalendar) -> list[PlannedTask]:
    """Planned tasks with working-day shifted due dates."""
    return [shift_to_working_day(t, calendar, profile) for t in plan_patient(record, profile, today)]
