"""一条校验路径 The same rows through the import, the web form and the API: the same outcome, the same codes.

Each case is one row (good or bad) of a follow-up, a health check or a new patient. It goes
through the importer (a CSV file in a tmp dir), the page form (a doctor's POST with the CSRF
token) and the JSON API, on the same seeded database (tests/web_support.py), on SQLite and
PostgreSQL. The import and the API must give the same codes; the form must show the API's
messages. Only the codes named in ``registry.validation.DELIBERATE_DIFFERENCES`` may differ, and
each case that meets one asserts it as such.
"""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from registry.errors import ImportRejected
from registry.importing import import_path
from registry.validation import DELIBERATE_DIFFERENCES, ENTRY, Channel, applies
from registry.web.app import create_app
from web_support import ID_P1, TODAY, seed, session_token

DELIBERATE = {d.code for d in DELIBERATE_DIFFERENCES}

# (follow-up row, codes on import, codes on the form and the API); P1: born 1980-01-01, registered
# 2025-01-10, 在册; P5: died 2026-03-01; today 2026-06-10.
FOLLOW_UPS = [
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "2", "risk_level": "0", "insight": "1"}, set(), set()),
    ({"patient_id": "P1", "visit_on": "2026-06-11", "risk_level": "0"}, {"FUTURE_DATE"}, {"FUTURE_DATE"}),
    ({"patient_id": "P1", "visit_on": "2026-02-30", "risk_level": "0"}, {"BAD_DATE"}, {"BAD_DATE"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "risk_level": "4", "classification": "3"},
     {"CLASSIFICATION_CONFLICT"}, {"CLASSIFICATION_CONFLICT"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "risk_level": "0", "insight": "7"}, {"BAD_CODE"}, {"BAD_CODE"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "risk_level": "0", "incidents_mild": "x"}, {"BAD_NUMBER"}, {"BAD_NUMBER"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "risk_level": "9"}, {"BAD_CODE"}, {"BAD_CODE"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "2", "lost_reason": "1"}, set(), set()),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "hospital_status": "1"}, set(), set()),
    # deliberate: history before registration, and a reached visit without a risk level (not complete)
    ({"patient_id": "P1", "visit_on": "2024-12-01", "risk_level": "0"}, set(), {"VISIT_BEFORE_REGISTRATION"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "2"}, set(), {"RISK_REQUIRED"}),
    ({"patient_id": "P1", "visit_on": "1979-12-01", "risk_level": "0"}, {"BEFORE_BIRTH"},
     {"BEFORE_BIRTH", "VISIT_BEFORE_REGISTRATION"}),
    # after death: refused on every path; on or before the death date: accepted on every path
    ({"patient_id": "P5", "visit_on": "2026-04-01", "risk_level": "0"}, {"PATIENT_NOT_ACTIVE"}, {"PATIENT_NOT_ACTIVE"}),
    ({"patient_id": "P5", "visit_on": "2026-03-01", "risk_level": "0"}, set(), set()),
    # after death but not reached (rules.md §3): the 随访服务记录表 recording the death, an attempt — true records
    ({"patient_id": "P5", "visit_on": "2026-04-01", "mode": "3", "lost_reason": "5", "death_on": "2026-03-01"}, set(), set()),
    ({"patient_id": "P5", "visit_on": "2026-04-01", "mode": "2", "lost_reason": "2"}, set(), set()),
    ({"patient_id": "P5", "visit_on": "2026-04-01", "hospital_status": "1"}, {"PATIENT_NOT_ACTIVE"}, {"PATIENT_NOT_ACTIVE"}),
    # an unknown patient: an issue on the import, 403 on the web (it never tells whether it exists)
    ({"patient_id": "NOPE", "visit_on": "2026-06-01", "risk_level": "0"}, {"UNKNOWN_PATIENT"}, {"PATIENT_FORBIDDEN"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "risk_level": "0\x0b"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01\u200f", "risk_level": "0"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"patient_id": "P1", "visit_on": "2026-W23-1", "risk_level": "0"}, {"BAD_DATE"}, {"BAD_DATE"}),
    # dates the form records about the past (input audit): a death or a discharge after the visit, a death
    # before registration (the form makes it the status date) — refused on every path; on the visit day taken
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "3", "lost_reason": "5", "death_on": "2026-06-02"},
     {"DEATH_AFTER_VISIT"}, {"DEATH_AFTER_VISIT"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "3", "lost_reason": "5", "death_on": "2024-12-31"},
     {"STATUS_BEFORE_REGISTRATION"}, {"STATUS_BEFORE_REGISTRATION"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "3", "lost_reason": "5", "death_on": "2026-06-01"}, set(), set()),
    # the death date is not before a visit that reached the patient: P1's of 2026-05-20, or this one (rules.md §1, §3)
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "3", "lost_reason": "5", "death_on": "2026-05-19"},
     {"STATUS_BEFORE_VISIT"}, {"STATUS_BEFORE_VISIT"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "2", "risk_level": "0", "death_on": "2026-05-25"},
     {"STATUS_BEFORE_VISIT"}, {"STATUS_BEFORE_VISIT"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "3", "lost_reason": "5", "death_on": "2026-05-20"}, set(), set()),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "2", "risk_level": "0", "hospital_status": "2",
      "last_discharge_on": "2026-06-05"}, {"DISCHARGE_AFTER_VISIT"}, {"DISCHARGE_AFTER_VISIT"}),
    ({"patient_id": "P1", "visit_on": "2026-06-01", "mode": "2", "risk_level": "0", "hospital_status": "2",
      "last_discharge_on": "2026-06-01"}, set(), set()),
]

HEALTH_CHECKS = [
    ({"patient_id": "P1", "checked_on": "2026-05-01"}, set(), set()),
    ({"patient_id": "P1", "checked_on": "2026-06-11"}, {"FUTURE_DATE"}, {"FUTURE_DATE"}),
    ({"patient_id": "P1", "checked_on": "2026-13-01"}, {"BAD_DATE"}, {"BAD_DATE"}),
    ({"patient_id": "P1", "checked_on": ""}, {"REQUIRED"}, {"REQUIRED"}),
    ({"patient_id": "P1", "checked_on": "2024-12-01"}, set(), {"BEFORE_REGISTRATION"}),
    ({"patient_id": "P1", "checked_on": "1979-12-01"}, {"BEFORE_BIRTH"}, {"BEFORE_BIRTH", "BEFORE_REGISTRATION"}),
    ({"patient_id": "P5", "checked_on": "2026-04-01"}, {"PATIENT_NOT_ACTIVE"}, {"PATIENT_NOT_ACTIVE"}),
    ({"patient_id": "P5", "checked_on": "2026-02-01"}, set(), set()),
    ({"patient_id": "NOPE", "checked_on": "2026-05-01"}, {"UNKNOWN_PATIENT"}, {"PATIENT_FORBIDDEN"}),
]

GOOD_PATIENT = {"name": "吴六", "sex": "1", "birth_date": "1975-05-05", "village_code": "V1", "diagnosis": "F31",
                "registered_on": "2026-06-08"}
PATIENTS = [
    ({}, set(), set()),
    ({"village_code": "VX"}, {"UNKNOWN_VILLAGE"}, {"UNKNOWN_VILLAGE"}),
    ({"village_code": "T1"}, {"NOT_A_VILLAGE"}, {"NOT_A_VILLAGE"}),
    ({"diagnosis": "F99"}, {"BAD_DIAGNOSIS"}, {"BAD_DIAGNOSIS"}),
    ({"sex": "3"}, {"BAD_CODE"}, {"BAD_CODE"}),
    ({"name": ""}, {"REQUIRED"}, {"REQUIRED"}),
    ({"registered_on": "1970-01-01"}, {"BEFORE_BIRTH"}, {"BEFORE_BIRTH"}),
    ({"birth_date": "2027-01-01", "registered_on": "2026-06-01"}, {"FUTURE_DATE"}, {"FUTURE_DATE"}),
    ({"birth_date": "1980-01-01", "id_number": ID_P1[:-1] + "9"}, {"ID_CHECK_DIGIT"}, {"ID_CHECK_DIGIT"}),
    ({"birth_date": "1981-01-01", "id_number": ID_P1}, {"ID_BIRTH_MISMATCH"}, {"ID_BIRTH_MISMATCH"}),
    ({"lai_drug": "棕榈酸帕利哌酮"}, {"LAI_INCOMPLETE"}, {"LAI_INCOMPLETE"}),
    ({"lai_interval_weeks": "60", "lai_drug": "x", "lai_last_on": "2026-06-01"},
     {"BAD_NUMBER", "LAI_INCOMPLETE"}, {"BAD_NUMBER", "LAI_INCOMPLETE"}),
    # deliberate: the operator imports the whole county; a doctor registers in their own township
    ({"village_code": "V3"}, set(), {"VILLAGE_OUT_OF_SCOPE"}),
    # control and bidi characters: BAD_TEXT on every path (issue 18), a NUL never reaches the database
    ({"name": "吴\u202e六"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"name": "吴\x0b六"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"name": "吴\x00"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"address": "幸福路\x1b[31m8号"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"guardian_name": "\u2066某\u2069"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"phone": "138\x7f0000"}, {"BAD_TEXT"}, {"BAD_TEXT"}),
    ({"name": "吴\n六"}, {"BAD_TEXT"}, {"BAD_TEXT"}),  # one line (a wrapping box — address, hospital — turns
    # a typed line break into a space before these checks, as it reads YYYYMMDD dates: forms.one_line, tested in
    # test_patient_edits; the import and the API refuse it)
    # dates are YYYY-MM-DD only (contract.md), ids compared after NFKC and without zero-width characters
    ({"registered_on": "2026-W23-1"}, {"BAD_DATE"}, {"BAD_DATE"}),
]


@pytest.fixture
def paths(database, tmp_path):
    seed(database.engine)
    client = TestClient(create_app(database.engine, today=lambda: TODAY), follow_redirects=False)
    token = session_token(database.engine, "doc")
    client.cookies.set("jf_session", token)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/patients/new").text).group(1)
    return Paths(database, tmp_path, client, token, csrf)


class Paths:
    """The three ways in, each returning (accepted, codes, messages)."""

    def __init__(self, database, tmp_path: Path, client: TestClient, token: str, csrf: str):
        self.database, self.tmp, self.client, self.token, self.csrf = database, tmp_path, client, token, csrf
        self.n = 0

    def via_import(self, stem: str, row: dict) -> tuple[bool, set[str], list[str]]:
        self.n += 1
        folder = self.tmp / f"import{self.n}"
        folder.mkdir()
        with (folder / f"{stem}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        try:
            import_path(self.database.engine, folder, today=TODAY)
        except ImportRejected as exc:
            return False, {i.code for i in exc.issues}, [i.message for i in exc.issues]
        return True, set(), []

    def via_api(self, url: str, body: dict) -> tuple[bool, set[str], list[str]]:
        r = self.client.post(url, json=body, headers={"Authorization": f"Bearer {self.token}"})
        if r.status_code in (200, 201):
            return True, set(), []
        issues = r.json().get("issues") or [{"code": r.json()["error"], "message": r.json()["message"]}]
        return False, {i["code"] for i in issues}, [i["message"] for i in issues]

    def via_form(self, url: str, data: dict) -> tuple[bool, int, str]:
        r = self.client.post(url, data={"csrf_token": self.csrf, **data})
        return r.status_code == 303, r.status_code, html.unescape(r.text)

    def delete_health_check(self, patient_id: str, on: str) -> None:
        with self.database.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM health_check WHERE patient_id = :p AND checked_on = :d"),
                         {"p": patient_id, "d": on})


def _entry_body(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "patient_id" and v != ""}


def _same(paths: Paths, stem: str, row: dict, want_import: set[str], want_entry: set[str], api_url: str, form_url: str,
          form_row: dict, after_accept=None) -> None:
    ok_i, codes_i, _ = paths.via_import(stem, row)
    assert (ok_i, codes_i) == (not want_import, want_import), row
    if ok_i and after_accept:
        after_accept()
    body = _entry_body(form_row)
    ok_f, status_f, page = paths.via_form(form_url, body)
    if ok_f and after_accept:
        after_accept()
    ok_a, codes_a, messages = paths.via_api(api_url, body)
    if ok_a and after_accept:
        after_accept()
    assert (ok_a, codes_a) == (not want_entry, want_entry), (row, messages)
    assert ok_f == ok_a, (row, status_f)
    if not ok_a:
        if codes_a == {"PATIENT_FORBIDDEN"}:
            assert status_f == 403
        else:
            assert status_f == 422
            # the form shows the API's messages, field by field (the patient page offers the event
            # forms only while the patient is 在册, so a refused event of P5 shows no form to mark)
            shown = not (stem == "health_checks" and row["patient_id"] == "P5")
            for message in messages if shown else ():
                assert message in page, (row, message)
    # what differs is exactly what the table names, on the channels it names
    for code in codes_i ^ codes_a:
        assert code in DELIBERATE or codes_a == {"PATIENT_FORBIDDEN"}, (row, code)
        if code in DELIBERATE:
            assert not applies(code, Channel.IMPORT) and applies(code, Channel.FORM) and applies(code, Channel.API)


@pytest.mark.parametrize("row,want_import,want_entry", FOLLOW_UPS)
def test_a_follow_up_is_judged_alike_on_every_path(paths, row, want_import, want_entry):
    pid = row["patient_id"]
    _same(paths, "followups", row, want_import, want_entry, f"/api/patients/{pid}/follow-ups",
          f"/patients/{pid}/follow-ups/new", row)


@pytest.mark.parametrize("row,want_import,want_entry", HEALTH_CHECKS)
def test_a_health_check_is_judged_alike_on_every_path(paths, row, want_import, want_entry):
    pid = row["patient_id"]
    _same(paths, "health_checks", row, want_import, want_entry, f"/api/patients/{pid}/health-checks",
          f"/patients/{pid}/health-check", row, after_accept=lambda: paths.delete_health_check(pid, row["checked_on"]))


@pytest.mark.parametrize("change,want_import,want_entry", PATIENTS)
def test_a_new_patient_is_judged_alike_on_every_path(paths, change, want_import, want_entry):
    row = {"patient_id": "N1", **GOOD_PATIENT, **change}
    ok_i, codes_i, _ = paths.via_import("patients", row)
    assert (ok_i, codes_i) == (not want_import, want_import), row
    # the form and the API register patients of their own (an id is taken once)
    entry = {k: v for k, v in row.items() if v != ""}
    ok_f, status_f, page = paths.via_form("/patients/new", {**entry, "patient_id": "N2"})
    ok_a, codes_a, messages = paths.via_api("/api/patients", {**entry, "patient_id": "N3"})
    assert (ok_a, codes_a) == (not want_entry, want_entry), (row, messages)
    assert ok_f == ok_a and (ok_f or status_f == 422)
    for message in messages:
        assert message.replace("N3", "N2") in page, (row, message)
    for code in codes_i ^ codes_a:
        assert code in DELIBERATE and not applies(code, Channel.IMPORT) and applies(code, Channel.API)


def test_an_existing_health_check_is_unchanged_on_import_and_refused_on_forms(paths):
    """DELIBERATE_DIFFERENCES DUPLICATE: re-importing changes nothing; entering it again is refused."""
    row = {"patient_id": "P1", "checked_on": "2026-05-02"}
    assert paths.via_import("health_checks", row)[0]
    assert paths.via_import("health_checks", row)[0]
    assert paths.via_api("/api/patients/P1/health-checks", {"checked_on": "2026-05-02"})[:2] == (False, {"DUPLICATE"})
    assert paths.via_form("/patients/P1/health-check", {"checked_on": "2026-05-02"})[1] == 422


def test_an_existing_patient_is_updated_on_import_and_refused_on_forms(paths):
    """DELIBERATE_DIFFERENCES PATIENT_EXISTS: the import is keyed by patient_id; registration creates only."""
    row = {"patient_id": "P2", **GOOD_PATIENT}
    assert paths.via_import("patients", row)[0]
    assert paths.via_api("/api/patients", row)[:2] == (False, {"PATIENT_EXISTS"})
    assert paths.via_form("/patients/new", row)[1] == 422


def test_the_table_of_deliberate_differences_is_the_one_in_the_docs():
    """docs/import.md carries the same table, row for row, in the same order."""
    text = (Path(__file__).parent.parent / "docs" / "import.md").read_text(encoding="utf-8")
    section = text.split("## Deliberate differences", 1)[1].split("\n## ", 1)[0]
    documented = [line for line in section.splitlines() if line.startswith("| `")]
    assert documented == [f"| `{d.code}` | {d.entity} | {d.import_does} | {d.entry_does} | {d.why} |"
                          for d in DELIBERATE_DIFFERENCES]
    for d in DELIBERATE_DIFFERENCES:
        assert d.refused_by == ENTRY  # today every difference is the import taking what a form may not


def test_a_patient_and_its_follow_ups_in_one_import_are_checked_against_each_other(paths):
    """The patient's facts come from its row in the same import: a health check after the death it
    records is refused, a visit on the death date is taken (rules.md §1). A visit of the file that
    reached the patient after the death refuses the patient row itself (the status date is checked
    against the follow-ups as they will stand, ``STATUS_BEFORE_VISIT``) and so its other rows."""
    patient = {"patient_id": "N7", **GOOD_PATIENT, "registered_on": "2025-01-10", "status": "dead", "status_on": "2026-03-01"}
    on_the_day = {"patient_id": "N7", "visit_on": "2026-03-01", "risk_level": "0"}
    after = {"patient_id": "N7", "visit_on": "2026-03-02", "risk_level": "0"}
    check = {"patient_id": "N7", "checked_on": "2026-04-01"}

    def refused(name: str, files: dict) -> list:
        folder = paths.tmp / name
        folder.mkdir()
        for stem, rows in files.items():
            with (folder / f"{stem}.csv").open("w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        with pytest.raises(ImportRejected) as rejected:
            import_path(paths.database.engine, folder, today=TODAY)
        return rejected.value.issues

    issues = refused("together", {"patients": [patient], "followups": [on_the_day], "health_checks": [check]})
    assert [(i.file, i.line, i.code) for i in issues] == [("health_checks.csv", 2, "PATIENT_NOT_ACTIVE")]
    assert "体检日期 2026-04-01" in issues[0].message
    issues = refused("after", {"patients": [patient], "followups": [on_the_day, after], "health_checks": [check]})
    assert [(i.file, i.line, i.code) for i in issues] == [
        ("patients.csv", 2, "STATUS_BEFORE_VISIT"), ("followups.csv", 2, "PATIENT_ROW_INVALID"),
        ("followups.csv", 3, "PATIENT_ROW_INVALID"), ("health_checks.csv", 2, "PATIENT_ROW_INVALID")]
    assert "随访日期 2026-03-02" in issues[0].message


def test_every_import_code_is_in_the_error_table():
    """docs/import.md "Error codes" names every code the importer tags a row or a file with: the codes
    written in ``registry.importing`` and those of the validation helpers only the importer calls
    (``check_assignment``, ``check_participant``, ``duplicate_primaries``, ``check_member_region``,
    ``care_team.check_member_serves``, rules.md §6.1, §6.2) or that the error table lists for every path (a follow-up's own dates,
    ``_after_visit``; a status date before a reached visit, ``status_before_visit``)."""
    import inspect

    from registry import care_team, importing, validation

    source = "".join(inspect.getsource(x) for x in (importing, validation.check_assignment, validation.duplicate_primaries,
                                                    validation._member_role_issues, validation._after_visit,
                                                    validation.check_member_region, validation.status_before_visit,
                                                    care_team.check_member_serves))
    codes = set(re.findall(r'Issue\(\s*"([A-Z][A-Z0-9_]+)"', source))
    assert {"DUPLICATE_PRIMARY", "DUPLICATE_ID", "UNKNOWN_MEMBER", "ROLE_MISMATCH", "PARENT_ROW_INVALID",
            "REGION_LEVEL_CHANGE", "DEATH_AFTER_VISIT", "UNKNOWN_REGION", "NOT_TOWNSHIP_OR_VILLAGE",
            "STATUS_BEFORE_VISIT", "MEMBER_OUT_OF_SCOPE"} <= codes
    text = (Path(__file__).parent.parent / "docs" / "import.md").read_text(encoding="utf-8")
    table = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    assert sorted(c for c in codes if f"`{c}`" not in table) == []


# 团队指派 (rules.md §6, §6.1): only a member serving the patient's village or its township — the
# form's option list (``writes.assignable_members_select``), on the import, the form and the API alike.
# P1 lives in V1 (township T1), P3 in V2 (T1). Extra members: another village of T1, another township,
# and one stored at county level before NOT_TOWNSHIP_OR_VILLAGE (the import refuses a new one).
OUT_OF_SCOPE = {"MEMBER_OUT_OF_SCOPE"}
ASSIGNMENTS = [
    ({"patient_id": "P1", "member_id": "M-POL", "role": "police"}, set(), set()),       # T1: the township
    ({"patient_id": "P1", "member_id": "M-VIL", "role": "village"}, set(), set()),      # V1: the village
    ({"patient_id": "P1", "member_id": "M-V2", "role": "village"}, OUT_OF_SCOPE, OUT_OF_SCOPE),  # T1's other village
    ({"patient_id": "P1", "member_id": "M-T2", "role": "police"}, OUT_OF_SCOPE, OUT_OF_SCOPE),   # another township
    ({"patient_id": "P1", "member_id": "M-CTY", "role": "police"}, OUT_OF_SCOPE, OUT_OF_SCOPE),  # county level
    ({"patient_id": "P3", "member_id": "M-VIL", "role": "village"}, OUT_OF_SCOPE, OUT_OF_SCOPE),
    ({"patient_id": "P3", "member_id": "M-V2", "role": "village"}, set(), set()),
    # the role check still comes first in the list; both are reported
    ({"patient_id": "P1", "member_id": "M-T2", "role": "village"}, {"ROLE_MISMATCH", "MEMBER_OUT_OF_SCOPE"},
     {"ROLE_MISMATCH", "MEMBER_OUT_OF_SCOPE"}),
]


def _more_members(database) -> None:
    rows = [("M-V2", "钱网格员", "village", "V2"), ("M-T2", "江警官", "police", "T2"), ("M-CTY", "县警官", "police", "C")]
    with database.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO team_member (member_id, name, role, phone, region_code, \"primary\") "
                             "VALUES (:m, :n, :r, '0750-9', :g, :f)"),
                     [{"m": m, "n": n, "r": r, "g": g, "f": False} for m, n, r, g in rows])


@pytest.mark.parametrize("row,want_import,want_entry", ASSIGNMENTS)
def test_a_care_team_assignment_is_judged_alike_on_every_path(paths, row, want_import, want_entry):
    """care_team.csv, the patient page's 团队指派 form and ``POST /api/patients/{id}/team``: a member of
    another village, another township or the county is refused with MEMBER_OUT_OF_SCOPE naming the
    member, its region and the patient's; the form shows the message (422) and offers only the members
    it accepts."""
    _more_members(paths.database)
    row = {**row, "from_on": "2026-06-01"}
    pid = row["patient_id"]

    def forget() -> None:
        with paths.database.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM care_team_assignment"))

    _same(paths, "care_team", row, want_import, want_entry, f"/api/patients/{pid}/team", f"/patients/{pid}/team", row,
          after_accept=forget)
    if "MEMBER_OUT_OF_SCOPE" in want_entry:
        _, _, messages = paths.via_api(f"/api/patients/{pid}/team", _entry_body(row))
        message = next(m for m in messages if row["member_id"] in m and "服务" in m)
        assert "团队成员" in message and "本村或本乡镇" in message
    options = paths.client.get(f"/api/patients/{pid}/team", headers={"Authorization": f"Bearer {paths.token}"}).json()
    offered = {m["member_id"] for m in options["members"]}
    accepted = not ({"MEMBER_OUT_OF_SCOPE"} & want_entry)
    assert (row["member_id"] in offered) == accepted, offered
