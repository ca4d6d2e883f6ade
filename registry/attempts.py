"""随访尝试次序 Which follow-up attempts count and in what order: latest, latest and previous complete (rules.md §5).

The one home of the order, Python and its SQL twins side by side (see ``registry.rules``):

- usable at D: dated on or after the patient's registration and not after D (rules.md §5;
  indicators.md: only follow-ups on or after registration count);
- latest first: by date, and on the same date the one entered last (highest id) first;
- latest complete: the first complete one (``registry.rules.is_complete``) in that order;
  previous complete: the complete one just before it, by the same order;
- before an attempt: ``precedes`` (earlier in that order) and ``up_to`` (the usable attempts up to a
  given one, latest first): what an event of one attempt reads of the attempts before it
  (the alerts, ``registry.alerts``).

The SQL forms: ``latest_first_sql`` (the ORDER BY of a window), ``rank_sql`` (``row_number``
per patient: 1 = latest), ``usable_sql`` (the filter), ``precedes_sql`` (one attempt before another) and ``order_key_sql`` (one sortable
integer per row: ``MAX`` of it over a patient's rows is the latest, as the indicators use it).
``tests/test_rule_twins.py`` compares them with the Python order on random rows on both databases.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from registry.rules import is_complete


def is_usable(visit_on: date, registered_on: date, as_of: date) -> bool:
    """An attempt counts at ``as_of``: on or after registration, not after ``as_of`` (rules.md §5)."""
    return registered_on <= visit_on <= as_of


def latest_first(attempts: Iterable[Any], registered_on: date, as_of: date) -> list[Any]:
    """随访尝试 The usable attempts, latest first (same day: entered last, i.e. highest ``id``, first)."""
    usable = [a for a in attempts if is_usable(a.visit_on, registered_on, as_of)]
    return sorted(usable, key=lambda a: (a.visit_on, a.id), reverse=True)


def precedes(a, b) -> bool:
    """``a`` comes before ``b`` in the attempt order (earlier date; same date: entered first, lower ``id``)."""
    return (a.visit_on, a.id) < (b.visit_on, b.id)


def up_to(attempts: Iterable[Any], attempt: Any, registered_on: date) -> list[Any]:
    """到此为止 The usable attempts up to ``attempt`` (itself included when usable), latest first: what
    the rules saw as the patient's history when ``attempt`` was the latest (``[0]`` is ``attempt``
    unless it is dated before registration)."""
    return [a for a in latest_first(attempts, registered_on, attempt.visit_on) if not precedes(attempt, a)]


def _complete(a) -> bool:
    return is_complete(a.lost_reason, a.risk_level, a.hospital_status)


def latest_attempt(attempts: Iterable[Any], registered_on: date, as_of: date) -> Any | None:
    """最近一次随访 The latest usable attempt, or None."""
    ordered = latest_first(attempts, registered_on, as_of)
    return ordered[0] if ordered else None


def complete_latest_first(attempts: Iterable[Any], registered_on: date, as_of: date) -> list[Any]:
    """The usable complete attempts, latest first: [0] is the latest complete, [1] the previous complete."""
    return [a for a in latest_first(attempts, registered_on, as_of) if _complete(a)]


def latest_complete(attempts: Iterable[Any], registered_on: date, as_of: date) -> Any | None:
    """最近一次有效随访 The latest complete follow-up (rules.md §5), or None."""
    complete = complete_latest_first(attempts, registered_on, as_of)
    return complete[0] if complete else None


def previous_complete(attempts: Iterable[Any], registered_on: date, as_of: date) -> Any | None:
    """上一次有效随访 The complete follow-up just before the latest complete one (rules.md §5), or None."""
    complete = complete_latest_first(attempts, registered_on, as_of)
    return complete[1] if len(complete) > 1 else None


# ----------------------------------------------------------------------------- SQL twins


def on_or_after_registration_sql(f, p) -> sa.ColumnElement[bool]:
    """The attempt ``f`` is dated on or after its patient's (``p``) registration."""
    return f.c.visit_on >= p.c.registered_on


def usable_sql(f, p, as_of: date) -> sa.ColumnElement[bool]:
    """SQL twin of ``is_usable`` (``f`` joined to its patient ``p``)."""
    return sa.and_(on_or_after_registration_sql(f, p), f.c.visit_on <= as_of)


def latest_first_sql(f) -> tuple:
    """SQL twin of the ``latest_first`` order: ``visit_on DESC, id DESC``."""
    return (f.c.visit_on.desc(), f.c.id.desc())


def precedes_sql(g, f) -> sa.ColumnElement[bool]:
    """SQL twin of ``precedes``: the attempt ``g`` comes before ``f`` (aliases of follow_up; the
    caller matches their patients)."""
    return sa.or_(g.c.visit_on < f.c.visit_on, sa.and_(g.c.visit_on == f.c.visit_on, g.c.id < f.c.id))


def rank_sql(f, partition_by=None, **over) -> sa.ColumnElement[int]:
    """``row_number()`` of each attempt per patient in ``latest_first`` order (1 = latest);
    ``partition_by`` defaults to ``f.c.patient_id``; ``over`` passes e.g. a frame (``rows=``)."""
    partition = f.c.patient_id if partition_by is None else partition_by
    return sa.func.row_number().over(partition_by=partition, order_by=latest_first_sql(f), **over)


class day_number(FunctionElement):
    """日序号 Days since 2000-01-01 as an integer (portable: PostgreSQL date arithmetic, SQLite julianday)."""

    type = sa.BigInteger()
    inherit_cache = True
    name = "day_number"


@compiles(day_number)
def _day_number_default(element, compiler, **kw):  # PostgreSQL and others with date − date = integer
    return "(%s - DATE '2000-01-01')" % compiler.process(element.clauses, **kw)


@compiles(day_number, "sqlite")
def _day_number_sqlite(element, compiler, **kw):
    return "CAST(julianday(%s) - 2451544.5 AS INTEGER)" % compiler.process(element.clauses, **kw)


# key = day·10¹² + id·100 + bits: larger key = later in ``latest_first`` order (ids below 10¹⁰)
DAY_FACTOR, ID_FACTOR = 10**12, 100


def order_key_sql(f, bits=0) -> sa.ColumnElement[int]:
    """A sortable integer per attempt in ``latest_first`` order, carrying ``bits`` (< ``ID_FACTOR``)
    of that row: ``MAX`` over a patient's rows is the key of the latest one."""
    return day_number(f.c.visit_on) * DAY_FACTOR + sa.cast(f.c.id, sa.BigInteger) * ID_FACTOR + bits


def order_key(visit_on: date, id: int, bits: int = 0) -> int:
    """Python twin of ``order_key_sql``."""
    return (visit_on - date(2000, 1, 1)).days * DAY_FACTOR + id * ID_FACTOR + bits
