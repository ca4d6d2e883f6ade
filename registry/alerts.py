"""实时预警规则 Which follow-ups are real-time alert events (rules.md §12), Python and SQL side by side.

The one home of the rules (ARCHITECTURE §15); the detector (``schedules.alerts``) runs the SQL
twins over the follow-ups changed since its watermark, ``tests/test_alerts.py`` checks that the
twins agree with the Python forms.

The order of a patient's attempts and which of them count are ``registry.attempts``' (rules.md §5):
only attempts dated on or after registration, by date and on one date by entry order (``id``) — the
order the scheduler reads, so an alert and the task it precedes agree on "previous" and on the run.

- **危险性升至3级及以上** (``risk_rise``): a complete follow-up (``registry.rules.is_complete``) with
  risk ≥ 3 whose patient's previous complete follow-up (``attempts.previous_complete`` of the
  attempts up to it) had risk < 3, no risk (in hospital), or does not exist [decision: a first
  assessment at ≥ 3 is a rise].
- **新发肇事肇祸** (``incident``): a follow-up counting any 肇事 or 肇祸 (``registry.rules.is_incident``).
- **失访** (``lost``): the attempt that flags the patient 失访 (rules.md §5): an unreached attempt
  with lost reason 4 (连续3次未访到), or the one that makes the run of unreached attempts since the
  last reached one reach the profile's ``lost_after_misses`` (3) — the later attempts of the same run
  do not alert again.
- An attempt dated before registration is no event of either kind and counts in no one's history.
- **Recent only** [decision]: an event alerts only when its follow-up is dated within
  ``RECENT_DAYS`` (7) days up to today. A county's first import of years of history, a re-import
  or a correction of an old visit never floods the township with alerts about the past; the
  week is long enough for a visit entered a few days late.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Iterable, Sequence

import sqlalchemy as sa

from registry.attempts import latest_first_sql, on_or_after_registration_sql, precedes_sql, previous_complete, up_to, usable_sql
from registry.codes import LostReason, RiskLevel
from registry.rules import complete_sql, is_complete, is_reached, reached_sql

RECENT_DAYS = 7
RISK_ALERT = RiskLevel.PUBLIC_PROPERTY.value  # 3


def is_recent(visit_on: date, today: date) -> bool:
    """近期 Dated within ``RECENT_DAYS`` days up to ``today`` (both ends included)."""
    return today - timedelta(days=RECENT_DAYS) <= visit_on <= today


def recent_day_sql(day, today: date) -> sa.ColumnElement[bool]:
    """SQL twin of ``is_recent`` over a date expression ``day`` (an emergency's day: ``schedules.alerts``)."""
    return sa.and_(day >= today - timedelta(days=RECENT_DAYS), day <= today)


def recent_sql(f, today: date) -> sa.ColumnElement[bool]:
    """SQL twin of ``is_recent`` over a follow-up ``f``."""
    return recent_day_sql(f.c.visit_on, today)


def risk_rose(risk_level: int | None, complete: bool, previous_risk: int | None) -> bool:
    """危险性升高 A complete follow-up at risk ≥ 3 after a previous complete one below 3 (or none)."""
    return complete and risk_level is not None and risk_level >= RISK_ALERT and (previous_risk is None or previous_risk < RISK_ALERT)


def _first(history: list, attempt) -> bool:
    """``attempt`` heads its ``history`` (``attempts.up_to``): it is dated on or after registration."""
    return bool(history) and history[0].id == attempt.id


def risk_rose_at(attempts: Iterable[Any], attempt: Any, registered_on: date) -> bool:
    """危险性升高 ``risk_rose`` for ``attempt`` among its patient's ``attempts`` (objects with FollowUp's
    attribute names): its previous complete follow-up by ``registry.attempts``."""
    history = up_to(attempts, attempt, registered_on)
    if not _first(history, attempt):
        return False
    complete = is_complete(attempt.lost_reason, attempt.risk_level, attempt.hospital_status)
    previous = previous_complete(history, registered_on, attempt.visit_on) if complete else None
    return risk_rose(attempt.risk_level, complete, previous.risk_level if previous is not None else None)


def _before(g, f, p) -> sa.ColumnElement[bool]:
    """``g`` is a usable attempt of ``f``'s patient (``p``: the patient table, joined to ``f`` by the
    caller) before ``f`` (``registry.attempts``: ``usable_sql``, ``precedes_sql``)."""
    return sa.and_(g.c.patient_id == f.c.patient_id, usable_sql(g, p, f.c.visit_on), precedes_sql(g, f))


def previous_risk_sql(f, g, p) -> sa.ScalarSelect:
    """The risk of ``f``'s patient's previous complete follow-up (``g``: an alias of follow_up; ``p``:
    the patient table joined to ``f``), by ``registry.attempts``' order."""
    return (sa.select(g.c.risk_level).where(_before(g, f, p), complete_sql(g))
            .order_by(*latest_first_sql(g)).limit(1).correlate(f, p).scalar_subquery())


def risk_rose_sql(f, g, p) -> sa.ColumnElement[bool]:
    """SQL twin of ``risk_rose_at`` (``p``: the patient table joined to ``f`` by the caller)."""
    prev = previous_risk_sql(f, g, p)
    return sa.and_(on_or_after_registration_sql(f, p), complete_sql(f), f.c.risk_level >= RISK_ALERT,
                   sa.or_(prev.is_(None), prev < RISK_ALERT))


def flags_lost(lost_reasons: Sequence[int | None], after_misses: int) -> bool:
    """失访标记 Whether the last attempt of ``lost_reasons`` (the patient's attempts in order, None =
    reached) flags the patient 失访: unreached, and lost reason 4 or the unreached run reaching
    ``after_misses`` exactly with it."""
    if not lost_reasons or is_reached(lost_reasons[-1]):
        return False
    streak = 0
    for reason in reversed(lost_reasons):
        if is_reached(reason):
            break
        streak += 1
    return lost_reasons[-1] == LostReason.THREE_MISSES.value or streak == after_misses


def flags_lost_at(attempts: Iterable[Any], attempt: Any, registered_on: date, after_misses: int) -> bool:
    """失访标记 ``flags_lost`` for ``attempt`` among its patient's ``attempts``: the run of the usable
    attempts up to it, in ``registry.attempts``' order."""
    history = up_to(attempts, attempt, registered_on)
    return _first(history, attempt) and flags_lost([a.lost_reason for a in reversed(history)], after_misses)


def flags_lost_sql(f, g, h, p, after_misses: int) -> sa.ColumnElement[bool]:
    """SQL twin of ``flags_lost_at`` (``g``, ``h``: aliases of follow_up; ``p``: the patient table
    joined to ``f`` by the caller): the usable unreached attempts up to ``f`` with no reached attempt
    between them and ``f``."""
    at_or_before = sa.or_(_before(g, f, p), g.c.id == f.c.id)
    reached_between = (sa.select(h.c.id).where(
        h.c.patient_id == f.c.patient_id, reached_sql(h), precedes_sql(g, h), precedes_sql(h, f))
        .correlate(f, g))  # two levels down: name both outer tables
    streak = (sa.select(sa.func.count()).select_from(g)
              .where(at_or_before, ~reached_sql(g), ~reached_between.exists()).correlate(f, p).scalar_subquery())
    return sa.and_(on_or_after_registration_sql(f, p), ~reached_sql(f),
                   sa.or_(f.c.lost_reason == LostReason.THREE_MISSES.value, streak == after_misses))


__all__ = ["RECENT_DAYS", "is_recent", "recent_sql", "risk_rose", "risk_rose_at", "risk_rose_sql", "previous_risk_sql",
           "flags_lost", "flags_lost_at", "flags_lost_sql"]
