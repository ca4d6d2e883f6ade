"""以奖代补 The four duties of a guardian-year, assessed from the record (rules.md §11).

The one home of the rule, its Python form (``assess``) and its set-based SQL twin
(``duties_select``, the yearly payout list of a township) side by side (ARCHITECTURE §15);
``tests/test_guardian_reward.py`` checks they agree on random histories on both databases.

A guardian enrolled for a year has a **guardian-year** (``registry.models.GuardianYear``): the
enrolled part of the year ``[enrolled_from, enrolled_to]`` inside that calendar year. Each duty is
met or not, **with the evidence** (a Chinese sentence naming the quarter, the date, the share):

1. ``quarterly_visits``: every quarter of the enrolled part of the year (each quarter clipped to the
   enrolled part) holds at least ``RewardRules.visits_per_quarter`` complete follow-ups
   (``registry.rules.is_complete``);
2. ``no_incident``: no follow-up in the year counts 肇事 or 肇祸 (``registry.rules.is_incident``,
   complete or not), and no emergency of situation 2 (危害公共安全或他人安全);
3. ``no_lock_up``: no follow-up in the year records 关锁 (``LockStatus.LOCKED``);
4. ``adherence``: at least ``min_adherence_share`` (75 %) of the year's complete follow-ups record an
   adherence in ``adherence_codes`` (1 规律, 4 医嘱勿需服药).

Eligible = every duty met. Only follow-ups dated on or after registration and not after ``today``
count (``registry.attempts.is_usable``), and only those dated in the year.

Decisions where §11 is silent **[decision]**:

- **Provisional / final.** While ``today`` is on or before Dec 31 of the year the assessment is
  *provisional* (the record so far); after it, *final*. A quarter whose enrolled part has not ended
  by ``today`` (its last day on or after ``today``) and has no visit yet is *pending*, not failed:
  a provisional duty 1 fails only on a quarter already over. A final assessment has no pending
  quarter.
- Duties 2–4 read the whole calendar year as §11 writes ("in the year"), not only the enrolled part.
- A year with no complete follow-up fails duty 4 (no share to compute).
- **Emergencies of situation 2** are an input of both forms — ``emergencies`` (the dates of the
  patient's situation-2 emergencies) in ``assess`` and a selectable with ``patient_id, occurred_on``
  in ``duties_select`` — fed from the emergency record by ``registry.emergencies.reward_event_days``
  / ``reward_events_select`` (``registry.guardian_years.assess_one``, ``schedules.reward_files``).
- The share is compared exactly in integers: adherent × 10000 ≥ round(share × 10000) × complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Iterable

import sqlalchemy as sa

from registry.attempts import is_usable, usable_sql
from registry.codes import GuardianYearStatus, LockStatus, RewardDuty
from registry.errors import InvalidInput
from registry.models import FollowUp, GuardianYear, Patient
from registry.profile import RewardRules
from registry.rules import complete_sql, incident_sql, is_complete, is_incident

QUARTERS = (1, 2, 3, 4)
SHARE_SCALE = 10000


def year_bounds(year: int) -> tuple[date, date]:
    """The first and last day of ``year``."""
    return date(year, 1, 1), date(year, 12, 31)


def quarter_bounds(year: int, quarter: int) -> tuple[date, date]:
    """季度 The first and last day of ``quarter`` (1–4) of ``year``."""
    start = date(year, 3 * quarter - 2, 1)
    end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return start, end - timedelta(days=1)


def is_provisional(year: int, today: date) -> bool:
    """暂评 The assessment of ``year`` is provisional while ``today`` is in or before the year."""
    return today <= year_bounds(year)[1]


def effective_status(stored: str, year: int, today: date) -> GuardianYearStatus:
    """状态 A stored ``provisional`` is ``final`` once the year is over; every other status stands."""
    status = GuardianYearStatus(stored)
    if status == GuardianYearStatus.PROVISIONAL and not is_provisional(year, today):
        return GuardianYearStatus.FINAL
    return status


def check_period(year: int, enrolled_from: date, enrolled_to: date) -> None:
    """纳入期间 InvalidInput unless ``enrolled_from ≤ enrolled_to`` both lie in ``year`` (2000–2100)."""
    if not 2000 <= year <= 2100:
        raise InvalidInput.single("BAD_YEAR", f"年度“{year}”无效，应为 2000 至 2100", column="year", value=year)
    first, last = year_bounds(year)
    if not first <= enrolled_from <= enrolled_to <= last:
        raise InvalidInput.single(
            "BAD_ENROLMENT_PERIOD",
            f"纳入期间 {enrolled_from.isoformat()} 至 {enrolled_to.isoformat()} 无效：应在 {year} 年内且起不晚于止",
            column="enrolled_from", value=enrolled_from.isoformat())


def adherence_met(adherent: int, complete: int, rules: RewardRules) -> bool:
    """规律服药 At least the profile's share of the complete follow-ups record adherence (exact, in integers)."""
    return complete > 0 and adherent * SHARE_SCALE >= round(rules.min_adherence_share * SHARE_SCALE) * complete


@dataclass(frozen=True)
class QuarterCount:
    """One quarter of the enrolled part: its clipped bounds, complete follow-ups, whether it is over."""

    quarter: int
    start: date
    end: date
    visits: int
    over: bool

    def failed(self, rules: RewardRules) -> bool:
        return self.over and self.visits < rules.visits_per_quarter


@dataclass(frozen=True)
class DutyResult:
    """职责评定 One duty: met or not, with the evidence in Chinese."""

    duty: RewardDuty
    met: bool
    evidence: str

    def as_json(self) -> dict:
        return {"duty": self.duty.value, "label": self.duty.label, "met": self.met, "evidence": self.evidence}


@dataclass(frozen=True)
class Assessment:
    """以奖代补评定 The four duties of one guardian-year, provisional or final."""

    patient_id: str
    year: int
    provisional: bool
    duties: tuple[DutyResult, ...]

    @property
    def eligible(self) -> bool:
        """符合条件 Every duty met."""
        return all(d.met for d in self.duties)

    def duty(self, duty: RewardDuty) -> DutyResult:
        return next(d for d in self.duties if d.duty == duty)

    def as_json(self) -> dict:
        return {"patient_id": self.patient_id, "year": self.year, "provisional": self.provisional,
                "eligible": self.eligible, "duties": [d.as_json() for d in self.duties]}


# ----------------------------------------------------------------------------- Python form


def _quarters(year: int, enrolled_from: date, enrolled_to: date, today: date,
              complete_days: list[date]) -> list[QuarterCount]:
    out = []
    for q in QUARTERS:
        q_start, q_end = quarter_bounds(year, q)
        start, end = max(q_start, enrolled_from), min(q_end, enrolled_to)
        if start > end:
            continue  # the quarter is outside the enrolled part
        out.append(QuarterCount(q, start, end, sum(1 for d in complete_days if start <= d <= end), end < today))
    return out


def _dates(days: Iterable[date]) -> str:
    days = sorted(days)
    text = "、".join(d.isoformat() for d in days[:3])
    return text + (f" 等{len(days)}次" if len(days) > 3 else "")


def assess(*, patient_id: str, year: int, enrolled_from: date, enrolled_to: date, registered_on: date,
           follow_ups: Iterable[Any], today: date, rules: RewardRules,
           emergencies: Iterable[date] = ()) -> Assessment:
    """以奖代补评定 The four duties of one guardian-year as of ``today`` (rules.md §11, see the module
    docstring). ``follow_ups``: objects with FollowUp's ``visit_on``, ``lost_reason``,
    ``risk_level``, ``hospital_status``, ``incidents_disturbance``, ``incidents_crime``,
    ``lock_status`` and ``adherence``; ``emergencies``: the dates of the patient's emergencies of
    situation 2 (the seam for the emergency record; none exist yet: ``()``)."""
    first, last = year_bounds(year)
    known_to = min(last, today)
    rows = [f for f in follow_ups if is_usable(f.visit_on, registered_on, known_to) and f.visit_on >= first]
    complete = [f for f in rows if is_complete(f.lost_reason, f.risk_level, f.hospital_status)]
    complete_days = [f.visit_on for f in complete]

    quarters = _quarters(year, enrolled_from, enrolled_to, today, complete_days)
    failed = [q for q in quarters if q.failed(rules)]
    pending = [q for q in quarters if not q.over and q.visits < rules.visits_per_quarter]
    if failed:
        evidence = "；".join(f"第{q.quarter}季度（{q.start.isoformat()}至{q.end.isoformat()}）完整随访{q.visits}次，"
                            f"少于{rules.visits_per_quarter}次" for q in failed)
    else:
        evidence = "；".join(f"第{q.quarter}季度完整随访{q.visits}次" + ("（未到期）" if q in pending else "")
                            for q in quarters)
    duty1 = DutyResult(RewardDuty.QUARTERLY_VISITS, not failed, evidence)

    incidents = [f for f in rows if is_incident(f.incidents_disturbance, f.incidents_crime)]
    situation_2 = sorted(d for d in emergencies if max(first, registered_on) <= d <= known_to)
    parts = [f"{f.visit_on.isoformat()} 随访记录肇事{f.incidents_disturbance or 0}次、肇祸{f.incidents_crime or 0}次"
             for f in sorted(incidents, key=lambda f: f.visit_on)]
    if situation_2:
        parts.append(f"应急处置（危害公共安全或他人安全）{_dates(situation_2)}")
    duty2 = DutyResult(RewardDuty.NO_INCIDENT, not parts,
                       "；".join(parts) if parts else f"{year}年随访{len(rows)}次，均无肇事肇祸，无危害他人安全的应急处置")

    locked = [f.visit_on for f in rows if f.lock_status == LockStatus.LOCKED]
    duty3 = DutyResult(RewardDuty.NO_LOCK_UP, not locked,
                       f"{_dates(locked)} 随访记录关锁" if locked else f"{year}年随访{len(rows)}次，均未记录关锁")

    adherent = sum(1 for f in complete if f.adherence in rules.adherence_codes)
    share = f"{adherent}/{len(complete)}（{adherent * 100 // len(complete)}%）" if complete else "0/0"
    duty4 = DutyResult(RewardDuty.ADHERENCE, adherence_met(adherent, len(complete), rules),
                       f"完整随访中规律服药或医嘱勿需服药 {share}，要求不低于{round(rules.min_adherence_share * 100)}%"
                       if complete else f"{year}年无完整随访，无法计算规律服药比例")
    return Assessment(patient_id, year, is_provisional(year, today), (duty1, duty2, duty3, duty4))


# ----------------------------------------------------------------------------- SQL twin


def _greatest(a, b):
    return sa.case((a >= b, a), else_=b)


def _least(a, b):
    return sa.case((a <= b, a), else_=b)


def _flag(condition) -> sa.ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def duties_select(year: int, today: date, rules: RewardRules, *, among=None, emergencies=None) -> sa.Select:
    """以奖代补评定 SQL twin of ``assess`` over every guardian-year of ``year`` (of the patients of the
    subquery ``among``, else all): one row per guardian-year with ``patient_id, year, status,
    enrolled_from, enrolled_to, paid_on, paid_amount, reason``; per quarter ``qN_visits`` (NULL
    outside the enrolled part) and ``qN_failed`` (1: over and short of visits); ``incidents``,
    ``first_incident_on``, ``emergencies``, ``lock_ups``, ``first_locked_on``, ``complete``,
    ``adherent``; and the duties' verdicts ``quarterly_visits``, ``no_incident``, ``no_lock_up``,
    ``adherence`` and ``eligible`` (1/0). ``emergencies``: a selectable with ``patient_id`` and
    ``occurred_on`` (situation 2 only) or None — none exist yet."""
    g, p, f = GuardianYear.__table__, Patient.__table__, FollowUp.__table__
    first, last = year_bounds(year)
    known_to = min(last, today)
    joined = g.join(p, p.c.patient_id == g.c.patient_id).outerjoin(
        f, sa.and_(f.c.patient_id == g.c.patient_id, f.c.visit_on >= first, usable_sql(f, p, known_to)))
    complete = sa.and_(f.c.id.is_not(None), complete_sql(f))
    quarter_cols = []
    for q in QUARTERS:
        q_start, q_end = quarter_bounds(year, q)
        start = _greatest(g.c.enrolled_from, sa.literal(q_start, sa.Date))
        end = _least(g.c.enrolled_to, sa.literal(q_end, sa.Date))
        inside = sa.and_(g.c.enrolled_from <= q_end, g.c.enrolled_to >= q_start)
        visits = sa.func.sum(_flag(sa.and_(complete, f.c.visit_on >= start, f.c.visit_on <= end)))
        quarter_cols.append(sa.case((inside, sa.func.coalesce(visits, 0)), else_=sa.null()).label(f"q{q}_visits"))
        quarter_cols.append(sa.case((sa.and_(inside, end < today, sa.func.coalesce(visits, 0) < rules.visits_per_quarter),
                                     1), else_=0).label(f"q{q}_failed"))
    incident = sa.and_(f.c.id.is_not(None), incident_sql(f))
    locked = f.c.lock_status == LockStatus.LOCKED.value
    adherent = sa.and_(complete, f.c.adherence.in_(list(rules.adherence_codes)))
    stmt = (
        sa.select(
            g.c.patient_id, g.c.year, g.c.status, g.c.enrolled_from, g.c.enrolled_to, g.c.paid_on, g.c.paid_amount,
            g.c.reason, *quarter_cols,
            sa.func.sum(_flag(incident)).label("incidents"),
            sa.func.min(sa.case((incident, f.c.visit_on), else_=sa.null())).label("first_incident_on"),
            sa.func.sum(_flag(locked)).label("lock_ups"),
            sa.func.min(sa.case((locked, f.c.visit_on), else_=sa.null())).label("first_locked_on"),
            sa.func.sum(_flag(complete)).label("complete"),
            sa.func.sum(_flag(adherent)).label("adherent"),
        )
        .select_from(joined)
        .where(g.c.year == year)
        .group_by(g.c.id, g.c.patient_id, g.c.year, g.c.status, g.c.enrolled_from, g.c.enrolled_to, g.c.paid_on,
                  g.c.paid_amount, g.c.reason)
    )
    if among is not None:
        stmt = stmt.where(g.c.patient_id.in_(among))
    counted = stmt.subquery("guardian_year_counts")
    c = counted.c
    if emergencies is not None:
        e = emergencies.subquery("situation_2") if isinstance(emergencies, (sa.Select, sa.CompoundSelect)) else emergencies
        em = (sa.select(e.c.patient_id, sa.func.count().label("n"))
              .select_from(e.join(p, p.c.patient_id == e.c.patient_id))
              .where(e.c.occurred_on >= first, e.c.occurred_on <= known_to, e.c.occurred_on >= p.c.registered_on)
              .group_by(e.c.patient_id).subquery("situation_2_counts"))
        source = counted.outerjoin(em, em.c.patient_id == c.patient_id)
        emergency_n = sa.func.coalesce(em.c.n, 0)
    else:
        source, emergency_n = counted, sa.literal(0)
    quarterly = sa.and_(*(c[f"q{q}_failed"] == 0 for q in QUARTERS))
    no_incident = sa.and_(c.incidents == 0, emergency_n == 0)
    no_lock = c.lock_ups == 0
    adherence = sa.and_(c.complete > 0, c.adherent * SHARE_SCALE
                        >= round(rules.min_adherence_share * SHARE_SCALE) * c.complete)
    return (
        sa.select(
            *(c[name] for name in ("patient_id", "year", "status", "enrolled_from", "enrolled_to", "paid_on", "paid_amount",
                                   "reason")),
            *(c[f"q{q}_{kind}"] for q in QUARTERS for kind in ("visits", "failed")),
            c.incidents, c.first_incident_on, emergency_n.label("emergencies"), c.lock_ups, c.first_locked_on,
            c.complete, c.adherent,
            _flag(quarterly).label("quarterly_visits"), _flag(no_incident).label("no_incident"),
            _flag(no_lock).label("no_lock_up"), _flag(adherence).label("adherence"),
            _flag(sa.and_(quarterly, no_incident, no_lock, adherence)).label("eligible"),
        )
        .select_from(source)
        .order_by(c.patient_id)
    )


DUTY_COLUMNS = {RewardDuty.QUARTERLY_VISITS: "quarterly_visits", RewardDuty.NO_INCIDENT: "no_incident",
                RewardDuty.NO_LOCK_UP: "no_lock_up", RewardDuty.ADHERENCE: "adherence"}
