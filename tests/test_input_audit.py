"""输入审计 Defects found by the adversarial audit of every input path (import, API, forms, CLI), each
with the input that showed it; every case on SQLite and PostgreSQL (the ``database`` fixture).

The law: every input path rejects bad data with a message naming the row or field and the reason (in
Chinese) and a stable code, loses nothing that was valid, writes nothing half (contract.md import files,
docs/ARCHITECTURE.md §3 one validation path). The date rules of a follow-up's own dates are cases of
tests/test_validation_paths.py (import, form and API alike).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from registry.errors import ImportRejected, InvalidInput
from registry.importing import import_path
from registry.web.app import create_app
from web_support import TODAY, seed, session_token


def write_files(folder: Path, files: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, rows in files.items():
        with (folder / f"{stem}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return folder


def rejected(engine, folder: Path, **kw) -> list[tuple]:
    with pytest.raises(ImportRejected) as exc:
        import_path(engine, folder, today=TODAY, **kw)
    return [(i.file, i.line, i.column, i.code) for i in exc.value.issues]


def rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


@pytest.fixture
def seeded(database):
    ids = seed(database.engine)
    client = TestClient(create_app(database.engine, today=lambda: TODAY), follow_redirects=False)
    return database.engine, client, ids


def bearer(engine, user: str = "doc") -> dict:
    return {"Authorization": f"Bearer {session_token(engine, user)}"}


# ---------------------------------------------------------------- ids of nothing but invisible characters


def test_an_id_of_only_zero_width_characters_is_blank_not_a_key(seeded, tmp_path):
    """A patient or member id of only U+200B passed REQUIRED (the cell was not empty), normalised to ""
    and reached the database: the import failed on the foreign key with a traceback. Now REQUIRED
    naming file, line and column, nothing written."""
    engine, _client, _ids = seeded
    before = rows(engine, "SELECT count(*) FROM follow_up")
    folder = write_files(tmp_path / "a", {
        "followups": [{"patient_id": "\u200b", "visit_on": "2026-06-01", "risk_level": "0"},
                      {"patient_id": "P2", "visit_on": "2026-06-01", "risk_level": "0"}],
        "care_team": [{"patient_id": "P1", "member_id": "\u200b\u2060", "role": "police", "from_on": "2026-01-01"}],
    })
    assert rejected(engine, folder) == [("followups.csv", 2, "patient_id", "REQUIRED"),
                                        ("care_team.csv", 2, "member_id", "REQUIRED")]
    assert rows(engine, "SELECT count(*) FROM follow_up") == before
    # --skip-invalid keeps the valid row and skips the blank one (it crashed before)
    result = import_path(engine, folder, today=TODAY, skip_invalid=True)
    assert result.tables["followups"].written == 1 and result.tables["followups"].skipped == 1
    assert "不可见字符" in result.issues[0].message
    # an optional id of only invisible characters is blank: a county's parent
    write_files(tmp_path / "b", {"regions": [{"code": "C2", "name": "二县", "level": "county", "parent_code": "\u200b"}]})
    import_path(engine, tmp_path / "b", today=TODAY)
    assert rows(engine, "SELECT parent_code FROM region WHERE code = 'C2'") == [(None,)]


# ---------------------------------------------------------------- the region tree (rules.md §1)


def test_a_county_has_no_parent_so_the_region_tree_has_no_cycle(seeded, tmp_path):
    """A county under itself, or under a village, was imported: ``jingfang export --region`` then never
    ended (the recursive CTE) and ``jingfang rates`` died of RecursionError."""
    engine, _client, _ids = seeded
    folder = write_files(tmp_path / "a", {"regions": [
        {"code": "C9", "name": "自环县", "level": "county", "parent_code": "C9"},
        {"code": "CA", "name": "村下县", "level": "county", "parent_code": "V1"},
        {"code": "TA", "name": "自环镇", "level": "township", "parent_code": "TA"}]})
    assert rejected(engine, folder) == [("regions.csv", 2, "parent_code", "BAD_PARENT_LEVEL"),
                                        ("regions.csv", 3, "parent_code", "BAD_PARENT_LEVEL"),
                                        ("regions.csv", 4, "parent_code", "BAD_PARENT_LEVEL")]
    assert rows(engine, "SELECT count(*) FROM region WHERE code IN ('C9', 'CA', 'TA')") == [(0,)]


def test_a_stored_region_keeps_its_level_while_something_lies_under_it(seeded, tmp_path):
    """Re-importing the village V1 (three patients) as a township left its patients in a township; the
    township T1 as a village left two villages under a village. Refused (REGION_LEVEL_CHANGE) naming
    what lies under it; a region with nothing under it, or whose children move in the same file, may
    change level."""
    engine, _client, _ids = seeded
    folder = write_files(tmp_path / "a", {"regions": [
        {"code": "V1", "name": "东坑村", "level": "township", "parent_code": "C"},
        {"code": "T1", "name": "台城街道", "level": "village", "parent_code": "T2"}]})
    with pytest.raises(ImportRejected) as exc:
        import_path(engine, folder, today=TODAY)
    issues = exc.value.issues
    assert [(i.line, i.column, i.code) for i in issues] == [(2, "level", "REGION_LEVEL_CHANGE"), (3, "level", "REGION_LEVEL_CHANGE")]
    assert "3 名患者" in issues[0].message and "2 个下级地区" in issues[1].message
    assert rows(engine, "SELECT code, level FROM region WHERE code IN ('T1', 'V1') ORDER BY code") == [
        ("T1", "township"), ("V1", "village")]
    # the villages of T1 move to T2 in the same file: T1 has nothing left under it and may become a village
    write_files(tmp_path / "b", {"regions": [
        {"code": "T1", "name": "台城村", "level": "village", "parent_code": "T2"},
        {"code": "V1", "name": "东坑村", "level": "village", "parent_code": "T2"},
        {"code": "V2", "name": "西坑村", "level": "village", "parent_code": "T2"}]})
    import_path(engine, tmp_path / "b", today=TODAY)
    assert rows(engine, "SELECT level, parent_code FROM region WHERE code = 'T1'") == [("village", "T2")]


def test_a_region_under_a_refused_region_is_skipped_too(seeded, tmp_path):
    """With --skip-invalid, a village whose township's row was refused was written pointing at a region
    never written: the import died on the foreign key. Now PARENT_ROW_INVALID names the parent's row,
    and the patient and member of that village are refused in turn; the valid rows are written."""
    engine, _client, _ids = seeded
    folder = write_files(tmp_path / "a", {
        "regions": [{"code": "T9", "name": "九镇", "level": "township", "parent_code": "CX"},
                    {"code": "V9", "name": "九村", "level": "village", "parent_code": "T9"},
                    {"code": "V8", "name": "八村", "level": "village", "parent_code": "T1"}],
        "patients": [{"patient_id": "N9", "name": "九", "sex": "1", "birth_date": "1980-01-01", "village_code": "V9",
                      "diagnosis": "F20", "registered_on": "2026-01-01"}],
        "team_members": [{"member_id": "M9", "name": "九警", "role": "police", "region_code": "T9"}]})
    issues = rejected(engine, folder)
    assert issues == [("regions.csv", 2, "parent_code", "UNKNOWN_PARENT"), ("regions.csv", 3, "parent_code", "PARENT_ROW_INVALID"),
                      ("team_members.csv", 2, "region_code", "UNKNOWN_REGION"), ("patients.csv", 2, "village_code", "UNKNOWN_VILLAGE")]
    result = import_path(engine, folder, today=TODAY, skip_invalid=True)
    assert result.tables["regions"].written == 1 and result.tables["regions"].skipped == 2
    assert rows(engine, "SELECT code FROM region WHERE code IN ('T9', 'V9', 'V8')") == [("V8",)]
    assert rows(engine, "SELECT count(*) FROM patient WHERE patient_id = 'N9'") == [(0,)]


# ---------------------------------------------------------------- attendance (rules.md §6.2)


def test_a_role_attendance_value_other_than_yes_or_no_is_refused(seeded):
    """attended_police = "maybe" (or "2") was stored as 未到场: a bad value silently became a record.
    Now BAD_CODE naming the field on the API and the form, nothing written; blank is 未邀请 on both."""
    engine, client, _ids = seeded
    auth = bearer(engine)
    count = "SELECT count(*) FROM follow_up WHERE patient_id = 'P1'"
    before = rows(engine, count)
    body = {"visit_on": "2026-06-02", "mode": "2", "risk_level": "3", "attended_police": "maybe"}
    r = client.post("/api/patients/P1/follow-ups", headers=auth, json=body)
    assert r.status_code == 422
    [issue] = r.json()["issues"]
    assert (issue["code"], issue["column"]) == ("BAD_CODE", "attended_police") and "到场(民警)" in issue["message"]
    form = client.get("/patients/P1/follow-ups/new", headers=auth)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    page = client.post("/patients/P1/follow-ups/new", headers=auth, data={**body, "attended_police": "2", "csrf_token": csrf})
    assert page.status_code == 422 and "到场(民警)" in page.text
    assert rows(engine, count) == before
    # JSON true and false, and blank (not invited), as before
    r = client.post("/api/patients/P1/follow-ups", headers=auth,
                    json={**body, "attended_police": True, "attended_village": False, "attended_civil_affairs": ""})
    assert r.status_code == 201, r.text
    assert rows(engine, f"SELECT role, attended FROM follow_up_participant WHERE follow_up_id = {r.json()['id']} ORDER BY role") == [
        ("police", True), ("village", False)]


def test_a_participant_row_takes_the_members_own_role_on_every_path(seeded, tmp_path):
    """A village row naming the police officer M-POL was taken by participants.csv and by the API, so a
    village cadre's absence could be filed as the officer's, and the officer's presence marked the
    village role present (rules.md §6.2). Now ROLE_MISMATCH on both (validation.check_participant). And
    the API takes every team role participants.csv takes (the doctor recorded absent counts, §6.2)."""
    engine, client, ids = seeded
    parts = "SELECT role, member_id, attended FROM follow_up_participant ORDER BY role, member_id"
    before = rows(engine, parts)
    folder = write_files(tmp_path / "a", {"participants": [
        {"patient_id": "P1", "visit_on": "2026-05-20", "role": "village", "member_id": "M-POL", "present": "1"}]})
    assert rejected(engine, folder) == [("participants.csv", 2, "role", "ROLE_MISMATCH")]
    url = f"/api/follow-ups/{ids['f1']}/participants"
    r = client.post(url, headers=bearer(engine), json={"participants": [{"role": "village", "member_id": "M-POL", "present": True}]})
    assert r.status_code == 422
    [issue] = r.json()["issues"]
    assert (issue["code"], issue["column"]) == ("ROLE_MISMATCH", "role") and issue["message"].startswith("第1行")
    assert rows(engine, parts) == before
    r = client.post(url, headers=bearer(engine), json={"participants": [
        {"role": "doctor", "member_id": "M-DOC", "present": False, "reason": "出诊"}, {"role": "police", "member_id": "M-POL", "present": True}]})
    assert r.status_code == 200, r.text
    assert ("doctor", "M-DOC", False) in rows(engine, parts)
    r = client.post(url, headers=bearer(engine), json={"participants": [{"role": "mayor", "present": True}]})
    assert r.status_code == 422 and r.json()["issues"][0]["code"] == "BAD_CODE"


# ---------------------------------------------------------------- accounts and request shapes


def test_a_display_name_is_bounded_and_storable(seeded):
    """``jingfang user add --name`` with 500 characters died with a PostgreSQL traceback (the column holds
    100) and was stored whole on SQLite; a control or bidi character was stored. Now NAME_INVALID."""
    from registry.accounts import add_user

    engine, _client, _ids = seeded
    good = dict(password="Abcdefgh12345!", role="county_admin", region_code="C")
    for name, words in (("王" * 101, "超过上限 100"), ("王\x1b医生", "U+001B"), ("王\u202e医生", "U+202E")):
        with pytest.raises(InvalidInput) as exc:
            add_user(engine, username="u-bad", display_name=name, **good)
        assert exc.value.code == "NAME_INVALID" and words in exc.value.message
    assert rows(engine, "SELECT count(*) FROM app_user WHERE username = 'u-bad'") == [(0,)]
    user = add_user(engine, username="u-good", display_name="  王医生 ", **good)
    assert user.display_name == "王医生"


def test_a_request_shape_error_names_the_field_and_the_reason(seeded):
    """The JSON API's shape errors said only "participants 的值无效"; now the field's path and a Chinese
    reason (registry.web.app.request_error_reason)."""
    engine, client, ids = seeded
    r = client.post(f"/api/follow-ups/{ids['f1']}/participants", headers=bearer(engine),
                    json={"participants": [{"role": "police", "present": "yes"}]})
    assert r.status_code == 422 and r.json()["error"] == "INVALID_REQUEST"
    [issue] = r.json()["issues"]
    assert issue == {"code": "INVALID_REQUEST", "column": "participants.0.present",
                     "message": "participants.0.present：应为 true 或 false"}
    r = client.get("/api/worklist?limit=0", headers=bearer(engine))
    assert r.status_code == 422 and r.json()["message"] == "条数：不能小于 1"
