"""易肇事肇祸台账 The ledger of patients at risk of causing trouble: a dated history (rules.md §10).

The one home of the rule, its Python form and its SQL twin side by side (ARCHITECTURE §15).
The ledger is derived from the record, never a flag someone sets:

- Only follow-ups dated on or after registration count (``registry.attempts.is_usable``), and
  nothing dated after ``as_of`` is known.
- An **entering event** is a complete follow-up (``registry.rules.is_complete``) with risk ≥ 3
  (reason ``risk``), a follow-up counting any 肇事 or 肇祸 (``incident``; complete or not — it wins
  when one follow-up is both), or an emergency of situation 1 or 2 (``emergency``, rules.md §9).
  Both forms take the emergency events as an input: ``ledger_history`` the dates
  (``registry.emergencies.ledger_event_days``), ``ledger_select`` a selectable, by default the
  record's own (``registry.emergencies.ledger_events_select``: situation 1 or 2, dated on the
  emergency's day).
- A patient not on the ledger **enters** on the date of an entering event. On the ledger, the
  patient **leaves** on the first date t after entering for which the window
  [add_months(t, −12), t] (``registry.periods.add_months``: month-end clamped; both ends
  included) holds at least one complete follow-up and no entering event (``stable_12_months``),
  or on the status date of death or move-out (``dead`` / ``moved_out``), whichever comes first.
  A later entering event starts a new entry.

Decisions where §10 is silent **[decision]**:

- Several entering events on one date (different follow-ups, an emergency): the entry's reason is
  the first present in ``LedgerReason`` order — incident, emergency, risk (a 肇事肇祸 that happened
  outranks an emergency of situation 1/2, which outranks an assessed risk level). §10's own case
  (one follow-up both risk ≥ 3 and 肇事/肇祸 → incident) is the same order.
- A stable exit and the death/move-out on the same date: the status names the exit.
- Nothing dated on or after the status date of death or move-out counts (the patient has left
  the register, rules.md §1): no entry starts there.

**How the SQL finds "the first t" set-based.** Write L(t) = add_months(t, −12) (non-decreasing
in t) and, for a date x, ``released_on(x)`` = the first t with L(t) > x — the first day whose
window no longer holds x. It is x + 1 day + 1 year, where a Feb 29 lands on Mar 1 of the next
year (checked against the definition day by day in ``tests/test_ledger.py``). Then "x is in the
window of t" ⟺ x ≤ t < released_on(x). Take an entering event p, the next entering event p′.
For p < t < p′ the last event up to t is p, so t is a stable exit ⟺ released_on(p) ≤ t and some
complete follow-up c ≤ t has t < released_on(c). Let t* be the first such t, and look at t* − 1:
either it had no complete follow-up in its window — then, since the window's start never moves
back, t* itself is a complete follow-up's date — or it still held p — then t* = released_on(p).
So the candidates are released_on(p) and the complete follow-ups' dates, and

    exit(p) = max(released_on(p), min{c complete : released_on(c) > released_on(p)})

(the c with released_on(c) > released_on(p) are exactly those that are in the window of some
t ≥ released_on(p); a c on Feb 29 right after an event on Feb 28 is in no such window). It
counts only when exit(p) < p′ (at p′ the window holds p′ again). ``released_on`` is strictly
increasing except that Feb 28 and Feb 29 of a leap year share one, so that minimum is the first
complete follow-up after p — or after p + 1 day when p + 1 is that Feb 29. The exit does not
depend on where the entry began, so every event is computed independently with window functions,
all over one ordering (latest day first, so each level sorts once): the next event (a running
``MIN`` over the rows before), the first complete follow-up after p and after p + 1 (running
``MIN`` over ``RANGE`` frames on the day number); then an entry starts at the first event and
at every event after one with an exit (``LEAD`` in that order), and an entry's number is the
count of exits dated on or after the event (a running ``SUM``).
``tests/test_ledger.py`` compares ``ledger_history`` (the definition, day by day) with
``ledger_select`` on random histories on both databases.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from registry.attempts import day_number, is_usable, usable_sql
from registry.codes import LedgerExit, LedgerReason, PatientStatus, RiskLevel
from registry.emergencies import ledger_events_select
from registry.models import FollowUp, Patient
from registry.periods import add_months
from registry.rules import complete_sql, is_complete

WINDOW_MONTHS = 12  # rules.md §10: [t − 12 months, t]
REASON_RANK = {reason: rank for rank, reason in enumerate(LedgerReason, start=1)}  # 1 = wins
_REASON_OF_RANK = {rank: reason for reason, rank in REASON_RANK.items()}
_EXIT_OF_STATUS = {PatientStatus.DEAD: LedgerExit.DEAD, PatientStatus.MOVED_OUT: LedgerExit.MOVED_OUT}


@dataclass(frozen=True)
class LedgerEntry:
    """台账记录 One stay on the ledger: entered (with the reason) and, unless still on it, left."""

    patient_id: str
    entered_on: date
    reason: LedgerReason
    left_on: date | None = None
    left_reason: LedgerExit | None = None

    def as_json(self) -> dict:
        """The contract.md ``ledger --json`` element."""
        return {"patient_id": self.patient_id, "entered_on": self.entered_on.isoformat(), "reason": self.reason.value,
                "left_on": self.left_on.isoformat() if self.left_on else None,
                "left_reason": self.left_reason.value if self.left_reason else None}


# ----------------------------------------------------------------------------- Python form


def is_incident(incidents_disturbance: int | None, incidents_crime: int | None) -> bool:
    """肇事肇祸 The follow-up counts any 肇事 or 肇祸 since the last visit (rules.md §3, §10)."""
    return (incidents_disturbance or 0) > 0 or (incidents_crime or 0) > 0


def entering_reason(fu: Any) -> LedgerReason | None:
    """入账事件 The reason a follow-up is an entering event (rules.md §10), or None: incident wins
    over a complete follow-up with risk ≥ 3."""
    if is_incident(fu.incidents_disturbance, fu.incidents_crime):
        return LedgerReason.INCIDENT
    if is_complete(fu.lost_reason, fu.risk_level, fu.hospital_status) and (fu.risk_level or 0) >= RiskLevel.PUBLIC_PROPERTY:
        return LedgerReason.RISK
    return None


def released_on(day: date) -> date:
    """出窗日 The first date t whose window [add_months(t, −12), t] no longer holds ``day``:
    ``day`` + 1 day + 1 year, a Feb 29 landing on Mar 1 of the next year."""
    after = day + timedelta(days=1)
    if (after.month, after.day) == (2, 29):
        return date(after.year + 1, 3, 1)
    return after.replace(year=after.year + 1)


def _status_cutoff(status: str, status_on: date | None) -> date | None:
    return status_on if status != PatientStatus.ACTIVE and status_on is not None else None


def ledger_history(*, patient_id: str, registered_on: date, status: str, status_on: date | None,
                   follow_ups: Iterable[Any], as_of: date, emergencies: Iterable[date] = ()) -> list[LedgerEntry]:
    """易肇事肇祸台账 One patient's ledger history as of ``as_of`` (rules.md §10), by the definition:
    day by day from the first entering event. ``follow_ups``: objects with ``visit_on``,
    ``lost_reason``, ``risk_level``, ``hospital_status``, ``incidents_disturbance`` and
    ``incidents_crime``; ``emergencies``: the dates of the patient's emergencies of situation 1
    or 2 (``registry.emergencies.ledger_event_days``). Entries that began on or before ``as_of``; ``left_on`` None
    while on the ledger as of ``as_of``."""
    cutoff = _status_cutoff(status, status_on)

    def counts(day: date) -> bool:
        return is_usable(day, registered_on, as_of) and (cutoff is None or day < cutoff)

    events: dict[date, LedgerReason] = {}
    complete: set[date] = set()

    def note(day: date, reason: LedgerReason | None) -> None:
        if reason is not None and (day not in events or REASON_RANK[reason] < REASON_RANK[events[day]]):
            events[day] = reason

    for fu in follow_ups:
        if counts(fu.visit_on):
            note(fu.visit_on, entering_reason(fu))
            if is_complete(fu.lost_reason, fu.risk_level, fu.hospital_status):
                complete.add(fu.visit_on)
    for day in emergencies:
        if counts(day):
            note(day, LedgerReason.EMERGENCY)
    if not events:
        return []
    event_days, complete_days = sorted(events), sorted(complete)

    def holds(days: list[date], lo: date, hi: date) -> bool:
        return bisect_right(days, hi) > bisect_left(days, lo)

    entries: list[LedgerEntry] = []
    current: tuple[date, LedgerReason] | None = None
    last = as_of if cutoff is None else min(as_of, cutoff)
    t = event_days[0]
    while t <= last:
        if current is None:
            if t in events:
                current = (t, events[t])
        elif t == cutoff:
            entries.append(LedgerEntry(patient_id, current[0], current[1], t, _EXIT_OF_STATUS[PatientStatus(status)]))
            current = None
        else:
            start = add_months(t, -WINDOW_MONTHS)
            if holds(complete_days, start, t) and not holds(event_days, start, t):
                entries.append(LedgerEntry(patient_id, current[0], current[1], t, LedgerExit.STABLE_12_MONTHS))
                current = None
        if current is None:  # jump to the next entering event (nothing changes in between)
            i = bisect_right(event_days, t)
            if i == len(event_days):
                break
            t = event_days[i]
        else:
            t += timedelta(days=1)
    if current is not None:
        entries.append(LedgerEntry(patient_id, current[0], current[1]))
    return entries


# ----------------------------------------------------------------------------- SQL twin


class released_on_sql(FunctionElement):
    """SQL twin of ``released_on`` (PostgreSQL clamps ``+ interval '1 year'`` on Feb 29, SQLite's
    ``+1 year`` normalises to Mar 1)."""

    type = sa.Date()
    inherit_cache = True
    name = "ledger_released_on"


@compiles(released_on_sql)
def _released_on_default(element, compiler, **kw):
    # date + interval clamps Feb 29 to Feb 28: the later of (day + 1) + 1 year and (day + 1 year) + 1
    # is the unclamped one (equal on every other day; checked day by day against the CASE form)
    day = compiler.process(element.clauses, **kw)
    return (f"GREATEST(CAST(CAST({day} AS DATE) + 1 + INTERVAL '1 year' AS DATE),"
            f" CAST(CAST({day} AS DATE) + INTERVAL '1 year' AS DATE) + 1)")


@compiles(released_on_sql, "sqlite")
def _released_on_sqlite(element, compiler, **kw):
    return "date(%s, '+1 day', '+1 year')" % compiler.process(element.clauses, **kw)


def incident_sql(f) -> sa.ColumnElement[bool]:
    """肇事肇祸 SQL twin of ``is_incident``."""
    return sa.or_(sa.func.coalesce(f.c.incidents_disturbance, 0) > 0, sa.func.coalesce(f.c.incidents_crime, 0) > 0)


def entering_rank_sql(f) -> sa.ColumnElement:
    """SQL twin of ``entering_reason`` as its ``REASON_RANK`` (NULL: not an entering event)."""
    return sa.case(
        (incident_sql(f), REASON_RANK[LedgerReason.INCIDENT]),
        (sa.and_(complete_sql(f), f.c.risk_level >= RiskLevel.PUBLIC_PROPERTY.value), REASON_RANK[LedgerReason.RISK]),
        else_=sa.null(),
    )


def _counts_sql(day, p, as_of: date) -> sa.ColumnElement[bool]:
    """Dated on or after registration, not after ``as_of``, before a death/move-out status date."""
    return sa.and_(day >= p.c.registered_on, day <= as_of,
                   sa.or_(p.c.status == PatientStatus.ACTIVE.value, p.c.status_on.is_(None), day < p.c.status_on))


def _greatest(a, b):
    return sa.case((a >= b, a), else_=b)


def ledger_select(as_of: date, *, among=None, emergencies=None) -> sa.Select:
    """易肇事肇祸台账 SQL twin of ``ledger_history`` over the whole population (or the patient ids
    of the subquery ``among``): one row per entry that began on or before ``as_of`` with
    ``patient_id, entered_on, reason, left_on, left_reason`` (codes; NULLs while on the
    ledger), ordered by patient and date. ``emergencies``: a selectable with ``patient_id`` and
    ``occurred_on`` (situation 1 or 2 only); None: the emergency record's own
    (``registry.emergencies.ledger_events_select``). See the module docstring for how the exits
    are found."""
    if emergencies is None:
        emergencies = ledger_events_select()
    p, f = Patient.__table__, FollowUp.__table__
    follow_ups = (
        sa.select(f.c.patient_id, f.c.visit_on.label("on"), entering_rank_sql(f).label("rank"),
                  sa.case((complete_sql(f), 1), else_=0).label("complete"))
        .select_from(f.join(p, p.c.patient_id == f.c.patient_id))
        .where(usable_sql(f, p, as_of), _counts_sql(f.c.visit_on, p, as_of))
    )
    if among is not None:
        follow_ups = follow_ups.where(f.c.patient_id.in_(among))
    parts = [follow_ups]
    if emergencies is not None:
        e = emergencies.subquery("emergency_event") if isinstance(emergencies, (sa.Select, sa.CompoundSelect)) else emergencies
        part = (sa.select(e.c.patient_id, e.c.occurred_on.label("on"),
                          sa.literal(REASON_RANK[LedgerReason.EMERGENCY]).label("rank"), sa.literal(0).label("complete"))
                .select_from(e.join(p, p.c.patient_id == e.c.patient_id))
                .where(_counts_sql(e.c.occurred_on, p, as_of)))
        if among is not None:
            part = part.where(e.c.patient_id.in_(among))
        parts.append(part)
    rows = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("ledger_row")
    days = (
        sa.select(rows.c.patient_id, rows.c.on, sa.func.min(rows.c.rank).label("rank"),
                  sa.func.max(rows.c.complete).label("complete"))
        .group_by(rows.c.patient_id, rows.c.on)
        .subquery("ledger_day")
    )
    # one ordering for every window (latest day first), so the database sorts once per level
    latest_first = dict(partition_by=days.c.patient_id, order_by=day_number(days.c.on).desc())
    complete_on = sa.case((days.c.complete == 1, days.c.on), else_=sa.null())
    w = sa.select(
        days.c.patient_id, days.c.on, days.c.rank,
        sa.func.min(sa.case((days.c.rank.is_not(None), days.c.on), else_=sa.null())).over(
            **latest_first, rows=(None, -1)).label("next_event"),
        # complete follow-ups dated after p, and dated after p + 1 day (RANGE frames on the day number)
        sa.func.min(complete_on).over(**latest_first, range_=(None, -1)).label("complete_after"),
        sa.func.min(complete_on).over(**latest_first, range_=(None, -2)).label("complete_after_next"),
    ).subquery("ledger_window")
    # the first complete c with released_on(c) > released_on(p): released_on is strictly increasing
    # but for Feb 28 and Feb 29 of a leap year, so it is the first c > p unless that is p + 1 = Feb 29
    # (OFFSET 0 keeps each stage a subquery, so its dates are computed once per event, not inlined)
    released = sa.select(
        w.c.patient_id, w.c.on, w.c.rank, w.c.next_event, released_on_sql(w.c.on).label("release"),
        sa.case((released_on_sql(w.c.complete_after) > released_on_sql(w.c.on), w.c.complete_after),
                else_=w.c.complete_after_next).label("first_complete"),
    ).where(w.c.rank.is_not(None)).offset(0).subquery("ledger_released")
    r = released
    stable_exit = _greatest(r.c.release, r.c.first_complete)
    events = sa.select(
        r.c.patient_id, r.c.on, r.c.rank,
        sa.case((sa.and_(r.c.first_complete.is_not(None), sa.or_(r.c.next_event.is_(None), stable_exit < r.c.next_event)),
                 stable_exit), else_=sa.null()).label("exit"),
    ).offset(0).subquery("ledger_event")
    # an entry starts at the first event and after an event with an exit (the event before it in
    # time is the next row, latest first); its number: the exits dated on or after the event
    latest_first = dict(partition_by=events.c.patient_id, order_by=day_number(events.c.on).desc())
    grouped = sa.select(
        events.c.patient_id, events.c.on, events.c.rank, events.c.exit,
        sa.case((sa.or_(sa.func.lead(events.c.on).over(**latest_first).is_(None),
                        sa.func.lead(events.c.exit).over(**latest_first).is_not(None)), 1), else_=0).label("starts"),
        sa.func.sum(sa.case((events.c.exit.is_not(None), 1), else_=0)).over(
            **latest_first, rows=(None, 0)).label("entry_no"),
    ).subquery("ledger_grouped")
    entries = sa.select(
        grouped.c.patient_id, sa.func.min(grouped.c.on).label("entered_on"),
        sa.func.min(sa.case((grouped.c.starts == 1, grouped.c.rank), else_=sa.null())).label("rank"),
        sa.func.max(grouped.c.exit).label("stable_exit"),
    ).group_by(grouped.c.patient_id, grouped.c.entry_no).subquery("ledger_entry")
    n = entries
    status_exit = sa.and_(p.c.status != PatientStatus.ACTIVE.value, p.c.status_on <= as_of,
                          sa.or_(n.c.stable_exit.is_(None), p.c.status_on <= n.c.stable_exit))
    stable_known = n.c.stable_exit <= as_of
    return (
        sa.select(
            n.c.patient_id, n.c.entered_on,
            sa.case(*((n.c.rank == rank, reason.value) for rank, reason in _REASON_OF_RANK.items())).label("reason"),
            sa.case((status_exit, p.c.status_on), (stable_known, n.c.stable_exit), else_=sa.null()).label("left_on"),
            sa.case((status_exit, p.c.status), (stable_known, LedgerExit.STABLE_12_MONTHS.value),
                    else_=sa.null()).label("left_reason"),
        )
        .select_from(n.join(p, p.c.patient_id == n.c.patient_id))
        .order_by(n.c.patient_id, n.c.entered_on)
    )


def entries_from_rows(rows: Iterable[Any]) -> list[LedgerEntry]:
    """``ledger_select`` rows as ``LedgerEntry`` values (codes back into the enums)."""
    return [LedgerEntry(r.patient_id, r.entered_on, LedgerReason(r.reason), r.left_on,
                        LedgerExit(r.left_reason) if r.left_reason else None) for r in rows]


def ledger_entries(conn: sa.Connection, as_of: date, *, among=None, emergencies=None) -> list[LedgerEntry]:
    """易肇事肇祸台账 The ledger as of ``as_of`` from the database (``ledger_select``)."""
    return entries_from_rows(conn.execute(ledger_select(as_of, among=among, emergencies=emergencies)))
