"""易肇事肇祸台账 The ledger of patients at risk of causing trouble: a dated history (rules.md §10).

The one home of the rule, its Python form and its SQL twin side by side (ARCHITECTURE §15).
The ledger is derived from the record, never a flag someone sets:

- Only events dated while the patient is 在册 count (``registry.register.in_register`` on the
  event's day: on or after registration, before a death/move-out status date), and nothing dated
  after ``as_of`` is known.
- An **entering event** is a complete follow-up (``registry.rules.is_complete``) with risk ≥ 3
  (reason ``risk``), a follow-up counting any 肇事 or 肇祸 (``incident``, ``registry.rules.is_incident``; complete or not — it wins
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
counts only when exit(p) < p′ (at p′ the window holds p′ again). The exit does not depend on
where the entry began, so every event is computed independently with window functions.

``released_on`` is strictly increasing except that Feb 28 and Feb 29 of a leap year share one,
so the SQL orders a patient's rows by released_on (latest first), and "a later released_on" is
one ``RANGE`` frame: the next event and the first complete c with released_on(c) >
released_on(p) are running ``MIN`` over it. The two event dates of one released_on are one event
for the SQL: the Feb 28 event never has an exit (its exit would be at least its released_on,
after the next event on Feb 29), and the formula gives it the Feb 29 event's value, so the
earlier date stands for both (its date and reason when it begins an entry, the Feb 29 event's
exit). All windows of a level share one ordering, so the database sorts once: the order key
(``place``) is released_on's day number scaled, plus the row's place among the rows of that
number — events first, the earlier date first, the best reason first — so the first row of a
number is its event, and the frame of later numbers ends a fixed offset before the row. Then an
entry starts at the first event and at every event after one with an exit (``LEAD``, latest
first), and its exit is the first exit on or after its start (exits increase with their events:
exit(p) < p′ ≤ exit(p′), so a running ``MIN``). The windows look at later dates only, so over
the whole population a patient's rows before the first entering event (and every row of a
patient without one) are dropped before the sort; follow-ups that are neither entering events
nor complete are never read. Inside, the windows partition and sort patient ids byte by byte
(``bytewise``: ``COLLATE "C"`` on PostgreSQL; the result keeps the database's order), and the
patient's status travels with the rows (no second join to ``patient``).
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

from registry.attempts import day_number, usable_sql
from registry.codes import LedgerExit, LedgerReason, PatientStatus, RiskLevel
from registry.emergencies import ledger_events_select
from registry.models import FollowUp, Patient
from registry.periods import add_months
from registry.register import in_register, in_register_sql, left_sql
from registry.rules import complete_sql, incident_sql, is_complete, is_incident

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

    def counts(day: date) -> bool:  # dated while 在册 (registry.register), not after as_of
        return day <= as_of and in_register(registered_on, status, status_on, day)

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


class bytewise(FunctionElement):
    """字节序 A string compared byte by byte, as a sort or partition key: ``COLLATE "C"`` on
    PostgreSQL (a libc collation such as C.UTF-8 compares with ``strcoll``, slow on millions of
    keys; equality is byte equality either way), the string itself on SQLite (binary already)."""

    type = sa.String()
    inherit_cache = True
    name = "bytewise"


@compiles(bytewise)
def _bytewise_default(element, compiler, **kw):
    return '(%s COLLATE "C")' % compiler.process(element.clauses, **kw)


@compiles(bytewise, "sqlite")
def _bytewise_sqlite(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


def entering_rank_sql(f) -> sa.ColumnElement:
    """SQL twin of ``entering_reason`` as its ``REASON_RANK`` (NULL: not an entering event)."""
    return sa.case(
        (incident_sql(f), REASON_RANK[LedgerReason.INCIDENT]),
        (sa.and_(complete_sql(f), f.c.risk_level >= RiskLevel.PUBLIC_PROPERTY.value), REASON_RANK[LedgerReason.RISK]),
        else_=sa.null(),
    )


def _counts_sql(day, p, as_of: date) -> sa.ColumnElement[bool]:
    """Dated while 在册 (``registry.register.in_register_sql`` on the event's day: on or after
    registration, before a death/move-out status date), not after ``as_of``."""
    return sa.and_(in_register_sql(p, day), day <= as_of)


def _greatest(a, b):
    return sa.case((a >= b, a), else_=b)


def _emergency_source(emergencies, name: str):
    return emergencies.subquery(name) if isinstance(emergencies, (sa.Select, sa.CompoundSelect)) else emergencies


def _rows_select(as_of: date, among, emergencies) -> sa.Select | sa.CompoundSelect:
    """The rows the ledger reads, ``patient_id, on, rank, complete, release, status, status_on``
    (``release``: ``released_on(on)``; the patient's status carried along): every counting follow-up
    that is an entering event or complete (the others change nothing) and every counting emergency
    event."""
    p, f = Patient.__table__, FollowUp.__table__
    rank = entering_rank_sql(f)
    follow_ups = (
        sa.select(f.c.patient_id, f.c.visit_on.label("on"), rank.label("rank"),
                  sa.case((complete_sql(f), 1), else_=0).label("complete"),
                  released_on_sql(f.c.visit_on).label("release"), p.c.status, p.c.status_on)
        .select_from(f.join(p, p.c.patient_id == f.c.patient_id))
        .where(usable_sql(f, p, as_of), _counts_sql(f.c.visit_on, p, as_of), sa.or_(rank.is_not(None), complete_sql(f)))
    )
    if among is not None:
        follow_ups = follow_ups.where(f.c.patient_id.in_(among))
    if emergencies is None:
        return follow_ups
    e = _emergency_source(emergencies, "emergency_event")
    part = (sa.select(e.c.patient_id, e.c.occurred_on.label("on"),
                      sa.literal(REASON_RANK[LedgerReason.EMERGENCY]).label("rank"), sa.literal(0).label("complete"),
                      released_on_sql(e.c.occurred_on).label("release"), p.c.status, p.c.status_on)
            .select_from(e.join(p, p.c.patient_id == e.c.patient_id))
            .where(_counts_sql(e.c.occurred_on, p, as_of)))
    if among is not None:
        part = part.where(e.c.patient_id.in_(among))
    return sa.union_all(follow_ups, part)


def _any_event_select(as_of: date, emergencies) -> sa.Subquery:
    """``patient_id, on`` of the entering events up to ``as_of``, counting or not (registration
    and status not looked at: more than the events, never fewer — only to drop rows early)."""
    f = FollowUp.__table__
    parts = [sa.select(f.c.patient_id, f.c.visit_on.label("on")).where(entering_rank_sql(f).is_not(None),
                                                                      f.c.visit_on <= as_of)]
    if emergencies is not None:
        e = _emergency_source(emergencies, "emergency_any")
        parts.append(sa.select(e.c.patient_id, e.c.occurred_on.label("on")).where(e.c.occurred_on <= as_of))
    return (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("ledger_any_event")


# The order key of a row, ``place``: released_on's day number × PLACE_FACTOR + the row's place
# among the rows of that number (0 … LATER − 1: 8 for an event, 4 for the earlier date of the
# Feb 28/29 pair, 4 − rank for an event's reason), so that, latest first, a RANGE frame ending
# LATER PRECEDING holds exactly the rows of later numbers.
PLACE_FACTOR = 32
LATER = PLACE_FACTOR // 2
assert max(REASON_RANK.values()) <= 3  # 4 − rank stays within 1 … 3


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
    rows = _rows_select(as_of, among, emergencies).subquery("ledger_row")
    if among is None:
        # the windows look at later dates only: a patient's rows before the first entering event
        # change nothing (and a patient without one has none), so over the whole population they
        # are dropped before the sort (for a township's patients the second pass costs more)
        any_event = _any_event_select(as_of, emergencies)
        rows = (sa.select(rows)
                .where(sa.exists().where(any_event.c.patient_id == rows.c.patient_id, any_event.c.on <= rows.c.on))
                .subquery("ledger_candidate"))
    key = bytewise(rows.c.patient_id)
    number, day = day_number(rows.c.release), day_number(rows.c.on)
    # one ordering for every window of a level (latest first), so the database sorts once; among the
    # rows of one released_on (one date, or Feb 28 and 29 of a leap year) the first is an event if
    # there is one, on the earlier date, with the best reason (released_on(d) − d is 366 or 367 days)
    place = (number * PLACE_FACTOR + (number - day - 366) * 4
             + sa.case((rows.c.rank.is_not(None), 8 + 4 - rows.c.rank), else_=0))
    later = dict(partition_by=key, order_by=place.desc(), range_=(None, -LATER))
    w = sa.select(
        rows.c.patient_id, key.label("patient_key"), rows.c.on, place.label("place"), rows.c.rank,
        rows.c.release, rows.c.status, rows.c.status_on,
        sa.func.lag(number).over(**later).label("number_before"),  # of the row before (NULL: the first)
        # the first event, and the first complete follow-up, with a later released_on
        sa.func.min(sa.case((rows.c.rank.is_not(None), rows.c.on), else_=sa.null())).over(**later).label("next_event"),
        sa.func.min(sa.case((rows.c.complete == 1, rows.c.on), else_=sa.null())).over(**later).label("first_complete"),
    ).subquery("ledger_window")
    # one row per released_on with an event: its first row
    # (OFFSET 0 keeps each stage a subquery, so its dates are computed once per event, not inlined;
    # the ORDER BY tells the database the rows come sorted, so the next level does not sort again)
    first = sa.select(
        w.c.patient_id, w.c.patient_key, w.c.on, w.c.place, w.c.rank, w.c.status, w.c.status_on, w.c.next_event,
        w.c.first_complete, _greatest(w.c.release, w.c.first_complete).label("stable_exit"),
    ).where(w.c.rank.is_not(None), sa.or_(w.c.number_before.is_(None), w.c.number_before != day_number(w.c.release))
            ).order_by(w.c.patient_key, w.c.place.desc()).offset(0).subquery("ledger_first")
    events = sa.select(
        first.c.patient_id, first.c.patient_key, first.c.on, first.c.place, first.c.rank, first.c.status,
        first.c.status_on,
        sa.case((sa.and_(first.c.first_complete.is_not(None),
                         sa.or_(first.c.next_event.is_(None), first.c.stable_exit < first.c.next_event)),
                 first.c.stable_exit), else_=sa.null()).label("exit"),
    ).order_by(first.c.patient_key, first.c.place.desc()).offset(0).subquery("ledger_event")
    # an entry starts at the first event and after an event with an exit (the event before it in
    # time is the next row, latest first); its exit is the first exit on or after its start: exits
    # increase with their events (exit(p) < p′ ≤ exit(p′)), so a running MIN (one window, one pass)
    latest_first = dict(partition_by=events.c.patient_key, order_by=events.c.place.desc())
    entries = sa.select(
        events.c.patient_id, events.c.on, events.c.rank, events.c.status, events.c.status_on,
        sa.case((sa.or_(sa.func.lead(events.c.on).over(**latest_first).is_(None),
                        sa.func.lead(events.c.exit).over(**latest_first).is_not(None)), 1), else_=0).label("starts"),
        sa.func.min(events.c.exit).over(**latest_first).label("stable_exit"),
    ).subquery("ledger_entry")
    n = entries
    status_exit = sa.and_(left_sql(n, as_of),  # dead or moved out by as_of (registry.register)
                          sa.or_(n.c.stable_exit.is_(None), n.c.status_on <= n.c.stable_exit))
    stable_known = n.c.stable_exit <= as_of
    return (
        sa.select(
            n.c.patient_id, n.c.on.label("entered_on"),
            sa.case(*((n.c.rank == rank, reason.value) for rank, reason in _REASON_OF_RANK.items())).label("reason"),
            sa.case((status_exit, n.c.status_on), (stable_known, n.c.stable_exit), else_=sa.null()).label("left_on"),
            sa.case((status_exit, n.c.status), (stable_known, LedgerExit.STABLE_12_MONTHS.value),
                    else_=sa.null()).label("left_reason"),
        )
        .where(n.c.starts == 1)
        .order_by(n.c.patient_id, n.c.on)
    )


def entries_from_rows(rows: Iterable[Any]) -> list[LedgerEntry]:
    """``ledger_select`` rows as ``LedgerEntry`` values (codes back into the enums)."""
    return [LedgerEntry(r.patient_id, r.entered_on, LedgerReason(r.reason), r.left_on,
                        LedgerExit(r.left_reason) if r.left_reason else None) for r in rows]


def ledger_entries(conn: sa.Connection, as_of: date, *, among=None, emergencies=None) -> list[LedgerEntry]:
    """易肇事肇祸台账 The ledger as of ``as_of`` from the database (``ledger_select``)."""
    return entries_from_rows(conn.execute(ledger_select(as_of, among=among, emergencies=emergencies)))
