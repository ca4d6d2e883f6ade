"""实时预警规则 Which follow-ups are real-time alert events (rules.md §12), Python and SQL side by side.

The one home of the rules (ARCHITECTURE §15); the detector (``schedules.alerts``) runs the SQL
twins over the follow-ups changed since its watermark, ``tests/test_alerts.py`` checks that the
twins agree with the Python forms.

- **危险性升至3级及以上** (``risk_rise``): a complete follow-up (``registry.rules.is_complete``) with
  risk ≥ 3 whose patient's previous complete follow-up (by date, then sequence) had risk < 3, no
  risk (in hospital), or does not exist [decision: a first assessment at ≥ 3 is a rise].
- **新发肇事肇祸** (``incident``): a follow-up counting any 肇事 or 肇祸 (``registry.rules.is_incident``).
- **失访** (``lost``): the attempt that flags the patient 失访 (rules.md §5): an unreached attempt
  with lost reason 4 (连续3次未访到), or the one that makes the run of unreached attempts since the
  last reached one reach the profile's ``lost_after_misses`` (3) — the later attempts of the same run
  do not alert again.
- **Recent only** [decision]: an event alerts only when its follow-up is dated within
  ``RECENT_DAYS`` (7) days up to today. A county's first import of years of history, a re-import
  or a correction of an old visit never floods the township with alerts about the past; the
  week is long enough for a visit entered a few days late.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Sequence

import sqlalchemy as sa

from registry.codes import LostReason, RiskLevel
from registry.rules import complete_sql

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


def _before(g, f) -> sa.ColumnElement[bool]:
    """``g`` is an earlier attempt of ``f``'s patient (date, then sequence)."""
    return sa.and_(g.c.patient_id == f.c.patient_id,
                   sa.or_(g.c.visit_on < f.c.visit_on, sa.and_(g.c.visit_on == f.c.visit_on, g.c.seq < f.c.seq)))


def previous_risk_sql(f, g) -> sa.ScalarSelect:
    """The risk of ``f``'s patient's previous complete follow-up (``g``: an alias of follow_up)."""
    return (sa.select(g.c.risk_level).where(_before(g, f), complete_sql(g))
            .order_by(g.c.visit_on.desc(), g.c.seq.desc()).limit(1).scalar_subquery())


def risk_rose_sql(f, g) -> sa.ColumnElement[bool]:
    """SQL twin of ``risk_rose``."""
    prev = previous_risk_sql(f, g)
    return sa.and_(complete_sql(f), f.c.risk_level >= RISK_ALERT, sa.or_(prev.is_(None), prev < RISK_ALERT))


def flags_lost(lost_reasons: Sequence[int | None], after_misses: int) -> bool:
    """失访标记 Whether the last attempt of ``lost_reasons`` (the patient's attempts in order, None =
    reached) flags the patient 失访: unreached, and lost reason 4 or the unreached run reaching
    ``after_misses`` exactly with it."""
    if not lost_reasons or lost_reasons[-1] is None:
        return False
    streak = 0
    for reason in reversed(lost_reasons):
        if reason is None:
            break
        streak += 1
    return lost_reasons[-1] == LostReason.THREE_MISSES.value or streak == after_misses


def flags_lost_sql(f, g, h, after_misses: int) -> sa.ColumnElement[bool]:
    """SQL twin of ``flags_lost`` (``g``, ``h``: aliases of follow_up): the unreached attempts up to
    ``f`` with no reached attempt between them and ``f``."""
    at_or_before = sa.or_(_before(g, f), g.c.id == f.c.id)
    reached_between = (sa.select(h.c.id).where(
        h.c.patient_id == f.c.patient_id, h.c.lost_reason.is_(None),
        sa.or_(h.c.visit_on > g.c.visit_on, sa.and_(h.c.visit_on == g.c.visit_on, h.c.seq > g.c.seq)),
        sa.or_(h.c.visit_on < f.c.visit_on, sa.and_(h.c.visit_on == f.c.visit_on, h.c.seq < f.c.seq)))
        .correlate(f, g))  # two levels down: name both outer tables
    streak = (sa.select(sa.func.count()).select_from(g)
              .where(at_or_before, g.c.lost_reason.is_not(None), ~reached_between.exists()).correlate(f).scalar_subquery())
    return sa.and_(f.c.lost_reason.is_not(None),
                   sa.or_(f.c.lost_reason == LostReason.THREE_MISSES.value, streak == after_misses))


__all__ = ["RECENT_DAYS", "is_recent", "recent_sql", "risk_rose", "risk_rose_sql", "previous_risk_sql",
           "flags_lost", "flags_lost_sql"]
