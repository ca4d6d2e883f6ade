"""增量生成 The daily run replans only the patients whose inputs changed since the last run and
those whose date-dependent conditions change on the new date (docs/scheduler.md, "Incremental
daily runs"): after random edits its result equals a full run on the same database state, on
both databases; a run killed mid-way loses and duplicates nothing."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa
import time_machine
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.clock import now_utc
from registry.models import Emergency, FollowUp, FollowUpParticipant, HealthCheck, Patient, VisitTask
from registry.profile import load_profile
from registry.teams import incident_cutoff
from schedules.calendar import load_calendar
from schedules.generation import CHANGE_MARGIN, changed_patients, generate
from schedules.models import CalendarDay, GenerationBasis
from tests.schedule_population import populate
from tests.test_schedule_generation import planned, stored
from tests.test_schedule_service import ROOT, no_duplicates, wait_log

D = date.fromisoformat
PROFILE = load_profile()
STEP = CHANGE_MARGIN * 6  # the clock moves on between edits and runs: a stamp belongs to one step


def tasks(engine) -> dict:
    """Every stored task, open or not, with every column but the id: the state a run leaves."""
    t = VisitTask.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t)).mappings().all()
    return {(r["patient_id"], r["kind"], r["basis"]): tuple(
        (c, bool(r[c]) if c in ("joint", "calendar_estimated") else r[c]) for c in sorted(r.keys()) if c != "id")
        for r in rows}


def snapshot(engine) -> tuple[list[dict], list[dict]]:
    with engine.connect() as conn:
        return ([dict(r) for r in conn.execute(sa.select(VisitTask.__table__)).mappings()],
                [dict(r) for r in conn.execute(sa.select(GenerationBasis.__table__)).mappings()])


def restore(engine, saved: tuple[list[dict], list[dict]]) -> None:
    task_rows, basis_rows = saved
    with engine.begin() as conn:
        conn.execute(sa.delete(VisitTask.__table__))
        conn.execute(sa.delete(GenerationBasis.__table__))
        if task_rows:
            conn.execute(sa.insert(VisitTask.__table__), task_rows)
        if basis_rows:
            conn.execute(sa.insert(GenerationBasis.__table__), basis_rows)


def reset(engine) -> None:
    """An empty register (regions and team members stay): each hypothesis example starts afresh."""
    with engine.begin() as conn:
        for table in ("visit_task", "generation_basis", "calendar_day", "health_check", "follow_up_participant",
                      "follow_up", "emergency", "care_team_assignment", "patient"):
            conn.exec_driver_sql(f"DELETE FROM {table}")


def patient_ids(engine) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.select(Patient.patient_id).order_by(Patient.patient_id)).scalars().all()


def complete_visit(pid: str, day: date, seq: int, *, risk: int = 0, incident: bool = False, lost: int | None = None) -> dict:
    if lost is not None:
        return {"patient_id": pid, "visit_on": day, "seq": seq, "mode": 1, "lost_reason": lost}
    return {"patient_id": pid, "visit_on": day, "seq": seq, "mode": 1, "risk_level": risk, "insight": 1,
            "sf_social": 1, "incidents_disturbance": int(incident), "incidents_crime": 0, "hospital_status": 0,
            "adherence": 1, "symptoms_obvious": False, "adverse_reaction_serious": False,
            "physical_illness_serious": False}


# ---- random edits, each through a writer that stamps updated_at (ARCHITECTURE §9) ----

@dataclass(frozen=True)
class Edit:
    kind: str
    who: int  # index into the patients
    offset: int  # days from the run date before the edit (may be in the future)
    choice: int


edits = st.builds(
    Edit,
    kind=st.sampled_from(["follow_up", "incident_back", "patient", "health_check", "injection", "calendar",
                          "emergency", "home_visit", "emergency_visited"]),
    who=st.integers(0, 10_000),
    offset=st.integers(-12, 25),  # mostly ahead: rows that take effect when a later step's date reaches them
    choice=st.integers(0, 5),
)
steps = st.lists(st.tuples(st.lists(edits, max_size=5), st.sampled_from([0, 1, 3, 6, 10, 20, 45])), min_size=2, max_size=5)


def apply(engine, edit: Edit, as_of: date, pids: list[str], seq: int) -> None:
    pid = pids[edit.who % len(pids)]
    day = as_of + timedelta(days=edit.offset)
    now = now_utc()
    with engine.begin() as conn:
        if edit.kind == "follow_up":  # a new visit: complete (risk 0–4), with an incident, or not reached
            row = (complete_visit(pid, day, seq, lost=1) if edit.choice == 5 else
                   complete_visit(pid, day, seq, risk=edit.choice % 5, incident=edit.choice == 4))
            conn.execute(sa.insert(FollowUp), [row])
        elif edit.kind == "home_visit":  # a home visit with attendance (rules.md §6.2): may close a post-emergency visit
            latest = conn.execute(sa.select(Emergency.patient_id, Emergency.ended_at)
                                  .order_by(Emergency.id.desc()).limit(1)).first()
            if latest is not None and edit.choice < 4:  # mostly the patient of the latest emergency, after its end
                pid, day = latest.patient_id, (max(day, latest.ended_at.date()) if edit.offset % 3 else latest.ended_at.date())
            row = {**complete_visit(pid, day, seq, risk=edit.choice % 4), "mode": 2}
            if edit.choice == 5:
                row["risk_level"] = None  # not complete: closes no post-emergency visit
            fid = conn.execute(sa.insert(FollowUp).returning(FollowUp.id), [row]).scalar_one()
            present = {"police": edit.choice % 2 == 0, "village": True, "doctor": edit.choice != 3}
            conn.execute(sa.insert(FollowUpParticipant), [{"follow_up_id": fid, "role": r, "attended": v, "source": "doctor"}
                                                         for r, v in present.items() if r != "doctor" or not v])
        elif edit.kind in ("emergency", "emergency_visited"):  # an emergency ended on ``day`` (rules.md §9): a post-emergency visit owed
            end = datetime.combine(day, datetime.min.time()) + timedelta(hours=9 + edit.choice)
            conn.execute(sa.insert(Emergency), [{"patient_id": pid, "situations": "3", "reported_at": end - timedelta(hours=1),
                                                 "ended_at": end, "measures": "counselling", "effect": "已控制",
                                                 "opened_by": "t", "updated_at": now}])
            if edit.kind == "emergency_visited":  # and its closing home visit, both before any run plans the task
                row = {**complete_visit(pid, day + timedelta(days=edit.choice % 3), seq, risk=1), "mode": 2}
                fid = conn.execute(sa.insert(FollowUp).returning(FollowUp.id), [row]).scalar_one()
                conn.execute(sa.insert(FollowUpParticipant), [{"follow_up_id": fid, "role": "police",
                                                               "attended": edit.choice % 2 == 0, "source": "doctor"}])
        elif edit.kind == "incident_back":  # an incident that leaves the 12-month window in a few days
            back = incident_cutoff(PROFILE.roles, as_of + timedelta(days=abs(edit.offset) % 12 + 1)) - timedelta(days=1)
            conn.execute(sa.insert(FollowUp), [complete_visit(pid, back, seq, risk=edit.choice % 3, incident=True)])
        elif edit.kind == "patient":
            values = [
                {"status": "dead", "status_on": day},
                {"status": "moved_out", "status_on": day},
                {"guardian_name": None if edit.offset % 2 else "新监护人", "economic_status": 1},
                # refused consent: type 2 (no tasks) or type 1 (visits, no health check; rules.md §5)
                {"consent": 0, "report_type": 2 if edit.offset % 2 else 1},
                {"registered_on": day},
                {"status": "active", "status_on": None, "consent": 1},
            ][edit.choice]
            conn.execute(sa.update(Patient).where(Patient.patient_id == pid).values(**values, updated_at=now))
        elif edit.kind == "health_check":
            exists = conn.execute(sa.select(HealthCheck.id).where(HealthCheck.patient_id == pid,
                                                                 HealthCheck.checked_on == day)).first()
            if exists is None:
                conn.execute(sa.insert(HealthCheck), [{"patient_id": pid, "checked_on": day}])
        elif edit.kind == "injection":  # an injection given (or planned) on ``day``; choice 5 stops the plan
            values = ({"lai_drug": None, "lai_interval_weeks": None, "lai_last_on": None} if edit.choice == 5 else
                      {"lai_drug": "棕榈酸帕利哌酮", "lai_interval_weeks": 2 + edit.choice, "lai_last_on": day})
            conn.execute(sa.update(Patient).where(Patient.patient_id == pid).values(**values, updated_at=now))
    if edit.kind == "calendar":  # an operator's holiday table for the year of ``day``
        load_calendar(engine, [(day, bool(edit.choice % 2), "调整"), (day + timedelta(days=edit.choice + 1), False, "假")])


SETTINGS = settings(suppress_health_check=[HypothesisHealthCheck.function_scoped_fixture, HypothesisHealthCheck.too_slow],
                    max_examples=12, deadline=None, derandomize=True)


@SETTINGS
@given(seed=st.integers(0, 999), plan=steps, start=st.sampled_from([D("2025-11-20"), D("2026-03-03"), D("2026-12-10")]))
def test_incremental_run_equals_full_run_after_random_edits(database, seed, plan, start):
    """Each step: random edits (emergencies and home visits with attendance among them: the
    post-emergency visit, its closing visit and 到位 / 联合未到位 too), the date moves on (across the 12-month incident boundary of the
    edits, sometimes across New Year), then a full run and — on the same state restored — an
    incremental run: every stored task (open ones with every column, closed and cancelled ones
    with status, reason and stamps) is the same."""
    engine = database.engine
    reset(engine)
    with time_machine.travel(datetime(2026, 1, 5, 2, 0, tzinfo=timezone.utc), tick=False) as clock:
        populate(engine, patients=16, seed=seed, today=start, start=start - timedelta(days=420))
        pids = patient_ids(engine)
        as_of = start
        clock.shift(STEP)  # the population is older than the first run's basis: step 1 is incremental too
        generate(engine, as_of=as_of)
        for number, (changes, days) in enumerate(plan):
            clock.shift(STEP)
            for i, edit in enumerate(changes):
                apply(engine, edit, as_of, pids, seq=20 + 10 * number + i)
            clock.shift(STEP)
            previous, as_of = as_of, as_of + timedelta(days=days)
            saved = snapshot(engine)
            generate(engine, as_of=as_of)
            want = tasks(engine)
            restore(engine, saved)
            counts = generate(engine, as_of=as_of, incremental=True)
            assert counts["mode"] == ("incremental" if as_of.year == previous.year else "full")
            assert tasks(engine) == want
            assert_post_emergency_owed(engine, as_of)
            # (not also "== the pure planner": a full run itself keeps the later LAI task open when
            # an injection date is edited backwards — found by this test, reported, not changed here)


def assert_post_emergency_owed(engine, as_of: date) -> None:
    """rules.md §9, whatever the order of events and runs: every emergency ended by ``as_of`` of a
    patient owed tasks has its post-emergency task; one closed by a visit names that visit and, a
    joint task, is judged (rules.md §6.2)."""
    from registry.register import eligible

    t = VisitTask.__table__
    with engine.connect() as conn:
        stored = {r.basis: r for r in conn.execute(sa.select(t).where(t.c.kind == "post_emergency"))}
        e, p = Emergency.__table__, Patient.__table__
        for r in conn.execute(sa.select(e.c.id, e.c.ended_at, p.c.registered_on, p.c.status, p.c.status_on, p.c.report_type,
                                        p.c.consent).join(p, p.c.patient_id == e.c.patient_id)):
            if r.ended_at.date() <= as_of and eligible(r.registered_on, r.status, r.status_on, r.report_type,
                                                       r.consent, as_of):
                task = stored.get(f"emergency:{r.id}")
                assert task is not None, (r.id, as_of)
                if task.status == "done":
                    assert task.closed_by is not None and task.joint_outcome is not None, dict(task._mapping)


def expected_changed(engine, since: datetime, previous: date, as_of: date) -> set[str]:
    """The changed set computed row by row in Python (the twin of ``changed_patients``)."""
    cutoffs = (incident_cutoff(PROFILE.roles, previous), incident_cutoff(PROFILE.roles, as_of))
    inside = lambda day: day is not None and previous < day <= as_of  # noqa: E731
    out = set()
    with engine.connect() as conn:
        for r in conn.execute(sa.select(Patient)).mappings():
            if r["updated_at"] >= since or any(inside(r[c]) for c in ("registered_on", "status_on", "lai_last_on")):
                out.add(r["patient_id"])
        for r in conn.execute(sa.select(FollowUp)).mappings():
            incident = (r["incidents_disturbance"] or 0) + (r["incidents_crime"] or 0) > 0
            if (r["updated_at"] >= since or inside(r["visit_on"])
                    or (incident and cutoffs[0] <= r["visit_on"] < cutoffs[1])):
                out.add(r["patient_id"])
        for r in conn.execute(sa.select(HealthCheck)).mappings():
            if r["updated_at"] >= since or inside(r["checked_on"]):
                out.add(r["patient_id"])
    return out


@time_machine.travel(datetime(2026, 5, 4, 2, 0, tzinfo=timezone.utc), tick=False)
def test_incremental_run_replans_exactly_the_changed_and_date_dependent_patients(database):
    """The changed set is what the inputs say: edited patients, new follow-ups and health checks,
    and, on the new date, a registration, a death, an injection, a visit and a check dated in
    between and an incident leaving the 12-month window; nobody else."""
    engine = database.engine
    populate(engine, patients=40, seed=11, today=D("2026-05-01"), start=D("2025-01-01"))
    pids = patient_ids(engine)
    new_date = D("2026-05-08")
    with engine.begin() as conn:  # date-dependent rows, written before the first run (old stamps)
        conn.execute(sa.update(Patient).where(Patient.patient_id == pids[0]).values(registered_on=D("2026-05-06")))
        conn.execute(sa.update(Patient).where(Patient.patient_id == pids[1]).values(status="dead", status_on=D("2026-05-08")))
        conn.execute(sa.update(Patient).where(Patient.patient_id == pids[2]).values(
            lai_drug="棕榈酸帕利哌酮", lai_interval_weeks=4, lai_last_on=D("2026-05-05")))
        conn.execute(sa.insert(FollowUp), [complete_visit(pids[3], D("2026-05-07"), 30)])
        conn.execute(sa.insert(HealthCheck), [{"patient_id": pids[4], "checked_on": D("2026-05-03")}])
        # counts until 2026-05-07 (cutoff 2025-05-07 then), not on 05-08 (cutoff 2025-05-08)
        conn.execute(sa.insert(FollowUp), [complete_visit(pids[5], D("2025-05-07"), 30, incident=True)])
        # the same kinds of rows outside the window: nobody else
        conn.execute(sa.update(Patient).where(Patient.patient_id == pids[6]).values(status="dead", status_on=D("2026-05-09")))
        conn.execute(sa.insert(FollowUp), [complete_visit(pids[7], D("2025-05-08"), 30, incident=True),
                                           complete_visit(pids[8], D("2026-05-09"), 30)])
        conn.execute(sa.update(Patient).where(Patient.patient_id.in_(pids[:9])).values(updated_at=now_utc() - STEP))
        conn.execute(sa.update(FollowUp).values(updated_at=now_utc() - STEP))
        conn.execute(sa.update(HealthCheck).values(updated_at=now_utc() - STEP))
        conn.execute(sa.update(Patient).where(Patient.patient_id.not_in(pids[:9])).values(updated_at=now_utc() - STEP))
    first = generate(engine, as_of=D("2026-05-01"), incremental=True)
    assert (first["mode"], first["full_reason"]) == ("full", "first_run")
    with time_machine.travel(now_utc() + STEP, tick=False):
        with engine.begin() as conn:  # edits through writers (stamped now)
            conn.execute(sa.insert(FollowUp), [complete_visit(pids[10], D("2026-05-02"), 31)])
            conn.execute(sa.insert(HealthCheck), [{"patient_id": pids[11], "checked_on": D("2026-04-20")}])
            conn.execute(sa.update(Patient).where(Patient.patient_id == pids[12]).values(guardian_name=None, updated_at=now_utc()))
        with engine.connect() as conn:
            basis = conn.execute(sa.select(GenerationBasis)).one()
            got = changed_patients(conn, since=basis.changes_since, previous=basis.as_of, as_of=new_date, profile=PROFILE)
        want = expected_changed(engine, basis.changes_since, basis.as_of, new_date)
        assert sorted(got) == sorted(want)
        assert {pids[i] for i in (0, 1, 2, 3, 4, 5, 10, 11, 12)} <= want
        assert not {pids[i] for i in (6, 7, 8)} & want
        assert len(want) < len(pids) / 2
        counts = generate(engine, as_of=new_date, incremental=True)
    assert (counts["mode"], counts["replanned"]) == ("incremental", len(want))
    assert stored(engine) == planned(engine, new_date)
    # the same date again: the edits stamped within CHANGE_MARGIN before the last run are read
    # once more (a writer's stamp precedes its commit); then nothing changed, nothing is replanned
    with time_machine.travel(now_utc() + 2 * STEP, tick=False):
        again = generate(engine, as_of=new_date, incremental=True)
    assert (again["mode"], again["replanned"], again["created"]) == ("incremental", 3, 0)
    with time_machine.travel(now_utc() + 3 * STEP, tick=False):
        quiet = generate(engine, as_of=new_date, incremental=True)
    assert (quiet["mode"], quiet["replanned"], quiet["skipped"]) == ("incremental", 0, True)
    assert stored(engine) == planned(engine, new_date)


@time_machine.travel(datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc), tick=False)
def test_full_run_when_profile_date_or_year_says_so(database):
    engine = database.engine
    populate(engine, patients=10, seed=3, today=D("2026-06-01"), start=D("2025-06-01"))
    assert generate(engine, as_of=D("2026-06-01"), incremental=True)["full_reason"] == "first_run"
    assert generate(engine, as_of=D("2026-05-30"), incremental=True)["full_reason"] == "earlier_date"
    other = dataclasses.replace(PROFILE, lai_window_after=PROFILE.lai_window_after + 1)  # an edited profile file
    assert generate(engine, as_of=D("2026-06-02"), profile=other, incremental=True)["full_reason"] == "profile_changed"
    assert generate(engine, as_of=D("2026-06-02"), incremental=True)["full_reason"] == "profile_changed"  # and back
    assert generate(engine, as_of=D("2027-01-01"), incremental=True)["full_reason"] == "new_year"
    assert generate(engine, as_of=D("2027-01-02"), incremental=True)["mode"] == "incremental"
    # a run limited to some patients (a web write) is not a basis
    with engine.connect() as conn:
        before = conn.execute(sa.select(GenerationBasis.as_of)).scalar_one()
    generate(engine, as_of=D("2027-01-05"), patient_ids=patient_ids(engine)[:2])
    with engine.connect() as conn:
        assert conn.execute(sa.select(GenerationBasis.as_of)).scalar_one() == before == D("2027-01-02")


def test_calendar_edit_replans_patients_with_open_tasks_that_year(database):
    engine = database.engine
    with time_machine.travel(datetime(2026, 6, 1, 2, 0, tzinfo=timezone.utc), tick=False):
        populate(engine, patients=30, seed=4, today=D("2026-06-01"), start=D("2025-06-01"))
        generate(engine, as_of=D("2026-06-01"))
    with time_machine.travel(datetime(2026, 6, 2, 2, 0, tzinfo=timezone.utc), tick=False):
        with engine.connect() as conn:
            due = conn.execute(sa.select(VisitTask.nominal_due_on).where(VisitTask.status == "open")
                               .order_by(VisitTask.nominal_due_on.desc()).limit(1)).scalar_one()
        # the operator's table makes a task's nominal due day a holiday (the load re-shifts open tasks
        # itself; the run must agree with the rules for that year's patients)
        load_calendar(engine, [(due, False, "临时放假"), (due - timedelta(days=1), False, "临时放假")])
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(CalendarDay)).scalar_one() == 2
        counts = generate(engine, as_of=D("2026-06-02"), incremental=True)
    assert counts["mode"] == "incremental" and counts["replanned"] > 0
    assert stored(engine) == planned(engine, D("2026-06-02"))


# ---- a run killed mid-way (SIGKILL) ----

CHILD = "from jingfang.cli import main; main()"
PARKED = "PARKED MID-RUN"
PARK_MID_RUN = (  # after the statement that writes the tasks, its transaction open: say so and wait
    "import sys, threading, sqlalchemy as sa;"
    " sa.event.listen(sa.engine.Engine, 'after_cursor_execute', lambda conn, cursor, statement, *rest:"
    " 'INSERT INTO VISIT_TASK' in statement.upper()"
    f" and (print({PARKED!r}, file=sys.stderr, flush=True), threading.Event().wait()));"
)


def test_sigkill_mid_incremental_run_then_next_run_completes(database):
    """`jingfang schedule` (incremental) killed after writing its tasks, its transaction open:
    nothing of it is visible, the basis is the previous run's, and the next run replans the same
    patients — nothing lost, nothing duplicated, equal to a full run."""
    engine = database.engine
    populate(engine, patients=60, seed=29, today=D("2026-04-01"), start=D("2025-03-01"))
    with engine.begin() as conn:
        conn.execute(sa.update(FollowUp).values(updated_at=now_utc() - STEP))
        conn.execute(sa.update(Patient).values(updated_at=now_utc() - STEP))
        conn.execute(sa.update(HealthCheck).values(updated_at=now_utc() - STEP))
    with time_machine.travel(now_utc() - STEP / 2, tick=True):
        generate(engine, as_of=D("2026-04-01"))
    pids = patient_ids(engine)
    with engine.connect() as conn:  # a patient with an open task dies: the run must cancel it
        dying = conn.execute(sa.select(sa.func.min(VisitTask.patient_id)).where(
            VisitTask.status == "open", VisitTask.patient_id.not_in(pids[:8]))).scalar_one()
    with engine.begin() as conn:  # the day's work: new visits for a few patients, one death
        conn.execute(sa.insert(FollowUp), [complete_visit(pid, D("2026-04-02"), 40, risk=i % 4) for i, pid in enumerate(pids[:8])])
        conn.execute(sa.update(Patient).where(Patient.patient_id == dying).values(
            status="dead", status_on=D("2026-04-02"), updated_at=now_utc()))
    before, basis_before = tasks(engine), snapshot(engine)[1]
    code = PARK_MID_RUN + CHILD
    proc = subprocess.Popen([sys.executable, "-c", code, "schedule", "--as-of", "2026-04-03", "--db", database.url],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_log(proc, PARKED)  # its tasks are written, its transaction is open
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert tasks(engine) == before
    assert snapshot(engine)[1] == basis_before
    counts = generate(engine, as_of=D("2026-04-03"), incremental=True)
    assert counts["mode"] == "incremental" and counts["replanned"] >= 9
    assert no_duplicates(engine)
    assert stored(engine) == planned(engine, D("2026-04-03"))
    with engine.connect() as conn:
        reasons = set(conn.execute(sa.select(VisitTask.close_reason).where(VisitTask.patient_id == dying)).scalars())
    assert "dead" in reasons


def test_schedule_command_is_incremental_unless_full(database):
    """`jingfang schedule` replans the changed patients; `--full` everybody (both recorded)."""
    from typer.testing import CliRunner

    from jingfang.cli import app
    from schedules.jobs import recent_runs

    engine = database.engine
    populate(engine, patients=12, seed=8, today=D("2026-06-10"), start=D("2025-06-01"))
    runner = CliRunner()
    args = ["schedule", "--as-of", "2026-06-10", "--db", database.url]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "全量（首次生成）" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "增量：重算" in second.output
    third = runner.invoke(app, [*args, "--full"])
    assert third.exit_code == 0 and "增量" not in third.output
    modes = [r["counts"]["mode"] for r in reversed(recent_runs(engine)) if r["job"] == "generate"]
    assert modes == ["full", "incremental", "full"]
