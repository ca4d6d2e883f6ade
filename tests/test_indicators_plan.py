"""考核指标 查询计划 The fast per-patient plan gives exactly the numbers of the plain formulation.

``per_patient_query`` aggregates follow-ups per patient first and drops rows dated before
registration with an anti-join against the patients registered inside Y; ``plain=True`` is the
original register LEFT JOIN follow-ups ON visit_on ≥ registered_on (the default picks by scope).
On a seeded, generated
population full of edges (registration inside the year and after D, same-day ties, unreached
attempts, blank fields, deaths and moves) both must give the same row per patient and the same
village counts, for several months, both 规范管理 variants and a region subset. Both databases.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from registry import models
from registry.rates.indicators import Period, per_patient_query
from registry.rates.compute import region_counts

VILLAGES = {"V11": "T1", "V12": "T1", "V21": "T2"}
MONTHS = ["2026-01", "2026-03", "2026-04", "2026-06", "2026-10", "2026-12"]


def generate(database, seed: int = 20261123, patients: int = 240) -> None:
    rnd = random.Random(seed)
    region, patient, follow_up, health = (models.Region.__table__, models.Patient.__table__,
                                          models.FollowUp.__table__, models.HealthCheck.__table__)
    day0 = date(2025, 9, 1)

    def some_day(span: int) -> date:
        return day0 + timedelta(days=rnd.randrange(span))

    people, visits, checks = [], [], []
    for i in range(patients):
        pid = f"G{i:04d}"
        # a third registered inside 2026 (some after the months asked), the rest before
        registered = date(2024, 5, 1) + timedelta(days=rnd.randrange(300)) if i % 3 else some_day(480)
        status = rnd.choice(["active"] * 6 + ["dead", "moved_out"])
        status_on = some_day(480) if status != "active" else None
        people.append(dict(patient_id=pid, name="生成", sex=1 + i % 2, birth_date=date(1970, 1, 1),
                           village_code=list(VILLAGES)[i % 3],
                           diagnosis=rnd.choice(["schizophrenia", "schizophrenia", "bipolar"]),
                           registered_on=registered, status=status, status_on=status_on))
        used = set()
        for _ in range(rnd.randrange(7)):
            on = some_day(480) if rnd.random() < 0.8 else registered + timedelta(days=rnd.randrange(-5, 5))
            seq = 1
            while (on, seq) in used:  # same-day ties: a second and third attempt that day
                seq += 1
            used.add((on, seq))
            reached = rnd.random() < 0.8
            maybe = lambda values: rnd.choice(values + [None])  # noqa: E731
            visits.append(dict(
                patient_id=pid, visit_on=on, seq=seq, mode=rnd.choice([1, 2, 3]),
                lost_reason=None if reached else rnd.choice([1, 2, 3]),
                risk_level=maybe([0, 0, 0, 1, 2, 3]) if reached else None,
                hospital_status=maybe([0, 0, 1, 2]), adherence=maybe([1, 1, 2, 3, 4]),
                classification=maybe([None, None, 1, 2, 3]), insight=maybe([1, 2, 3]),
                symptoms_obvious=maybe([False, False, True]), symptoms=rnd.choice([None, "", "幻听"]),
                adverse_reaction_serious=maybe([False, True]), physical_illness_serious=maybe([False, True]),
                sf_self_care=maybe([1, 2, 3]), sf_housework=maybe([1, 2]), sf_work=maybe([1, 2, 3, 9]),
                sf_study=maybe([1, 2]), sf_social=maybe([1, 2, 3]),
                incidents_disturbance=maybe([0, 0, 0, 1]), incidents_crime=maybe([0, 0, 0, 0, 1]),
                psych_support_patient=maybe([False, True]), psych_support_family=maybe([False, True]),
                rehabilitation=maybe([False, True]),
            ))
            row = visits[-1]  # recorded classification consistent with the risk level (CHECK constraint)
            if row["risk_level"] is not None and row["classification"] is not None:
                if row["risk_level"] >= 3:
                    row["classification"] = 1
                elif row["risk_level"] > 0 and row["classification"] == 3:
                    row["classification"] = 2
        if rnd.random() < 0.4:
            checks.append(dict(patient_id=pid, checked_on=some_day(480)))
    rnd.shuffle(visits)  # entry order (id) is not date order
    with database.engine.begin() as conn:
        conn.execute(sa.insert(region), [dict(code="C", name="生成县", level="county", parent_code=None, population=None)])
        conn.execute(sa.insert(region), [dict(code=t, name=t, level="township", parent_code="C", population=None)
                                         for t in sorted(set(VILLAGES.values()))])
        conn.execute(sa.insert(region), [dict(code=v, name=v, level="village", parent_code=t, population=5000)
                                         for v, t in VILLAGES.items()])
        conn.execute(sa.insert(patient), people)
        for row in visits:  # one statement each: ids follow the shuffled entry order
            conn.execute(sa.insert(follow_up), [row])
        conn.execute(sa.insert(health), checks)


@pytest.fixture
def population(database):
    generate(database)
    return database


def rows(conn, period: Period, villages, with_count: bool, plain: bool) -> list[tuple]:
    q = per_patient_query(period, villages, with_count=with_count, plain=plain).subquery()
    return sorted(tuple(r) for r in conn.execute(sa.select(q)))


@pytest.mark.parametrize("villages", [None, ["V11", "V21"]])
def test_fast_per_patient_rows_equal_the_plain_join(population, villages):
    with population.engine.connect() as conn:
        for month in MONTHS:
            period = Period.parse(month)
            fast, plain = rows(conn, period, villages, True, False), rows(conn, period, villages, True, True)
            assert fast == plain, month
            assert len(fast) > 50  # the population is not trivially empty
            assert any(r[5] is not None for r in fast) and any(r[5] is None for r in fast)


@pytest.mark.parametrize("variant", ["quarterly", "count"])
def test_fast_counts_equal_the_plain_counts_for_every_region(population, variant):
    for month in MONTHS:
        period = Period.parse(month)
        for region in ("C", "T1", "V21"):
            counts = {plan: region_counts(population.engine, period=period, variant=variant, region_code=region,
                                          use_snapshot=False, plain=plan)
                      for plan in (None, False, True)}  # auto, aggregate-first, plain join
            assert counts[None] == counts[True] and counts[False] == counts[True], (month, region)
            fast = counts[False]
        assert fast["V21"]["registered"] > 0


def test_the_generated_population_has_the_edges_the_plans_differ_on(population):
    """Guard for the two tests above: follow-ups in W before registration (the anti-join), same-day
    ties, unreached attempts, patients without any follow-up, deaths/moves before D."""
    f, p = models.FollowUp.__table__, models.Patient.__table__
    with population.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(f.join(p, p.c.patient_id == f.c.patient_id))
                              .where(f.c.visit_on >= date(2026, 1, 1), f.c.visit_on < p.c.registered_on)).scalar_one()
        ties = conn.execute(sa.select(sa.func.count()).where(f.c.seq > 1)).scalar_one()
        unreached = conn.execute(sa.select(sa.func.count()).where(f.c.lost_reason.is_not(None))).scalar_one()
        has_any = sa.select(f.c.id).where(f.c.patient_id == p.c.patient_id).correlate(p).exists()
        without = conn.execute(sa.select(sa.func.count()).select_from(p).where(~has_any)).scalar_one()
        gone = conn.execute(sa.select(sa.func.count()).where(p.c.status != "active",
                                                             p.c.status_on <= date(2026, 10, 31))).scalar_one()
    assert before >= 5 and ties >= 5 and unreached >= 20 and without >= 5 and gone >= 5, (before, ties, unreached,
                                                                                           without, gone)
