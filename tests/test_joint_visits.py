"""联合随访到位 rules.md §6.2 on both databases: how a follow-up closes a joint task (到位 / 联合未到位),
the rule's Python form against its SQL twin, and whose attendance record stands."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from registry import emergencies, joint_visits
from registry.codes import AttendanceSource, JointOutcome
from registry.models import FollowUp, FollowUpParticipant, Patient, Region, TeamMember, VisitTask
from schedules.generation import generate
from twins import TWIN_SETTINGS, scratch

D = date.fromisoformat
ROLES = ("police", "village", "civil_affairs")


def county(engine) -> None:
    """C → T → V; members for every joint role; P-PHONE and P-HOME (不稳定 on 2026-02-02: police + village)."""
    with Session(engine) as s:
        s.add_all([Region(code="C", name="县", level="county"),
                   Region(code="T", name="镇", level="township", parent_code="C"),
                   Region(code="V", name="村", level="village", parent_code="T", population=1000)])
        s.flush()
        s.add_all([TeamMember(member_id=f"M-{r}", name=r, role=r, region_code="T") for r in ("doctor",) + ROLES])
        s.add_all([TeamMember(member_id=f"M-{r}-2", name=r + "2", role=r, region_code="T") for r in ROLES])
        for pid in ("P-PHONE", "P-HOME", "P-PART"):
            s.add(Patient(patient_id=pid, name="甲", sex=1, birth_date=D("1980-01-01"), village_code="V",
                          diagnosis="schizophrenia", registered_on=D("2025-06-01"), guardian_name="乙", economic_status=2))
        s.flush()
        for pid in ("P-PHONE", "P-HOME", "P-PART"):
            s.add(FollowUp(patient_id=pid, visit_on=D("2026-02-02"), mode=2, risk_level=3, insight=2, classification=1))
        s.commit()


def add_visit(engine, pid: str, on: str, mode: int, present: dict[str, bool] = {},
              second: dict[str, bool] = {}) -> int:
    """A follow-up with one participant per role of ``present`` (member ``M-<role>``) and a second
    person of the role for each of ``second`` (member ``M-<role>-2``; rules.md §6.2, per person)."""
    with Session(engine) as s:
        fu = FollowUp(patient_id=pid, visit_on=D(on), mode=mode, risk_level=1, insight=1, classification=2)
        s.add(fu)
        s.flush()
        for role, flag in present.items():
            s.add(FollowUpParticipant(follow_up_id=fu.id, role=role, member_id=f"M-{role}", attended=flag))
        for role, flag in second.items():
            s.add(FollowUpParticipant(follow_up_id=fu.id, role=role, member_id=f"M-{role}-2", attended=flag))
        s.commit()
        return fu.id


def closed_tasks(engine, pid: str) -> list[dict]:
    t = VisitTask.__table__
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).where(t.c.patient_id == pid, t.c.status == "done")
                                              .order_by(t.c.id)).mappings()]


def test_phone_follow_up_closes_joint_task_incomplete_and_home_visit_complete(database):
    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    t = VisitTask.__table__
    with engine.connect() as conn:
        opened = conn.execute(sa.select(t.c.patient_id, t.c.roles, t.c.joint).where(t.c.kind == "follow_up")).all()
    assert {(p, r, bool(j)) for p, r, j in opened} == {(p, "doctor,police,village", True)
                                                      for p in ("P-PHONE", "P-HOME", "P-PART")}
    phone = add_visit(engine, "P-PHONE", "2026-02-10", mode=3, present={"police": True, "village": True})
    home = add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})
    part = add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"police": True, "village": False})
    generate(engine, as_of=D("2026-02-11"))
    [a] = closed_tasks(engine, "P-PHONE")
    assert (a["closed_by"], a["joint_outcome"], a["missing_roles"]) == (phone, "incomplete", "police,village")
    [b] = closed_tasks(engine, "P-HOME")
    assert (b["closed_by"], b["joint_outcome"], b["missing_roles"]) == (home, "complete", "")
    [c] = closed_tasks(engine, "P-PART")
    assert (c["closed_by"], c["joint_outcome"], c["missing_roles"]) == (part, "incomplete", "village")
    # the village member records later that they were there: the stored outcome follows (same rule)
    with engine.begin() as conn:
        conn.execute(sa.update(FollowUpParticipant.__table__)
                     .where(FollowUpParticipant.__table__.c.follow_up_id == part).values(attended=True))
        assert joint_visits.refresh_for_follow_ups(conn, [part]) == 1
    [c] = closed_tasks(engine, "P-PART")
    assert (c["joint_outcome"], c["missing_roles"]) == ("complete", "")


def test_two_officers_one_present_one_absent_the_role_is_present(database):
    """rules.md §6.2 [2026-12]: attendance per person; a role is present when any of its people is.
    P-HOME: one officer absent, a second present, village present → 到位. P-PART: both officers
    absent → 联合未到位 (police). P-PHONE: an unnamed village row absent, a named one present → the
    village is present, police missing."""
    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    home = add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": False, "village": True},
                     second={"police": True})
    part = add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"police": False, "village": True},
                     second={"police": False})
    with Session(engine) as s:
        fu = FollowUp(patient_id="P-PHONE", visit_on=D("2026-02-10"), mode=2, risk_level=1, insight=1, classification=2)
        s.add(fu)
        s.flush()
        s.add_all([FollowUpParticipant(follow_up_id=fu.id, role="village", attended=False),
                   FollowUpParticipant(follow_up_id=fu.id, role="village", member_id="M-village", attended=True)])
        s.commit()
        phone = fu.id
    generate(engine, as_of=D("2026-02-11"))
    [a] = closed_tasks(engine, "P-HOME")
    assert (a["closed_by"], a["joint_outcome"], a["missing_roles"]) == (home, "complete", "")
    [b] = closed_tasks(engine, "P-PART")
    assert (b["closed_by"], b["joint_outcome"], b["missing_roles"]) == (part, "incomplete", "police")
    [c] = closed_tasks(engine, "P-PHONE")
    assert (c["closed_by"], c["joint_outcome"], c["missing_roles"]) == (phone, "incomplete", "police")


def test_one_row_per_person_kept_by_the_database(database):
    """models.FollowUpParticipant's two keys: a member once per (follow-up, role); one unnamed row per
    (follow-up, role); two members of one role, or a member and the unnamed row, are fine."""
    engine = database.engine
    county(engine)
    fid = add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True}, second={"police": False})
    fp = FollowUpParticipant.__table__
    with engine.begin() as conn:
        conn.execute(sa.insert(fp).values(follow_up_id=fid, role="police", attended=True, source="doctor"))
    for member in ("M-police", None):
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(sa.insert(fp).values(follow_up_id=fid, role="police", member_id=member, attended=False,
                                                  source="doctor"))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(fp).where(fp.c.follow_up_id == fid)).scalar() == 3


def test_incremental_run_stores_the_outcome_too(database):
    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    phone = add_visit(engine, "P-PHONE", "2026-02-10", mode=1)
    generate(engine, as_of=D("2026-02-11"), incremental=True)
    [a] = closed_tasks(engine, "P-PHONE")
    assert (a["closed_by"], a["joint_outcome"], a["missing_roles"]) == (phone, "incomplete", "police,village")


def test_latest_joint_incomplete_until_a_later_complete(database):
    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    add_visit(engine, "P-PHONE", "2026-02-10", mode=3)  # 联合未到位; still 不稳定? no: class 2 → next task not joint
    generate(engine, as_of=D("2026-02-11"))
    p = Patient.__table__
    cond = joint_visits.latest_joint_incomplete_sql(p.c.patient_id)
    with engine.connect() as conn:
        flagged = set(conn.execute(sa.select(p.c.patient_id).where(cond)).scalars())
    assert flagged == {"P-PHONE"}
    # a later joint task closed 到位 clears the flag
    with Session(engine) as s:
        s.add(FollowUp(patient_id="P-PHONE", visit_on=D("2026-02-20"), mode=2, risk_level=3, insight=2, classification=1))
        s.commit()
    generate(engine, as_of=D("2026-02-21"))
    add_visit(engine, "P-PHONE", "2026-02-25", mode=2, present={"police": True, "village": True})
    generate(engine, as_of=D("2026-02-26"))
    with engine.connect() as conn:
        flagged = set(conn.execute(sa.select(p.c.patient_id).where(cond)).scalars())
    assert flagged == set()


# ---------------------------------------------------------------------------- the rule, pure


def test_joint_outcome_pure():
    out = joint_visits.joint_outcome
    assert out(("doctor",), 3, ()) == (None, ())
    assert out(("doctor", "police", "village"), 3, ("police", "village")) == (JointOutcome.INCOMPLETE, ("police", "village"))
    assert out(("doctor", "police", "village"), 1, ("police", "village")) == (JointOutcome.INCOMPLETE, ("police", "village"))
    assert out(("doctor", "police", "village"), 2, ("police", "village")) == (JointOutcome.COMPLETE, ())
    assert out(("doctor", "civil_affairs"), 2, ("police",)) == (JointOutcome.INCOMPLETE, ("civil_affairs",))
    assert out(("doctor", "civil_affairs"), None, ("civil_affairs",)) == (JointOutcome.INCOMPLETE, ("civil_affairs",))
    # the doctor: present unless recorded absent (and not also recorded present); first among the missing
    full = ("doctor", "police", "village")
    assert out(full, 2, ("police", "village"), ("doctor",)) == (JointOutcome.INCOMPLETE, ("doctor",))
    assert out(full, 2, ("police",), ("doctor", "village")) == (JointOutcome.INCOMPLETE, ("doctor", "village"))
    assert out(full, 2, ("doctor", "police", "village"), ("doctor",)) == (JointOutcome.COMPLETE, ())
    assert out(full, 2, ("police", "village"), ()) == (JointOutcome.COMPLETE, ())  # no doctor row: there
    assert out(full, 3, (), ("doctor",)) == (JointOutcome.INCOMPLETE, ("doctor", "police", "village"))
    assert out(("doctor",), 2, (), ("doctor",)) == (None, ())  # doctor only: still not a joint task


def test_attendee_record_beats_the_doctors():
    wins = joint_visits.attendance_replaces
    self_, doctor = AttendanceSource.SELF.value, AttendanceSource.DOCTOR.value
    assert wins(None, doctor) and wins(None, self_)
    assert wins(doctor, self_)  # the attendee's own word replaces the doctor's
    assert not wins(self_, doctor)  # the doctor never overwrites it
    assert wins(self_, self_) and wins(doctor, doctor)


def test_latest_joint_incomplete_pure():
    f = joint_visits.latest_joint_incomplete
    assert not f([])
    assert f([(D("2026-01-01"), 1, "incomplete")])
    assert not f([(D("2026-01-01"), 1, "incomplete"), (D("2026-02-01"), 2, "complete")])
    assert f([(D("2026-01-01"), 1, "complete"), (D("2026-02-01"), 2, "incomplete")])
    assert f([(D("2026-02-01"), 3, "incomplete"), (D("2026-02-01"), 2, "complete")])


# ---------------------------------------------------------------------------- twins

DAY0 = D("2026-01-01")
ROLE_SETS = st.sampled_from(["doctor", "doctor,police,village", "doctor,civil_affairs", "doctor,village",
                             "doctor,police,village,civil_affairs"])


@st.composite
def cases(draw):
    """One patient (registered on day ``reg``), some follow-ups (complete or not) and participants
    (the doctor's row too), some closed visit tasks and post-emergency tasks."""
    reg = draw(st.integers(0, 5))
    n = draw(st.integers(1, 6))
    fus = [{"id": i + 1, "visit_on": DAY0 + timedelta(days=draw(st.integers(0, 10))), "mode": draw(st.sampled_from([1, 2, 2, 3, None])),
            "risk_level": draw(st.sampled_from([None, 0, 3])), "lost_reason": draw(st.sampled_from([None, None, 1])),
            "hospital_status": draw(st.sampled_from([None, 0, 1]))}
           for i in range(n)]
    # per person (rules.md §6.2): per role (the doctor too) none, the unnamed row and/or members,
    # each present or not
    parts = [{"follow_up_id": fu["id"], "role": r, "member_id": m, "attended": draw(st.booleans())}
             for fu in fus for r in ("doctor",) + ROLES for m in (None, f"M-{r}", f"M-{r}-2") if draw(st.booleans())]
    tasks = []
    for k in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["follow_up", "retry", "first_visit", "post_emergency", "post_emergency"]))
        if kind == "post_emergency":  # basis_on: the emergency's end date (rules.md §9)
            basis_on = DAY0 + timedelta(days=draw(st.integers(0, 10)))
            basis = f"emergency:{k}"
        elif draw(st.booleans()):
            basis_fu = draw(st.sampled_from(fus))
            basis, basis_on = f"follow_up:{basis_fu['id']}", basis_fu["visit_on"]
        else:
            basis_on = DAY0 + timedelta(days=reg)
            basis = f"registration:{basis_on.isoformat()}"
        if any(x["basis"] == basis for x in tasks):
            continue
        roles = "doctor,police,village" if kind == "post_emergency" else draw(ROLE_SETS)
        tasks.append({"id": k + 1, "basis": basis, "basis_on": basis_on, "roles": roles, "kind": kind})
    return reg, fus, parts, tasks


def test_closing_rule_matches_its_sql_twin(database):
    t = VisitTask.__table__

    @settings(TWIN_SETTINGS, max_examples=50)
    @given(case=cases())
    def check(case):
        reg, fus, parts, tasks = case
        registered_on = DAY0 + timedelta(days=reg)
        with scratch(database.engine) as conn:
            conn.execute(sa.insert(Region.__table__), [{"code": "V", "name": "村", "level": "village"}])
            conn.execute(sa.insert(TeamMember.__table__), [{"member_id": m, "name": m, "role": r, "region_code": "V"}
                                                          for r in ("doctor",) + ROLES for m in (f"M-{r}", f"M-{r}-2")])
            conn.execute(sa.insert(Patient.__table__), [{"patient_id": "P", "name": "x", "sex": 1, "birth_date": D("1980-01-01"),
                                                          "village_code": "V", "diagnosis": "schizophrenia",
                                                          "registered_on": registered_on}])
            conn.execute(sa.insert(FollowUp.__table__), [{**f, "patient_id": "P", "seq": f["id"]} for f in fus])
            if parts:
                conn.execute(sa.insert(FollowUpParticipant.__table__), [{**p, "source": "doctor"} for p in parts])
            conn.execute(sa.insert(t), [{**x, "patient_id": "P", "due_on": DAY0, "nominal_due_on": DAY0, "rule": "r",
                                         "status": "done", "joint": x["roles"] != "doctor"} for x in tasks])
            joint_visits.refresh_outcomes(conn, sa.true(), set_closed_by=True)
            got = {r.id: (r.closed_by, r.joint_outcome, r.missing_roles or "")
                   for r in conn.execute(sa.select(t.c.id, t.c.closed_by, t.c.joint_outcome, t.c.missing_roles))}
        attempts = [SimpleNamespace(**f) for f in fus]
        expected = {}
        for x in tasks:
            if x["kind"] == "post_emergency":
                closing = emergencies.closing_post_emergency(x["basis_on"], attempts)
            else:
                closing = joint_visits.closing_follow_up(x["basis"], x["basis_on"], registered_on, attempts)
            if closing is None:
                expected[x["id"]] = (None, None, "")
                continue
            present = [p["role"] for p in parts if p["follow_up_id"] == closing.id and p["attended"]]
            absent = [p["role"] for p in parts if p["follow_up_id"] == closing.id and not p["attended"]]
            outcome, missing = joint_visits.joint_outcome(x["roles"].split(","), closing.mode, present, absent)
            expected[x["id"]] = (closing.id, outcome.value if outcome else None, ",".join(missing))
        assert got == expected, (case, got, expected)

    check()


@pytest.mark.parametrize("rows", [
    [], [("2026-01-01", 1, "incomplete")], [("2026-01-01", 1, "incomplete"), ("2026-01-02", 2, "complete")],
    [("2026-01-01", 1, "complete"), ("2026-01-01", 2, "incomplete")],
])
def test_latest_joint_incomplete_matches_its_sql_twin(database, rows):
    t, p = VisitTask.__table__, Patient.__table__
    with scratch(database.engine) as conn:
        conn.execute(sa.insert(Region.__table__), [{"code": "V", "name": "村", "level": "village"}])
        conn.execute(sa.insert(p), [{"patient_id": "P", "name": "x", "sex": 1, "birth_date": D("1980-01-01"),
                                     "village_code": "V", "diagnosis": "schizophrenia", "registered_on": DAY0}])
        for on, fid, outcome in rows:
            conn.execute(sa.insert(FollowUp.__table__), [{"id": fid, "patient_id": "P", "visit_on": D(on), "seq": fid}])
            conn.execute(sa.insert(t), [{"patient_id": "P", "kind": "follow_up", "basis": f"x:{fid}", "basis_on": DAY0,
                                         "due_on": DAY0, "nominal_due_on": DAY0, "rule": "r", "status": "done",
                                         "roles": "doctor,police", "joint": True, "closed_by": fid,
                                         "joint_outcome": outcome}])
        got = conn.execute(sa.select(joint_visits.latest_joint_incomplete_sql(p.c.patient_id))).scalar()
    assert bool(got) == joint_visits.latest_joint_incomplete([(D(on), fid, o) for on, fid, o in rows])


# ---------------------------------------------------------------------------- who recorded it (web, API)


def test_attendees_own_record_wins_over_the_doctors_through_the_api(database):
    from fastapi.testclient import TestClient

    from registry.web.app import create_app
    from web_support import TODAY, seed, session_token

    ids = seed(database.engine)
    client = TestClient(create_app(database.engine, today=lambda: TODAY))
    doc = {"Authorization": f"Bearer {session_token(database.engine, 'doc')}"}
    police = {"Authorization": f"Bearer {session_token(database.engine, 'police')}"}
    url = f"/api/follow-ups/{ids['f1']}"
    fp = FollowUpParticipant.__table__

    def row(role, member=None):  # one person's row: a member's, or the role's unnamed row
        person = fp.c.member_id == member if member else fp.c.member_id.is_(None)
        with database.engine.connect() as conn:
            return conn.execute(sa.select(fp.c.attended, fp.c.source, fp.c.reason, fp.c.recorded_by)
                                .where(fp.c.follow_up_id == ids["f1"], fp.c.role == role, person)).one()

    # the doctor first (the police unnamed: the "police" account is linked to no member), then the
    # officer: the officer's word replaces that row, and only that row
    r = client.post(url + "/participants", headers=doc, json={"participants": [
        {"role": "police", "present": False, "reason": "值班"},
        {"role": "village", "member_id": "M-VIL", "present": True}]})
    assert r.status_code == 200 and r.json() == {"follow_up_id": ids["f1"], "written": ["police", "village:M-VIL"], "kept": []}
    assert tuple(row("police")) == (False, "doctor", "值班", "doc")
    r = client.post(url + "/attendance", headers=police, json={"attended": True})
    assert r.status_code == 200, r.text
    assert tuple(row("police")) == (True, "self", None, "police")
    assert tuple(row("police", "M-POL")) == (False, "doctor", None, None)  # the seed's row of a named officer: untouched
    # the doctor again: the officer's own row is kept, the rest written
    r = client.post(url + "/participants", headers=doc, json={"participants": [
        {"role": "police", "present": False}, {"role": "village", "member_id": "M-VIL", "present": False, "reason": "外出"}]})
    assert r.json() == {"follow_up_id": ids["f1"], "written": ["village:M-VIL"], "kept": ["police"]}
    assert tuple(row("police")) == (True, "self", None, "police")
    assert tuple(row("village", "M-VIL")) == (False, "doctor", "外出", "doc")
    # bad rows are refused whole, with the field named
    r = client.post(url + "/participants", headers=doc, json={"participants": [
        {"role": "village", "present": True}, {"role": "mayor", "present": True}]})
    assert r.status_code == 422 and r.json()["issues"][0]["column"] == "role"
    assert tuple(row("village", "M-VIL")) == (False, "doctor", "外出", "doc")
    r = client.post(url + "/participants", headers=doc, json={"participants": [{"role": "village", "member_id": "NOPE",
                                                                                "present": True}]})
    assert r.status_code == 422 and r.json()["issues"][0]["code"] == "UNKNOWN_MEMBER"


# ---------------------------------------------------------------------------- participants.csv


def test_participants_csv_imports_keeps_own_records_and_reports_bad_rows(database, small_county, tmp_path):
    import shutil

    from registry.errors import ImportRejected
    from registry.importing import import_path

    files = tmp_path / "files"
    shutil.copytree(small_county, files)
    for extra in files.glob("expected-*"):
        extra.unlink()
    (files / "team_members.csv").write_text(
        "member_id,name,role,phone,region_code\nM-POL,刘,police,1,T\nM-POL2,钱,police,3,T\nM-VIL,赵,village,2,V\n",
        encoding="utf-8")
    (files / "participants.csv").write_text(
        "患者编号,随访日期,角色,成员编号,到场,未到场原因\n"
        "C1,2026-03-01,police,M-POL,1,\n"
        "C1,2026-03-01,village,M-VIL,0,外出\n", encoding="utf-8")
    today = D("2026-06-10")
    first = import_path(database.engine, files, today=today)
    assert first.tables["participants"].written == 2
    fp, f = FollowUpParticipant.__table__, FollowUp.__table__
    query = (sa.select(fp.c.role, fp.c.member_id, fp.c.attended, fp.c.reason, fp.c.source)
             .select_from(fp.join(f, f.c.id == fp.c.follow_up_id))
             .where(f.c.patient_id == "C1", f.c.visit_on == D("2026-03-01")).order_by(fp.c.role))
    with database.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(query)] == [("police", "M-POL", True, None, "doctor"),
                                                          ("village", "M-VIL", False, "外出", "doctor")]
    assert import_path(database.engine, files, today=today).tables["participants"].written == 0  # twice: no change
    # the village member's own record wins over a re-import that says otherwise
    with database.engine.begin() as conn:
        conn.execute(sa.update(fp).where(fp.c.role == "village").values(attended=True, reason=None, source="self"))
    assert import_path(database.engine, files, today=today).tables["participants"].written == 0
    with database.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(query)][1] == ("village", "M-VIL", True, None, "self")
    # per person (rules.md §6.2 [2026-12]): a second officer and the police's unnamed row are rows of
    # their own; M-POL's row is updated in place
    (files / "participants.csv").write_text(
        "patient_id,visit_on,role,member_id,present,reason\n"
        "C1,2026-03-01,police,M-POL,0,值班\n"
        "C1,2026-03-01,police,M-POL2,1,\n"
        "C1,2026-03-01,police,,1,\n", encoding="utf-8")
    assert import_path(database.engine, files, today=today).tables["participants"].written == 3
    with database.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query) if r.role == "police"]
    assert len(rows) == 3 and set(rows) == {("police", "M-POL", False, "值班", "doctor"),
                                            ("police", "M-POL2", True, None, "doctor"), ("police", None, True, None, "doctor")}
    # bad rows: unknown follow-up, unknown member, bad present flag, a member twice, the unnamed row
    # twice — nothing written; two officers of one visit are not a duplicate
    (files / "participants.csv").write_text(
        "patient_id,visit_on,role,member_id,present,reason\n"
        "C1,2026-03-02,police,M-POL,1,\n"
        "C1,2026-03-01,police,NOPE,1,\n"
        "C1,2026-03-01,village,,2,\n"
        "C1,2026-03-01,police,,0,\n"
        "C1,2026-03-01,police,M-POL,1,\n"
        "C1,2026-03-01,police,M-POL2,0,\n"
        "C1,2026-03-01,police,M-POL,0,\n"
        "C1,2026-03-01,police,,1,\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as exc:
        import_path(database.engine, files, today=today)
    got = {(i.line, i.column, i.code) for i in exc.value.issues}
    assert got == {(2, "visit_on", "UNKNOWN_FOLLOW_UP"), (3, "member_id", "UNKNOWN_MEMBER"), (4, "present", "BAD_CODE"),
                   (8, "member_id", "DUPLICATE_ID"), (9, "role", "DUPLICATE_ID")}
    assert all(i.file == "participants.csv" for i in exc.value.issues)
    messages = {i.line: i.message for i in exc.value.issues if i.code == "DUPLICATE_ID"}
    assert "M-POL" in messages[8] and "第6行" in messages[8] and "第5行" in messages[9]


# ---------------------------------------------------------------------------- joint_visit_complete_rate


def test_joint_visit_complete_rate_on_hand_built_cases(database):
    """indicators.md: joint tasks closed by a follow-up dated in W; numerator those closed 到位."""
    from registry.rates.compute import compute_rates

    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    add_visit(engine, "P-PHONE", "2026-02-10", mode=3)  # 联合未到位
    add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})  # 到位
    add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"police": True})  # 联合未到位 (village)
    generate(engine, as_of=D("2026-02-11"))
    jan = compute_rates(engine, month="2026-01", today=D("2026-03-10"))["indicators"]["joint_visit_complete_rate"]
    assert (jan["numerator"], jan["denominator"], jan["rate"]) == (0, 0, None)  # closed in February, not in W of January
    feb = compute_rates(engine, month="2026-02", today=D("2026-03-10"))
    got = feb["indicators"]["joint_visit_complete_rate"]
    assert (got["numerator"], got["denominator"], got["rate"]) == (1, 3, 0.3333)
    [town] = feb["children"]
    assert town["indicators"]["joint_visit_complete_rate"]["denominator"] == 3
    # a doctor-only task closed by a follow-up is not a joint task: P-HOME's next task (基本稳定) closes
    add_visit(engine, "P-HOME", "2026-02-20", mode=3)
    generate(engine, as_of=D("2026-02-21"))
    got = compute_rates(engine, month="2026-02", today=D("2026-03-10"))["indicators"]["joint_visit_complete_rate"]
    assert (got["numerator"], got["denominator"]) == (1, 3)


# ---------------------------------------------------------------------------- 风险预警单


def test_joint_incomplete_patient_is_on_the_risk_warning_list(database):
    from schedules.lists import build_lists

    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    add_visit(engine, "P-PHONE", "2026-02-10", mode=3)
    add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})
    generate(engine, as_of=D("2026-02-11"))
    lists = build_lists(engine, township_code="T", week=D("2026-02-16"))
    [risk] = [wl for wl in lists["lists"] if wl.slug == "risk"]
    reasons = {r["patient_id"]: r["reasons"] for r in risk.rows}
    assert "联合未到位（未到：民警、村(社区)两委成员/网格员）" in reasons["P-PHONE"]
    assert "联合未到位" not in reasons.get("P-HOME", "")


# ---------------------------------------------------------------------------- the supervision page


def test_supervision_page_lists_joint_incomplete_patients_of_the_region(database):
    import re

    from fastapi.testclient import TestClient

    from registry.web.app import create_app
    from web_support import PASSWORD, TODAY, seed

    engine = database.engine
    seed(engine)
    generate(engine, as_of=D("2026-05-21"))  # P1 (不稳定, risk 3): a joint task doctor, police, village
    with Session(engine) as s:
        s.add(FollowUp(patient_id="P1", visit_on=D("2026-06-01"), mode=3, risk_level=1, insight=1, classification=2))
        s.commit()
    generate(engine, as_of=D("2026-06-02"))

    def page(username):
        client = TestClient(create_app(engine, today=lambda: TODAY), follow_redirects=False)
        form = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        assert client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token}).status_code == 303
        return client.get("/joint-visits/incomplete")

    doc = page("doc")
    assert doc.status_code == 200 and "P1" in doc.text and "陈一" in doc.text and "民警" in doc.text
    assert "利培酮" not in doc.text and "精神分裂" not in doc.text  # no medication, no diagnosis
    admin = page("admin")
    assert admin.status_code == 200 and "P1" in admin.text
    other = page("doc2")  # the other township
    assert other.status_code == 200 and "陈一" not in other.text
    assert page("police").status_code == 403
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE object_type = 'joint_incomplete'")).scalar() == 3


def test_monthly_report_ranks_townships_by_joint_visit_complete_rate(database):
    from registry.rates.indicators import INDICATOR_KEYS
    from registry.rates.reporting import ChildRow, build_context, cells_for, joint_ranking, render_html

    engine = database.engine
    county(engine)
    with Session(engine) as s:  # a second township with no joint task closed
        s.add(Region(code="T2", name="二镇", level="township", parent_code="C"))
        s.add(Region(code="V2", name="二村", level="village", parent_code="T2", population=500))
        s.commit()
    generate(engine, as_of=D("2026-02-03"))
    add_visit(engine, "P-PHONE", "2026-02-10", mode=3)
    add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})
    generate(engine, as_of=D("2026-02-11"))
    ctx = build_context(engine, month="2026-02", today=D("2026-03-10"))
    assert [(r.rank, r.code) for r in ctx.joint_ranking] == [(1, "T"), (2, "T2")]
    cell = ctx.joint_ranking[0].cells["joint_visit_complete_rate"]
    assert (cell.numerator, cell.denominator, cell.rate) == (1, 2, "50.00%")
    html = render_html(ctx)
    assert "联合随访到位率排名" in html and "50.00%" in html
    # the ranking itself: highest rate first, no rate last, ties by the number closed 到位
    def row(code, num, den):
        values = {k: {"numerator": 0, "denominator": 0, "rate": None, "target": None, "met": None} for k in INDICATOR_KEYS}
        values["joint_visit_complete_rate"] = {"numerator": num, "denominator": den, "rate": None, "target": None, "met": None}
        return ChildRow(0, code, code, 0, cells_for(values))
    ranked = joint_ranking([row("A", 0, 0), row("B", 1, 2), row("C", 2, 4), row("D", 3, 3)])
    assert [r.code for r in ranked] == ["D", "C", "B", "A"]


# ---------------------------------------------------------------------------- the doctor (rules.md §6: always required)


def test_doctor_recorded_absent_is_missing_first_no_doctor_row_is_there(database):
    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    absent = add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"doctor": False, "police": True, "village": True})
    part = add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"doctor": False, "village": True})
    plain = add_visit(engine, "P-PHONE", "2026-02-10", mode=2, present={"police": True, "village": True})
    generate(engine, as_of=D("2026-02-11"))
    [a] = closed_tasks(engine, "P-HOME")
    assert (a["closed_by"], a["joint_outcome"], a["missing_roles"]) == (absent, "incomplete", "doctor")
    [b] = closed_tasks(engine, "P-PART")
    assert (b["closed_by"], b["joint_outcome"], b["missing_roles"]) == (part, "incomplete", "doctor,police")
    [c] = closed_tasks(engine, "P-PHONE")  # no doctor row: the doctor who records it was there
    assert (c["closed_by"], c["joint_outcome"], c["missing_roles"]) == (plain, "complete", "")
    # the doctor's row corrected to present: 到位 (the same rule, on an attendance change)
    fp = FollowUpParticipant.__table__
    with engine.begin() as conn:
        conn.execute(sa.update(fp).where(fp.c.follow_up_id == absent, fp.c.role == "doctor").values(attended=True))
        joint_visits.refresh_for_follow_ups(conn, [absent])
    [a] = closed_tasks(engine, "P-HOME")
    assert (a["joint_outcome"], a["missing_roles"]) == ("complete", "")
    # the 风险预警单 names the doctor among the missing
    from schedules.lists import build_lists

    [risk] = [wl for wl in build_lists(engine, township_code="T", week=D("2026-02-16"))["lists"] if wl.slug == "risk"]
    reasons = {r["patient_id"]: r["reasons"] for r in risk.rows}
    assert "联合未到位（未到：精防医生、民警）" in reasons["P-PART"]


def test_doctor_only_task_stays_no_joint_task_when_the_doctor_is_recorded_absent(database):
    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})  # next task: doctor only
    generate(engine, as_of=D("2026-02-11"))
    later = add_visit(engine, "P-HOME", "2026-02-20", mode=2, present={"doctor": False})
    generate(engine, as_of=D("2026-02-21"))
    tasks = closed_tasks(engine, "P-HOME")
    [doctor_only] = [x for x in tasks if x["closed_by"] == later]
    assert (doctor_only["roles"], doctor_only["joint_outcome"], doctor_only["missing_roles"]) == ("doctor", None, None)


# ---------------------------------------------------------------------------- post-emergency visits (rules.md §9)


def add_emergency(engine, pid: str, ended: str) -> int:
    from datetime import datetime

    from registry.models import Emergency

    with Session(engine) as s:
        e = Emergency(patient_id=pid, situations="3", reported_at=datetime.fromisoformat(ended + " 08:00"),
                      started_at=datetime.fromisoformat(ended + " 08:10"), ended_at=datetime.fromisoformat(ended + " 09:00"),
                      measures="counselling", effect="已控制", opened_by="doc")
        s.add(e)
        s.commit()
        return e.id


def post_emergency_task(engine, pid: str) -> dict:
    t = VisitTask.__table__
    with engine.connect() as conn:
        [row] = conn.execute(sa.select(t).where(t.c.patient_id == pid, t.c.kind == "post_emergency")).mappings().all()
        return dict(row)


@pytest.mark.parametrize("incremental", [False, True])
def test_post_emergency_visit_is_a_joint_task_assessed_counted_and_listed(database, incremental):
    from registry.rates.compute import compute_rates
    from registry.web.joint_visits import incomplete_rows
    from schedules.lists import build_lists

    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    for pid in ("P-HOME", "P-PART", "P-PHONE"):
        add_emergency(engine, pid, "2026-02-05")
    generate(engine, as_of=D("2026-02-06"), incremental=incremental)
    assert {post_emergency_task(engine, pid)["roles"] for pid in ("P-HOME", "P-PART", "P-PHONE")} == {"doctor,police,village"}
    home = add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})
    part = add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"police": False, "village": True})
    add_visit(engine, "P-PHONE", "2026-02-10", mode=3, present={"police": True, "village": True})
    generate(engine, as_of=D("2026-02-11"), incremental=incremental)
    a = post_emergency_task(engine, "P-HOME")
    assert (a["status"], a["closed_by"], a["joint_outcome"], a["missing_roles"]) == ("done", home, "complete", "")
    b = post_emergency_task(engine, "P-PART")
    assert (b["status"], b["closed_by"], b["joint_outcome"], b["missing_roles"]) == ("done", part, "incomplete", "police")
    # a phone call does not close it (rules.md §9: a complete home visit does): open, not yet assessed
    c = post_emergency_task(engine, "P-PHONE")
    assert (c["status"], c["closed_by"], c["joint_outcome"]) == ("open", None, None)
    # joint_visit_complete_rate counts it: P-HOME's two tasks 到位; P-PART's two and P-PHONE's follow-up task not
    got = compute_rates(engine, month="2026-02", today=D("2026-03-10"))["indicators"]["joint_visit_complete_rate"]
    assert (got["numerator"], got["denominator"]) == (2, 5)
    # 风险预警单 and the supervisor's page
    [risk] = [wl for wl in build_lists(engine, township_code="T", week=D("2026-02-16"))["lists"] if wl.slug == "risk"]
    reasons = {r["patient_id"]: r["reasons"] for r in risk.rows}
    assert "联合未到位（未到：民警）" in reasons["P-PART"]
    assert "联合未到位" not in reasons.get("P-HOME", "")
    rows = {r["patient_id"]: r["missing"] for r in incomplete_rows(engine, "T", "township")}
    assert rows["P-PART"] == "民警" and "P-HOME" not in rows
    # the officer records later that they were there: the post-emergency task follows (same rule)
    fp = FollowUpParticipant.__table__
    with engine.begin() as conn:
        conn.execute(sa.update(fp).where(fp.c.follow_up_id == part, fp.c.role == "police").values(attended=True))
        joint_visits.refresh_for_follow_ups(conn, [part])
    b = post_emergency_task(engine, "P-PART")
    assert (b["joint_outcome"], b["missing_roles"]) == ("complete", "")


def test_post_emergency_closed_by_the_first_home_visit_a_phone_call_after_it_changes_nothing(database):
    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    add_emergency(engine, "P-HOME", "2026-02-05")
    generate(engine, as_of=D("2026-02-06"))
    before = add_visit(engine, "P-HOME", "2026-02-04", mode=2, present={"police": True, "village": True})  # before the end
    first = add_visit(engine, "P-HOME", "2026-02-09", mode=2, present={"village": True})
    add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})
    generate(engine, as_of=D("2026-02-11"))
    a = post_emergency_task(engine, "P-HOME")
    assert before != first
    assert (a["closed_by"], a["joint_outcome"], a["missing_roles"]) == (first, "incomplete", "police")


def test_a_rules_change_restates_the_stored_outcomes_of_closed_joint_tasks(database):
    """registry.rules.RULES_VERSION: the first whole-register run under new rules (or a new profile)
    is a full run that restates every closed joint task's ``closed_by`` and 到位 by today's rule —
    e.g. a post-emergency task closed before it was assessed (rules.md §6.2, §9)."""
    from schedules.models import GenerationBasis

    engine = database.engine
    county(engine)
    generate(engine, as_of=D("2026-02-03"))
    add_emergency(engine, "P-PART", "2026-02-05")
    generate(engine, as_of=D("2026-02-06"), incremental=True)
    part = add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"police": False, "village": True})
    generate(engine, as_of=D("2026-02-11"), incremental=True)
    t, b = VisitTask.__table__, GenerationBasis.__table__
    with engine.begin() as conn:  # as stored before the post-emergency visit was judged, under older rules
        conn.execute(sa.update(t).where(t.c.kind == "post_emergency").values(closed_by=None, joint_outcome=None,
                                                                             missing_roles=None))
        conn.execute(sa.update(b).values(profile="rules-3|" + conn.execute(sa.select(b.c.profile)).scalar()))
    same_rules = generate(engine, as_of=D("2026-02-11"), incremental=True)
    assert (same_rules["mode"], same_rules["full_reason"]) == ("full", "profile_changed")
    a = post_emergency_task(engine, "P-PART")
    assert (a["closed_by"], a["joint_outcome"], a["missing_roles"]) == (part, "incomplete", "police")
    # the next run under the same rules is incremental again and restates nothing it need not
    assert generate(engine, as_of=D("2026-02-12"), incremental=True)["mode"] == "incremental"


@pytest.mark.parametrize("first_run", [False, True])
@pytest.mark.parametrize("incremental", [False, True])
def test_post_emergency_task_exists_when_its_home_visit_was_recorded_before_any_run(database, incremental, first_run):
    """rules.md §9: after an emergency the patient owes a post-emergency visit — whenever the
    scheduler runs. The emergency and the home visit that closes it are both recorded before a run
    plans the task: the run creates it already closed by that visit (``home_visit``), judged 到位 /
    联合未到位 (rules.md §6.2) and counted in joint_visit_complete_rate; a later run changes nothing.
    ``first_run``: no run before at all (the closing steps' first-run shortcut)."""
    from registry.rates.compute import compute_rates

    engine = database.engine
    county(engine)
    if not first_run:
        generate(engine, as_of=D("2026-02-03"))
    add_emergency(engine, "P-PART", "2026-02-05")
    add_emergency(engine, "P-HOME", "2026-02-05")
    part = add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"police": False, "village": True})
    home = add_visit(engine, "P-HOME", "2026-02-10", mode=2, present={"police": True, "village": True})
    counts = generate(engine, as_of=D("2026-02-11"), incremental=incremental)
    a = post_emergency_task(engine, "P-PART")
    assert (a["status"], a["close_reason"], a["closed_by"], a["joint_outcome"], a["missing_roles"]) == (
        "done", "home_visit", part, "incomplete", "police")
    assert a["roles"] == "doctor,police,village" and a["basis_on"] == D("2026-02-05")
    b = post_emergency_task(engine, "P-HOME")
    assert (b["status"], b["closed_by"], b["joint_outcome"]) == ("done", home, "complete")
    assert counts["closed"] >= 2
    got = compute_rates(engine, month="2026-02", today=D("2026-03-10"))["indicators"]["joint_visit_complete_rate"]
    # P-HOME's post-emergency task 到位; P-PART's 联合未到位; with an earlier run, each patient's
    # §5 follow-up task (police + village) closed by the same visit too
    assert (got["numerator"], got["denominator"]) == ((1, 2) if first_run else (2, 4))
    again = generate(engine, as_of=D("2026-02-12"), incremental=incremental)
    assert again["created"] == 0
    assert post_emergency_task(engine, "P-PART") == a


def test_post_emergency_visit_dated_after_the_run_date_leaves_the_task_open_until_then(database):
    """A home visit entered ahead of its date closes nothing yet (rules.md §5: attempts count from
    their date): the task planned before it is open, then closed by the run on or after that date."""
    engine = database.engine
    county(engine)
    add_emergency(engine, "P-HOME", "2026-02-05")
    visit = add_visit(engine, "P-HOME", "2026-02-12", mode=2, present={"police": True, "village": True})
    generate(engine, as_of=D("2026-02-11"))
    assert post_emergency_task(engine, "P-HOME")["status"] == "open"
    generate(engine, as_of=D("2026-02-12"), incremental=True)
    a = post_emergency_task(engine, "P-HOME")
    assert (a["status"], a["closed_by"], a["joint_outcome"]) == ("done", visit, "complete")


def test_unnamed_row_and_a_named_attendee_pure():
    """rules.md §6.2 (session 12): a named attendee with no row takes over the doctor's unnamed row,
    never another attendee's own; no unnamed row is created once a person of the role spoke for
    themselves, an existing one is the doctor's to write."""
    assert joint_visits.takes_over_unnamed(AttendanceSource.DOCTOR.value)
    assert not joint_visits.takes_over_unnamed(AttendanceSource.SELF.value)
    assert joint_visits.unnamed_kept_out(person_recorded_own=True, unnamed_exists=False)
    assert not joint_visits.unnamed_kept_out(person_recorded_own=True, unnamed_exists=True)
    assert not joint_visits.unnamed_kept_out(person_recorded_own=False, unnamed_exists=False)


def test_a_rules_change_creates_the_post_emergency_tasks_earlier_runs_left_out(database):
    """RULES_VERSION 5 (session 12): a register whose runs left out the post-emergency task of an
    emergency whose visit came first (as stored before session 12) gets it, closed and judged, from
    the first daily run under the new rules — a full run (``profile_changed``)."""
    from schedules.models import GenerationBasis

    engine = database.engine
    county(engine)
    add_emergency(engine, "P-PART", "2026-02-05")
    part = add_visit(engine, "P-PART", "2026-02-10", mode=2, present={"police": False, "village": True})
    generate(engine, as_of=D("2026-02-11"))
    t, b = VisitTask.__table__, GenerationBasis.__table__
    with engine.begin() as conn:  # as the older rules left it: no task, the basis of the older rules
        conn.execute(sa.delete(t).where(t.c.kind == "post_emergency"))
        conn.execute(sa.update(b).values(profile="rules-4|" + conn.execute(sa.select(b.c.profile)).scalar()))
    assert generate(engine, as_of=D("2026-02-12"), incremental=True)["full_reason"] == "profile_changed"
    a = post_emergency_task(engine, "P-PART")
    assert (a["status"], a["closed_by"], a["joint_outcome"], a["missing_roles"]) == ("done", part, "incomplete", "police")
