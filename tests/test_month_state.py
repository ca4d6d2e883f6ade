"""患者月状态 The patient-month state gives exactly the live numbers, and never stale ones.

On the generated population of ``test_indicators_plan`` (registration inside the year, same-day
ties, unreached attempts, deaths and moves): for several closed months (January, quarter ends,
mid-quarter) and both 规范管理 variants, the counts from ``registry.rates.month_state`` equal the live
computation for the county, a township and a village; incremental builds equal builds from
scratch row for row; and after a follow-up edited after the state was built, a late-inserted old
follow-up, a late health check, a registration-date change and a death / move-out the state is
brought up to date
(set-based) before it is used. Both databases.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from registry import models
from registry.rates import month_state
from registry.rates.indicators import Period
from registry.rates.compute import compute_rates, region_counts
from test_indicators_plan import generate

TODAY = date(2026, 11, 23)
MONTHS = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-06", "2026-09", "2026-10"]
LONG_AGO = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def population(database):
    generate(database)
    with database.engine.begin() as conn:  # entered long before the state is built
        for t in (models.FollowUp.__table__, models.Patient.__table__):
            conn.execute(sa.update(t).values(updated_at=LONG_AGO))
    return database


def both(engine, month: str, variant: str, region: str, today: date = TODAY) -> tuple[dict, dict]:
    period = Period.parse(month)
    state = region_counts(engine, period=period, variant=variant, region_code=region, use_snapshot=False, today=today)
    live = region_counts(engine, period=period, variant=variant, region_code=region, use_snapshot=False,
                         use_state=False)
    return state, live


def state_rows(engine, month: str) -> list[tuple]:
    s = month_state.PatientMonthState.__table__
    ym = month_state.year_month(Period.parse(month))
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(
            sa.select(s.c.patient_id, s.c.mask, s.c.latest_key, s.c.n_complete).where(s.c.year_month == ym)))


def assert_all_equal(engine, months=MONTHS, today: date = TODAY) -> None:
    for month in months:
        for variant in ("quarterly", "count"):
            for region in ("C", "T1", "V21"):
                state, live = both(engine, month, variant, region, today)
                assert state == live, (month, variant, region)


@pytest.mark.parametrize("variant", ["quarterly", "count"])
def test_state_counts_equal_live_counts(population, variant):
    for month in MONTHS:
        for region in ("C", "T1", "V21"):
            state, live = both(population.engine, month, variant, region)
            assert state == live, (month, region)
            assert live[region]["registered"] > 10 and live[region]["managed"] > 0
    with population.engine.connect() as conn:
        b = month_state.PatientMonthStateBuild.__table__
        built = sorted(r[0] for r in conn.execute(sa.select(b.c.year_month)))
    assert built == [202601, 202602, 202603, 202604, 202606, 202609, 202610]


def test_incremental_builds_equal_scratch_builds(population):
    engine = population.engine
    actions = [month_state.ensure(engine, Period.parse(f"2026-{m:02d}"), TODAY).action for m in range(1, 11)]
    assert actions == ["scratch"] + ["incremental"] * 9
    chained = {m: state_rows(engine, m) for m in MONTHS}
    assert len(chained["2026-10"]) > 50
    assert month_state.invalidate(engine) > 0
    assert state_rows(engine, "2026-10") == []
    for m in MONTHS:
        assert month_state.ensure(engine, Period.parse(m), TODAY, incremental=False).action == "scratch"
        assert state_rows(engine, m) == chained[m], m
    # nothing changed since: the freshness check finds nothing to do
    assert {month_state.ensure(engine, Period.parse(m), TODAY).action for m in MONTHS} == {"fresh"}


def test_only_closed_months_get_a_state(population):
    from registry.errors import InvalidInput

    with pytest.raises(InvalidInput):
        month_state.ensure(population.engine, Period.parse("2026-11"), TODAY)
    with pytest.raises(InvalidInput):  # the last day of the month is not closed yet on that day
        month_state.ensure(population.engine, Period.parse("2026-10"), date(2026, 10, 31))


def test_changes_after_the_build_are_picked_up(population):
    engine = population.engine
    f, p = models.FollowUp.__table__, models.Patient.__table__
    assert_all_equal(engine)  # builds every month's state

    with engine.connect() as conn:
        # a complete follow-up in March of a patient 在册 in October: the latest one of its patient up to June
        row = conn.execute(
            sa.select(f.c.id, f.c.patient_id, f.c.visit_on).select_from(f.join(p, p.c.patient_id == f.c.patient_id))
            .where(f.c.visit_on.between(date(2026, 3, 1), date(2026, 3, 31)), f.c.risk_level.is_not(None),
                   f.c.lost_reason.is_(None), p.c.status == "active", p.c.registered_on < date(2026, 1, 1))
            .order_by(f.c.id)).first()
        assert row is not None

    # 1. an old follow-up edited after the state was built (as a corrected re-import does)
    with engine.begin() as conn:
        conn.execute(sa.update(f).where(f.c.id == row.id).values(
            lost_reason=1, risk_level=None, hospital_status=0, classification=None, updated_at=datetime.now(timezone.utc)))
    assert month_state.ensure(engine, Period.parse("2026-06"), TODAY) == month_state.Refresh(202606, "patched", 1)
    assert_all_equal(engine, ["2026-03", "2026-06", "2026-10"])

    # 2. a late-inserted old follow-up (February) for a patient that had none in the year
    with engine.connect() as conn:
        has_visit = (sa.select(f.c.id).where(f.c.patient_id == p.c.patient_id, f.c.visit_on >= date(2026, 1, 1))
                     .correlate(p).exists())
        quiet = conn.execute(sa.select(p.c.patient_id).where(
            ~has_visit, p.c.status == "active", p.c.registered_on < date(2026, 1, 1)).order_by(p.c.patient_id)).scalar()
        assert quiet is not None
    before_october = both(engine, "2026-10", "quarterly", "C")[1]
    with engine.begin() as conn:
        conn.execute(sa.insert(f).values(patient_id=quiet, visit_on=date(2026, 2, 10), seq=1, mode=2, risk_level=0,
                                         adherence=1, hospital_status=0, rehabilitation=True, updated_at=datetime.now(timezone.utc)))
    state, live = both(engine, "2026-10", "quarterly", "C")
    assert state == live and live["C"]["managed"] == before_october["C"]["managed"] + 1
    assert_all_equal(engine, ["2026-01", "2026-02", "2026-03", "2026-10"])

    # 2b. a late health check (no updated_at: found by its id above the build's mark)
    h = models.HealthCheck.__table__
    with engine.connect() as conn:
        checked = sa.select(h.c.id).where(h.c.patient_id == p.c.patient_id).correlate(p).exists()
        unchecked = conn.execute(sa.select(p.c.patient_id).where(~checked, p.c.status == "active",
                                                                 p.c.registered_on < date(2026, 1, 1))
                                 .order_by(p.c.patient_id)).scalar()
        assert unchecked is not None
    before_october = both(engine, "2026-10", "quarterly", "C")[1]
    with engine.begin() as conn:
        conn.execute(sa.insert(h).values(patient_id=unchecked, checked_on=date(2026, 3, 5)))
    refresh = month_state.ensure(engine, Period.parse("2026-10"), TODAY)
    # ≥ 1: changes stamped within STAMP_MARGIN before the previous patch are recomputed again
    assert refresh.action == "patched" and refresh.patients >= 1
    state, live = both(engine, "2026-10", "quarterly", "C")
    assert state == live and live["C"]["health_checked"] == before_october["C"]["health_checked"] + 1
    assert_all_equal(engine, ["2026-02", "2026-03", "2026-04"])

    # 3. a registration date moved (after some of the patient's follow-ups) and 4. a death / move-out
    with engine.connect() as conn:
        mover = conn.execute(
            sa.select(f.c.patient_id).select_from(f.join(p, p.c.patient_id == f.c.patient_id))
            .where(f.c.visit_on.between(date(2026, 2, 1), date(2026, 4, 30)), p.c.status == "active")
            .order_by(f.c.patient_id)).scalar()
        active = conn.execute(sa.select(p.c.patient_id).where(p.c.status == "active", p.c.patient_id != mover)
                              .order_by(p.c.patient_id.desc()).limit(2)).scalars().all()
    with engine.begin() as conn:
        conn.execute(sa.update(p).where(p.c.patient_id == mover).values(registered_on=date(2026, 5, 1), updated_at=datetime.now(timezone.utc)))
        conn.execute(sa.update(p).where(p.c.patient_id == active[0]).values(
            status="dead", status_on=date(2026, 5, 20), updated_at=datetime.now(timezone.utc)))
        conn.execute(sa.update(p).where(p.c.patient_id == active[1]).values(
            status="moved_out", status_on=date(2026, 9, 1), updated_at=datetime.now(timezone.utc)))
    assert_all_equal(engine)


def test_an_unrecorded_change_is_caught_only_through_updated_at(population):
    """Guard: the freshness check is what keeps the state right — a change that bypasses every
    writer (no new ``updated_at``) leaves the state behind until ``invalidate``."""
    engine = population.engine
    f = models.FollowUp.__table__
    assert_all_equal(engine, ["2026-10"])
    with engine.begin() as conn:
        changed = conn.execute(sa.update(f).where(f.c.visit_on.between(date(2026, 1, 1), date(2026, 10, 31)))
                               .values(lost_reason=1, risk_level=None, hospital_status=0, classification=None)).rowcount
    assert changed > 0
    state, live = both(engine, "2026-10", "quarterly", "C")
    assert state != live
    month_state.invalidate(engine)
    state, live = both(engine, "2026-10", "quarterly", "C")
    assert state == live and live["C"]["managed"] == 0


def test_open_month_merges_the_previous_state_with_its_own_follow_ups(population):
    engine = population.engine
    today = date(2026, 6, 18)  # June open, May closed: state(May) + June live
    for month in ("2026-06",):
        for variant in ("quarterly", "count"):
            for region in ("C", "T1"):
                state, live = both(engine, month, variant, region, today)
                assert state == live, (variant, region)
    with engine.connect() as conn:
        assert month_state.is_fresh(conn, Period.parse("2026-05"))
        assert not month_state.is_fresh(conn, Period.parse("2026-06"))  # an open month gets no state
    # January of an open year: live (no previous month in the window)
    assert_all_equal(engine, ["2026-01"], today=date(2026, 1, 20))


def test_compute_rates_of_a_closed_month_uses_a_fresh_state(population):
    engine = population.engine
    first = compute_rates(engine, month="2026-10", today=TODAY)
    with engine.connect() as conn:
        assert month_state.is_fresh(conn, Period.parse("2026-10"))
    f = models.FollowUp.__table__
    with engine.begin() as conn:  # every October follow-up corrected to unreached, stamped by the writer
        conn.execute(sa.update(f).where(f.c.visit_on.between(date(2026, 1, 1), date(2026, 10, 31))).values(
            lost_reason=1, risk_level=None, hospital_status=0, classification=None,
            updated_at=datetime.now(timezone.utc) + timedelta(seconds=1)))
    second = compute_rates(engine, month="2026-10", today=TODAY)
    assert first["indicators"]["management_rate"]["numerator"] > 0
    assert second["indicators"]["management_rate"]["numerator"] == 0


def test_publishing_a_month_freezes_the_counts_of_its_fresh_state(population):
    """publish_month (the scheduler, on the 1st) freezes through compute.freeze, which builds
    the closed month's state; the frozen counts are the live ones."""
    from registry.rates.compute import freeze

    engine = population.engine
    june = Period.parse("2026-06")
    with engine.connect() as conn:
        assert not month_state.is_fresh(conn, june)
    assert freeze(engine, month="2026-06", variant="quarterly", today=date(2026, 7, 1))
    with engine.connect() as conn:
        assert month_state.is_fresh(conn, june)
    frozen = region_counts(engine, period=june, variant="quarterly", region_code="C", today=date(2026, 7, 1))
    live = region_counts(engine, period=june, variant="quarterly", region_code="C", use_snapshot=False,
                         use_state=False)
    assert frozen == live


def test_prune_keeps_the_base_month_and_older_months_are_rebuilt_on_demand(population):
    """Retention (``month_state.prune``, called by publish_month): states before the published
    month are dropped; asking for an older month again rebuilds it, with the live numbers."""
    engine = population.engine
    for m in ("2026-08", "2026-09", "2026-10"):
        month_state.ensure(engine, Period.parse(m), TODAY)
    removed = month_state.prune(engine, before_year_month=202610)
    assert removed > 0
    with engine.connect() as conn:
        s = month_state.PatientMonthState.__table__
        months = conn.execute(sa.select(s.c.year_month).distinct()).scalars().all()
        assert months == [202610]
        assert month_state.is_fresh(conn, Period.parse("2026-10"))
        assert not month_state.is_fresh(conn, Period.parse("2026-09"))
    assert month_state.ensure(engine, Period.parse("2026-11"), date(2026, 12, 1)).action == "incremental"
    assert_all_equal(engine, months=["2026-09"])  # rebuilt from scratch, same as live
