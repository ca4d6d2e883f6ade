"""规则版本 Derived data carries its rule version: a rule change rebuilds it instead of serving stale numbers.

The patient-month state build and the frozen indicator snapshots record
``registry.rules.rules_version()``; after ``RULES_VERSION`` changes, the month state is rebuilt
from scratch (and a later month is not merged from a month built by the old rules), and frozen
counts are no longer served: the next freeze recomputes them. Both databases.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import sqlalchemy as sa

from registry import models, rules
from registry.periods import Period
from registry.rates import month_state, snapshots
from registry.rates.compute import freeze, region_counts
from test_indicators_plan import generate

TODAY = date(2026, 11, 23)
OLD = rules.RULES_VERSION  # the current version; a test bumps it by one


def populate(database) -> None:
    generate(database)
    with database.engine.begin() as conn:  # entered long before the state is built
        for t in (models.FollowUp.__table__, models.Patient.__table__):
            conn.execute(sa.update(t).values(updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc)))


def _build_versions(engine) -> dict[int, str]:
    b = month_state.PatientMonthStateBuild.__table__
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(b.c.year_month, b.c.rules_version)).all())


def test_a_rule_change_rebuilds_the_month_state(database, monkeypatch):
    populate(database)
    engine = database.engine
    march, april = Period.parse("2026-03"), Period.parse("2026-04")
    assert month_state.ensure(engine, march, TODAY).action == "scratch"
    assert month_state.ensure(engine, march, TODAY).action == "fresh"
    assert _build_versions(engine) == {202603: f"rules-{OLD}/state-{month_state.STATE_FORMAT}"}

    monkeypatch.setattr(rules, "RULES_VERSION", OLD + 1)
    with engine.connect() as conn:
        assert not month_state.is_fresh(conn, march)
    # April is not merged from March's state of the old rules: built from scratch
    assert month_state.ensure(engine, april, TODAY).action == "scratch"
    assert month_state.ensure(engine, march, TODAY).action == "scratch"
    assert month_state.ensure(engine, march, TODAY).action == "fresh"
    new = f"rules-{OLD + 1}/state-{month_state.STATE_FORMAT}"
    assert _build_versions(engine) == {202603: new, 202604: new}
    live = region_counts(engine, period=march, variant="quarterly", region_code="C", use_snapshot=False, use_state=False)
    state = region_counts(engine, period=march, variant="quarterly", region_code="C", use_snapshot=False, today=TODAY)
    assert state == live


def test_a_new_state_format_rebuilds_the_month_state(database, monkeypatch):
    """Rows stored in an older format (e.g. before ``flags``) are never counted: the month is rebuilt."""
    populate(database)
    engine = database.engine
    march = Period.parse("2026-03")
    assert month_state.ensure(engine, march, TODAY).action == "scratch"
    monkeypatch.setattr(month_state, "STATE_FORMAT", month_state.STATE_FORMAT + 1)
    with engine.connect() as conn:
        assert not month_state.is_fresh(conn, march)
    assert month_state.ensure(engine, march, TODAY).action == "scratch"
    assert _build_versions(engine) == {202603: f"rules-{OLD}/state-{month_state.STATE_FORMAT}"}


def test_a_rule_change_recomputes_frozen_counts(database, monkeypatch):
    populate(database)
    engine = database.engine
    assert freeze(engine, month="2026-03", variant="quarterly", today=TODAY)
    with engine.connect() as conn:
        first = snapshots.read(conn, "2026-03", "quarterly", ["C"])
    assert first["C"]["managed"] > 0
    # a later correction: frozen counts do not follow it while the rules are the same
    f = models.FollowUp.__table__
    with engine.begin() as conn:
        conn.execute(sa.update(f).where(f.c.visit_on <= date(2026, 3, 31)).values(risk_level=None, hospital_status=None,
                                                                                   classification=None, lost_reason=1))
    assert not freeze(engine, month="2026-03", variant="quarterly", today=TODAY)
    with engine.connect() as conn:
        assert snapshots.read(conn, "2026-03", "quarterly", ["C"]) == first

    monkeypatch.setattr(rules, "RULES_VERSION", OLD + 1)
    with engine.connect() as conn:
        assert not snapshots.is_frozen(conn, "2026-03", "quarterly")
        assert snapshots.read(conn, "2026-03", "quarterly", ["C"]) is None  # stale counts are not served
        assert snapshots.frozen_months(conn, "C", "quarterly", ["2026-03"]) == {}
    assert freeze(engine, month="2026-03", variant="quarterly", today=TODAY)
    live = region_counts(engine, period=Period.parse("2026-03"), variant="quarterly", region_code="C",
                         use_snapshot=False, use_state=False)
    with engine.connect() as conn:
        again = snapshots.read(conn, "2026-03", "quarterly", ["C"])
        versions = {v for (v,) in conn.execute(sa.select(snapshots.IndicatorSnapshot.__table__.c.rules_version))}
    assert again["C"] == live["C"] and again["C"]["managed"] == 0 != first["C"]["managed"]
    assert versions == {f"rules-{OLD + 1}"}
