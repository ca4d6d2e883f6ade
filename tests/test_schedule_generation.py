"""Set-based generation on SQLite and PostgreSQL: acceptance example, agreement with the pure
planner, idempotency (twice and concurrently), closing and cancelling, calendar recomputation.

Tests taking the ``sharding`` fixture run a third time on PostgreSQL with the run cut into three
shards (each its own connection and transaction, in parallel), as a province-sized run is."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from datetime import date

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from jingfang.cli import app
from registry.clock import now_utc
from registry.db import make_engine
from registry.models import FollowUp, HealthCheck, Patient
from registry.rules import classification_of
from schedules.calendar import WorkCalendar, load_calendar, parse_calendar_csv
from registry.rules import classification_sql
from schedules.generation import generate, in_range, shard_count
from registry.models import VisitTask
from schedules.planning import plan
from registry.profile import load_profile
from schedules.worklist import open_tasks
from tests.schedule_population import populate, records
from tests.waiting import lock_waiters, wait_for

D = date.fromisoformat
runner = CliRunner()
PROFILE = load_profile()


@pytest.fixture(params=[False, True], ids=["one-transaction", "sharded"])
def sharding(request, database, monkeypatch) -> bool:
    """Run the test as it is, and (PostgreSQL only: conftest drops the SQLite pairing) with every
    full run cut into 3 shards."""
    if request.param:
        assert database.backend == "postgresql"
        monkeypatch.setenv("JINGFANG_GENERATION_SHARDS", "3")
        monkeypatch.setenv("JINGFANG_GENERATION_SHARD_PATIENTS", "1")
    return request.param


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def stored(engine, status="open"):
    t = VisitTask.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.status == status)).mappings().all()
    return {
        (r["patient_id"], r["kind"], r["basis"]): (
            r["due_on"], r["nominal_due_on"], r["roles"], bool(r["joint"]), r["rule"], r["risk_level"],
            r["window_start"], r["window_end"], bool(r["calendar_estimated"]),
        )
        for r in rows
    }


def planned(engine, today):
    calendar = WorkCalendar.load(engine)
    out = {}
    for record in records(engine):
        for t in plan(record, PROFILE, today, calendar):
            out[(t.patient_id, t.kind, t.basis)] = (
                t.due_on, t.nominal_due_on, ",".join(t.roles), t.joint, t.rule, t.risk_level,
                t.window_start, t.window_end, t.calendar_estimated,
            )
    return out


def test_small_county_acceptance(database, small_county):
    cli("import", small_county, "--db", database.url)
    out = cli("schedule", "--as-of", "2026-06-10", "--db", database.url).output
    assert "新建 5" in out
    got = json.loads(cli("tasks", "--as-of", "2026-06-10", "--json", "--db", database.url).stdout)
    expected = json.loads((small_county / "expected-tasks-2026-06-10.json").read_text("utf-8"))
    assert all(t["rule"].startswith("national-2018@1:") for t in got)
    strip = lambda ts: sorted((json.dumps({k: v for k, v in t.items() if k != "rule"}, sort_keys=True) for t in ts))
    assert strip(got) == strip(expected)
    # sorted as rules.md §5: risk desc (C1 risk 3 first), then days overdue desc, then due date
    assert [(t["patient_id"], t["kind"]) for t in got] == [
        ("C1", "locate"), ("C1", "health_check"), ("A", "follow_up"), ("B", "first_visit"), ("B", "health_check")]


def test_sql_agrees_with_pure_planner(database, sharding):
    today = D("2026-10-05")
    populate(database.engine, patients=250, seed=7, today=today)
    timings: dict[str, float] = {}
    counts = generate(database.engine, as_of=today, timings=timings)
    assert any("shards in parallel" in phase for phase in timings) is sharding  # the path the test meant
    assert counts["shards"] == (3 if sharding else 1)
    expected = planned(database.engine, today)
    assert stored(database.engine) == expected
    assert counts["open"] == len(expected) and counts["created"] == len(expected)
    kinds = {k[1] for k in expected}
    assert kinds == {"first_visit", "follow_up", "retry", "locate", "discharge_check", "health_check", "injection"}


def test_later_run_closes_and_recomputes(database, sharding):
    populate(database.engine, patients=150, seed=11, today=D("2026-03-01"), start=D("2025-06-01"))
    generate(database.engine, as_of=D("2026-03-01"))
    # two more weeks of follow-ups arrive; the next run closes what they completed
    with database.engine.begin() as conn:
        pids = conn.execute(sa.select(Patient.patient_id).order_by(Patient.patient_id).limit(60)).scalars().all()
        conn.execute(sa.insert(FollowUp), [
            {"patient_id": pid, "visit_on": D("2026-03-10"), "seq": 9, "mode": 2, "risk_level": i % 4} for i, pid in enumerate(pids)
        ])
    counts = generate(database.engine, as_of=D("2026-03-15"))
    assert counts["closed"] > 0
    assert stored(database.engine) == planned(database.engine, D("2026-03-15"))
    done = stored(database.engine, "done")
    open_now = stored(database.engine)
    # every patient who had a visit task on 03-01 and a new attempt since has exactly one open visit task
    visit_open = [k for k in open_now if k[1] not in ("health_check", "injection")]
    assert len(visit_open) == len({k[0] for k in visit_open})
    assert {k[0] for k in done} & set(pids)
    t = VisitTask.__table__
    with database.engine.connect() as conn:
        reasons = set(conn.execute(sa.select(t.c.close_reason).where(t.c.status == "done")).scalars())
    assert "follow_up" in reasons


def test_a_run_for_an_earlier_date_leaves_no_second_open_visit_task(database, sharding):
    """rules.md §5: an attempt dated after a visit task's basis closes it, whichever run created
    the task. A run for an earlier date (an operator's ``--as-of``) plans from the attempts up to
    that date and creates tasks the later attempts have already superseded; the next run closes them."""
    engine = database.engine
    populate(engine, patients=150, seed=12, today=D("2026-03-01"), start=D("2025-06-01"))
    with engine.begin() as conn:
        pids = conn.execute(sa.select(Patient.patient_id).order_by(Patient.patient_id).limit(60)).scalars().all()
        conn.execute(sa.insert(FollowUp), [
            {"patient_id": pid, "visit_on": D("2026-03-10"), "seq": 9, "mode": 2, "risk_level": i % 4} for i, pid in enumerate(pids)
        ])
    generate(engine, as_of=D("2026-03-15"))
    generate(engine, as_of=D("2026-03-01"))

    def open_visit_tasks_per_patient():
        visit = [k for k in stored(engine) if k[1] not in ("health_check", "injection")]
        return Counter(k[0] for k in visit)

    assert max(open_visit_tasks_per_patient().values()) == 2  # the earlier date's run planned stale tasks
    counts = generate(engine, as_of=D("2026-03-15"))
    assert counts["created"] == 0 and counts["closed"] > 0
    assert max(open_visit_tasks_per_patient().values()) == 1
    assert stored(engine) == planned(engine, D("2026-03-15"))


def test_run_twice_and_concurrently_no_duplicates(database, sharding):
    today = D("2026-06-10")
    populate(database.engine, patients=200, seed=3, today=today)
    first = generate(database.engine, as_of=today)
    second = generate(database.engine, as_of=today)
    assert second["created"] == 0 and second["closed"] == 0 and second["open"] == first["open"]
    with database.engine.begin() as conn:
        conn.execute(sa.delete(VisitTask))
    errors, results = [], []

    def run():
        engine = make_engine(database.url)
        try:
            results.append(generate(engine, as_of=today))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(r["created"] for r in results) == [0, 0, first["open"]]
    t = VisitTask.__table__
    with database.engine.connect() as conn:
        dupes = conn.execute(
            sa.select(t.c.patient_id, t.c.kind, t.c.basis).group_by(t.c.patient_id, t.c.kind, t.c.basis)
            .having(sa.func.count() > 1)
        ).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
    assert dupes == [] and total == first["open"]


def test_death_move_and_refusal_cancel_with_reason(database, sharding, small_county):
    cli("import", small_county, "--db", database.url)
    generate(database.engine, as_of=D("2026-06-10"))
    with database.engine.begin() as conn:
        conn.execute(sa.update(Patient).where(Patient.patient_id == "A").values(status="dead", status_on=D("2026-06-12")))
        conn.execute(sa.update(Patient).where(Patient.patient_id == "B").values(status="moved_out", status_on=D("2026-06-11")))
        conn.execute(sa.update(Patient).where(Patient.patient_id == "C1").values(consent=0))
    generate(database.engine, as_of=D("2026-06-15"))
    t = VisitTask.__table__
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.patient_id, t.c.kind, t.c.status, t.c.close_reason).order_by(t.c.patient_id, t.c.kind)).all()
    assert [tuple(r) for r in rows] == [
        ("A", "follow_up", "cancelled", "dead"),
        ("B", "first_visit", "cancelled", "moved_out"),
        ("B", "health_check", "cancelled", "moved_out"),
        ("C1", "health_check", "cancelled", "consent_refused"),
        ("C1", "locate", "cancelled", "consent_refused"),
    ]


@pytest.mark.parametrize("incremental", [True, False], ids=["incremental", "full"])
def test_a_task_cancelled_while_not_owed_is_reopened_when_owed_again(database, sharding, small_county, incremental):
    """rules.md §5: the last row (dead, moved out, refusing consent) cancels open tasks with the reason,
    and a task is unique on (patient, kind, basis). When the reason no longer holds — a status
    corrected back to active, consent given after a refusal, a type-1 patient's consent for the
    health check, an LAI plan resumed — the rules owe the same keys again: the cancelled rows are
    reopened (before: they stayed cancelled and the patient had no visit task at all)."""
    cli("import", small_county, "--db", database.url)
    engine, t = database.engine, VisitTask.__table__

    def patient(pid, **values):
        with engine.begin() as conn:
            conn.execute(sa.update(Patient).where(Patient.patient_id == pid).values(**values, updated_at=now_utc()))

    def rows():
        with engine.connect() as conn:
            return {(r.patient_id, r.kind): (r.id, r.status, r.close_reason, r.closed_at) for r in conn.execute(
                sa.select(t.c.id, t.c.patient_id, t.c.kind, t.c.status, t.c.close_reason, t.c.closed_at))}

    patient("A", lai_drug="帕利哌酮", lai_interval_weeks=4, lai_last_on=D("2026-05-20"))
    generate(engine, as_of=D("2026-06-10"))
    first = rows()
    patient("A", status="dead", status_on=D("2026-06-11"))
    patient("B", report_type=1, consent=0)
    patient("C1", consent=0)
    generate(engine, as_of=D("2026-06-15"), incremental=True)
    assert {k: v[1:3] for k, v in rows().items() if k[0] != "D"} == {
        ("A", "follow_up"): ("cancelled", "dead"), ("A", "injection"): ("cancelled", "dead"),
        ("B", "first_visit"): ("open", None), ("B", "health_check"): ("cancelled", "consent_refused"),
        ("C1", "health_check"): ("cancelled", "consent_refused"), ("C1", "locate"): ("cancelled", "consent_refused"),
    }
    patient("A", status="active", status_on=None)  # the death was entered in error
    patient("B", report_type=2, consent=1)
    patient("C1", consent=1)
    generate(engine, as_of=D("2026-06-15"), incremental=incremental)
    assert stored(engine) == planned(engine, D("2026-06-15"))
    again = rows()
    assert again == {k: (v[0], "open", None, None) for k, v in first.items()}  # the same rows, open again
    # an LAI plan stopped and resumed from the same last injection: its task comes back too
    patient("A", lai_drug=None, lai_interval_weeks=None, lai_last_on=None)
    generate(engine, as_of=D("2026-06-16"), incremental=incremental)
    assert rows()[("A", "injection")][1:3] == ("cancelled", "lai_stopped")
    patient("A", lai_drug="帕利哌酮", lai_interval_weeks=4, lai_last_on=D("2026-05-20"))
    generate(engine, as_of=D("2026-06-16"), incremental=incremental)
    assert rows()[("A", "injection")] == (first[("A", "injection")][0], "open", None, None)
    assert stored(engine) == planned(engine, D("2026-06-16"))


def test_a_done_or_year_ended_task_is_never_reopened(database, small_county):
    """rules.md §5: only the cancel reasons of the last row (and a stopped LAI plan) are lifted when the
    task is owed again; a task done, or a health check cancelled because its year ended, stays closed."""
    cli("import", small_county, "--db", database.url)
    engine, t = database.engine, VisitTask.__table__
    generate(engine, as_of=D("2026-06-10"))
    with engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.patient_id == "A", t.c.kind == "follow_up")
                     .values(status="done", close_reason="follow_up"))
        conn.execute(sa.update(t).where(t.c.patient_id == "B", t.c.kind == "health_check")
                     .values(status="cancelled", close_reason="year_ended"))
    generate(engine, as_of=D("2026-06-10"))
    with engine.connect() as conn:
        closed = conn.execute(sa.select(t.c.patient_id, t.c.status, t.c.close_reason)
                              .where(t.c.status != "open").order_by(t.c.patient_id)).all()
    assert [tuple(r) for r in closed] == [("A", "done", "follow_up"), ("B", "cancelled", "year_ended")]


def test_type1_patient_without_consent_loses_only_the_health_check(database, sharding, small_county):
    """rules.md §1: a type-1 (发病报告) patient is managed without consent; §5: the annual health check
    is for patients with consent (audit gap 7). B's consent is withdrawn after a run: the incremental
    run cancels the open health check (``consent_refused``) and keeps the first visit; a full run
    from scratch agrees with the planner, and plans no health check for B."""
    cli("import", small_county, "--db", database.url)
    generate(database.engine, as_of=D("2026-06-10"))
    with database.engine.begin() as conn:
        conn.execute(sa.update(Patient).where(Patient.patient_id == "B").values(report_type=1, consent=0,
                                                                                       updated_at=now_utc()))
    counts = generate(database.engine, as_of=D("2026-06-15"), incremental=True)
    assert counts["mode"] == "incremental" and counts["cancelled"] == 1
    t = VisitTask.__table__
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.kind, t.c.status, t.c.close_reason).where(t.c.patient_id == "B")
                            .order_by(t.c.kind)).all()
    assert [tuple(r) for r in rows] == [("first_visit", "open", None), ("health_check", "cancelled", "consent_refused")]
    with database.engine.begin() as conn:
        conn.execute(sa.delete(VisitTask))
    generate(database.engine, as_of=D("2026-06-15"), incremental=False)
    assert stored(database.engine) == planned(database.engine, D("2026-06-15"))
    assert ("B", "health_check", "year:2026") not in stored(database.engine)
    assert ("C1", "health_check", "year:2026") in stored(database.engine)


def test_health_check_and_injection_close_on_their_own_events(database, sharding, small_county):
    cli("import", small_county, "--db", database.url)
    with database.engine.begin() as conn:
        conn.execute(sa.update(Patient).where(Patient.patient_id == "A").values(
            lai_drug="棕榈酸帕利哌酮", lai_interval_weeks=4, lai_last_on=D("2026-05-01")))
    generate(database.engine, as_of=D("2026-06-10"))
    with database.engine.begin() as conn:
        conn.execute(sa.insert(HealthCheck).values(patient_id="B", checked_on=D("2026-06-12")))
        conn.execute(sa.update(Patient).where(Patient.patient_id == "A").values(lai_last_on=D("2026-06-01")))
        conn.execute(sa.insert(FollowUp).values(patient_id="A", visit_on=D("2026-06-13"), mode=3, risk_level=0))
    generate(database.engine, as_of=D("2026-06-15"))
    t = VisitTask.__table__
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.patient_id, t.c.kind, t.c.basis, t.c.status, t.c.due_on)
                            .where(t.c.patient_id.in_(["A", "B"])).order_by(t.c.patient_id, t.c.kind, t.c.basis)).all()
    assert [tuple(r) for r in rows] == [
        ("A", "follow_up", "follow_up:3", "done", D("2026-05-29")),
        ("A", "follow_up", "follow_up:8", "open", D("2026-09-11")),  # 06-13 稳定 → 09-13 (Sunday) → Fri 09-11
        ("A", "injection", "lai:2026-05-01", "done", D("2026-05-29")),
        ("A", "injection", "lai:2026-06-01", "open", D("2026-06-29")),
        ("B", "first_visit", "registration:2026-05-20", "open", D("2026-06-03")),
        ("B", "health_check", "year:2026", "done", D("2026-06-30")),
    ]


def test_unknown_year_estimated_then_recomputed_when_table_loaded(database, sharding, small_county):
    cli("import", small_county, "--db", database.url)
    with database.engine.begin() as conn:
        conn.execute(sa.insert(FollowUp).values(patient_id="A", visit_on=D("2026-12-20"), mode=2, risk_level=0))
    counts = generate(database.engine, as_of=D("2026-12-21"))
    # 2026-12-20 稳定 + 3 months = 2027-03-20, a Saturday in a year no table knows → Fri 03-19, estimated
    assert counts["calendar_estimated"] == 1 and any("2027" in w for w in counts["warnings"])
    key = ("A", "follow_up", "follow_up:8")
    assert stored(database.engine)[key][0] == D("2027-03-19") and stored(database.engine)[key][-1] is True
    # the operator loads 2027 (a made-up holiday on 03-19 for the test): the open task is recomputed
    result = load_calendar(database.engine, parse_calendar_csv("day,working,name\n2027-03-19,0,测试假日\n2027-01-01,0,元旦\n"))
    assert result["recomputed"] == 1
    assert stored(database.engine)[key][0] == D("2027-03-18") and stored(database.engine)[key][-1] is False
    again = generate(database.engine, as_of=D("2026-12-21"))
    assert again["calendar_estimated"] == 0 and again["warnings"] == []
    assert stored(database.engine)[key][0] == D("2027-03-18")


def test_region_filter_cascades(database):
    populate(database.engine, patients=80, seed=5, today=D("2026-06-10"))
    generate(database.engine, as_of=D("2026-06-10"))
    everything = open_tasks(database.engine, as_of=D("2026-06-10"))
    county = open_tasks(database.engine, as_of=D("2026-06-10"), region_code="C")
    t1 = open_tasks(database.engine, as_of=D("2026-06-10"), region_code="T1")
    v11 = open_tasks(database.engine, as_of=D("2026-06-10"), region_code="V11")
    assert county == everything
    assert {t["village_code"] for t in t1} == {"V11", "V12"} and {t["township_code"] for t in t1} == {"T1"}
    assert v11 == [t for t in t1 if t["village_code"] == "V11"] and v11
    keys = [(-(t["risk_level"] if t["risk_level"] is not None else -1), -t["days_overdue"], t["due_on"]) for t in everything]
    assert keys == sorted(keys)
    result = runner.invoke(app, ["tasks", "--region", "NOPE", "--json", "--db", database.url])
    assert result.exit_code == 1 and "NOPE" in result.output


def test_classification_sql_matches_rules(database):
    rng = random.Random(1)
    rows = []
    for i in range(400):
        risk = rng.choice([None, 0, 1, 2, 3, 4, 5])
        cls = rng.choice([None, None, 1, 2, 3])
        if cls is not None and risk is not None and ((cls == 3 and risk >= 1) or (risk >= 3 and cls != 1)):
            cls = None
        rows.append({
            "patient_id": "X", "visit_on": D("2026-01-01"), "seq": i + 1, "risk_level": risk, "classification": cls,
            "insight": rng.choice([None, 1, 2, 3]), "symptoms_obvious": rng.choice([None, True, False]),
            "symptoms": rng.choice([None, "", "2"]), "sf_self_care": rng.choice([None, 1, 2, 3]),
            "sf_work": rng.choice([None, 1, 3, 9]), "adverse_reaction_serious": rng.choice([None, True, False]),
            "physical_illness_serious": rng.choice([None, True, False]),
        })
    with database.engine.begin() as conn:
        conn.execute(sa.insert(sa.table("region", sa.column("code"), sa.column("name"), sa.column("level"))),
                     [{"code": "V", "name": "村", "level": "village"}])
        conn.execute(sa.insert(Patient).values(patient_id="X", name="x", sex=1, birth_date=D("1980-01-01"), village_code="V",
                                               diagnosis="schizophrenia", registered_on=D("2025-01-01")))
        conn.execute(sa.insert(FollowUp), rows)
        f = FollowUp.__table__
        got = conn.execute(sa.select(f, classification_sql(f).label("cls")).order_by(f.c.seq)).all()
    assert [r.cls for r in got] == [None if classification_of(r) is None else int(classification_of(r)) for r in got]


def test_no_change_run_is_detected_by_fingerprint(database, sharding, small_county):
    cli("import", small_county, "--db", database.url)
    from schedules.jobs import recorded

    run = lambda: recorded(database.engine, "generate", D("2026-06-10"), "test", lambda: generate(database.engine, as_of=D("2026-06-10")))
    first, second = run(), run()
    assert first["skipped"] is False and first["created"] == 5
    # PostgreSQL skips the pass when no input changed; SQLite always runs it (no hash function)
    assert second["skipped"] is (database.backend == "postgresql")
    assert (second["open"], second["open_by_kind"]) == (first["open"], first["open_by_kind"])
    with database.engine.begin() as conn:
        conn.execute(sa.insert(FollowUp).values(patient_id="B", visit_on=D("2026-06-05"), mode=2, risk_level=0))
    third = run()
    assert third["skipped"] is False and third["created"] == 1 and third["closed"] == 1
    with database.engine.begin() as conn:  # a task edited behind the scheduler's back is noticed too
        conn.execute(sa.update(VisitTask).where(VisitTask.patient_id == "A").values(due_on=D("2026-05-01")))
    fourth = run()
    assert fourth["skipped"] is False and stored(database.engine)[("A", "follow_up", "follow_up:3")][0] == D("2026-05-29")


def test_changed_open_task_is_updated_in_place_and_closed_task_left_alone(database, sharding, small_county):
    cli("import", small_county, "--db", database.url)
    today = D("2026-06-10")
    generate(database.engine, as_of=today)
    t = VisitTask.__table__
    key = sa.and_(t.c.patient_id == "A", t.c.kind == "follow_up")
    health = sa.and_(t.c.patient_id == "B", t.c.kind == "health_check")
    with database.engine.begin() as conn:
        before = conn.execute(sa.select(t.c.id, t.c.roles, t.c.risk_level, t.c.created_at).where(key)).one()
        conn.execute(sa.update(t).where(key).values(roles="doctor,police,village", risk_level=4))
        conn.execute(sa.update(t).where(health).values(status="done", close_reason="manual"))
    again = generate(database.engine, as_of=today)
    assert again["created"] == 0
    with database.engine.connect() as conn:
        after = conn.execute(sa.select(t.c.id, t.c.roles, t.c.risk_level, t.c.created_at).where(key)).all()
        closed = conn.execute(sa.select(t.c.status, t.c.close_reason).where(health)).all()
    assert after == [before]  # the same row (same id and creation), its planned values back
    assert closed == [("done", "manual")]  # a closed task is never reopened or duplicated


def test_task_closed_while_a_run_waits_for_it_stays_closed(database, sharding, small_county):
    """A changed open task that someone closes while a run is about to update it keeps its closed state
    and its values: the run's update re-checks ``status = 'open'`` on the row's latest version."""
    cli("import", small_county, "--db", database.url)
    today = D("2026-06-10")
    engine = database.engine
    generate(engine, as_of=today)
    t = VisitTask.__table__
    key = sa.and_(t.c.patient_id == "A", t.c.kind == "follow_up")
    with engine.begin() as conn:  # the stored task now differs from the plan: the next run updates it
        conn.execute(sa.update(t).where(key).values(roles="doctor,police,village", risk_level=4))
    close = sa.update(t).where(key).values(status="done", close_reason="manual")
    if database.backend == "postgresql":
        blocker = engine.connect()
        tx = blocker.begin()
        blocker.execute(close)  # not committed yet: the run plans with the task still open
        result: dict = {}
        run = threading.Thread(target=lambda: result.update(generate(engine, as_of=today)))
        run.start()
        try:
            wait_for(lambda: lock_waiters(engine), "the run to wait for the task's row")
        finally:
            tx.commit()
            blocker.close()
        run.join(60)
        assert result["created"] == 0
    else:  # SQLite runs take the write lock first: the close simply comes before the run
        with engine.begin() as conn:
            conn.execute(close)
        generate(engine, as_of=today)
    with engine.connect() as conn:
        after = conn.execute(sa.select(t.c.status, t.c.close_reason, t.c.roles, t.c.risk_level).where(key)).all()
    assert after == [("done", "manual", "doctor,police,village", 4)]


def test_shard_count_follows_population_and_settings(monkeypatch):
    from registry.config import get_settings

    monkeypatch.delenv("JINGFANG_GENERATION_SHARDS", raising=False)
    monkeypatch.delenv("JINGFANG_GENERATION_SHARD_PATIENTS", raising=False)
    assert shard_count(5_000) == 1  # a county: one transaction
    assert shard_count(199_999, 8) == 1 and shard_count(200_000, 8) == 2 and shard_count(6_000_000, 4) == 4
    monkeypatch.setenv("JINGFANG_GENERATION_SHARDS", "3")
    get_settings.cache_clear()
    assert shard_count(6_000_000) == 3
    monkeypatch.setenv("JINGFANG_GENERATION_SHARD_PATIENTS", "10")
    get_settings.cache_clear()
    assert shard_count(25) == 2 and shard_count(25, 1) == 1


@pytest.mark.postgresql_only
def test_shard_ranges_partition_the_patients(database, monkeypatch):
    """Every patient falls in exactly one shard's range, whatever the ids (mixed case, digits, CJK)."""
    monkeypatch.setenv("JINGFANG_GENERATION_SHARD_PATIENTS", "1")
    from schedules.generation import _shard_ranges

    populate(database.engine, patients=60, seed=9, today=D("2026-06-10"))
    odd = ["a1", "Z9", "患者1", "0", "~x", "B 2"]
    with database.engine.begin() as conn:
        village = conn.execute(sa.select(Patient.village_code).limit(1)).scalar_one()
        conn.execute(sa.insert(Patient), [
            {"patient_id": pid, "name": "x", "sex": 1, "birth_date": D("1980-01-01"), "village_code": village,
             "diagnosis": "schizophrenia", "registered_on": D("2025-01-01")} for pid in odd])
        ranges = _shard_ranges(conn, 4)
        ids = set(conn.execute(sa.select(Patient.patient_id)).scalars())
        p = Patient.__table__
        members = [set(conn.execute(sa.select(p.c.patient_id).where(in_range(p.c.patient_id, r))).scalars())
                   for r in ranges]
    assert len(ranges) == 4 and ranges[0][0] is None and ranges[-1][1] is None
    assert all(members) and sum(len(m) for m in members) == len(ids) and set().union(*members) == ids


@pytest.mark.postgresql_only
def test_run_waits_for_an_orphaned_shard(database, small_county):
    """A shard of a killed run may still be working (its backend notices the lost client only when
    its statement ends): a new run waits for it before planning, then runs normally."""
    from schedules.generation import SHARD_LOCK_KEY

    cli("import", small_county, "--db", database.url)
    engine = database.engine
    orphan = engine.connect()
    tx = orphan.begin()
    orphan.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": SHARD_LOCK_KEY})
    result: dict = {}
    run = threading.Thread(target=lambda: result.update(generate(engine, as_of=D("2026-06-10"))))
    run.start()
    try:
        wait_for(lambda: lock_waiters(engine, "advisory"), "the run to wait for the orphaned shard")
        assert result == {} and database.count("visit_task") == 0
    finally:
        tx.rollback()
        orphan.close()
    run.join(60)
    assert result["created"] == 5 and database.count("visit_task") == 5


@pytest.mark.postgresql_only
def test_a_failing_shard_leaves_the_others_and_the_next_run_completes(database, monkeypatch):
    """One shard fails (a real trigger refuses one patient's task): the run raises after every shard
    has ended, the other shards' patients are complete, the failed shard's patients untouched, and
    the next run completes the rest."""
    from schedules.generation import _shard_ranges

    monkeypatch.setenv("JINGFANG_GENERATION_SHARDS", "3")
    monkeypatch.setenv("JINGFANG_GENERATION_SHARD_PATIENTS", "1")
    today = D("2026-10-05")
    engine = database.engine
    populate(engine, patients=120, seed=31, today=today)
    with engine.begin() as conn:
        ranges = _shard_ranges(conn, 3)
        victim = conn.execute(sa.select(Patient.patient_id).order_by(Patient.patient_id).limit(1)).scalar_one()
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_task() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.patient_id = '{victim}' THEN RAISE EXCEPTION 'refused for the test'; END IF;"
            " RETURN NEW; END $$")
        conn.exec_driver_sql("CREATE TRIGGER refuse_task BEFORE INSERT ON visit_task FOR EACH ROW EXECUTE FUNCTION refuse_task()")
    try:
        with pytest.raises(Exception, match="refused for the test"):
            generate(engine, as_of=today)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_task ON visit_task")
            conn.exec_driver_sql("DROP FUNCTION refuse_task()")
    expected = planned(engine, today)
    got = stored(engine)
    p = Patient.__table__
    with engine.connect() as conn:
        failed = set(conn.execute(sa.select(p.c.patient_id).where(in_range(p.c.patient_id, ranges[0]))).scalars())
    assert victim in failed and ranges[0][0] is None
    assert not any(k[0] in failed for k in got)  # the failed shard wrote nothing
    assert got == {k: v for k, v in expected.items() if k[0] not in failed} and got  # the others are complete
    again = generate(engine, as_of=today)
    assert stored(engine) == expected and again["created"] == len([k for k in expected if k[0] in failed])


# --------------------------------------------------------------------------- edges (session 13 audit)


def _emergency(engine, pid, ended: str) -> int:
    """An emergency of ``pid`` reported, started and ended on ``ended`` 10:00 (local wall clock)."""
    from datetime import datetime

    from registry.models import Emergency

    at = datetime.fromisoformat(f"{ended} 10:00")
    with engine.begin() as conn:
        return conn.execute(sa.insert(Emergency.__table__).values(
            patient_id=pid, situations="3", reported_at=at, started_at=at, ended_at=at, measures="counselling",
            effect="已缓解", opened_by="doc", updated_at=now_utc()).returning(Emergency.__table__.c.id)).scalar_one()


def _task_rows(engine, pid, kind=None):
    t = VisitTask.__table__
    with engine.connect() as conn:
        return {r.basis: r for r in conn.execute(
            sa.select(t).where(t.c.patient_id == pid, sa.true() if kind is None else t.c.kind == kind))}


@pytest.mark.parametrize("run", ["full", "incremental", "partial"])
def test_a_post_emergency_task_is_owed_however_early_the_emergency_ended(database, small_county, run):
    """rules.md §9: "after an emergency the patient owes a post-emergency visit … due end time + 14
    days". The working-day table covers every date a due date is computed from: an emergency that
    ended before any registration year (2024) or before the run's patients' registration year and the
    as-of year (a web write's or incremental run, 2025) still has its task — before, the inner join on
    the calendar dropped it silently. An emergency before the patient's registration (B registered
    2026-05-20; a patient transferred in, docs/scheduler.md) is owed too: the task is overdue at once."""
    cli("import", small_county, "--db", database.url)
    engine = database.engine
    generate(engine, as_of=D("2026-06-10"))  # the basis of the incremental run
    old, late = _emergency(engine, "B", "2024-11-20"), _emergency(engine, "B", "2025-12-10")
    if run == "partial":
        generate(engine, as_of=D("2026-06-10"), patient_ids=["B"])
    else:
        generate(engine, as_of=D("2026-06-10"), incremental=run == "incremental")
    got = {basis: (r.status, r.nominal_due_on, r.due_on, r.roles, bool(r.calendar_estimated))
           for basis, r in _task_rows(engine, "B", "post_emergency").items()}
    assert got == {
        f"emergency:{old}": ("open", D("2024-12-04"), D("2024-12-04"), "doctor,police,village", False),
        f"emergency:{late}": ("open", D("2025-12-24"), D("2025-12-24"), "doctor,police,village", False),
    }
    # the first complete home visit after the emergency closes both (B's first visit of its registration)
    with engine.begin() as conn:
        conn.execute(sa.insert(FollowUp).values(patient_id="B", visit_on=D("2026-06-12"), seq=1, mode=2, risk_level=0,
                                                updated_at=now_utc()))
    generate(engine, as_of=D("2026-06-12"), incremental=run == "incremental",
             patient_ids=["B"] if run == "partial" else None)
    assert {r.status for r in _task_rows(engine, "B", "post_emergency").values()} == {"done"}


def test_the_working_day_table_covers_the_longest_interval_of_the_profile(database, small_county):
    """A county profile may set a visit interval longer than the 400 days the table used to reach
    past the as-of date: the task is planned with its due date, not dropped."""
    import dataclasses

    from registry.profile import Interval

    cli("import", small_county, "--db", database.url)
    long = dataclasses.replace(PROFILE, visit={**PROFILE.visit, "first_visit": Interval(20, 0, "§5 首次面访 测试")})
    generate(database.engine, as_of=D("2026-06-10"), profile=long)
    (task,) = _task_rows(database.engine, "B", "first_visit").values()
    assert (task.status, task.nominal_due_on) == ("open", D("2028-01-20"))


@pytest.mark.parametrize("run", ["full", "incremental", "partial"])
def test_tasks_replaced_by_a_later_registration_are_cancelled_not_done(database, small_county, run):
    """A transfer in (docs/web.md 迁出/迁入) sets registered_on to the acceptance date and rules.md §5
    owes a first visit ("newly registered or transferred in"). The old chain's open visit task was
    closed by no follow-up: it is cancelled ``re_registered`` (before: done ``follow_up``), with no
    closing follow-up and no 到位 judgement (joint_visit_complete_rate counts it nowhere). The first
    follow-up after the transfer closes the first visit as usual. Undoing the date reopens the old task
    (a cancel reason that only says the task was not owed then, ``REOPENED_REASONS``)."""
    cli("import", small_county, "--db", database.url)
    engine = database.engine
    generate(engine, as_of=D("2026-06-10"))
    (old_basis,) = [b for b in _task_rows(engine, "A") if b.startswith("follow_up:")]

    def step(as_of, **patient):
        if patient:
            with engine.begin() as conn:
                conn.execute(sa.update(Patient).where(Patient.patient_id == "A").values(**patient, updated_at=now_utc()))
        generate(engine, as_of=D(as_of), incremental=run == "incremental", patient_ids=["A"] if run == "partial" else None)
        return {b: (r.status, r.close_reason, r.closed_by, r.joint_outcome)
                for b, r in _task_rows(engine, "A").items() if r.kind != "health_check"}

    assert step("2026-06-12", registered_on=D("2026-06-12")) == {
        old_basis: ("cancelled", "re_registered", None, None),
        "registration:2026-06-12": ("open", None, None, None),
    }
    from registry.codes import CloseReason

    assert CloseReason("re_registered").label == "重新登记或迁入，原任务作废"
    with engine.begin() as conn:
        fid = conn.execute(sa.insert(FollowUp).values(patient_id="A", visit_on=D("2026-06-20"), seq=1, mode=2, risk_level=0,
                                                      updated_at=now_utc()).returning(FollowUp.id)).scalar_one()
    after = step("2026-06-20")
    assert after[old_basis] == ("cancelled", "re_registered", None, None)
    assert after["registration:2026-06-12"][:3] == ("done", "follow_up", fid)
    assert after[f"follow_up:{fid}"][0] == "open"


@pytest.mark.parametrize("run", ["full", "incremental", "partial"])
def test_a_registration_date_moved_and_moved_back(database, small_county, run):
    """registered_on corrected later then back (修改信息): the old chain is cancelled ``re_registered``
    and reopened, the first visit of the mistaken date is cancelled; corrected earlier than a first
    visit's date, the stale first visit is cancelled — never the task that stands (before, the newest
    basis date won: the stale first visit stayed open and the task owed was closed done)."""
    cli("import", small_county, "--db", database.url)
    engine = database.engine
    generate(engine, as_of=D("2026-06-10"))
    (old_basis,) = [b for b in _task_rows(engine, "A") if b.startswith("follow_up:")]

    def step(as_of, pid, **patient):
        with engine.begin() as conn:
            conn.execute(sa.update(Patient).where(Patient.patient_id == pid).values(**patient, updated_at=now_utc()))
        generate(engine, as_of=D(as_of), incremental=run == "incremental", patient_ids=[pid] if run == "partial" else None)
        return {b: (r.status, r.close_reason) for b, r in _task_rows(engine, pid).items() if r.kind != "health_check"}

    assert step("2026-06-12", "A", registered_on=D("2026-06-11")) == {
        old_basis: ("cancelled", "re_registered"), "registration:2026-06-11": ("open", None)}
    assert step("2026-06-13", "A", registered_on=D("2026-01-10")) == {
        old_basis: ("open", None), "registration:2026-06-11": ("cancelled", "re_registered")}
    assert step("2026-06-14", "A", registered_on=D("2026-01-10")) == {  # and it stays so
        old_basis: ("open", None), "registration:2026-06-11": ("cancelled", "re_registered")}
    # B (no follow-up, registered 2026-05-20) corrected to an earlier date: one open first visit, the new one
    assert step("2026-06-15", "B", registered_on=D("2026-05-02")) == {
        "registration:2026-05-20": ("cancelled", "re_registered"), "registration:2026-05-02": ("open", None)}
    assert step("2026-06-16", "B", registered_on=D("2026-05-02")) == {
        "registration:2026-05-20": ("cancelled", "re_registered"), "registration:2026-05-02": ("open", None)}
    assert stored(engine) == planned(engine, D("2026-06-16"))


@pytest.mark.parametrize("incremental", [True, False], ids=["incremental", "full"])
def test_the_first_run_under_new_rules_restates_tasks_closed_done_by_a_re_registration(database, small_county,
                                                                                        monkeypatch, incremental):
    """Tasks earlier runs closed done ``follow_up`` on a transfer in (no closing follow-up: ``closed_by``
    NULL, a basis before the registration) are cancelled ``re_registered`` by the first whole-register
    run under new rules, before it restates every closed joint task: otherwise the restatement would
    give them the first follow-up after the transfer as closing visit and count that visit twice in
    joint_visit_complete_rate (indicators.md)."""
    from registry import rules

    cli("import", small_county, "--db", database.url)
    engine, t = database.engine, VisitTask.__table__
    generate(engine, as_of=D("2026-06-10"))
    (old_basis,) = [b for b in _task_rows(engine, "C1") if b.startswith("follow_up:")]
    with engine.begin() as conn:  # C1 transferred in on 06-12; what the runs before session 13 stored
        conn.execute(sa.update(Patient).where(Patient.patient_id == "C1").values(registered_on=D("2026-06-12"),
                                                                                  updated_at=now_utc()))
    generate(engine, as_of=D("2026-06-12"))
    with engine.begin() as conn:
        conn.execute(sa.update(t).where(t.c.basis == old_basis).values(status="done", close_reason="follow_up"))
        conn.execute(sa.insert(FollowUp).values(patient_id="C1", visit_on=D("2026-06-20"), seq=1, mode=2, risk_level=0,
                                                updated_at=now_utc()))
    monkeypatch.setattr(rules, "RULES_VERSION", rules.RULES_VERSION + 1)
    generate(engine, as_of=D("2026-06-20"), incremental=incremental)
    old = _task_rows(engine, "C1")[old_basis]
    assert (old.status, old.close_reason, old.closed_by, old.joint_outcome) == ("cancelled", "re_registered", None, None)
    first = _task_rows(engine, "C1")["registration:2026-06-12"]
    assert (first.status, first.close_reason) == ("done", "follow_up") and first.closed_by is not None
