"""关爱帮扶小组 Named people on every task (issue 14, rules.md §6.1; contract.md [2026-12] ``primary``,
``care_team.csv``, ``members`` in the tasks JSON), through the real command line on both databases."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import time_machine
from typer.testing import CliRunner

from jingfang.cli import app

TEAM = """member_id,name,role,phone,region_code,primary
M1,王医生,doctor,0750-1,T,1
M2,李警官,police,0750-2,T,1
M3,赵警官,police,0750-3,T,0
M4,张网格,village,0750-4,V,1
M5,钱网格,village,0750-5,V,0
M6,孙专干,civil_affairs,0750-6,T,0
"""
# B's village assignment ended before its first visit's due date (06-03); its civil-affairs one is
# valid on that day only (both ends inclusive); C1's police assignment is open
CARE_TEAM = """patient_id,member_id,role,from_on,to_on
B,M5,village,2026-01-01,2026-06-02
B,M6,civil_affairs,2026-06-03,2026-06-03
C1,M3,police,2026-01-01,
"""


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, f"{args}: {result.output}{result.exception!r}"
    return result.stdout if code == 0 else result.output


def _county(tmp_path: Path, small_county: Path, care_team: str = CARE_TEAM) -> Path:
    out = tmp_path / "county"
    shutil.copytree(small_county, out)
    (out / "team_members.csv").write_text(TEAM, "utf-8")
    (out / "care_team.csv").write_text(care_team, "utf-8")
    return out


def _members(db: list[str]) -> dict[tuple[str, str], dict]:
    tasks = json.loads(run("tasks", "--as-of", "2026-06-10", "--json", *db))
    return {(t["patient_id"], t["kind"]): t["members"] for t in tasks}


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_members_in_tasks_json_follow_assignments_and_primaries(database, small_county, tmp_path):
    """Assignment valid on the due date wins; an ended one does not count; else the village's primary,
    then the township's; else null. A changed assignment shows at the next read, without a new schedule."""
    db = ["--db", database.url]
    run("import", str(_county(tmp_path, small_county)), *db)
    run("schedule", "--as-of", "2026-06-10", *db)
    members = _members(db)
    assert members[("A", "follow_up")] == {"doctor": "M1"}  # the township's primary doctor
    assert members[("B", "first_visit")] == {"doctor": "M1", "village": "M4", "civil_affairs": "M6"}
    assert members[("C1", "locate")] == {"doctor": "M1", "police": "M3", "village": "M4"}
    assert list(members[("C1", "locate")]) == ["doctor", "police", "village"]  # the roles' order

    # the police assignment of C1 ends before the locate task's due date (04-22): the primary (M2) again;
    # importing the same row with an end date updates it (keyed by patient, member, role, start)
    ended = CARE_TEAM.replace("C1,M3,police,2026-01-01,", "C1,M3,police,2026-01-01,2026-03-31")
    run("import", str(_county(tmp_path / "2", small_county, ended)), *db)
    assert database.count("care_team_assignment") == 3
    assert _members(db)[("C1", "locate")] == {"doctor": "M1", "police": "M2", "village": "M4"}


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_without_primary_or_assignment_the_member_is_null(database, small_county, tmp_path):
    """No primary civil-affairs member, no assignment: ``null`` (shown as 未指定)."""
    db = ["--db", database.url]
    run("import", str(_county(tmp_path, small_county, "patient_id,member_id,role,from_on,to_on\n")), *db)
    run("schedule", "--as-of", "2026-06-10", *db)
    assert _members(db)[("B", "first_visit")] == {"doctor": "M1", "village": "M4", "civil_affairs": None}


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_bad_assignments_are_refused_and_nothing_is_written(database, small_county, tmp_path):
    """care_team.csv rows: the role must be the member's, the member and patient must exist, the end
    not before the start; one bad row and nothing is imported (contract.md)."""
    bad = ("patient_id,member_id,role,from_on,to_on\n"
           "B,M2,village,2026-01-01,\n"        # M2 is police
           "B,M9,police,2026-01-01,\n"         # no such member
           "ZZ,M2,police,2026-01-01,\n"        # no such patient
           "C1,M3,police,2026-05-01,2026-04-01\n")  # ends before it starts
    db = ["--db", database.url]
    out = run("import", str(_county(tmp_path, small_county, bad)), *db, code=1)
    assert "care_team.csv" in out
    assert "角色应与成员 M2" in out and "团队成员编号 M9 不存在" in out and "早于开始日期" in out
    assert database.count("care_team_assignment") == 0 and database.count("patient") == 0


# ---------------------------------------------------------------- web: linked accounts, supervisors, new roles

import pytest  # noqa: E402
from datetime import date  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlmodel import Session  # noqa: E402

from registry.accounts import User  # noqa: E402
from registry.models import CareTeamAssignment, FollowUp, Patient, TeamMember, VisitTask  # noqa: E402
from registry.web.app import create_app  # noqa: E402
from tests.web_support import TODAY, seed, seed_tasks, session_token  # noqa: E402

# account: (role, region, member, supervisor) — rules.md §6.1
ACCOUNTS = {
    "police_linked": ("police", "T1", "M-POL", False),
    "police_other": ("police", "T1", "M-POL2", False),
    "police_lead": ("police", "T1", "M-POL", True),
    "civil_linked": ("civil_affairs", "T1", "M-CIV", False),
    "civil_other": ("civil_affairs", "T1", "M-CIV2", False),
    "civil_lead": ("civil_affairs", "T1", None, True),
    "governance": ("governance", "T1", None, False),
    "village": ("village", "V1", None, False),
}
ALL = {"P1", "P2", "P3", "P4", "P5", "P6"}
SEES = {
    "police_linked": {"P1"},          # the primary officer of T1: P1's open police task; P6 is M-POL2's
    "police_other": {"P6"},           # assigned to P6 (risk 4)
    "police_lead": {"P1", "P6"},      # the township's police lists
    "civil_linked": {"P3"},           # the township's primary civil-affairs member
    "civil_other": set(),
    "civil_lead": {"P3"},
    "governance": {"P1", "P3", "P6"},  # police lists and every open joint visit
    "village": {"P1"},                # V1 only: the police list and the visits needing the village
}
DIAGNOSIS = "精神分裂症"


@pytest.fixture
def linked(database):
    engine = database.engine
    seed(engine)
    seed_tasks(engine)
    with Session(engine) as s:
        s.add_all([TeamMember(member_id="M-POL2", name="钱警官", role="police", phone="0750-1101", region_code="T1"),
                   TeamMember(member_id="M-CIV2", name="吴专干", role="civil_affairs", phone="0750-1301", region_code="T1")])
        s.add(Patient(patient_id="P6", name="吴六", village_code="V2", guardian_name="吴母", economic_status=2, sex=1,
                      birth_date=date(1980, 1, 1), diagnosis="schizophrenia", registered_on=date(2025, 1, 10)))
        s.flush()
        s.add(FollowUp(patient_id="P6", visit_on=date(2026, 5, 25), mode=2, risk_level=4, insight=2, adherence=1))
        s.add(CareTeamAssignment(patient_id="P6", member_id="M-POL2", role="police", from_on=date(2026, 1, 1)))
        s.add(VisitTask(patient_id="P6", kind="follow_up", basis="test:P6", basis_on=date(2026, 5, 25), due_on=date(2026, 6, 8),
                        nominal_due_on=date(2026, 6, 8), roles="doctor,police,village", joint=True, rule="test", risk_level=4))
        hashed = s.get(User, "police").password_hash
        for name, (role, region, member, lead) in ACCOUNTS.items():
            s.add(User(username=name, password_hash=hashed, role=role, region_code=region, display_name=name,
                       member_id=member, supervisor=lead))
        s.commit()
    client = TestClient(create_app(engine, today=lambda: TODAY))
    tokens = {u: session_token(engine, u) for u in list(ACCOUNTS) + ["doc", "admin", "police"]}
    return client, tokens, database


def _get(client, tokens, user, url):
    return client.get(url, headers={"Authorization": f"Bearer {tokens[user]}"})


@pytest.mark.parametrize("user", list(ACCOUNTS))
def test_scope_matrix_pages_and_api(linked, user):
    """rules.md §6.1, §8: every patient page and API record, the list page, the work list and search —
    no patient outside the account's set, never a diagnosis."""
    client, tokens, _db = linked
    for pid in sorted(ALL):
        page = _get(client, tokens, user, f"/patients/{pid}")
        api = _get(client, tokens, user, f"/api/patients/{pid}")
        want = 200 if pid in SEES[user] else 403
        assert (page.status_code, api.status_code) == (want, want), (user, pid)
        assert DIAGNOSIS not in page.text and "diagnosis" not in api.text and "medication" not in api.text
    mylist = _get(client, tokens, user, "/mylist")
    assert mylist.status_code == 200 and DIAGNOSIS not in mylist.text
    assert {pid for pid in ALL if f"/patients/{pid}\"" in mylist.text} == SEES[user]
    work = _get(client, tokens, user, "/api/worklist?all=true").json()
    assert {r["patient_id"] for r in work["rows"]} <= SEES[user] and "diagnosis" not in json.dumps(work)
    found = _get(client, tokens, user, "/api/patients?q=").json()
    assert {p["patient_id"] for p in found["patients"]} <= SEES[user]
    for url in ("/gaps", "/api/gaps", "/api/patients/P1/team"):
        assert _get(client, tokens, user, url).status_code == 403


def test_linked_work_list_names_only_own_tasks_and_lists_need_a_supervisor(linked):
    """A linked officer's work list holds the tasks it is responsible for; the township's week lists are
    the supervisor's (and an unlinked account's, as before)."""
    client, tokens, _db = linked
    rows = _get(client, tokens, "police_other", "/api/worklist?all=true").json()["rows"]
    assert [r["patient_id"] for r in rows] == ["P6"]
    assert [(m["role"], m["name"]) for m in rows[0]["call"]] == [("police", "钱警官"), ("village", "未指定")]  # V2 has no primary
    assert _get(client, tokens, "police_linked", "/lists/week").status_code == 403
    assert _get(client, tokens, "police_lead", "/lists/week").status_code == 200
    assert _get(client, tokens, "police", "/lists/week").status_code == 200
    assert _get(client, tokens, "governance", "/lists/week").status_code == 200
    account = _get(client, tokens, "police_other", "/account/password")
    assert "钱警官" in account.text and "M-POL2" in account.text
    # rules.md §6.2: the township supervisor's page of 联合未到位 — 派出所 lead and 综治, not a plain officer
    # nor civil affairs (who do not read the 风险预警单)
    for user, want in (("police_lead", 200), ("governance", 200), ("doc", 200), ("police_linked", 403),
                       ("police_other", 403), ("civil_lead", 403), ("civil_linked", 403), ("village", 403)):
        page = _get(client, tokens, user, "/joint-visits/incomplete")
        assert page.status_code == want, user
        assert DIAGNOSIS not in page.text


# whose alerts each account's alerts page lists (rules.md §12: the notices of the responsible members)
ALERTS_SEEN = {
    "police": {"P1", "P3", "P6"},     # an unlinked account stands for the township's police: every alert
    "police_linked": {"P1"},          # linked: only its own patients' alerts (Scope.linked)
    "police_other": {"P6"},
    "police_lead": {"P1", "P3", "P6"},  # a supervisor reads the township's
    "civil_linked": {"P3"},
    "civil_other": set(),
}


@pytest.mark.parametrize("user", list(ALERTS_SEEN))
def test_a_linked_account_s_notices_are_its_own_patients_alerts(linked, user):
    """rules.md §12, §6.1: an alert reaches the in-app notices of the responsible members. A linked
    account that is not a supervisor sees only its own patients' alerts (the others are not listed at
    all); an unlinked or supervisor account sees the township's, names only inside its scope."""
    from schedules.models import Alert

    client, tokens, database = linked
    with Session(database.engine) as s:
        for i, pid in enumerate(("P1", "P3", "P6"), start=1):
            s.add(Alert(kind="risk_rise", source_id=1000 + i, patient_id=pid, township_code="T1", event_on=TODAY))
        s.commit()
    page = _get(client, tokens, user, "/alerts?township=T1")
    assert page.status_code == 200
    rows = re.findall(r'name="alert" value="(\d+)"', page.text)
    assert len(rows) == len(ALERTS_SEEN[user]), (user, rows)
    notices = _get(client, tokens, user, "/mylist").text
    assert ('id="notices"' in notices) == bool(ALERTS_SEEN[user])


def test_doctor_assigns_and_ends_and_the_gap_list_follows(linked):
    """The patient page and API add and end an assignment (validated like care_team.csv); the gap
    list counts the roles nobody is responsible for, and follows the change."""
    client, tokens, database = linked
    h = {"Authorization": f"Bearer {tokens['doc']}"}
    with Session(database.engine) as s:  # nobody primary for the village role any more
        s.get(TeamMember, "M-VIL").primary = False
        s.commit()
    gaps = client.get("/api/gaps", headers=h).json()
    assert {c["role"]: c["count"] for c in gaps["counts"]}["village"] == 2  # P1, P6
    assert {r["patient_id"] for r in gaps["rows"]} == {"P1", "P6"}
    page = client.get("/gaps", headers=h)
    assert page.status_code == 200 and "吴六" in page.text and "陈一" in page.text and "李二" not in page.text

    bad = client.post("/api/patients/P1/team", headers=h, json={"member_id": "M-POL", "role": "village", "from_on": "2026-06-01"})
    assert bad.status_code == 422 and bad.json()["issues"][0]["code"] == "ROLE_MISMATCH"
    late = client.post("/api/patients/P1/team", headers=h,
                       json={"member_id": "M-VIL", "from_on": "2026-06-01", "to_on": "2026-05-01"})
    assert late.status_code == 422 and late.json()["issues"][0]["code"] == "ASSIGNMENT_ENDS_BEFORE_START"
    made = client.post("/api/patients/P1/team", headers=h, json={"member_id": "M-VIL", "from_on": "2026-06-01"})
    assert made.status_code == 201
    gaps = client.get("/api/gaps", headers=h).json()
    assert {r["patient_id"] for r in gaps["rows"]} == {"P6"}
    team = client.get("/api/patients/P1/team", headers=h).json()["assignments"]
    assert [(a["member_id"], a["role"], a["to_on"]) for a in team] == [("M-VIL", "village", None)]
    # ended the day before P1's task is due (06-03): the gap is back
    end = client.post(f"/api/patients/P1/team/{made.json()['id']}/end", headers=h, json={"to_on": "2026-06-02"})
    assert end.status_code == 200 and end.json()["to_on"] == "2026-06-02"
    assert {r["patient_id"] for r in client.get("/api/gaps", headers=h).json()["rows"]} == {"P1", "P6"}
    other = client.post("/api/patients/P4/team", headers=h, json={"member_id": "M-VIL", "from_on": "2026-06-01"})
    assert other.status_code == 403  # another township's patient
    record = client.get("/patients/P1", headers=h)
    assert record.status_code == 200 and "团队指派" in record.text and "结束指派" not in record.text


def test_cli_links_an_account_to_its_member(linked):
    """``jingfang user link`` / ``supervisor``: the member's role must be the account's."""
    _client, _tokens, database = linked
    db = ["--db", database.url]
    assert "M-POL2" in run("user", "link", "police", "M-POL2", *db)
    assert "不能关联" in run("user", "link", "civil", "M-POL", *db, code=1)
    with Session(database.engine) as s:
        assert s.get(User, "police").member_id == "M-POL2" and s.get(User, "civil").member_id is None
    run("user", "supervisor", "police", *db)
    run("user", "link", "police", *db)
    with Session(database.engine) as s:
        user = s.get(User, "police")
        assert user.supervisor and user.member_id is None
    run("user", "supervisor", "doc", *db, code=1)


# ---------------------------------------------------------------- one primary per region and role (rules.md §6.1)

from datetime import date as _date

import sqlalchemy as sa

from registry.errors import ImportRejected
from registry.importing import import_path

REGIONS = "code,name,level,parent_code,population\nC,县,county,,\nT,镇,township,C,\nV,村,village,T,1000\nW,西村,village,T,800\n"
HEADER = "member_id,name,role,phone,region_code,primary\n"


def _team_file(tmp_path: Path, name: str, rows: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "regions.csv").write_text(REGIONS, "utf-8")
    (folder / "team_members.csv").write_text(HEADER + rows, "utf-8")
    return folder


def _primaries(database) -> set[tuple[str, str, str]]:
    with database.engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text(
            'SELECT member_id, region_code, role FROM team_member WHERE "primary" = :t'), {"t": True})}


def _import(database, folder: Path, **kw):
    return import_path(database.engine, folder, today=_date(2026, 6, 10), **kw)


def _refused(database, folder: Path) -> list:
    with pytest.raises(ImportRejected) as info:
        _import(database, folder)
    return info.value.issues


def test_two_primaries_for_one_region_and_role_are_refused(database, tmp_path):
    """Two rows marking a primary for (T, 民警): the second is refused with DUPLICATE_PRIMARY naming the file,
    the row, the region, the role and the other member; nothing written (all-or-nothing); with
    ``skip_invalid`` the first stays the primary and the responsible member."""
    rows = "M1,王医生,doctor,0750-1,T,1\nM2,李警官,police,0750-2,T,1\nM3,赵警官,police,0750-3,T,1\nM4,张网格,village,0750-4,V,1\n"
    folder = _team_file(tmp_path, "two", rows)
    issues = _refused(database, folder)
    assert [(i.code, i.file, i.line, i.column) for i in issues] == [("DUPLICATE_PRIMARY", "team_members.csv", 4, "primary")]
    message = issues[0].message
    for part in ("team_members.csv", "第4行", "M3", "第3行的成员 M2", "地区 T", "民警主责成员"):
        assert part in message, (part, message)
    assert database.count("team_member") == 0
    result = _import(database, folder, skip_invalid=True)
    assert [i.code for i in result.issues] == ["DUPLICATE_PRIMARY"]
    assert _primaries(database) == {("M1", "T", "doctor"), ("M2", "T", "police"), ("M4", "V", "village")}
    assert database.count("team_member") == 3  # M3's row skipped


def test_a_stored_primary_counts_and_moving_or_re_marking_it_works(database, tmp_path):
    """Rows already stored count: a new primary beside the stored one is refused (naming it); moving the
    primary in one file (old row 0, new row 1) and re-marking the current primary are accepted."""
    _import(database, _team_file(tmp_path, "first", "M2,李警官,police,0750-2,T,1\nM3,赵警官,police,0750-3,T,0\n"
                                                    "M4,张网格,village,0750-4,V,1\n"))
    issues = _refused(database, _team_file(tmp_path, "beside", "M5,孙警官,police,0750-5,T,1\n"))
    assert [i.code for i in issues] == ["DUPLICATE_PRIMARY"] and "已入库的成员 M2" in issues[0].message
    another_region = _team_file(tmp_path, "west", "M5,孙警官,police,0750-5,W,1\nM6,周网格,village,0750-6,W,1\n")
    _import(database, another_region)  # another region, or another role: no clash
    _import(database, _team_file(tmp_path, "move", "M2,李警官,police,0750-2,T,0\nM3,赵警官,police,0750-3,T,1\n"))
    assert ("M3", "T", "police") in _primaries(database) and ("M2", "T", "police") not in _primaries(database)
    _import(database, _team_file(tmp_path, "again", "M3,赵警官,police,0750-3,T,1\n"))  # only the current primary
    _import(database, _team_file(tmp_path, "swap", "M2,李警官,police,0750-2,T,1\nM3,赵警官,police,0750-3,T,1\n"),
            skip_invalid=True)  # the current primary marked again wins over the file's order
    assert {p for p in _primaries(database) if p[1:] == ("T", "police")} == {("M3", "T", "police")}


def test_a_skipped_row_keeps_its_member_as_stored_and_may_refuse_another(database, tmp_path):
    """With ``skip_invalid`` a row refused for any reason leaves its member as stored: the demotion of the
    stored primary in a bad row does not happen, so the new primary is refused too; a member moving away
    whose move is refused stays the primary where it was (checked until nothing changes)."""
    _import(database, _team_file(tmp_path, "first", "M2,李警官,police,0750-2,T,1\nM4,张网格,village,0750-4,V,1\n"
                                                    "M7,吴网格,village,0750-7,W,1\n"))
    folder = _team_file(tmp_path, "bad", "M2,李警官,police,0750-2,NOPE,0\nM3,赵警官,police,0750-3,T,1\n"
                                         "M4,张网格,village,0750-4,W,1\nM8,郑网格,village,0750-8,V,1\n")
    result = _import(database, folder, skip_invalid=True)
    assert sorted((i.code, i.line) for i in result.issues) == [
        ("DUPLICATE_PRIMARY", 3), ("DUPLICATE_PRIMARY", 4), ("DUPLICATE_PRIMARY", 5), ("UNKNOWN_REGION", 2)]
    assert _primaries(database) == {("M2", "T", "police"), ("M4", "V", "village"), ("M7", "W", "village")}


def test_duplicate_primary_through_the_command_line(database, tmp_path):
    """The CLI prints the Chinese message with the file and the row; exit 1, nothing written."""
    folder = _team_file(tmp_path, "cli", "M2,李警官,police,0750-2,T,1\nM3,赵警官,police,0750-3,T,1\n")
    out = run("import", str(folder), "--db", database.url, code=1)
    assert "DUPLICATE_PRIMARY" in out or "主责成员" in out
    assert "第3行" in out and "M2" in out and database.count("team_member") == 0


# ---------------------------------------------------------------- members of the patient's village or township (rules.md §6, §6.1)

SCOPE_REGIONS = REGIONS + "T2,江镇,township,C,\nV2,江村,village,T2,600\n"
SCOPE_TEAM = (HEADER + "M1,王医生,doctor,0750-1,T,1\nM2,李警官,police,0750-2,T,1\nM4,张网格,village,0750-4,V,1\n"
              "M7,江警官,police,0750-7,T2,1\nM8,西网格,village,0750-8,W,1\n")


def _scope_county(tmp_path: Path, small_county: Path, name: str, care_team: str, **files: str) -> Path:
    out = tmp_path / name
    shutil.copytree(small_county, out)
    (out / "regions.csv").write_text(SCOPE_REGIONS, "utf-8")
    (out / "team_members.csv").write_text(SCOPE_TEAM, "utf-8")
    (out / "care_team.csv").write_text("patient_id,member_id,role,from_on,to_on\n" + care_team, "utf-8")
    for stem, text in files.items():
        (out / f"{stem}.csv").write_text(text, "utf-8")
    return out


def _county_member(database) -> None:
    """A member stored at county level before NOT_TOWNSHIP_OR_VILLAGE (the import refuses a new one)."""
    with database.engine.begin() as conn:
        conn.execute(sa.text('INSERT INTO team_member (member_id, name, role, phone, region_code, "primary") '
                             "VALUES ('M9', '县警官', 'police', '0750-9', 'C', :f)"), {"f": False})


def test_care_team_rows_name_members_of_the_patient_s_village_or_township(database, small_county, tmp_path):
    """care_team.csv: a member of another township, of the township's other village or stored at county
    level is refused (MEMBER_OUT_OF_SCOPE, file, line, column ``member_id``), all-or-nothing; the
    patient's village and township as the import leaves them — a patient of the same file moved to V2
    may take T2's officer; a member the same file moves to T2 no longer serves V's patients."""
    _import(database, _scope_county(tmp_path, small_county, "first", ""))
    _county_member(database)
    rows = ("A,M2,police,2026-01-01,\n"     # T: the patient's township
            "A,M4,village,2026-01-01,\n"    # V: the patient's village
            "A,M7,police,2026-01-01,\n"     # T2: another township
            "A,M8,village,2026-01-01,\n"    # W: T's other village
            "A,M9,police,2026-01-01,\n"     # C: county level
            "B,M7,police,2026-01-01,\n")    # T2 again
    issues = _refused(database, _scope_county(tmp_path, small_county, "bad", rows))
    assert [(i.code, i.file, i.line, i.column, i.value) for i in issues] == [
        ("MEMBER_OUT_OF_SCOPE", "care_team.csv", n, "member_id", m) for n, m in ((4, "M7"), (5, "M8"), (6, "M9"), (7, "M7"))]
    assert "T2" in issues[0].message and "V" in issues[0].message and "A" in issues[0].message
    assert database.count("care_team_assignment") == 0

    moved_patient = (small_county / "patients.csv").read_text("utf-8").replace("\nB,乙,2,1980-01-01,,V,", "\nB,乙,2,1980-01-01,,V2,")
    assert moved_patient != (small_county / "patients.csv").read_text("utf-8")
    moved_member = SCOPE_TEAM.replace("M2,李警官,police,0750-2,T,1", "M2,李警官,police,0750-2,T2,0")
    issues = _refused(database, _scope_county(tmp_path, small_county, "moved", "B,M7,police,2026-01-01,\nA,M2,police,2026-01-01,\n",
                                              patients=moved_patient, team_members=moved_member))
    assert [(i.code, i.line, i.value) for i in issues] == [("MEMBER_OUT_OF_SCOPE", 3, "M2")]
    result = _import(database, _scope_county(tmp_path, small_county, "good", "A,M2,police,2026-01-01,\nA,M4,village,2026-01-01,\n"
                                                                            "B,M7,police,2026-01-01,\n", patients=moved_patient))
    assert not result.issues and database.count("care_team_assignment") == 3

    # an assignment made before the rule (here: of the county-level member) is kept; a row re-stating it
    # (same patient, member, role and start) may end it, as the patient page may — a new one is refused
    with database.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO care_team_assignment (patient_id, member_id, role, from_on) "
                             "VALUES ('A', 'M9', 'police', '2026-01-01')"))
    _import(database, _scope_county(tmp_path, small_county, "end", "A,M9,police,2026-01-01,2026-06-01\n", patients=moved_patient))
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_on FROM care_team_assignment WHERE member_id = 'M9'")).scalar() is not None
    issues = _refused(database, _scope_county(tmp_path, small_county, "again", "A,M9,police,2026-06-02,\n", patients=moved_patient))
    assert [(i.code, i.line) for i in issues] == [("MEMBER_OUT_OF_SCOPE", 2)]


def test_care_team_out_of_scope_through_the_command_line(database, small_county, tmp_path):
    """The CLI prints the Chinese message with the file and the row; exit 1, nothing written."""
    out = run("import", str(_scope_county(tmp_path, small_county, "cli", "A,M7,police,2026-01-01,\n")), "--db", database.url, code=1)
    assert "care_team.csv" in out and "M7" in out and "本村或本乡镇" in out
    assert database.count("care_team_assignment") == 0


def test_participants_may_name_a_member_of_another_township(database, small_county, tmp_path):
    """participants.csv records who attended (rules.md §6.2, attendance per person); the spec sets no
    region on attendance — an officer of a neighbouring township, or one stored at county level, may
    have been there (docs/import.md, decision). The member must exist with that role, as before."""
    _import(database, _scope_county(tmp_path, small_county, "first", ""))
    _county_member(database)
    part = ("patient_id,visit_on,role,member_id,present,reason\n"
            "A,2026-04-29,police,M7,1,\nA,2026-04-29,police,M9,1,\nA,2026-04-29,village,M8,0,另有公务\n")
    folder = tmp_path / "part"
    folder.mkdir()
    (folder / "participants.csv").write_text(part, "utf-8")
    assert not _import(database, folder).issues
    assert database.count("follow_up_participant") == 3
