"""Issue 13 part 1: patient edits with history, and moves between townships (迁出/迁入).

Database tests run on SQLite and PostgreSQL (``database`` fixture), through the real app
(TestClient), the real scheduler and the real tables — no mocks. The pure rules
(``registry.patient_edits``) are checked with hypothesis.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given, settings, strategies as st

from registry import patient_edits, validation
from registry.web.app import create_app
from schedules.generation import generate
from web_support import PASSWORD, TODAY, USERS, seed, session_token

VALID_ID = "440781198001010011"  # GB 11643 check digit valid, born 1980-01-01
CURRENT = {"name": "李二", "sex": 1, "birth_date": date(1980, 1, 1), "id_number": None, "village_code": "V1",
           "address": None, "phone": None, "diagnosis": "schizophrenia", "diagnosed_on": None,
           "registered_on": date(2025, 1, 10), "report_type": 2, "consent": 1, "guardian_name": "李母",
           "guardian_phone": None, "economic_status": 2, "status": "active", "status_on": None, "lai_drug": None,
           "lai_interval_weeks": None, "lai_last_on": None, "status_detail": None, "guardian_reward": False,
           "lai_dose": None}


# ---------------------------------------------------------------- pure rules

def test_only_changed_fields_become_history_and_identity_needs_a_reason():
    edit, issues = patient_edits.plan_edit(CURRENT, {"guardian_name": "李父", "address": "东坑村2号", "name": "李二"},
                                           today=TODAY)
    assert issues == []
    assert [(c.field, c.old, c.new) for c in edit.changes] == [("address", None, "东坑村2号"), ("guardian_name", "李母", "李父")]
    assert edit.replans  # guardian (rules.md §6)
    edit, issues = patient_edits.plan_edit(CURRENT, {"name": "李贰", "consent": "0"}, today=TODAY)
    assert [i.code for i in issues] == ["REASON_REQUIRED"] and issues[0].column == "reason"
    assert "姓名" in issues[0].message and "知情同意" in issues[0].message
    edit, issues = patient_edits.plan_edit(CURRENT, {"name": "李贰", "reason": "户籍更正"}, today=TODAY)
    assert issues == [] and edit.reason == "户籍更正" and not edit.replans


def test_the_whole_row_is_checked_as_the_import_checks_it():
    _edit, issues = patient_edits.plan_edit(CURRENT, {"id_number": VALID_ID[:-1] + "9", "reason": "x"}, today=TODAY)
    assert [i.column for i in issues] == ["id_number"]
    _edit, issues = patient_edits.plan_edit(CURRENT, {"lai_drug": "帕利哌酮"}, today=TODAY)
    assert [i.code for i in issues] == ["LAI_INCOMPLETE"]
    _edit, issues = patient_edits.plan_edit(CURRENT, {"status": "dead", "reason": "死亡"}, today=TODAY)
    assert [i.code for i in issues] == ["STATUS_DATE_REQUIRED"]
    _edit, issues = patient_edits.plan_edit(CURRENT, {"registered_on": "2030-01-01", "name": "", "reason": "x"}, today=TODAY)
    assert {i.code for i in issues} == {"FUTURE_DATE", "REQUIRED"}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["guardian_name", "guardian_phone", "address", "phone", "economic_status",
                                        "guardian_reward", "consent", "report_type"]),
                       st.sampled_from(["", "1", "2", "李", "13800000000"]), max_size=6))
def test_changes_are_exactly_the_fields_whose_stored_value_differs(raw):
    edit, issues = patient_edits.plan_edit(CURRENT, {**raw, "reason": "核对"}, today=TODAY)
    bad = {i.column for i in issues}
    if not issues:
        assert edit.changed == {k for k in raw if patient_edits.as_text(edit.values[k]) != patient_edits.as_text(CURRENT[k])}
        assert edit.changed <= set(raw)
    else:
        assert bad <= set(raw)  # a refused value is named by its field


def test_every_spec_is_editable_and_a_new_spec_needs_no_code():
    from registry.web.edit_routes import edit_sections

    on_form = {w.name for _t, ws in edit_sections() for w in ws}
    assert on_form == {s.name for s in patient_edits.editable_specs()}
    spec = validation.FieldSpec("household_type", "户别", validation.text(20))
    validation.PATIENT_EXTRA_FIELDS.append(spec)
    try:
        assert "household_type" in patient_edits.editable_names()
        assert "household_type" in {w.name for _t, ws in edit_sections() for w in ws}
    finally:
        validation.PATIENT_EXTRA_FIELDS.remove(spec)


# ---------------------------------------------------------------- through the app, both databases

@pytest.fixture
def web(database):
    seed(database.engine)
    generate(database.engine, as_of=TODAY)  # the real scheduler's tasks
    client = TestClient(create_app(database.engine, today=lambda: TODAY), follow_redirects=False)
    tokens = {u: session_token(database.engine, u) for u in USERS}
    return client, tokens, database


def h(tokens, username):
    return {"Authorization": f"Bearer {tokens[username]}"}


def rows(database, sql, **params):
    with database.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def open_tasks(database, pid):
    return rows(database, "SELECT kind, roles, nominal_due_on, basis FROM visit_task WHERE patient_id = :p AND status = 'open'"
                " ORDER BY kind", p=pid)


def snapshot(database):
    """What a refused write must leave untouched."""
    return (rows(database, "SELECT * FROM patient ORDER BY patient_id"), database.count("patient_change"),
            database.count("patient_transfer"), rows(database, "SELECT id, status, roles FROM visit_task ORDER BY id"),
            rows(database, "SELECT action FROM audit_log WHERE action = 'write'"))


def test_edit_writes_history_and_replans_at_once(web):
    client, tokens, database = web
    assert [t.roles for t in open_tasks(database, "P2") if t.kind == "follow_up"] == ["doctor"]
    r = client.patch("/api/patients/P2", json={"economic_status": 1, "guardian_phone": "13800000002"}, headers=h(tokens, "doc"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["replanned"] is True
    assert body["changes"] == [{"field": "guardian_phone", "old_value": None, "new_value": "13800000002"},
                               {"field": "economic_status", "old_value": "2", "new_value": "1"}]
    history = rows(database, "SELECT field, old_value, new_value, actor, reason FROM patient_change WHERE patient_id = 'P2'"
                   " ORDER BY id")
    assert [tuple(x) for x in history] == [("guardian_phone", None, "13800000002", "doc", None),
                                           ("economic_status", "2", "1", "doc", None)]
    # rules.md §6: civil affairs joins a poor patient's visits — the task changed in the same request
    assert [t.roles for t in open_tasks(database, "P2") if t.kind == "follow_up"] == ["doctor,civil_affairs"]
    assert rows(database, "SELECT detail FROM audit_log WHERE action = 'write' AND object_id = 'P2'")[0].detail.startswith("修改 2 项")
    # the same values again: nothing to write
    again = client.patch("/api/patients/P2", json={"economic_status": "1"}, headers=h(tokens, "doc"))
    assert again.status_code == 200 and again.json()["changes"] == [] and database.count("patient_change") == 2

    api = client.get("/api/patients/P2/history", headers=h(tokens, "doc")).json()
    assert [c["field"] for c in api["changes"]] == ["economic_status", "guardian_phone"]  # newest first
    assert api["changes"][0]["new_shown"] == "1 贫困" and api["changes"][0]["label"] == "经济状况"
    assert rows(database, "SELECT actor FROM audit_log WHERE action = 'read' AND object_type = 'patient_history'")


def test_consent_withdrawn_needs_a_reason_then_cancels_the_tasks(web):
    client, tokens, database = web
    before = snapshot(database)
    r = client.patch("/api/patients/P2", json={"consent": 0}, headers=h(tokens, "doc"))
    assert r.status_code == 422 and r.json()["error"] == "REASON_REQUIRED"
    assert "知情同意" in r.json()["message"]
    assert snapshot(database) == before  # nothing written
    r = client.patch("/api/patients/P2", json={"consent": "0", "reason": "家属撤回同意"}, headers=h(tokens, "admin"))
    assert r.status_code == 200
    assert open_tasks(database, "P2") == []  # rules.md §5: refusing type-2 patient owes no task
    assert rows(database, "SELECT reason, actor FROM patient_change WHERE field = 'consent'")[0] == ("家属撤回同意", "admin")


def test_other_township_doctor_and_list_roles_cannot_edit(web):
    client, tokens, database = web
    before = snapshot(database)
    for user, code in (("doc2", "PATIENT_FORBIDDEN"), ("police", "ROLE_FORBIDDEN"), ("civil", "ROLE_FORBIDDEN")):
        r = client.patch("/api/patients/P1", json={"guardian_name": "某人"}, headers=h(tokens, user))
        assert r.status_code == 403 and r.json()["error"] == code, (user, r.text)
        assert client.get("/api/patients/P1/history", headers=h(tokens, user)).status_code == 403
        assert client.post("/api/patients/P1/transfer", json={"to_township": "T2"}, headers=h(tokens, user)).status_code == 403
    after = snapshot(database)
    assert after[:4] == before[:4] and after[4] == before[4]
    # a doctor cannot slip a patient into another township by editing the village
    r = client.patch("/api/patients/P1", json={"village_code": "V3"}, headers=h(tokens, "doc"))
    assert r.status_code == 422 and r.json()["error"] == "VILLAGE_OUT_OF_SCOPE", r.text
    r = client.patch("/api/patients/P1", json={"village_code": "V2", "nickname": "x"}, headers=h(tokens, "doc"))
    assert r.status_code == 422 and {i["code"] for i in r.json()["issues"]} == {"UNKNOWN_FIELD"}
    assert snapshot(database)[:3] == before[:3]
    r = client.patch("/api/patients/P1", json={"village_code": "V2"}, headers=h(tokens, "doc"))  # same township
    assert r.status_code == 200 and r.json()["changes"] == [{"field": "village_code", "old_value": "V1", "new_value": "V2"}]


def test_id_number_is_masked_in_the_history_except_for_the_doctor(web):
    client, tokens, _database = web
    r = client.patch("/api/patients/P2", json={"id_number": VALID_ID, "reason": "补录"}, headers=h(tokens, "doc"))
    assert r.status_code == 200
    doc = client.get("/api/patients/P2/history", headers=h(tokens, "doc")).json()["changes"][0]
    admin = client.get("/api/patients/P2/history", headers=h(tokens, "admin")).json()["changes"][0]
    assert doc["new_value"] == VALID_ID and admin["new_value"] == "440781********0011"


def test_move_out_and_accept_gives_a_first_visit_within_14_days(web):
    client, tokens, database = web
    assert client.post("/api/patients/P2/transfer", json={"to_township": "T1"}, headers=h(tokens, "doc")).json()["error"] \
        == "SAME_TOWNSHIP"
    r = client.post("/api/patients/P2/transfer", json={"to_township": "T2", "reason": "随子女迁居"}, headers=h(tokens, "doc"))
    assert r.status_code == 201 and r.json()["outcome"] == "pending" and r.json()["outcome_label"] == "待接收"
    move = r.json()["id"]
    again = client.post("/api/patients/P2/transfer", json={"to_township": "T2"}, headers=h(tokens, "doc"))
    assert again.status_code == 409 and again.json()["error"] == "TRANSFER_PENDING"
    # the sending side keeps the patient (and its tasks) until the move is accepted
    assert rows(database, "SELECT village_code FROM patient WHERE patient_id = 'P2'")[0][0] == "V1"
    pending = client.get("/api/transfers", headers=h(tokens, "doc2")).json()["pending"]
    assert [(p["patient_id"], p["from_township"], p["name"]) for p in pending] == [("P2", "T1", "李二")]
    assert client.get("/api/transfers", headers=h(tokens, "doc")).json()["pending"] == []
    # only the receiving township decides; the village must be one of its own
    assert client.post(f"/api/transfers/{move}/accept", json={"village_code": "V1"}, headers=h(tokens, "doc")).status_code == 403
    bad = client.post(f"/api/transfers/{move}/accept", json={"village_code": "V1"}, headers=h(tokens, "doc2"))
    assert bad.status_code == 422 and bad.json()["error"] == "VILLAGE_OUT_OF_SCOPE"
    ok = client.post(f"/api/transfers/{move}/accept", json={"village_code": "V3"}, headers=h(tokens, "doc2"))
    assert ok.status_code == 200 and ok.json()["outcome"] == "accepted" and ok.json()["to_village"] == "V3"
    assert client.post(f"/api/transfers/{move}/refuse", json={"reason": "x"}, headers=h(tokens, "doc2")).status_code == 409

    patient = rows(database, "SELECT village_code, registered_on, status FROM patient WHERE patient_id = 'P2'")[0]
    assert (patient[0], str(patient[1]), patient[2]) == ("V3", TODAY.isoformat(), "active")
    # rules.md §5 "transferred in": first visit, face-to-face, due registration + 14 days; the old chain closed
    tasks = [t for t in open_tasks(database, "P2") if t.kind != "health_check"]
    assert [(t.kind, str(t.nominal_due_on), t.basis) for t in tasks] == [
        ("first_visit", (TODAY + timedelta(days=14)).isoformat(), f"registration:{TODAY.isoformat()}")]
    # the old chain's task was closed by no follow-up: cancelled as replaced by the transfer in, not done
    assert rows(database, "SELECT kind, status, close_reason, closed_by FROM visit_task WHERE patient_id = 'P2'"
                          " AND status <> 'open' ORDER BY id") == [("follow_up", "cancelled", "re_registered", None)]
    # the patient now belongs to the receiving township
    assert client.get("/api/patients/P2", headers=h(tokens, "doc2")).status_code == 200
    assert client.get("/api/patients/P2", headers=h(tokens, "doc")).status_code == 403
    # both sides keep the move; the receiving side the field history
    assert [t["outcome"] for t in client.get("/api/transfers", headers=h(tokens, "doc")).json()["transfers"]] == ["accepted"]
    fields = [c["field"] for c in client.get("/api/patients/P2/history", headers=h(tokens, "doc2")).json()["changes"]]
    assert sorted(fields) == ["registered_on", "transfer_accepted", "transfer_out", "village_code"]


def test_move_out_refused_with_a_reason_returns_the_patient(web):
    client, tokens, database = web
    move = client.post("/api/patients/P3/transfer", json={"to_township": "T2"}, headers=h(tokens, "doc")).json()["id"]
    before = snapshot(database)
    r = client.post(f"/api/transfers/{move}/refuse", json={}, headers=h(tokens, "doc2"))
    assert r.status_code == 422 and r.json()["error"] == "REASON_REQUIRED"
    assert snapshot(database) == before
    r = client.post(f"/api/transfers/{move}/refuse", json={"reason": "查无此人"}, headers=h(tokens, "doc2"))
    assert r.status_code == 200 and r.json()["outcome"] == "refused" and r.json()["refusal_reason"] == "查无此人"
    patient = rows(database, "SELECT village_code, registered_on, status FROM patient WHERE patient_id = 'P3'")[0]
    assert (patient[0], str(patient[1]), patient[2]) == ("V2", "2025-01-10", "active")
    assert snapshot(database)[3] == before[3]  # the tasks untouched: the patient stays where it was
    history = client.get("/api/patients/P3/history", headers=h(tokens, "doc")).json()
    assert [(c["field"], c["reason"]) for c in history["changes"]] == [("transfer_refused", "查无此人"), ("transfer_out", None)]
    assert [t["outcome"] for t in history["transfers"]] == ["refused"]
    # a new move may be asked for once the first was refused
    assert client.post("/api/patients/P3/transfer", json={"to_township": "T2"}, headers=h(tokens, "doc")).status_code == 201


def test_the_database_keeps_one_pending_move_per_patient(web, monkeypatch):
    client, tokens, database = web
    assert client.post("/api/patients/P2/transfer", json={"to_township": "T2"}, headers=h(tokens, "doc")).status_code == 201
    insert = sa.text("INSERT INTO patient_transfer (patient_id, from_township, to_township, from_village, requested_at,"
                     " requested_by, outcome) VALUES ('P2', 'T1', 'T2', 'V1', :at, 'x', :outcome)")
    with pytest.raises(sa.exc.IntegrityError):  # uq_patient_transfer_pending, on SQLite as on PostgreSQL
        with database.engine.begin() as conn:
            conn.execute(insert, {"at": "2026-11-01 00:00:00+00:00", "outcome": "pending"})
    with database.engine.begin() as conn:  # decided moves are not limited
        conn.execute(insert, {"at": "2026-11-01 00:00:00+00:00", "outcome": "refused"})
    # two requests racing past the check (simulated: the check sees no pending move): the second gets the
    # same 409 as the check gives, and writes nothing
    from registry.web import edits
    monkeypatch.setattr(edits, "_pending", lambda session, patient_id: None)
    before = snapshot(database)
    again = client.post("/api/patients/P2/transfer", json={"to_township": "T2"}, headers=h(tokens, "doc"))
    assert again.status_code == 409 and again.json()["error"] == "TRANSFER_PENDING"
    assert snapshot(database) == before
    assert rows(database, "SELECT count(*) FROM patient_transfer WHERE patient_id = 'P2' AND outcome = 'pending'")[0][0] == 1


# ---------------------------------------------------------------- the pages

def login(client, username):
    form = client.get("/login")
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf(form.text)})
    assert r.status_code == 303


def csrf(text):
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def test_the_edit_form_history_tab_and_the_pending_list(web):
    client, _tokens, database = web
    login(client, "doc")
    page = client.get("/patients/P2/edit")
    assert page.status_code == 200 and 'name="guardian_name"' in page.text and 'value="李母"' in page.text
    assert 'href="/patients/P2/history"' in client.get("/patients/P2").text  # the 变更记录 tab
    form = {k: v for k, v in re.findall(r'<input id="i-([a-z_]+)" name="\1" type="(?:text|date)"[^>]*value="([^"]*)"', page.text)}
    form.update({"csrf_token": csrf(page.text), "name": "李贰"})
    bad = client.post("/patients/P2/edit", data=form)
    assert bad.status_code == 422 and "必须填写变更原因" in bad.text and database.count("patient_change") == 0
    saved = client.post("/patients/P2/edit", data={**form, "reason": "身份证核对"})
    assert saved.status_code == 303 and saved.headers["location"] == "/patients/P2/history?saved=1"
    history = client.get(saved.headers["location"])
    assert history.status_code == 200 and "李贰" in history.text and "身份证核对" in history.text and "姓名" in history.text
    moved = client.post("/patients/P2/transfer", data={"csrf_token": csrf(page.text), "to_township": "T2"})
    assert moved.status_code == 303

    other = TestClient(client.app, follow_redirects=False)
    login(other, "doc2")
    listing = other.get("/transfers")
    assert listing.status_code == 200 and "李贰" in listing.text and "台城街道" in listing.text
    move = rows(database, "SELECT id FROM patient_transfer")[0][0]
    r = other.post(f"/transfers/{move}/accept", data={"csrf_token": csrf(listing.text), "village_code": ""})
    assert r.status_code == 422 and "接收村(社区)不能为空" in r.text
    r = other.post(f"/transfers/{move}/accept", data={"csrf_token": csrf(listing.text), "village_code": "V3"})
    assert r.status_code == 303 and rows(database, "SELECT village_code FROM patient WHERE patient_id = 'P2'")[0][0] == "V3"
    # another township's doctor posting the edit form: 403, nothing written
    before = database.count("patient_change")
    r = other.post("/patients/P1/edit", data={"csrf_token": csrf(listing.text), "guardian_name": "某人"})
    assert r.status_code == 403 and database.count("patient_change") == before


def test_a_stored_problem_blocks_only_a_change_of_its_own_field():
    legacy = {**CURRENT, "id_number": VALID_ID[:-1] + "8"}  # imported before the check digit was verified
    edit, issues = patient_edits.plan_edit(legacy, {"id_number": legacy["id_number"], "guardian_name": "李父"}, today=TODAY)
    assert issues == [] and edit.changed == {"guardian_name"}
    _edit, issues = patient_edits.plan_edit(legacy, {"id_number": VALID_ID[:-1] + "7", "reason": "更正"}, today=TODAY)
    assert [i.column for i in issues] == ["id_number"]


def test_a_new_last_injection_on_the_plan_becomes_a_history_row(web):
    """contract.md injections.csv: the plan's last injection is the latest injection row, whichever path
    wrote it — an edit of the LAI plan adds the row (registry.injections.record_last_injection)."""
    client, tokens, database = web
    before = database.count("injection")
    r = client.patch("/api/patients/P2", json={"lai_drug": "棕榈酸帕利哌酮", "lai_interval_weeks": 4,
                                               "lai_last_on": "2026-05-20"}, headers=h(tokens, "doc"))
    assert r.status_code == 200, r.text
    history = rows(database, "SELECT given_on, drug FROM injection WHERE patient_id = 'P2' ORDER BY given_on")
    assert [(str(x.given_on)[:10], x.drug) for x in history][-1] == ("2026-05-20", "棕榈酸帕利哌酮")
    assert database.count("injection") == before + 1


def test_one_line_fields_are_wrapping_boxes_and_a_line_break_is_a_space(web):
    """修改信息 (session 13): a long 现住址 was cut off in a 280 px input. Long one-line fields are boxes
    across the form that wrap (forms.py "longtext"); a line break typed or pasted into one is saved as a
    space (even without the page's script), while the API refuses it as every path does (BAD_TEXT)."""
    client, tokens, database = web
    login(client, "doc")
    page = client.get("/patients/P2/edit")
    for name in ("address", "guardian_address", "diagnosing_hospital", "status_detail", "reason"):
        assert re.search(rf'<div class="field[^"]* wide[^"]*" id="f-{name}">\s*<label[^>]*>[^<]*</label>\s*'
                         rf'<textarea id="i-{name}" name="{name}" rows="1" class="oneline"', page.text), name
    r = client.post("/patients/P2/edit", data={"csrf_token": csrf(page.text), "address": "幸福路\r\n8号（村委会\n后面）",
                                               "guardian_address": "同上\n", "reason": "门牌\r核对"})
    assert r.status_code == 303, r.text
    assert rows(database, "SELECT address, guardian_address FROM patient WHERE patient_id = 'P2'")[0] == \
        ("幸福路 8号（村委会 后面）", "同上")
    api = client.patch("/api/patients/P2", headers=h(tokens, "doc"), json={"address": "幸福路\n9号"})
    assert api.status_code == 422 and api.json()["issues"][0]["code"] == "BAD_TEXT"
    assert "现住址" in api.json()["issues"][0]["message"]
