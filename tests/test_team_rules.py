"""One home per rule (issue 12): the roles a task requires and the police / civil-affairs audiences
(rules.md §6–§8), Python rule vs SQL twin on random rows, on SQLite and PostgreSQL; and a county
profile that changes the police rule changes both the tasks' roles and who the police may see."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from registry import audiences, teams
from registry.accounts import User
from registry.models import FollowUp, GuardianYear, Patient
from registry.models import HealthCheck as HealthCheckRow
from registry.profile import PROFILE_DIR, RoleRules, current_profile, load_profile
from registry.regions import LiveRegionTree
from registry.web.scopes import scope_for
from registry.config import get_settings
from registry.models import VisitTask
from tests.schedule_population import populate

TODAY = date(2026, 6, 10)
DEFAULT = load_profile("national-2018").roles

role_rules = st.builds(
    RoleRules,
    police_min_risk=st.integers(0, 6),
    police_classifications=st.lists(st.sampled_from([1, 2, 3]), unique=True, max_size=3).map(tuple),
    police_incident_lookback_months=st.integers(0, 24),
    police_on_locate=st.booleans(),
    village_when_police=st.booleans(),
    village_when_no_guardian=st.booleans(),
    civil_affairs_when_poor=st.booleans(),
    civil_affairs_when_no_guardian=st.booleans(),
)
rules_or_default = st.one_of(st.just(DEFAULT), role_rules)

_meta = sa.MetaData()
facts = sa.Table(
    "tmp_role_facts", _meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("latest_risk", sa.Integer), sa.Column("latest_class", sa.Integer),
    sa.Column("incident", sa.Integer), sa.Column("situation", sa.String(20)),
    sa.Column("guardian_name", sa.String(20)), sa.Column("economic_status", sa.Integer),
)
fact_rows = st.lists(st.fixed_dictionaries({
    "latest_risk": st.one_of(st.none(), st.integers(0, 5)),
    "latest_class": st.one_of(st.none(), st.sampled_from([1, 2, 3])),
    "incident": st.sampled_from([0, 1]),
    "situation": st.sampled_from(["locate", "retry", "follow_up", "first_visit"]),
    "guardian_name": st.sampled_from([None, "", "  ", "陈父"]),
    "economic_status": st.one_of(st.none(), st.sampled_from([1, 2, 3])),
}), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=rules_or_default, rows=fact_rows)
def test_required_roles_python_and_sql_agree(database, rules, rows):
    """rules.md §6: ``required_roles`` and ``required_roles_sql`` give the same roles and joint flag."""
    need = teams.required_roles_sql(
        rules, latest_risk=facts.c.latest_risk, latest_class=facts.c.latest_class, incident=facts.c.incident == 1,
        locate=facts.c.situation == "locate", has_guardian=teams.has_guardian_sql(facts.c.guardian_name),
        economic_status=facts.c.economic_status)
    with database.engine.begin() as conn:
        facts.drop(conn, checkfirst=True)
        facts.create(conn)
        conn.execute(facts.insert(), [{"id": i, **r} for i, r in enumerate(rows)])
        got = {i: (roles, bool(joint)) for i, roles, joint in
               conn.execute(sa.select(facts.c.id, need.roles, need.joint).order_by(facts.c.id))}
        facts.drop(conn)
    for i, r in enumerate(rows):
        want = teams.required_roles(rules, latest_risk=r["latest_risk"], latest_class=r["latest_class"],
                                    incident=r["incident"] == 1, locate=r["situation"] == "locate",
                                    has_guardian=teams.has_guardian(r["guardian_name"]), poor=r["economic_status"] == 1)
        assert got[i] == (",".join(want), teams.is_joint(want)), (r, rules)


def _random_extras(engine, seed: int) -> None:
    """Rehabilitation, blank guardians, 以奖代补 and open/closed tasks requiring police or civil affairs."""
    rng = random.Random(seed)
    p, f, t = Patient.__table__, FollowUp.__table__, VisitTask.__table__
    with engine.begin() as conn:
        ids = [r.id for r in conn.execute(sa.select(f.c.id))]
        for fid in rng.sample(ids, len(ids) // 5):
            conn.execute(sa.update(f).where(f.c.id == fid).values(rehabilitation=True))
        pids = list(conn.execute(sa.select(p.c.patient_id)).scalars())
        for pid in rng.sample(pids, len(pids) // 6):
            conn.execute(sa.update(p).where(p.c.patient_id == pid).values(guardian_name="  "))
        for n, pid in enumerate(rng.sample(pids, len(pids) // 4)):
            roles = rng.choice(["doctor", "doctor,police,village", "doctor,civil_affairs", "doctor,police,village,civil_affairs"])
            conn.execute(sa.insert(t).values(
                patient_id=pid, kind="follow_up", basis=f"test:{n}", basis_on=TODAY, due_on=TODAY, nominal_due_on=TODAY,
                roles=roles, joint=roles != "doctor", rule="test", status=rng.choice(["open", "open", "done"])))
        for pid in rng.sample(pids, len(pids) // 4):  # 以奖代补 guardian-years around TODAY's year
            year = rng.choice([TODAY.year - 1, TODAY.year, TODAY.year + 1])
            conn.execute(sa.insert(GuardianYear.__table__).values(
                patient_id=pid, year=year, enrolled_from=date(year, 1, 1), enrolled_to=date(year, 12, 31),
                status="provisional"))


def _python_audiences(engine, rules: RoleRules, today: date) -> tuple[set, set]:
    p, f, t, g = Patient.__table__, FollowUp.__table__, VisitTask.__table__, GuardianYear.__table__
    with engine.connect() as conn:
        guardian_years = set(conn.execute(sa.select(g.c.patient_id).where(g.c.year == today.year)).scalars())
        attempts: dict[str, list] = {}
        for row in conn.execute(sa.select(f)):
            attempts.setdefault(row.patient_id, []).append(row)
        open_roles: dict[str, set] = {}
        for pid, roles in conn.execute(sa.select(t.c.patient_id, t.c.roles).where(t.c.status == "open")):
            open_roles.setdefault(pid, set()).update(roles.split(","))
        police, civil = set(), set()
        for pat in conn.execute(sa.select(p)):
            fx = audiences.patient_facts(attempts.get(pat.patient_id, ()), pat.registered_on, today, rules)
            own = open_roles.get(pat.patient_id, set())
            if audiences.on_police_list(rules, latest_risk=fx["latest_risk"], latest_class=fx["latest_class"],
                                        incident=fx["incident"], lost=fx["lost"], police_task="police" in own):
                police.add(pat.patient_id)
            if audiences.on_civil_affairs_list(poor=pat.economic_status == 1,
                                               has_guardian=teams.has_guardian(pat.guardian_name),
                                               guardian_year=pat.patient_id in guardian_years):
                civil.add(pat.patient_id)
    return police, civil


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=rules_or_default, seed=st.integers(0, 10_000), days=st.integers(-200, 200))
def test_audiences_python_and_sql_agree(database, rules, seed, days):
    """rules.md §6–§8: the police and civil-affairs audiences, per patient in Python and set-based in SQL."""
    engine = database.engine
    with engine.begin() as conn:
        for table in (VisitTask.__table__, FollowUp.__table__, HealthCheckRow.__table__, GuardianYear.__table__,
                      Patient.__table__):
            conn.execute(sa.delete(table))
    populate(engine, patients=40, seed=seed, today=TODAY)
    _random_extras(engine, seed)
    today = TODAY + timedelta(days=days)
    among = sa.select(Patient.__table__.c.patient_id)
    with engine.connect() as conn:
        police_sql = set(conn.execute(audiences.police_patient_ids(rules, today, among)).scalars())
        civil_sql = set(conn.execute(audiences.civil_affairs_patient_ids(rules, today, among)).scalars())
    police_py, civil_py = _python_audiences(engine, rules, today)
    assert police_sql == police_py
    assert civil_sql == civil_py


def test_default_audiences_are_the_seeded_lists(database):
    """The default profile keeps the web's lists: P1 (risk 3, 不稳定, 肇事) for police, P3 (贫困, no guardian) for civil affairs."""
    from tests.web_support import VISIBLE, seed

    seed(database.engine)
    among = sa.select(Patient.__table__.c.patient_id).where(Patient.__table__.c.status == "active")
    with database.engine.connect() as conn:
        assert set(conn.execute(audiences.police_patient_ids(DEFAULT, TODAY, among)).scalars()) == VISIBLE["police"]
        assert set(conn.execute(audiences.civil_affairs_patient_ids(DEFAULT, TODAY, among)).scalars()) == VISIBLE["civil"]


def _visible(engine, username: str, today: date) -> set[str]:
    with Session(engine) as s:
        user = s.get(User, username)
        scope = scope_for(user, LiveRegionTree(engine), today)
        return {p.patient_id for p in s.exec(select(Patient).where(scope.patient_clause()))}


def test_county_profile_changes_task_roles_and_police_audience(database, tmp_path, monkeypatch):
    """A county lowers the police threshold to risk 2: the tasks then require police, and the police
    account sees the patient — before any task is generated (the audience follows the same rule)."""
    from schedules.generation import generate
    from tests.web_support import seed

    engine = database.engine
    seed(engine)
    with Session(engine) as s:
        common = dict(sex=1, birth_date=date(1980, 1, 1), diagnosis="schizophrenia", registered_on=date(2025, 1, 10))
        s.add(Patient(patient_id="Q1", name="钱六", village_code="V2", guardian_name="钱母", economic_status=2, **common))
        s.flush()
        s.add(FollowUp(patient_id="Q1", visit_on=date(2026, 5, 25), mode=2, risk_level=2, insight=1, adherence=1))
        s.commit()
    t = VisitTask.__table__

    def q1_roles() -> str:
        with engine.connect() as conn:
            return conn.execute(sa.select(t.c.roles).where(t.c.patient_id == "Q1", t.c.status == "open",
                                                           t.c.kind == "follow_up")).scalar_one()

    monkeypatch.delenv("JINGFANG_PROFILE", raising=False)
    monkeypatch.delenv("JINGFANG_PROFILE_DIR", raising=False)
    assert current_profile().roles.police_min_risk == 3
    assert "Q1" not in _visible(engine, "police", TODAY)
    generate(engine, as_of=TODAY)
    assert q1_roles() == "doctor"
    assert "Q1" not in _visible(engine, "police", TODAY)

    data = json.loads((PROFILE_DIR / "national-2018.json").read_text("utf-8"))
    data["name"], data["roles"]["police_min_risk"] = "county-test", 2
    (tmp_path / "county-test.json").write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    monkeypatch.setenv("JINGFANG_PROFILE_DIR", str(tmp_path))
    monkeypatch.setenv("JINGFANG_PROFILE", "county-test")
    get_settings.cache_clear()  # settings are read once (registry.config)
    assert current_profile().tag == "county-test@1"
    assert "Q1" in _visible(engine, "police", TODAY)  # the audience rule itself, no task yet
    generate(engine, as_of=TODAY)
    assert q1_roles() == "doctor,police,village"
    assert "Q1" in _visible(engine, "police", TODAY)
    assert "P2" not in _visible(engine, "police", TODAY)  # stable, risk 0: still not the police's


@pytest.mark.parametrize("risk, reasons", [(3, ["最近危险性3级"]), (2, [])])
def test_risk_warning_follows_the_police_threshold(risk, reasons):
    """风险预警单 (rules.md §7.3): risk at or above the profile's police threshold."""
    assert audiences.risk_warning_reasons(DEFAULT, latest_risk=risk, latest_class=2, new_incident=False,
                                          locate_task=False, overdue_visit=False) == reasons
    lowered = replace(DEFAULT, police_min_risk=2)
    assert audiences.risk_warning_reasons(lowered, latest_risk=2, latest_class=2, new_incident=False,
                                          locate_task=False, overdue_visit=False) == ["最近危险性2级"]


def _random_team(engine, rng, extra_members: int, assigned: int) -> list[dict]:
    """Extra members (some primary) and dated assignments (open, ended, future) on the populated county."""
    from registry.models import CareTeamAssignment, Region, TeamMember

    ca, tm, p, r = CareTeamAssignment.__table__, TeamMember.__table__, Patient.__table__, Region.__table__
    with engine.begin() as conn:
        regions = list(conn.execute(sa.select(r.c.code).where(r.c.level != "county")).scalars())
        members = [{"member_id": f"X{i}", "name": f"成员{i}", "role": rng.choice(["doctor", "police", "village", "civil_affairs"]),
                    "phone": None, "region_code": rng.choice(regions), "primary": rng.random() < 0.5}
                   for i in range(extra_members)]
        if members:
            conn.execute(sa.insert(tm), members)
        pids = list(conn.execute(sa.select(p.c.patient_id)).scalars())
        all_members = list(conn.execute(sa.select(tm.c.member_id, tm.c.role)).all())
        rows, seen = [], set()
        for _ in range(assigned):
            member = rng.choice(all_members)
            start = TODAY + timedelta(days=rng.randint(-60, 30))
            end = rng.choice([None, start + timedelta(days=rng.randint(0, 60))])
            key = (rng.choice(pids), member.member_id, member.role, start)
            if key not in seen:
                seen.add(key)
                rows.append({"patient_id": key[0], "member_id": key[1], "role": key[2], "from_on": start, "to_on": end})
        if rows:
            conn.execute(sa.insert(ca), rows)
    return rows


def _reset_team(engine) -> None:
    from registry.models import (CareTeamAssignment, Emergency, FollowUpParticipant, GuardianYear, Injection, PatientChange,
                                 PatientTransfer, TeamMember)

    tm = TeamMember.__table__
    with engine.begin() as conn:  # every table that refers to a patient, children first
        for table in (FollowUpParticipant.__table__, Injection.__table__, GuardianYear.__table__, Emergency.__table__,
                      PatientChange.__table__, PatientTransfer.__table__, CareTeamAssignment.__table__,
                      VisitTask.__table__, FollowUp.__table__, HealthCheckRow.__table__, Patient.__table__):
            conn.execute(sa.delete(table))
        conn.execute(sa.delete(tm).where(tm.c.member_id.like("X%")))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), extra_members=st.integers(0, 6), assigned=st.integers(0, 15),
       days=st.integers(-40, 40))
def test_care_team_python_and_sql_agree(database, seed, extra_members, assigned, days):
    """rules.md §6, §6.1: the assignments valid on the day, and for every role without one the members
    serving the village and its township."""
    from types import SimpleNamespace

    from registry.care_team import care_team, care_team_select
    from registry.models import Region, TeamMember

    engine = database.engine
    rng = random.Random(seed)
    tm, p, r = TeamMember.__table__, Patient.__table__, Region.__table__
    _reset_team(engine)
    populate(engine, patients=25, seed=seed, today=TODAY)
    rows = _random_team(engine, rng, extra_members, assigned)
    on = TODAY + timedelta(days=days)
    with engine.connect() as conn:
        among = sa.select(p.c.patient_id, p.c.village_code).subquery("among")
        got: dict[str, list] = {}
        for row in conn.execute(care_team_select(among, on)):
            got.setdefault(row.patient_id, []).append(row.member_id)
        member_rows = {m.member_id: m for m in conn.execute(sa.select(tm))}
        parent = dict(conn.execute(sa.select(r.c.code, r.c.parent_code)).all())
        for pat in conn.execute(sa.select(p.c.patient_id, p.c.village_code)):
            explicit = [SimpleNamespace(**member_rows[a["member_id"]]._asdict(), from_on=a["from_on"], to_on=a["to_on"])
                        for a in rows if a["patient_id"] == pat.patient_id]
            want = care_team(explicit, member_rows.values(), pat.village_code, parent.get(pat.village_code), on)
            assert got.get(pat.patient_id, []) == [m.member_id for m in want], pat.patient_id


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), extra_members=st.integers(0, 8), assigned=st.integers(0, 25))
def test_responsible_member_python_and_sql_agree(database, seed, extra_members, assigned):
    """rules.md §6.1: per required role on the task's due date — the valid assignment, else the
    village's primary, else the township's, else none — ``responsible_members`` vs the SQL of
    ``schedules.worklist.open_tasks`` (the ``members`` of ``jingfang tasks --json``)."""
    from types import SimpleNamespace

    from registry.care_team import responsible_members
    from registry.models import Region, TeamMember
    from schedules.worklist import open_tasks

    engine = database.engine
    rng = random.Random(seed)
    tm, p, r, t = TeamMember.__table__, Patient.__table__, Region.__table__, VisitTask.__table__
    _reset_team(engine)
    populate(engine, patients=20, seed=seed, today=TODAY)
    rows = _random_team(engine, rng, extra_members, assigned)
    with engine.begin() as conn:
        pids = list(conn.execute(sa.select(p.c.patient_id)).scalars())
        tasks = []
        for n, pid in enumerate(pids):
            roles = rng.choice(["doctor", "doctor,police,village", "doctor,civil_affairs", "doctor,police,village,civil_affairs",
                                "doctor,village"])
            due = TODAY + timedelta(days=rng.randint(-40, 40))
            tasks.append(dict(patient_id=pid, kind="follow_up", basis=f"test:{n}", basis_on=TODAY - timedelta(days=60),
                              due_on=due, nominal_due_on=due, roles=roles, joint=roles != "doctor", rule="test"))
        conn.execute(sa.insert(t), tasks)
    got = {x["patient_id"]: x["members"] for x in open_tasks(engine, as_of=TODAY)}
    with engine.connect() as conn:
        members = [SimpleNamespace(**m._asdict()) for m in conn.execute(sa.select(tm))]
        parent = dict(conn.execute(sa.select(r.c.code, r.c.parent_code)).all())
        village = dict(conn.execute(sa.select(p.c.patient_id, p.c.village_code)).all())
    for task in tasks:
        pid = task["patient_id"]
        mine = [SimpleNamespace(**a) for a in rows if a["patient_id"] == pid]
        want = responsible_members(task["roles"], task["due_on"], mine, members, village[pid], parent.get(village[pid]))
        assert got[pid] == want, (pid, task, mine)
        assert list(got[pid]) == task["roles"].split(",")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), extra_members=st.integers(1, 8), assigned=st.integers(0, 25),
       role=st.sampled_from(["police", "civil_affairs", "village"]))
def test_own_patients_python_and_sql_agree(database, seed, extra_members, assigned, role):
    """rules.md §6.1: a linked account's own patients — responsible on an open task requiring its role
    (on the due date), or today — ``audiences.own_patient_ids`` vs ``care_team.responsible_member``."""
    from types import SimpleNamespace

    from registry.care_team import responsible_member
    from registry.models import Region, TeamMember

    engine = database.engine
    rng = random.Random(seed)
    tm, p, r, t = TeamMember.__table__, Patient.__table__, Region.__table__, VisitTask.__table__
    _reset_team(engine)
    populate(engine, patients=20, seed=seed, today=TODAY)
    rows = _random_team(engine, rng, extra_members, assigned)
    _random_extras(engine, seed)
    with engine.connect() as conn:
        members = [SimpleNamespace(**m._asdict()) for m in conn.execute(sa.select(tm))]
        parent = dict(conn.execute(sa.select(r.c.code, r.c.parent_code)).all())
        village = dict(conn.execute(sa.select(p.c.patient_id, p.c.village_code)).all())
        tasks = conn.execute(sa.select(t.c.patient_id, t.c.roles, t.c.due_on).where(t.c.status == "open")).all()
        for member in [m.member_id for m in members if m.role == role]:
            got = set(conn.execute(audiences.own_patient_ids(member, role, TODAY, sa.select(p.c.patient_id))).scalars())

            def mine(pid, on):
                own = [SimpleNamespace(**a) for a in rows if a["patient_id"] == pid]
                return responsible_member(role, on, own, members, village[pid], parent.get(village[pid])) == member

            want = {x.patient_id for x in tasks if role in x.roles.split(",") and mine(x.patient_id, x.due_on)}
            want |= {pid for pid in village if mine(pid, TODAY)}
            assert got == want, (member, role)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), extra_members=st.integers(0, 8))
def test_who_may_be_assigned_python_and_sql_agree(database, seed, extra_members):
    """rules.md §6, §6.1: the members a patient may be assigned — ``care_team.serves_patient`` (the
    check of care_team.csv, the form and the API, ``check_member_serves``) vs the patient page's option
    list (``writes.assignable_members_select`` on ``serves_patient_sql``), members of any region
    (a county-level one stored before NOT_TOWNSHIP_OR_VILLAGE included)."""
    from registry.care_team import check_member_serves, serves_patient
    from registry.models import Region, TeamMember
    from registry.web.writes import assignable_members_select

    engine = database.engine
    rng = random.Random(seed)
    tm, p, r = TeamMember.__table__, Patient.__table__, Region.__table__
    _reset_team(engine)
    populate(engine, patients=15, seed=seed, today=TODAY)
    _random_team(engine, rng, extra_members, 0)
    with engine.begin() as conn:
        county = conn.execute(sa.select(r.c.code).where(r.c.level == "county")).scalars().first()
        conn.execute(sa.insert(tm), [{"member_id": "X-C", "name": "县级", "role": "police", "phone": None,
                                      "region_code": county, "primary": True}])
    with engine.connect() as conn:
        members = conn.execute(sa.select(tm.c.member_id, tm.c.region_code)).all()
        parent = dict(conn.execute(sa.select(r.c.code, r.c.parent_code)).all())
        villages = set(conn.execute(sa.select(p.c.village_code)).scalars())
        for village in villages:
            got = set(conn.execute(assignable_members_select(village)).scalars())
            want = {m.member_id for m in members if serves_patient(m.region_code, village, parent.get(village))}
            assert got == want and "X-C" not in got, village
            for m in members:
                refused = check_member_serves(m.member_id, m.region_code, village, parent.get(village))
                assert (not refused) == (m.member_id in got)
                assert [i.code for i in refused] in ([], ["MEMBER_OUT_OF_SCOPE"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), townships=st.integers(1, 4), villages=st.integers(0, 12))
def test_region_cascade_python_and_sql_agree(database, seed, townships, villages):
    """The region tree: ``descendants_and_self`` vs ``region_subtree``, ``villages_under`` (every level)
    and the fast path's ``region_cascade_text``, on random county → township → village trees."""
    from registry.models import CareTeamAssignment, Region, TeamMember
    from registry.regions import RegionTree, region_cascade_text, region_subtree, villages_under

    rng = random.Random(seed)
    r = Region.__table__
    rows = [{"code": "C", "name": "县", "level": "county", "parent_code": None}]
    rows += [{"code": f"T{i}", "name": f"镇{i}", "level": "township", "parent_code": "C"} for i in range(townships)]
    rows += [{"code": f"V{i}", "name": f"村{i}", "level": "village", "parent_code": f"T{rng.randrange(townships)}"}
             for i in range(villages)]
    with database.engine.begin() as conn:
        for table in (CareTeamAssignment.__table__, VisitTask.__table__, FollowUp.__table__, HealthCheckRow.__table__,
                      Patient.__table__, TeamMember.__table__, r):
            conn.execute(sa.delete(table))
        conn.execute(sa.insert(r), rows)
        tree = RegionTree.load(conn)
        for row in rows:
            code, level = row["code"], row["level"]
            below = set(tree.descendants_and_self(code))
            sub = region_subtree(code)
            assert set(conn.execute(sa.select(sub.c.code)).scalars()) == below
            want = {c for c in below if tree.level(c) == "village"}
            assert set(conn.execute(villages_under(code, level)).scalars()) == (want if level != "village" else {code})
            assert set(conn.execute(villages_under(code)).scalars()) >= want
            cascade = sa.text(f"SELECT v.code FROM region v LEFT JOIN region t ON t.code = v.parent_code "
                              f"WHERE v.level = 'village' AND {region_cascade_text('v', 't', ':code')}")
            assert set(conn.execute(cascade, {"code": code}).scalars()) == want
            if level == "village":
                assert tree.township_of(code) == row["parent_code"]


def test_police_page_counts_incidents_over_the_profile_lookback(database, tmp_path, monkeypatch):
    """The police's patient page counts 肇事/肇祸 over the profile's police lookback and says so
    (rules.md §6, §7.3: the audience rule's ``police_incident_lookback_months``): 12 months under the
    national profile, 3 under a county profile of 3."""
    from fastapi.testclient import TestClient

    from registry.web.app import create_app
    from tests.web_support import seed, session_token

    engine = database.engine
    seed(engine)  # P1: a 肇事 on 2026-05-20
    with engine.begin() as conn:  # a 肇祸 five months back: within 12 months, not within 3
        conn.execute(sa.insert(FollowUp.__table__).values(patient_id="P1", visit_on=date(2026, 1, 15), mode=2, risk_level=1,
                                                          insight=1, incidents_crime=1))

    def page() -> str:
        client = TestClient(create_app(engine, today=lambda: TODAY))
        client.cookies.set("jf_session", session_token(engine, "police"))
        r = client.get("/patients/P1")
        assert r.status_code == 200, r.text[:300]
        return r.text

    monkeypatch.delenv("JINGFANG_PROFILE", raising=False)
    monkeypatch.delenv("JINGFANG_PROFILE_DIR", raising=False)
    get_settings.cache_clear()
    assert "<dt>近12个月肇事/肇祸</dt><dd>2 次</dd>" in page()

    data = json.loads((PROFILE_DIR / "national-2018.json").read_text("utf-8"))
    data["name"], data["roles"]["police_incident_lookback_months"] = "county-test", 3
    (tmp_path / "county-test.json").write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    monkeypatch.setenv("JINGFANG_PROFILE_DIR", str(tmp_path))
    monkeypatch.setenv("JINGFANG_PROFILE", "county-test")
    get_settings.cache_clear()
    text = page()
    assert "<dt>近3个月肇事/肇祸</dt><dd>1 次</dd>" in text and "近12个月" not in text


def test_incident_count_reads_the_police_rule():
    """``incident_count`` counts what ``patient_facts``' ``incident`` reads: usable follow-ups (on or
    after registration, not after today) from the lookback's first day."""
    from types import SimpleNamespace

    def fu(i, on, disturbance=0, crime=0):
        return SimpleNamespace(id=i, visit_on=on, incidents_disturbance=disturbance, incidents_crime=crime, lost_reason=None,
                               risk_level=1, hospital_status=None, rehabilitation=None, classification=2)

    rows = [fu(1, date(2025, 12, 1), crime=1),  # before registration
            fu(2, date(2026, 2, 1), disturbance=2), fu(3, date(2026, 3, 10), crime=1),  # 3 months back: the first day counts
            fu(4, date(2026, 6, 11), crime=1)]  # after today
    three = replace(DEFAULT, police_incident_lookback_months=3)
    registered = date(2026, 1, 1)
    assert audiences.incident_count(rows, registered, TODAY, DEFAULT) == 3
    assert audiences.incident_count(rows, registered, TODAY, three) == 1
    assert audiences.incident_label(three) == "近3个月肇事/肇祸"
    for rules in (DEFAULT, three, replace(DEFAULT, police_incident_lookback_months=1)):
        count = audiences.incident_count(rows, registered, TODAY, rules)
        assert (count > 0) == audiences.patient_facts(rows, registered, TODAY, rules)["incident"]
