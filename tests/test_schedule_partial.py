"""单患者刷新 A run limited to some patients (a web write) plans them exactly as a full run would
and leaves every other patient's tasks untouched (rules.md §5)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
import time_machine

from registry.models import FollowUp, Patient
from schedules.generation import generate
from registry.models import VisitTask
from tests.schedule_population import populate
from tests.test_schedule_generation import planned, stored

D = date.fromisoformat


def test_partial_run_matches_full_run_for_those_patients(database):
    engine = database.engine
    populate(engine, patients=120, seed=31, today=D("2026-03-01"), start=D("2025-06-01"))
    generate(engine, as_of=D("2026-03-01"))
    before = stored(engine)
    with engine.begin() as conn:
        pids = conn.execute(sa.select(Patient.patient_id).order_by(Patient.patient_id).limit(12)).scalars().all()
        changed = pids[:6]
        conn.execute(sa.insert(FollowUp), [
            {"patient_id": pid, "visit_on": D("2026-03-10"), "seq": 9, "mode": 2, "risk_level": i % 5}
            for i, pid in enumerate(changed)
        ])
        # one patient dies: a partial run must cancel their tasks too
        conn.execute(sa.update(Patient).where(Patient.patient_id == pids[7]).values(status="dead", status_on=D("2026-03-05")))
    targets = changed + [pids[7]]
    counts = generate(engine, as_of=D("2026-03-15"), patient_ids=targets)
    assert counts["created"] > 0
    after = stored(engine)
    want = planned(engine, D("2026-03-15"))
    # the refreshed patients: exactly what the pure planner (and a full run) gives
    assert {k: v for k, v in after.items() if k[0] in targets} == {k: v for k, v in want.items() if k[0] in targets}
    # everybody else: untouched, even though a full run on 03-15 would move some of their dates
    assert {k: v for k, v in after.items() if k[0] not in targets} == {k: v for k, v in before.items() if k[0] not in targets}
    t = VisitTask.__table__
    with engine.connect() as conn:
        reasons = set(conn.execute(sa.select(t.c.close_reason).where(t.c.patient_id == pids[7])).scalars())
    assert reasons == {"dead"}
    # a later full run agrees with the planner for everyone (nothing was left inconsistent)
    generate(engine, as_of=D("2026-03-15"))
    assert stored(engine) == want


@time_machine.travel("2026-03-15 09:00 +0800", tick=False)
def test_runs_in_the_same_second_count_and_close_only_their_own_patients(database):
    """Web writes in the same second share a run stamp when they replan different patients: each
    run counts its own patients' tasks (created, open) and no run takes another's tasks for its
    own; a full run in that second then gets a stamp of its own."""
    engine = database.engine
    populate(engine, patients=30, seed=5, today=D("2026-03-01"), start=D("2025-06-01"))
    t = VisitTask.__table__
    with engine.connect() as conn:
        a, b = conn.execute(sa.select(Patient.patient_id).order_by(Patient.patient_id).limit(2)).scalars().all()

    def tasks_of(pid):
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).where(t.c.patient_id == pid, t.c.status == "open")).scalar_one()

    first = generate(engine, as_of=D("2026-03-15"), patient_ids=[a])
    second = generate(engine, as_of=D("2026-03-15"), patient_ids=[b])
    assert tasks_of(a) > 0 and tasks_of(b) > 0
    assert (first["created"], first["open"]) == (tasks_of(a), tasks_of(a))
    assert (second["created"], second["open"]) == (tasks_of(b), tasks_of(b))
    with engine.connect() as conn:
        stamps = conn.execute(sa.select(t.c.created_at).distinct()).scalars().all()
    assert len(stamps) == 1  # both runs really shared the stamp
    full = generate(engine, as_of=D("2026-03-15"))
    want = planned(engine, D("2026-03-15"))
    assert full["created"] == len(want) - tasks_of(a) - tasks_of(b)
    assert full["closed"] == full["cancelled"] == 0
    assert stored(engine) == want
    with engine.connect() as conn:
        assert len(conn.execute(sa.select(t.c.created_at).distinct()).scalars().all()) == 2
