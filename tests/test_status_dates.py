"""状态日期与随访 A death or move-out is not dated before a visit that reached the patient, and a team
member serves a township or a village (rules.md §1 status, §3 complete follow-up, §6; contract.md
``team_members.csv``).

One rule (``validation.status_before_visit`` on ``latest_reached_visit`` / its SQL twin
``latest_reached_visits_sql``) on every path: the status form and API, the patient edit (form and
PATCH), ``patients.csv`` re-imports and the death date a follow-up records; read the other way, a
follow-up that reached the patient after the status date is refused (``PATIENT_NOT_ACTIVE``) while
one that records the death (patient not reached) is a true record and is taken. Every database test
runs on SQLite and PostgreSQL, through the real app and importer.
"""

from __future__ import annotations

import html
import re
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from registry.errors import ImportRejected
from registry.importing import import_path
from registry.models import FollowUp, Patient
from registry.synthetic import CountySize, regions_and_team
from registry.validation import latest_reached_visit, latest_reached_visits_sql, status_before_visit
from registry.web.app import create_app
from test_input_audit import write_files  # the import folder of CSV files, one helper
from web_support import TODAY, USERS, seed, session_token

# P1 (web_support.seed): registered 2025-01-10, latest follow-up 2026-05-20 risk 3 (reached); P5 died 2026-03-01.
P1_ROW = {"patient_id": "P1", "name": "陈一", "sex": "1", "birth_date": "1980-01-01",
          "village_code": "V1", "diagnosis": "F20", "registered_on": "2025-01-10"}


@pytest.fixture
def web(database):
    seed(database.engine)
    client = TestClient(create_app(database.engine, today=lambda: TODAY), follow_redirects=False)
    tokens = {u: session_token(database.engine, u) for u in USERS}
    return client, tokens, database


def auth(tokens, user="doc"):
    return {"Authorization": f"Bearer {tokens[user]}"}


def csrf(client, url: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text).group(1)


def patient_status(database, pid: str) -> tuple:
    with Session(database.engine) as s:
        p = s.get(Patient, pid)
        return p.status, p.status_on


def refused(engine, folder: Path) -> list[tuple]:
    with pytest.raises(ImportRejected) as rejected:
        import_path(engine, folder, today=TODAY)
    return [(i.file, i.line, i.column, i.code) for i in rejected.value.issues], [i.message for i in rejected.value.issues]


# ---------------------------------------------------------------- the rule and its twin

def test_the_rule_names_the_field_and_the_latest_visit():
    """rules.md §1, §3: on or after the latest reached visit is fine, before it refused; 在册 has no date."""
    latest = date(2026, 5, 20)
    assert status_before_visit("dead", date(2026, 5, 20), latest) is None
    assert status_before_visit("moved_out", date(2026, 5, 21), latest) is None
    assert status_before_visit("dead", date(2026, 5, 1), None) is None
    assert status_before_visit("active", None, latest) is None
    issue = status_before_visit("moved_out", date(2026, 5, 19), latest)
    assert (issue.code, issue.column) == ("STATUS_BEFORE_VISIT", "status_on")
    assert "状态日期 2026-05-19" in issue.message and "2026-05-20" in issue.message and "迁出" in issue.message
    death = status_before_visit("dead", date(2026, 5, 1), latest, field="death_on", label="死亡日期")
    assert death.column == "death_on" and death.message.startswith("死亡日期 2026-05-01 早于最近一次访到患者的随访日期 2026-05-20")


def test_latest_reached_visit_and_its_sql_twin_agree(database):
    """``latest_reached_visit`` (Python) and ``latest_reached_visits_sql`` give the same date per patient:
    complete per rules.md §3 — no lost reason and a risk level, or hospital status 1."""
    seed(database.engine)
    kinds = [  # (lost_reason, risk_level, hospital_status)
        (None, 0, None), (None, None, None), (1, 3, None), (5, None, 1), (None, 4, 2), (2, None, None), (None, None, 1),
    ]
    with Session(database.engine) as s:
        for n, pid in enumerate(("P2", "P3", "P4", "P5")):
            for k, (lost, risk, hospital) in enumerate(kinds):
                if (k + n) % 3 == 0:
                    continue
                s.add(FollowUp(patient_id=pid, visit_on=date(2025, 1 + k, 1 + n), mode=2, lost_reason=lost,
                               risk_level=risk, hospital_status=hospital))
        s.add(FollowUp(patient_id="P5", visit_on=date(2026, 1, 3), mode=3, lost_reason=5))  # latest, not reached
        s.commit()
        rows = s.exec(select(FollowUp)).all()
    python = {}
    for pid in {r.patient_id for r in rows}:
        on = latest_reached_visit([r for r in rows if r.patient_id == pid])
        if on is not None:
            python[pid] = on
    f = FollowUp.__table__
    with database.engine.connect() as conn:
        sql = dict(conn.execute(latest_reached_visits_sql(f)).all())
        one = conn.execute(latest_reached_visits_sql(f).where(f.c.patient_id == "P1")).all()
    assert sql == python and len(python) == 5
    assert one == [("P1", date(2026, 5, 20))]
    # not reached (lost reason) with a risk level, or only a risk level missing: not counted
    assert python["P5"] != date(2026, 1, 3)


# ---------------------------------------------------------------- the status form and the API

def test_the_status_form_and_api_refuse_a_date_before_a_reached_visit(web):
    client, tokens, database = web
    for status, on in (("dead", "2026-05-01"), ("moved_out", "2026-05-19")):
        r = client.post("/api/patients/P1/status", headers=auth(tokens), json={"status": status, "status_on": on})
        assert r.status_code == 422, r.text
        issue = r.json()["issues"][0]
        assert (issue["code"], issue["column"]) == ("STATUS_BEFORE_VISIT", "status_on")
        assert f"状态日期 {on}" in issue["message"] and "2026-05-20" in issue["message"]
    client.cookies.set("jf_session", tokens["doc"])
    page = client.post("/patients/P1/status", data={"csrf_token": csrf(client, "/patients/P1/status"), "status": "dead",
                                                   "status_on": "2026-05-01"})
    assert page.status_code == 422 and "状态日期 2026-05-01 早于最近一次访到患者的随访日期 2026-05-20" in html.unescape(page.text)
    assert patient_status(database, "P1") == ("active", None)
    # an attempt that did not reach the patient (失访原因 迁居他处) is no bound: the move-out may precede it
    r = client.post("/api/patients/P1/follow-ups", headers=auth(tokens), json={"visit_on": "2026-06-01", "mode": 2, "lost_reason": 2})
    assert r.status_code == 201, r.text
    r = client.post("/api/patients/P1/status", headers=auth(tokens), json={"status": "moved_out", "status_on": "2026-05-20"})
    assert r.status_code == 200, r.text
    assert patient_status(database, "P1") == ("moved_out", date(2026, 5, 20))


def test_the_patient_edit_refuses_a_date_before_a_reached_visit(web):
    client, tokens, database = web
    body = {"status": "dead", "status_on": "2026-05-01", "reason": "家属告知"}
    r = client.patch("/api/patients/P1", headers=auth(tokens), json=body)
    assert r.status_code == 422 and r.json()["error"] == "STATUS_BEFORE_VISIT", r.text
    assert "2026-05-20" in r.json()["message"]
    r = client.patch("/api/patients/P1", headers=auth(tokens, "admin"), json={**body, "status": "moved_out"})
    assert r.status_code == 422 and r.json()["error"] == "STATUS_BEFORE_VISIT"
    client.cookies.set("jf_session", tokens["doc"])
    page = client.get("/patients/P1/edit")
    form = dict(re.findall(r'<input id="i-([a-z_]+)" name="\1" type="(?:text|date)"[^>]*value="([^"]*)"', page.text))
    form.update({"csrf_token": csrf(client, "/patients/P1/edit"), "status": "dead", "status_on": "2026-05-01",
                 "reason": "家属告知"})
    bad = client.post("/patients/P1/edit", data=form)
    assert bad.status_code == 422 and "早于最近一次访到患者的随访日期 2026-05-20" in html.unescape(bad.text)
    assert patient_status(database, "P1") == ("active", None)
    r = client.patch("/api/patients/P1", headers=auth(tokens), json={**body, "status_on": "2026-05-21"})
    assert r.status_code == 200, r.text
    assert patient_status(database, "P1") == ("dead", date(2026, 5, 21))


def test_a_status_change_keeping_the_stored_date_is_checked(web):
    """rules.md §1, §3: a status and its date are one fact. A row stored before the rule (P1 迁出 on
    2026-05-01, reached on 2026-05-20) keeps its date through unrelated edits, but a new status with
    that date is checked as a new date (``STATUS_BEFORE_VISIT``) on the API and the form."""
    client, tokens, database = web
    with Session(database.engine) as s:  # stored before the rule existed
        p = s.get(Patient, "P1")
        p.status, p.status_on = "moved_out", date(2026, 5, 1)
        s.add(p)
        s.commit()
    r = client.patch("/api/patients/P1", headers=auth(tokens), json={"phone": "13900000009"})
    assert r.status_code == 200, r.text  # the stored problem does not block an unrelated edit
    r = client.patch("/api/patients/P1", headers=auth(tokens), json={"status": "dead", "reason": "家属告知"})
    assert r.status_code == 422 and r.json()["error"] == "STATUS_BEFORE_VISIT", r.text
    assert "状态日期 2026-05-01 早于最近一次访到患者的随访日期 2026-05-20" in r.json()["message"]
    client.cookies.set("jf_session", tokens["doc"])
    page = client.get("/patients/P1/edit")
    form = dict(re.findall(r'<input id="i-([a-z_]+)" name="\1" type="(?:text|date)"[^>]*value="([^"]*)"', page.text))
    assert form["status_on"] == "2026-05-01"
    form.update({"csrf_token": csrf(client, "/patients/P1/edit"), "status": "moved_out", "phone": "13900000008"})
    assert client.post("/patients/P1/edit", data=form).status_code == 303  # every field posted, status unchanged
    bad = client.post("/patients/P1/edit", data={**form, "status": "dead", "reason": "家属告知"})
    assert bad.status_code == 422 and "早于最近一次访到患者的随访日期 2026-05-20" in html.unescape(bad.text)
    assert patient_status(database, "P1") == ("moved_out", date(2026, 5, 1))
    r = client.patch("/api/patients/P1", headers=auth(tokens), json={"status": "dead", "status_on": "2026-05-20",
                                                                     "reason": "家属告知"})
    assert r.status_code == 200, r.text
    assert patient_status(database, "P1") == ("dead", date(2026, 5, 20))


# ---------------------------------------------------------------- the import

def test_a_patients_csv_reimport_refuses_a_date_before_a_stored_reached_visit(web, tmp_path):
    _client, _tokens, database = web
    for n, (status, on) in enumerate((("dead", "2026-05-01"), ("moved_out", "2026-05-19"))):
        folder = write_files(tmp_path / f"bad{n}", {"patients": [{**P1_ROW, "status": status, "status_on": on}]})
        issues, messages = refused(database.engine, folder)
        assert issues == [("patients.csv", 2, "status_on", "STATUS_BEFORE_VISIT")]
        assert "2026-05-20" in messages[0]
    assert patient_status(database, "P1") == ("active", None)
    import_path(database.engine, write_files(tmp_path / "good", {"patients": [{**P1_ROW, "status": "dead",
                                                                               "status_on": "2026-05-20"}]}), today=TODAY)
    assert patient_status(database, "P1") == ("dead", date(2026, 5, 20))


def test_a_follow_up_recording_the_death_is_taken_with_its_patient_in_one_import(web, tmp_path):
    """The 随访服务记录表 that records the death (visit after it, patient not reached) re-imports with
    the dead patient's row; a visit that reached the patient after the death does not."""
    _client, _tokens, database = web
    patient = {**P1_ROW, "patient_id": "N7", "status": "dead", "status_on": "2026-03-01"}
    death = {"patient_id": "N7", "visit_on": "2026-03-05", "mode": "3", "lost_reason": "5", "risk_level": "",
             "death_on": "2026-03-01"}
    reached = {**death, "visit_on": "2026-03-06", "lost_reason": "", "risk_level": "0", "death_on": ""}
    issues, _ = refused(database.engine, write_files(tmp_path / "bad", {"patients": [patient], "followups": [death, reached]}))
    # the reached visit after the death (the follow-ups as they will stand): the patient row's status date is
    # refused, so are its follow-up rows, and the death date the other row records before that visit
    assert issues == [("patients.csv", 2, "status_on", "STATUS_BEFORE_VISIT"), ("followups.csv", 2, "patient_id", "PATIENT_ROW_INVALID"),
                      ("followups.csv", 2, "death_on", "STATUS_BEFORE_VISIT"), ("followups.csv", 3, "patient_id", "PATIENT_ROW_INVALID")]
    import_path(database.engine, write_files(tmp_path / "good", {"patients": [patient], "followups": [death]}), today=TODAY)
    assert patient_status(database, "N7") == ("dead", date(2026, 3, 1))


def test_a_follow_up_death_date_before_a_reached_visit_is_refused_on_import(web, tmp_path):
    """The death date a follow-up records is not before a visit that reached the patient: stored (P1
    2026-05-20), or in the same file."""
    _client, _tokens, database = web
    row = {"patient_id": "P2", "visit_on": "2026-06-01", "mode": "3", "lost_reason": "5", "risk_level": "", "death_on": "2026-05-01"}
    issues, messages = refused(database.engine, write_files(tmp_path / "stored", {"followups": [{**row, "patient_id": "P1"}]}))
    assert issues == [("followups.csv", 2, "death_on", "STATUS_BEFORE_VISIT")] and "2026-05-20" in messages[0]
    in_file = {**row, "visit_on": "2026-05-10", "lost_reason": "", "risk_level": "0", "death_on": ""}
    issues, messages = refused(database.engine, write_files(tmp_path / "file", {"followups": [row, in_file]}))
    assert issues == [("followups.csv", 2, "death_on", "STATUS_BEFORE_VISIT")] and "2026-05-10" in messages[0]


def stored_follow_ups(database, pid: str) -> list[tuple]:
    with Session(database.engine) as s:
        rows = s.exec(select(FollowUp).where(FollowUp.patient_id == pid).order_by(FollowUp.visit_on, FollowUp.seq)).all()
        return [(r.visit_on, r.seq, r.lost_reason, r.risk_level) for r in rows]


# P1's stored 2026-05-20 visit (seq 1, reached) corrected to 未访到 (失访原因 其他, the death recorded)
CORRECTION = {"patient_id": "P1", "visit_on": "2026-05-20", "mode": "3", "lost_reason": "5", "risk_level": "",
              "death_on": "2026-05-01", "next_visit_on": ""}


def test_a_reimport_checks_the_status_date_against_the_follow_ups_as_they_will_stand(web, tmp_path):
    """rules.md §1, §3: ``patients.csv`` is checked against the follow-ups once the import applies — the
    file's row replaces the stored row of its key (patient, date, n-th of that date) and its new rows
    count. A correction of the stored reached visit to 未访到 lets the earlier death date in; a reached
    visit the file brings after the status date refuses the status row (and the visit with it)."""
    _client, _tokens, database = web
    dead = {**P1_ROW, "status": "dead", "status_on": "2026-05-01"}
    # a second row on the same date is a new visit (seq 2): reached, it keeps the bound
    issues, messages = refused(database.engine, write_files(tmp_path / "second", {
        "patients": [dead], "followups": [CORRECTION, {**CORRECTION, "lost_reason": "", "risk_level": "1", "death_on": ""}]}))
    assert ("patients.csv", 2, "status_on", "STATUS_BEFORE_VISIT") in issues
    assert "2026-05-20" in messages[issues.index(("patients.csv", 2, "status_on", "STATUS_BEFORE_VISIT"))]
    # the correction alone: the death date now stands before no reached visit
    result = import_path(database.engine, write_files(tmp_path / "corrected", {"patients": [dead], "followups": [CORRECTION]}),
                         today=TODAY)
    assert not result.issues
    assert patient_status(database, "P1") == ("dead", date(2026, 5, 1))
    assert stored_follow_ups(database, "P1") == [(date(2026, 5, 20), 1, 5, None)]
    # P2: stored reached visit 2026-04-01; the file brings a reached one on 2026-05-10, after the death date
    p2 = {**P1_ROW, "patient_id": "P2", "name": "李二", "status": "dead", "status_on": "2026-05-01"}
    visit = {"patient_id": "P2", "visit_on": "2026-05-10", "mode": "2", "lost_reason": "", "risk_level": "0",
             "death_on": "", "next_visit_on": ""}
    issues, messages = refused(database.engine, write_files(tmp_path / "newer", {"patients": [p2], "followups": [visit]}))
    assert issues == [("patients.csv", 2, "status_on", "STATUS_BEFORE_VISIT"), ("followups.csv", 2, "patient_id", "PATIENT_ROW_INVALID")]
    assert "状态日期 2026-05-01 早于最近一次访到患者的随访日期 2026-05-10" in messages[0]
    assert patient_status(database, "P2") == ("active", None)


def test_a_refused_correction_refuses_the_status_date_that_relies_on_it(web, tmp_path):
    """With ``--skip-invalid`` a refused correction is not written, so the stored reached visit stays:
    the status row relying on it is refused too (``FOLLOW_UP_ROW_INVALID``), and so are the patient's
    other follow-up rows (``PATIENT_ROW_INVALID``) — nothing contradicts rules.md §1, §3 afterwards."""
    _client, _tokens, database = web
    dead = {**P1_ROW, "status": "dead", "status_on": "2026-05-01"}
    bad = {**CORRECTION, "next_visit_on": "2026-05-19"}  # NEXT_VISIT_NOT_AFTER_VISIT
    other = {**CORRECTION, "visit_on": "2026-06-01", "death_on": ""}
    result = import_path(database.engine, write_files(tmp_path / "skip", {"patients": [dead], "followups": [bad, other]}),
                         today=TODAY, skip_invalid=True)
    got = [(i.file, i.line, i.column, i.code) for i in result.issues]
    assert got == [("patients.csv", 2, "status_on", "FOLLOW_UP_ROW_INVALID"),
                   ("followups.csv", 2, "next_visit_on", "NEXT_VISIT_NOT_AFTER_VISIT"),
                   ("followups.csv", 3, "patient_id", "PATIENT_ROW_INVALID")]
    assert "followups.csv 第2行" in result.issues[0].message and "2026-05-20" in result.issues[0].message
    assert patient_status(database, "P1") == ("active", None)
    assert stored_follow_ups(database, "P1") == [(date(2026, 5, 20), 1, None, 3)]


# ---------------------------------------------------------------- team members serve a township or a village

def test_a_county_is_not_a_region_a_member_serves(database, tmp_path):
    """contract.md team_members.csv: region_code is the township or village served."""
    seed(database.engine)
    member = {"member_id": "M-X", "name": "县级人员", "role": "police", "phone": "", "region_code": "C", "primary": "0"}
    issues, messages = refused(database.engine, write_files(tmp_path / "county", {"team_members": [member]}))
    assert issues == [("team_members.csv", 2, "region_code", "NOT_TOWNSHIP_OR_VILLAGE")]
    assert "服务地区编码 C 是县(市、区)级" in messages[0] and "乡镇(街道)或村(社区)" in messages[0]
    # a county of the same import, too
    files = {"regions": [{"code": "C2", "name": "邻县", "level": "county", "parent_code": "", "population": ""}],
             "team_members": [{**member, "region_code": "C2"}]}
    issues, _ = refused(database.engine, write_files(tmp_path / "new-county", files))
    assert issues == [("team_members.csv", 2, "region_code", "NOT_TOWNSHIP_OR_VILLAGE")]
    assert database.count("team_member") == 4
    ok = [{**member, "member_id": "M-T", "region_code": "T2"}, {**member, "member_id": "M-V", "role": "village", "region_code": "V3"}]
    import_path(database.engine, write_files(tmp_path / "ok", {"team_members": ok}), today=TODAY)
    assert database.count("team_member") == 6


def test_members_stored_at_county_level_are_no_townships_team_and_are_reported(database, tmp_path):
    """Members stored at county level before ``NOT_TOWNSHIP_OR_VILLAGE`` (contract.md): never in a
    patient's default team nor a township's primary (rules.md §6, §6.1: the village and its township),
    and every import reports them — with the assignments that still make one a responsible member —
    until ``team_members.csv`` moves them to a township or a village (docs/import.md)."""
    import sqlalchemy as sa

    from registry.care_team import care_team_select, responsible_member_sql
    from registry.models import CareTeamAssignment, TeamMember

    seed(database.engine)
    with Session(database.engine) as s:
        s.add_all([TeamMember(member_id="M-X", name="县级民警", role="police", region_code="C", primary=True),
                   TeamMember(member_id="M-Y", name="县级专干", role="civil_affairs", region_code="C", primary=True)])
        s.flush()
        s.add(CareTeamAssignment(patient_id="P2", member_id="M-X", role="police", from_on=date(2026, 1, 1)))
        s.commit()
    p = Patient.__table__
    with database.engine.connect() as conn:
        team = conn.execute(care_team_select(p, TODAY)).all()
        responsible = dict(conn.execute(sa.select(p.c.patient_id, responsible_member_sql(
            "police", patient_id=p.c.patient_id, village_code=p.c.village_code, on=TODAY))).all())
    assert {(r.patient_id, r.member_id) for r in team if r.member_id in ("M-X", "M-Y")} == {("P2", "M-X")}  # the assignment only
    assert responsible["P1"] == "M-POL" and responsible["P4"] is None and responsible["P2"] == "M-X"
    member = {"member_id": "M-T", "name": "新民警", "role": "police", "phone": "", "region_code": "T2", "primary": "0"}
    result = import_path(database.engine, write_files(tmp_path / "any", {"team_members": [member]}), today=TODAY)
    assert len(result.warnings) == 3 and "2 名的服务地区不是乡镇(街道)或村(社区)" in result.warnings[0]
    assert result.warnings[1] == "  团队成员 M-X 县级民警（民警）：服务地区 C 为县(市、区)级；仍是 1 条当前有效指派的责任人"
    assert result.warnings[2].startswith("  团队成员 M-Y 县级专干（民政专干）：服务地区 C") and "指派" not in result.warnings[2]
    assert "注意：" in result.summary() and "M-Y" in result.summary()
    moved = [{**member, "member_id": "M-X", "name": "县级民警", "region_code": "T1"},
             {**member, "member_id": "M-Y", "name": "县级专干", "role": "civil_affairs", "region_code": "V1"}]
    result = import_path(database.engine, write_files(tmp_path / "moved", {"team_members": moved}), today=TODAY)
    assert result.warnings == [] and "注意" not in result.summary()


def test_the_synthetic_county_has_no_county_members():
    import random

    regions, team, _villages = regions_and_team(CountySize(patients=100), random.Random(7))
    levels = {code: level for code, _name, level, _parent, _pop in regions}
    assert team and {levels[row[4]] for row in team} == {"township", "village"}
