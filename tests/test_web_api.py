"""JSON API: login, the scope matrix over every route for every role, errors, audit rows.

Runs on SQLite and PostgreSQL (``database`` fixture); the app runs in-process on the real
database (no mocks).
"""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from registry.rates.indicators import INDICATOR_KEYS
from registry.web.app import create_app
from web_support import ID_P1, PASSWORD, TODAY, USERS, VISIBLE, seed, seed_tasks, session_token

ALL_PATIENTS = ["P1", "P2", "P3", "P4", "P5", "NOPE"]


@pytest.fixture
def web(database):
    ids = seed(database.engine)
    seed_tasks(database.engine)
    app = create_app(database.engine, today=lambda: TODAY)
    client = TestClient(app)
    tokens = {username: session_token(database.engine, username) for username in USERS}
    return client, tokens, ids, database


def auth(tokens, username):
    return {"Authorization": f"Bearer {tokens[username]}"}


def audit_rows(database, **where):
    clauses = " AND ".join(f"{k} = :{k}" for k in where)
    with database.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT actor, action, object_type, object_id, region_code, source FROM audit_log"
                                    f"{' WHERE ' + clauses if clauses else ''} ORDER BY id"), where).all()


def test_login_wrong_password_is_401_with_stable_code(web):
    client, _tokens, _ids, database = web
    ok = client.post("/api/session", json={"username": "police", "password": PASSWORD})
    assert ok.status_code == 200 and ok.json()["role"] == "police"
    assert client.get("/api/me", headers={"Authorization": "Bearer " + ok.json()["token"]}).json()["username"] == "police"
    r = client.post("/api/session", json={"username": "doc", "password": "wrong-password"})
    assert r.status_code == 401
    assert r.json()["error"] == "LOGIN_FAILED"
    assert r.json()["message"] == "用户名或密码错误"
    assert [row.action for row in audit_rows(database, actor="doc", action="login")][-1] == "login"


ROUTES = [
    ("GET", "/api/me"), ("GET", "/api/worklist"), ("GET", "/api/patients"), ("GET", "/api/patients/P1"),
    ("POST", "/api/patients"), ("POST", "/api/patients/P1/follow-ups"), ("POST", "/api/patients/P1/status"),
    ("POST", "/api/follow-ups/1/attendance"), ("GET", "/api/rates"), ("GET", "/api/audit"), ("DELETE", "/api/session"),
    ("POST", "/api/follow-ups/1/participants"),  # issue 14 (rules.md §6.2)
    ("POST", "/api/patients/P1/health-checks"), ("POST", "/api/patients/P1/injections"),
    ("POST", "/api/me/password"),  # issue 18
    ("GET", "/api/ledger"),  # issue 15
    ("PATCH", "/api/patients/P1"), ("GET", "/api/patients/P1/history"), ("POST", "/api/patients/P1/transfer"),  # issue 13
    ("GET", "/api/transfers"), ("POST", "/api/transfers/1/accept"), ("POST", "/api/transfers/1/refuse"),
    ("GET", "/api/guardian-years"), ("GET", "/api/guardian-years/P1/2026"), ("POST", "/api/guardian-years"),  # issue 14
    ("POST", "/api/guardian-years/P1/2026/decision"), ("POST", "/api/guardian-years/P1/2026/payment"),
    ("GET", "/api/lists/archive"), ("POST", "/api/lists/rows/7/sign-ins"),  # issue 15: the 五单 archive
    ("POST", "/api/patients/P1/emergencies"), ("PATCH", "/api/emergencies/1"), ("GET", "/api/emergencies/1"),
    ("GET", "/api/emergencies/overdue"), ("GET", "/api/emergencies/open"),  # issue 15: 应急处置
    ("GET", "/api/patients/P1/team"), ("POST", "/api/patients/P1/team"), ("POST", "/api/patients/P1/team/1/end"),
    ("GET", "/api/gaps"),  # issue 14
    ("POST", "/api/tasks/3/appointments"), ("POST", "/api/appointments/4/reply"),  # issue 14: 联合入户预约
]


def test_every_route_needs_login(web):
    client, *_ = web
    documented = {(m.upper(), path) for path, ops in client.get("/openapi.json").json()["paths"].items() for m in ops}
    templated = {(m, p.replace("P1", "{patient_id}").replace("/transfers/1/", "/transfers/{transfer_id}/")
                  .replace("/team/1/", "/team/{assignment_id}/").replace("/emergencies/1", "/emergencies/{emergency_id}")
                  .replace("/tasks/3/", "/tasks/{task_id}/").replace("/appointments/4/", "/appointments/{appointment_id}/")
                  .replace("/1/", "/{follow_up_id}/").replace("/7/", "/{row_id}/").replace("/2026", "/{year}"))
                 for m, p in ROUTES}
    assert documented == templated | {("POST", "/api/session")}  # the matrix covers every API route
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer forged-token"}):
            r = client.request(method, path, json={} if method in ("POST", "PATCH") else None, headers=headers)
            assert r.status_code == 401, (method, path)
            assert r.json()["error"] == "NOT_AUTHENTICATED"


def _patient_matrix(client, tokens, username):
    seen = {}
    for pid in ALL_PATIENTS:
        r = client.get(f"/api/patients/{pid}", headers=auth(tokens, username))
        seen[pid] = r.status_code
        if r.status_code == 403:
            assert r.json()["error"] == "PATIENT_FORBIDDEN"
    return seen


def test_scope_matrix_reads(web):
    for username in USERS:
        _scope_matrix_reads(web, username)


def _scope_matrix_reads(web, username):
    """Every read route × every role: who sees which patient; list roles never see diagnosis or medication."""
    client, tokens, _ids, database = web
    h = auth(tokens, username)
    role = USERS[username][0]
    seen = _patient_matrix(client, tokens, username)
    assert {pid for pid, code in seen.items() if code == 200} == VISIBLE[username]
    assert {pid for pid, code in seen.items() if code == 403} == set(ALL_PATIENTS) - VISIBLE[username]

    listed = client.get("/api/patients", params={"q": ""}, headers=h)
    assert listed.status_code == 200
    assert {p["patient_id"] for p in listed.json()["patients"]} == VISIBLE[username]

    me = client.get("/api/me", headers=h).json()
    assert (me["role"], me["region_code"]) == USERS[username]

    worklist = client.get("/api/worklist", params={"all": "true"}, headers=h)
    assert worklist.status_code == 200
    assert {r["patient_id"] for r in worklist.json()["rows"]} <= VISIBLE[username]
    if role in ("police", "civil_affairs"):  # only the joint visits they take part in
        assert worklist.json()["rows"] and all(role in r["roles"] for r in worklist.json()["rows"])

    for pid in VISIBLE[username]:
        text = client.get(f"/api/patients/{pid}", headers=h).text
        body = json.loads(text)
        if role in ("police", "civil_affairs"):
            assert "diagnosis" not in body and "diagnosis_label" not in body
            assert "follow_ups" not in body and "medication" not in text
            assert "精神分裂症" not in text and "利培酮" not in text
        else:
            assert body["diagnosis_label"] == "精神分裂症"
        if pid == "P1":
            # rules.md §8: the unmasked ID only on the doctor's own patient page
            expected = ID_P1 if role == "township_doctor" else "440781********0018"
            assert body["id_number"] == expected

    rates = client.get("/api/rates", params={"month": "2026-05"}, headers=h)
    audit = client.get("/api/audit", headers=h)
    if role == "county_admin":
        assert rates.status_code == 200
        body = rates.json()
        assert body["month"] == "2026-05" and body["as_of"] == "2026-05-31" and body["region"] == "C"
        assert list(body["indicators"]) == list(INDICATOR_KEYS)
        # 在册 at the end of May: P1–P4 (P5 died); T1 holds P1–P3, T2 holds P4
        assert body["indicators"]["registered"]["numerator"] == 4
        assert {c["region"]: c["indicators"]["registered"]["numerator"] for c in body["children"]} == {"T1": 3, "T2": 1}
        assert body["indicators"]["reported_prevalence"]["denominator"] == 7500  # the villages' population
        assert audit.status_code == 200
        assert any(r["action"] == "read" and r["object_id"] == "P1" for r in audit.json()["rows"])
    else:
        assert rates.status_code == 403 and rates.json()["error"] == "ROLE_FORBIDDEN"
        assert audit.status_code == 403 and audit.json()["error"] == "ROLE_FORBIDDEN"

    reads = audit_rows(database, actor=username, action="read", object_type="patient")
    assert {row.object_id for row in reads} == VISIBLE[username]
    assert all(row.source == "testclient" for row in reads)
    assert audit_rows(database, actor=username, action="search")
    if "P1" in VISIBLE[username]:
        assert ("patient", "P1", "V1") in {(r.object_type, r.object_id, r.region_code) for r in reads}


@pytest.mark.parametrize("username", list(USERS))
def test_scope_matrix_writes(web, username):
    """Every write route × every role."""
    client, tokens, ids, database = web
    h = auth(tokens, username)
    role = USERS[username][0]
    new_patient = {"patient_id": f"N-{username}", "name": "新患者", "sex": "2", "birth_date": "1990-02-03",
                   "village_code": "V1", "diagnosis": "F20.0", "registered_on": "2026-06-01"}
    r_new = client.post("/api/patients", json=new_patient, headers=h)
    r_fu = client.post("/api/patients/P1/follow-ups", json={"visit_on": "2026-06-09", "mode": 2, "risk_level": 1,
                                                           "insight": 1, "attended_police": True}, headers=h)
    r_status = client.post("/api/patients/P2/status", json={"status": "moved_out", "status_on": "2026-06-05",
                                                           "status_detail": "广州市"}, headers=h)
    r_att = client.post(f"/api/follow-ups/{ids['f1']}/attendance", json={"attended": True}, headers=h)
    r_parts = client.post(f"/api/follow-ups/{ids['f1']}/participants",
                          json={"participants": [{"role": "village", "member_id": "M-VIL", "present": False,
                                                  "reason": "外出开会"}]}, headers=h)
    if role == "township_doctor":
        expected = (200, None) if username == "doc" else (403, "PATIENT_FORBIDDEN")
    else:
        expected = (403, "ROLE_FORBIDDEN")
    assert (r_parts.status_code, r_parts.json().get("error")) == expected, r_parts.text
    if username == "doc":
        assert (r_new.status_code, r_fu.status_code, r_status.status_code) == (201, 201, 200), (r_new.text, r_fu.text, r_status.text)
        writes = audit_rows(database, actor="doc", action="write")
        assert {row.object_type for row in writes} == {"patient", "follow_up", "follow_up_participant"}
        assert all(row.source == "testclient" for row in writes)
    elif username == "doc2":  # a doctor, but P1/P2 and V1 are in the other township
        assert r_fu.status_code == 403 and r_fu.json()["error"] == "PATIENT_FORBIDDEN"
        assert r_status.status_code == 403
        assert r_new.status_code == 422
        assert r_new.json()["issues"][0]["code"] == "VILLAGE_OUT_OF_SCOPE"
    else:
        for r in (r_new, r_fu, r_status):
            assert r.status_code == 403 and r.json()["error"] == "ROLE_FORBIDDEN"
    if role == "police":
        assert r_att.status_code == 200 and r_att.json() == {"follow_up_id": ids["f1"], "role": "police", "member_id": None,
                                                      "attended": True}  # the "police" account: the unnamed row
        assert audit_rows(database, actor="police", action="write", object_type="follow_up_participant")
    elif role == "civil_affairs":
        assert r_att.status_code == 403 and r_att.json()["error"] == "PATIENT_FORBIDDEN"
    else:
        assert r_att.status_code == 403 and r_att.json()["error"] == "ROLE_FORBIDDEN"
    assert client.delete("/api/session", headers=h).status_code == 200
    assert client.get("/api/me", headers=h).status_code == 401


def test_follow_up_validation_names_fields_in_chinese(web):
    client, tokens, _ids, database = web
    before = database.count("follow_up")
    r = client.post("/api/patients/P1/follow-ups", headers=auth(tokens, "doc"),
                    json={"visit_on": "2026-02-30", "risk_level": 4, "classification": 2, "insight": 7, "colour": "red"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "INVALID_INPUT"
    by_field = {i["column"]: i for i in body["issues"]}
    assert by_field["visit_on"]["code"] == "BAD_DATE" and "随访日期" in by_field["visit_on"]["message"]
    assert by_field["insight"]["code"] == "BAD_CODE" and "自知力" in by_field["insight"]["message"]
    assert by_field["classification"]["code"] == "CLASSIFICATION_CONFLICT"
    assert by_field["colour"]["code"] == "UNKNOWN_FIELD"
    assert database.count("follow_up") == before


@pytest.mark.parametrize("body,code", [
    ({"visit_on": "2026-06-11", "risk_level": 0}, "FUTURE_DATE"),
    ({"visit_on": "2024-01-01", "risk_level": 0}, "VISIT_BEFORE_REGISTRATION"),
    ({"visit_on": "2026-06-01", "mode": 2}, "RISK_REQUIRED"),
    ({"visit_on": "2026-06-01", "risk_level": "x\u0000"}, "BAD_TEXT"),
    ({"visit_on": "2026-06-01", "risk_level": [1, 2]}, "BAD_VALUE"),
])
def test_bad_follow_up_is_422_never_500(web, body, code):
    client, tokens, *_ = web
    r = client.post("/api/patients/P1/follow-ups", headers=auth(tokens, "doc"), json=body)
    assert r.status_code == 422
    codes = [r.json()["error"]] + [i["code"] for i in r.json().get("issues", [])]
    assert code in codes


def test_death_cancels_and_blocks_later_visits(web):
    client, tokens, _ids, database = web
    h = auth(tokens, "doc")
    r = client.post("/api/patients/P2/status", headers=h, json={"status": "dead", "status_on": "2026-06-02", "status_detail": "心梗"})
    assert r.status_code == 200 and r.json()["status"] == "dead"
    again = client.post("/api/patients/P2/status", headers=h, json={"status": "moved_out", "status_on": "2026-06-03"})
    assert again.status_code == 422 and again.json()["issues"][0]["code"] == "ALREADY_INACTIVE"
    later = client.post("/api/patients/P2/follow-ups", headers=h, json={"visit_on": "2026-06-05", "risk_level": 0})
    assert later.status_code == 422 and later.json()["issues"][0]["code"] == "PATIENT_NOT_ACTIVE"


def test_worklist_order_and_joint_members(web):
    """rules.md §5: overdue first, then risk desc, days overdue desc, due date; joint visits list who to call."""
    client, tokens, *_ = web
    data = client.get("/api/worklist", headers=auth(tokens, "doc")).json()
    assert (data["total"], data["overdue"]) == (2, 1)
    rows = data["rows"]
    assert [(r["patient_id"], r["overdue"], r["days_overdue"]) for r in rows] == [("P1", True, 7), ("P3", False, 0)]
    assert {(m["role"], m["name"]) for m in rows[0]["call"]} == {("police", "刘警官"), ("village", "赵网格员")}
    assert rows[1]["call"] == [{"member_id": "M-CIV", "name": "孙专干", "role": "civil_affairs", "role_label": "民政专干",
                                "phone": "0750-1300", "unassigned": False}]
    every = client.get("/api/worklist", params={"all": "true"}, headers=auth(tokens, "doc")).json()["rows"]
    assert [r["patient_id"] for r in every] == ["P1", "P3", "P2"]
    admin = client.get("/api/worklist", params={"all": "true"}, headers=auth(tokens, "admin")).json()["rows"]
    assert [r["patient_id"] for r in admin] == ["P1", "P4", "P3", "P2"]


@pytest.mark.parametrize("method,path,params", [
    ("GET", "/api/worklist", {"as_of": "not-a-date"}),
    ("GET", "/api/worklist", {"as_of": "1899-01-01"}),
    ("GET", "/api/worklist", {"limit": "0"}),
    ("GET", "/api/rates", {"month": "2026-13"}),
    ("GET", "/api/patients", {"q": "x" * 101}),
    ("GET", "/api/patients", {"q": "a\u0000b"}),
    ("POST", "/api/follow-ups/99999999999/attendance", None),
])
def test_bad_parameters_are_422(web, method, path, params):
    client, tokens, *_ = web
    r = client.request(method, path, params=params, headers=auth(tokens, "admin"), json={"attended": True} if method == "POST" else None)
    assert r.status_code == 422, r.text
    assert r.json()["error"] in ("INVALID_REQUEST", "BAD_MONTH", "BAD_DATE", "BAD_TEXT")
    assert r.json()["message"]


def test_cookie_session_needs_csrf_header_for_writes(web):
    client, *_ = web
    r = client.post("/api/session", json={"username": "doc", "password": PASSWORD})
    csrf = r.json()["csrf_token"]
    cookie_client = TestClient(client.app, cookies={"jf_session": r.json()["token"]})
    body = {"visit_on": "2026-06-09", "risk_level": 0}
    denied = cookie_client.post("/api/patients/P2/follow-ups", json=body)
    assert denied.status_code == 403 and denied.json()["error"] == "CSRF_FAILED"
    ok = cookie_client.post("/api/patients/P2/follow-ups", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


def test_sql_worklist_matches_the_scheduler(web):
    """The paged SQL work list returns the scheduler's open tasks (schedules.worklist.open_tasks), in
    the order this week first (issue 16), then overdue first, then rules.md §5."""
    from schedules.generation import generate
    from schedules.worklist import open_tasks

    from registry.web.queries import worklist_sort_key

    client, tokens, _ids, database = web
    generate(database.engine, as_of=TODAY)  # the real scheduler's tasks next to the seeded ones
    for username, region in (("admin", "C"), ("doc", "T1")):
        expected = sorted(open_tasks(database.engine, as_of=TODAY, region_code=region),
                          key=lambda task: worklist_sort_key(task, as_of=TODAY))
        rows = client.get("/api/worklist", params={"all": "true"}, headers=auth(tokens, username)).json()["rows"]
        assert [(r["patient_id"], r["kind"], r["due_on"]) for r in rows] == \
            [(t["patient_id"], t["kind"], t["due_on"]) for t in expected]
        assert len(rows) > 4


def test_worklist_cache_follows_scheduler_runs(web):
    """Work-list pages are cached until the scheduler records a run (registry/web/cache.py)."""
    from datetime import date

    from sqlmodel import Session

    from schedules.jobs import recorded
    from registry.models import VisitTask

    client, tokens, _ids, database = web
    h = auth(tokens, "doc")
    first = client.get("/api/worklist", headers=h).json()
    with Session(database.engine) as s:  # a task written behind the cache's back
        s.add(VisitTask(patient_id="P2", kind="retry", basis="test:retry", basis_on=date(2026, 5, 1), due_on=date(2026, 6, 5),
                        nominal_due_on=date(2026, 6, 5), roles="doctor", joint=False, rule="test", risk_level=0))
        s.commit()
    assert client.get("/api/worklist", headers=h).json() == first
    recorded(database.engine, "generate", TODAY, "test", lambda: {})
    rows = client.get("/api/worklist", headers=h).json()["rows"]
    assert ("P2", "retry") in {(r["patient_id"], r["kind"]) for r in rows}


def test_health_check_and_injection_close_their_tasks(web):
    """A health check closes the year's health-check task; an injection moves the LAI plan on (rules.md §5)."""
    from datetime import date

    from sqlmodel import Session

    from registry.models import Patient
    from schedules.generation import generate

    client, tokens, _ids, database = web
    with Session(database.engine) as s:
        p2 = s.get(Patient, "P2")
        p2.lai_drug, p2.lai_interval_weeks, p2.lai_last_on = "棕榈酸帕利哌酮", 4, date(2026, 5, 1)
        s.add(p2)
        s.commit()
    generate(database.engine, as_of=TODAY)
    h = auth(tokens, "doc")

    def kinds(pid):
        rows = client.get("/api/worklist", params={"all": "true"}, headers=h).json()["rows"]
        return {r["kind"] for r in rows if r["patient_id"] == pid}

    assert "health_check" in kinds("P1") and "injection" in kinds("P2")
    r = client.post("/api/patients/P1/health-checks", headers=h, json={"checked_on": "2026-06-01"})
    assert r.status_code == 201 and r.json() == {"patient_id": "P1", "checked_on": "2026-06-01"}
    assert "health_check" not in kinds("P1")
    again = client.post("/api/patients/P1/health-checks", headers=h, json={"checked_on": "2026-06-01"})
    assert again.status_code == 422 and again.json()["issues"][0]["code"] == "DUPLICATE"
    future = client.post("/api/patients/P1/health-checks", headers=h, json={"checked_on": "2026-07-01"})
    assert future.status_code == 422 and future.json()["issues"][0]["code"] == "FUTURE_DATE"
    no_plan = client.post("/api/patients/P1/injections", headers=h, json={"given_on": "2026-06-01"})
    assert no_plan.status_code == 422 and no_plan.json()["issues"][0]["code"] == "NO_LAI_PLAN"
    given = client.post("/api/patients/P2/injections", headers=h, json={"given_on": "2026-05-29"})
    assert given.status_code == 201
    record = client.get("/api/patients/P2", headers=h).json()
    assert record["lai_plan"]["last_on"] == "2026-05-29"
    due = [t["due_on"] for t in record["tasks"] if t["kind"] == "injection"]
    assert due and all(d > "2026-06-20" for d in due)  # next due 4 weeks after 05-29, not after 05-01
    police = client.post("/api/patients/P1/health-checks", headers=auth(tokens, "police"), json={"checked_on": "2026-06-02"})
    assert police.status_code == 403
    assert {r.object_type for r in audit_rows(database, actor="doc", action="write")} == {"health_check", "injection"}


def test_region_tree_loads_right_after_boot(database, monkeypatch):
    """Monotonic time starts near 0 when the machine boots: a tree created in the first five minutes
    must still load (it once compared against a 'loaded at 0.0' default and stayed empty)."""
    from registry import regions

    seed(database.engine)
    monkeypatch.setattr(regions.time, "monotonic", lambda: 12.0)  # 12 s after boot
    tree = regions.LiveRegionTree(database.engine)
    assert {"T1", "V1", "V2"} <= tree.descendants("T1") and "V3" not in tree.descendants("T1")
    tree.invalidate()
    assert "V3" in tree.descendants("C")


def test_region_tree_reloads_in_the_background(database):
    """Past its TTL the tree is reloaded on a thread of its own: the caller (a web request on the event
    loop) gets the current tree at once and never waits for the database; the next calls see the new
    tree. After invalidate() the next call loads it itself."""
    import threading

    from registry import regions
    from registry.models import Region
    from tests.waiting import wait_for

    seed(database.engine)
    tree = regions.LiveRegionTree(database.engine)
    tree.load()
    assert "V9" not in tree.descendants("T1")
    with database.engine.begin() as conn:
        conn.execute(sa.insert(Region.__table__).values(code="V9", name="新村", level="village", parent_code="T1"))
    caller = threading.current_thread()
    checkouts: list = []

    def count(*_args) -> None:
        if threading.current_thread() is caller:
            checkouts.append(1)

    sa.event.listen(database.engine, "checkout", count)
    try:
        tree.TTL_SECONDS = 0.0  # the tree is now too old
        assert "V9" not in tree.descendants("T1") and checkouts == []  # the current tree, no database
        wait_for(lambda: "V9" in tree.descendants("T1"), "the background reload", timeout=30)
        assert checkouts == []
        tree.TTL_SECONDS = 300.0
        with database.engine.begin() as conn:
            conn.execute(sa.delete(Region.__table__).where(Region.__table__.c.code == "V9"))
        tree.invalidate()
        assert "V9" not in tree.descendants("T1") and checkouts  # loaded by the caller itself
    finally:
        sa.event.remove(database.engine, "checkout", count)


def test_labels_come_from_the_enums(web):
    """Issue 12: the pages and the API name a task kind, a role and an indicator with the enum's (or the
    indicator definition's) label, the same words as the 五单 (再次随访, not 重访)."""
    from registry.codes import TaskKind
    from registry.models import VisitTask
    from sqlmodel import Session

    from registry import codes
    from registry.rates.indicators import INDICATORS

    client, tokens, _ids, database = web
    with Session(database.engine) as s:
        for i, kind in enumerate(k for k in TaskKind if k != TaskKind.FOLLOW_UP):
            s.add(VisitTask(patient_id="P2", kind=kind.value, basis=f"labels:{i}", basis_on=date(2026, 5, 20),
                            due_on=date(2026, 6, 2), nominal_due_on=date(2026, 6, 2), roles="doctor,police,village,civil_affairs",
                            joint=True, rule="national-2018:test", risk_level=1))
        s.commit()
    rows = client.get("/api/worklist", headers=auth(tokens, "doc")).json()["rows"]
    assert {r["kind"] for r in rows} == {k.value for k in TaskKind}
    for row in rows:
        assert row["kind_label"] == TaskKind(row["kind"]).label
        assert row["role_labels"] == [codes.TeamRole(r).label for r in row["roles"]]
    record = client.get("/api/patients/P2", headers=auth(tokens, "doc")).json()
    assert {t["kind_label"] for t in record["tasks"]} == {k.label for k in TaskKind}
    assert record["team"][-1] == {"member_id": None, "name": "李母", "role": "guardian", "role_label": "监护人", "phone": ""}
    client.cookies.set("jf_session", tokens["doc"])
    page = client.get("/patients/P2").text
    assert "再次随访" in page and "失访查找" in page and "重访" not in page and "查找失访" not in page
    client.cookies.set("jf_session", tokens["admin"])
    dashboard = client.get("/dashboard", params={"month": "2026-05"})
    assert dashboard.status_code == 200
    for indicator in INDICATORS:
        assert f"<th>{indicator.name}" in dashboard.text


def test_write_bodies_are_documented_and_keep_the_validation_codes(web):
    """Typed bodies: the OpenAPI schema names every field (Chinese label as title); the values are still
    refused by registry.validation with its codes, in the order the fields were sent."""
    client, tokens, *_ = web
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    follow_up = schemas["FollowUpBody"]
    assert follow_up["additionalProperties"] is False
    assert follow_up["properties"]["visit_on"]["title"] == "随访日期" and "attended_police" in follow_up["properties"]
    assert {"array"} <= {s.get("type") for s in follow_up["properties"]["symptoms"]["anyOf"]}
    assert set(schemas["HealthCheckBody"]["properties"]) == {"checked_on"}
    assert set(schemas["InjectionBody"]["properties"]) == {"given_on"}
    assert set(schemas["StatusBody"]["properties"]) == {"status", "status_on", "status_detail"}
    assert {"patient_id", "name", "village_code", "registered_on"} <= set(schemas["PatientBody"]["properties"])
    for body in ({"zeta": 1, "visit_on": "2026-06-01", "alpha": 2, "risk_level": 1},
                 {"alpha": 2, "visit_on": "2026-06-01", "zeta": 1, "risk_level": 1}):
        r = client.post("/api/patients/P1/follow-ups", headers=auth(tokens, "doc"), json=body)
        assert r.status_code == 422 and r.json()["error"] == "INVALID_INPUT"
        unknown = [i["column"] for i in r.json()["issues"] if i["code"] == "UNKNOWN_FIELD"]
        assert unknown == [k for k in body if k in ("alpha", "zeta")]
        assert r.json()["message"].startswith(f"未知字段：{unknown[0]}")
    for body in ({"risk_level": [1], "mode": [2]}, {"mode": [2], "risk_level": [1]}):  # declared order: mode first
        r = client.post("/api/patients/P1/follow-ups", headers=auth(tokens, "doc"), json={"visit_on": "2026-06-01", **body})
        bad = [i["column"] for i in r.json()["issues"] if i["code"] == "BAD_VALUE"]
        assert r.status_code == 422 and bad == list(body) and r.json()["message"].startswith(f"字段 {bad[0]} ")
    r = client.post("/api/patients/P1/health-checks", headers=auth(tokens, "doc"), json={"checked_on": ["2026-06-01"]})
    assert r.status_code == 422 and r.json()["issues"][0]["code"] == "BAD_VALUE"  # not a schema refusal
    r = client.post("/api/patients/P1/health-checks", headers=auth(tokens, "doc"), json=["2026-06-01"])
    assert r.status_code == 422 and r.json()["error"] == "INVALID_REQUEST"
