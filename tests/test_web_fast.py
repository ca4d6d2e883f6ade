"""The PostgreSQL one-statement reads (registry.web.fast) against the generic ORM path.

Runs on SQLite and PostgreSQL (``database`` fixture): on SQLite the pages take the generic path
(the fast path is PostgreSQL-only) and the same assertions on audit rows and errors hold. On
PostgreSQL every record is compared field by field with the generic path's, and the pages are
compared byte for byte across the generic path, the thread-pool fast path (no lifespan) and the
asyncio-pool fast path (with lifespan).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.requests import Request

from registry.accounts import WebSession, hash_token
from registry.models import CareTeamAssignment, FollowUp, FollowUpParticipant, HealthCheck, Patient, TeamMember
from registry.web import fast, queries
from registry.web.app import create_app
from registry.web.scopes import scope_for
from web_support import ID_P1, TODAY, USERS, VISIBLE, seed, seed_tasks, session_token

ALL = ["P1", "P2", "P3", "P4", "P5", "NOPE", "P1' OR '1'='1"]


def _enrich(engine) -> None:
    """More of the record on P1/P2: a health check, an LAI plan, an explicit team, a second follow-up
    with two participants (so order and every JSON type are exercised)."""
    with Session(engine) as s:
        s.add(HealthCheck(patient_id="P1", checked_on=date(2026, 2, 3)))
        s.add(HealthCheck(patient_id="P1", checked_on=date(2025, 12, 1)))
        p1 = s.get(Patient, "P1")
        p1.lai_drug, p1.lai_interval_weeks, p1.lai_last_on, p1.lai_dose = "棕榈酸帕利哌酮", 4, date(2026, 5, 1), "150mg"
        p1.diagnosed_on = date(2019, 3, 4)
        s.add(TeamMember(member_id="M-PSY", name="钱助残", role="disability", phone=None, region_code="C"))
        s.flush()
        s.add(CareTeamAssignment(patient_id="P2", member_id="M-PSY", role="disability", from_on=date(2025, 1, 1)))
        s.add(CareTeamAssignment(patient_id="P2", member_id="M-DOC", role="doctor", from_on=date(2025, 1, 1)))
        fu = FollowUp(patient_id="P1", visit_on=date(2026, 1, 5), mode=1, lost_reason=None, risk_level=1, insight=1,
                      symptoms="1,3", symptoms_obvious=True, adherence=1, medication="not json",
                      advised_medication='[{"drug": "氯氮平"}]', lai_drug="x", lai_interval_weeks=2,
                      psych_support_family=True, rehabilitation=False, next_visit_on=date(2026, 2, 5), doctor_signature="王")
        lost = FollowUp(patient_id="P1", visit_on=date(2026, 1, 5), seq=2, mode=2, lost_reason=1)
        s.add_all([fu, lost])
        s.flush()
        s.add(FollowUpParticipant(follow_up_id=fu.id, role="village", member_id="M-VIL", attended=True))
        s.add(FollowUpParticipant(follow_up_id=fu.id, role="police", member_id="M-POL", attended=False))
        s.commit()


@pytest.fixture
def web(database):
    seed(database.engine)
    seed_tasks(database.engine)
    _enrich(database.engine)
    app = create_app(database.engine, today=lambda: TODAY)
    tokens = {username: session_token(database.engine, username) for username in USERS}
    return app, tokens, database


def _audit(database):
    with database.engine.connect() as conn:
        return conn.execute(sa.text("SELECT actor, action, object_type, object_id, region_code, detail, source FROM audit_log"
                                    " ORDER BY id")).all()


def _page(client, token, path):
    client.cookies.clear()
    client.cookies.set("jf_session", token)
    return client.get(path, follow_redirects=False)


def _request(app, token: str) -> Request:
    return Request({"type": "http", "app": app, "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(b"cookie", f"jf_session={token}".encode())], "client": ("10.0.0.7", 1234)})


def test_fast_record_equals_generic_record(web):
    app, tokens, database = web
    if database.backend != "postgresql":
        assert not fast.enabled(app.state.ctx)  # SQLite: always the generic path
        return
    ctx = app.state.ctx
    compared = 0
    for username in ("doc", "admin", "doc2"):
        for pid in sorted(VISIBLE[username]):
            got = fast.patient_page(_request(app, tokens[username]), pid, "10.0.0.7")
            assert got is not None
            cur, record = got
            assert cur.user.username == username and cur.csrf_token
            with Session(database.engine) as s:
                user = s.get(WebSession, hash_token(tokens[username]))
                scope = scope_for(cur.user, ctx.tree, TODAY)
                want = queries.patient_record(database.engine, scope, ctx.tree, pid, as_of=TODAY)
                assert user is not None
            assert record == want, (username, pid)
            compared += 1
    assert compared == 10
    # P1's record holds every part: two health checks, the LAI plan, participants, tasks, team
    _cur, p1 = fast.patient_page(_request(app, tokens["doc"]), "P1", "x")
    assert p1["health_checks"] == ["2026-02-03", "2025-12-01"] and p1["lai_plan"]["last_on"] == "2026-05-01"
    assert p1["id_number"] == ID_P1 and p1["tasks"] and len(p1["follow_ups"]) == 3
    assert any(v["participants"] for v in p1["follow_ups"][1:])
    _cur, p2 = fast.patient_page(_request(app, tokens["doc"]), "P2", "x")
    # rules.md §6.1: the assigned doctor and 助残员, the regional members of the other roles (§6 order), guardian
    assert [m["member_id"] for m in p2["team"]] == ["M-DOC", "M-POL", "M-VIL", "M-CIV", "M-PSY", None]
    _cur, p1_admin = fast.patient_page(_request(app, tokens["admin"]), "P1", "x")
    assert p1_admin["id_number"] != ID_P1 and p1_admin["id_masked"]
    # list roles are left to the generic path (their list membership is its SQL)
    assert fast.patient_page(_request(app, tokens["police"]), "P1", "x") is None


def _count_calls(monkeypatch, module, name) -> list:
    """Count the calls of ``module.name`` (which path served a page; the function still runs)."""
    calls: list = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("mode", ["generic", "fast-threads", "fast-asyncio"])
def test_patient_pages_and_audit_rows(web, mode, monkeypatch):
    from registry.web import reads as reads_module

    app, tokens, database = web
    app.state.ctx.fast_reads = mode != "generic"
    generic_calls = _count_calls(monkeypatch, reads_module, "_generic_read")
    with _client(app, mode) as client:
        pages = {}
        for username in USERS:
            for pid in ALL:
                r = _page(client, tokens[username], f"/patients/{pid}")
                if pid in VISIBLE[username]:
                    assert r.status_code == 200, (mode, username, pid)
                    pages[username, pid] = r.text.replace(_csrf(database, tokens[username]), "CSRF")  # differs per run
                else:
                    assert r.status_code == 403 and "PATIENT_FORBIDDEN" in r.text, (mode, username, pid, r.status_code)
        rows = _audit(database)
    uses_fast = mode != "generic" and database.backend == "postgresql"
    # the fast path serves doctors and admins; list roles (and SQLite) take the generic path
    assert len(generic_calls) == (2 * len(ALL) if uses_fast else len(USERS) * len(ALL))
    # rules.md §8: one audit row per answered read; issue 18: a refused read has its own "refused" row
    want = [(u, "read", "patient", pid, _village(pid), None, "testclient")
            for u in USERS for pid in ALL if pid in VISIBLE[u]]
    assert [r for r in rows if r[1] == "read"] == want
    refused = [(u, "refused", "request", f"/patients/{pid}", USER_REGIONS[u], "GET PATIENT_FORBIDDEN", "testclient")
               for u in USERS for pid in ALL if pid not in VISIBLE[u]]
    assert [r for r in rows if r[1] != "read"] == refused
    assert ID_P1 in pages["doc", "P1"] and ID_P1 not in pages["admin", "P1"] and ID_P1 not in pages["police", "P1"]
    for (username, _pid), html in pages.items():
        if username in ("police", "civil"):
            assert 'id="diagnosis"' not in html and "利培酮" not in html and "精神分裂" not in html
    seen = test_patient_pages_and_audit_rows.pages.setdefault(database.backend, {})
    seen[mode] = pages
    if len(seen) == 3:  # identical HTML whichever path served it
        assert seen["fast-threads"] == seen["generic"] and seen["fast-asyncio"] == seen["generic"]


test_patient_pages_and_audit_rows.pages = {}


USER_REGIONS = {"admin": "C", "doc": "T1", "doc2": "T2", "police": "T1", "civil": "T1"}


def _village(pid):
    return {"P1": "V1", "P2": "V1", "P3": "V2", "P4": "V3", "P5": "V1"}[pid]


class _client:
    """TestClient with (asyncio pool) or without (thread-pool fast path) the app's lifespan."""

    def __init__(self, app, mode):
        self.app, self.mode = app, mode

    def __enter__(self):
        self.client = TestClient(self.app)
        if self.mode == "fast-asyncio":
            self.client.__enter__()
            if self.app.state.ctx.engine.dialect.name == "postgresql":
                assert self.app.state.ctx.fast_pool is not None
        return self.client

    def __exit__(self, *exc):
        if self.mode == "fast-asyncio":
            self.client.__exit__(*exc)
            assert self.app.state.ctx.fast_pool is None


@pytest.mark.parametrize("mode", ["generic", "fast-threads", "fast-asyncio"])
def test_sessions_are_checked_on_every_read(web, mode):
    app, tokens, database = web
    app.state.ctx.fast_reads = mode != "generic"
    with _client(app, mode) as client:
        for path in ("/patients/P1", "/worklist"):
            assert _page(client, tokens["doc"], path).status_code == 200
            assert _page(client, "not-a-token", path).headers["location"] == "/login"
            assert _page(client, "x" * 300, path).headers["location"] == "/login"
        # logout takes effect on the very next request (no session cache)
        client.cookies.clear()
        client.cookies.set("jf_session", tokens["doc"])
        r = client.post("/logout", data={"csrf_token": _csrf(database, tokens["doc"])}, follow_redirects=False)
        assert r.status_code == 303
        for path in ("/patients/P1", "/worklist"):
            assert _page(client, tokens["doc"], path).headers["location"] == "/login"
        # expiry and deactivation likewise
        with Session(database.engine) as s:
            row = s.get(WebSession, hash_token(tokens["admin"]))
            row.expires_at = row.created_at - timedelta(seconds=1)
            s.commit()
        for path in ("/patients/P1", "/worklist"):
            assert _page(client, tokens["admin"], path).headers["location"] == "/login"
        with database.engine.begin() as conn:
            conn.execute(sa.text("UPDATE app_user SET active = false WHERE username = 'doc2'"))
        assert _page(client, tokens["doc2"], "/patients/P4").headers["location"] == "/login"
        # the API answers 401 with the stable code
        client.cookies.clear()
        r = client.get("/api/patients/P1", headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert r.status_code == 401 and r.json()["error"] == "SESSION_EXPIRED"
        # roles: police may not open the work list
        assert _page(client, tokens["police"], "/worklist").status_code == 403
    reads = [r for r in _audit(database) if r[1] == "read"]
    assert [(r[0], r[2]) for r in reads] == [("doc", "patient"), ("doc", "worklist")]


def _csrf(database, token):
    with Session(database.engine) as s:
        return s.get(WebSession, hash_token(token)).csrf_token


@pytest.mark.parametrize("mode", ["generic", "fast-threads", "fast-asyncio"])
def test_worklist_reads_are_audited_and_follow_the_scheduler(web, mode, monkeypatch):
    from registry.web import pages as pages_module

    app, tokens, database = web
    app.state.ctx.fast_reads = mode != "generic"
    generic_calls = _count_calls(monkeypatch, pages_module, "_worklist_generic")
    second_statements = _count_calls(monkeypatch, fast, "_worklist_audit")
    with _client(app, mode) as client:
        first = _page(client, tokens["doc"], "/worklist")
        second = _page(client, tokens["doc"], "/worklist")  # fast path: the one-statement read
        third = _page(client, tokens["admin"], "/worklist")
        assert first.status_code == second.status_code == third.status_code == 200
        assert first.text == second.text and "陈一" in first.text and "黄四" not in first.text and "黄四" in third.text
        # a scheduler run (a new schedule_run row) is seen on the next request
        from schedules.jobs import recorded
        from registry.models import VisitTask

        with Session(database.engine) as s:
            s.execute(sa.update(VisitTask).where(VisitTask.patient_id == "P1").values(status="done"))
            s.commit()
        recorded(database.engine, "test", TODAY, "test", lambda: {})
        after = _page(client, tokens["doc"], "/worklist")
        assert after.status_code == 200 and "陈一" not in after.text
        again = _page(client, tokens["doc"], "/worklist")
        assert again.text == after.text
        every = _page(client, tokens["doc"], "/worklist?all=1&page=1")  # every open task: P2 is due in 3 weeks
        assert every.status_code == 200 and "李二" in every.text and "李二" not in after.text
    uses_fast = mode != "generic" and database.backend == "postgresql"
    assert len(generic_calls) == (0 if uses_fast else 6)
    # fast path: a session's first page, and the first after a scheduler run, insert their audit row
    # in a second statement; the repeats are one statement (session, version and audit row)
    assert len(second_statements) == (4 if uses_fast else 0)
    rows = [r for r in _audit(database) if r[2] == "worklist"]
    assert [(r[0], r[3], r[4], r[5]) for r in rows] == [
        ("doc", "T1", "T1", "2 项"), ("doc", "T1", "T1", "2 项"), ("admin", "C", "C", "3 项"),
        ("doc", "T1", "T1", "1 项"), ("doc", "T1", "T1", "1 项"), ("doc", "T1", "T1", "2 项")]
    seen = test_worklist_reads_are_audited_and_follow_the_scheduler.pages.setdefault(database.backend, {})
    csrf = _csrf(database, tokens["doc"])
    seen[mode] = tuple(page.text.replace(csrf, "CSRF") for page in (first, after, every))
    if len(seen) == 3:  # identical HTML whichever path served it
        assert seen["fast-threads"] == seen["generic"] == seen["fast-asyncio"]


test_worklist_reads_are_audited_and_follow_the_scheduler.pages = {}


@pytest.mark.parametrize("mode", ["generic", "fast-threads", "fast-asyncio"])
def test_api_patient_read_and_audit_rows(web, mode, monkeypatch):
    """``GET /api/patients/{id}`` takes the same one-statement read (bearer token): the same JSON
    whichever path served it, one audit row per answered read, one "refused" row per refused read
    (issue 18), none for an anonymous one."""
    from registry.web import reads as reads_module

    app, tokens, database = web
    app.state.ctx.fast_reads = mode != "generic"
    generic_calls = _count_calls(monkeypatch, reads_module, "_generic_read")
    with _client(app, mode) as client:
        records = {}
        for username in USERS:
            for pid in ALL:
                r = client.get(f"/api/patients/{pid}", headers={"Authorization": f"Bearer {tokens[username]}"})
                if pid in VISIBLE[username]:
                    assert r.status_code == 200, (mode, username, pid, r.text)
                    records[username, pid] = r.json()
                else:
                    assert r.status_code == 403 and r.json()["error"] == "PATIENT_FORBIDDEN", (mode, username, pid)
        anonymous = client.get("/api/patients/" + "x" * 80)  # 401 before the path is validated
        expired = client.get("/api/patients/P1", headers={"Authorization": "Bearer not-a-session"})
        rows = _audit(database)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "NOT_AUTHENTICATED"
    assert expired.status_code == 401
    uses_fast = mode != "generic" and database.backend == "postgresql"
    # doctors and admins on the fast path (which also refuses the bad token); list roles (and SQLite)
    # on the generic path
    assert len(generic_calls) == (2 * len(ALL) if uses_fast else len(USERS) * len(ALL) + 1)
    want = [(u, "read", "patient", pid, _village(pid), None, "testclient")
            for u in USERS for pid in ALL if pid in VISIBLE[u]]
    assert [r for r in rows if r[1] == "read"] == want
    # issue 18: refused reads are audited (the anonymous and bad-token calls are not: no one to name)
    refused = [(u, "refused", "request", f"/api/patients/{pid}", USER_REGIONS[u], "GET PATIENT_FORBIDDEN", "testclient")
               for u in USERS for pid in ALL if pid not in VISIBLE[u]]
    assert [r for r in rows if r[1] != "read"] == refused
    assert records["doc", "P1"]["id_number"] == ID_P1 and records["admin", "P1"]["id_number"] != ID_P1
    for (username, _pid), record in records.items():
        if username in ("police", "civil"):
            assert "diagnosis" not in record and "medication" not in str(record)
    seen = test_api_patient_read_and_audit_rows.records.setdefault(database.backend, {})
    seen[mode] = records
    if len(seen) == 3:
        assert seen["fast-threads"] == seen["generic"] and seen["fast-asyncio"] == seen["generic"]


test_api_patient_read_and_audit_rows.records = {}


def test_the_asyncio_pool_recovers_after_the_server_drops_its_connections(web):
    """A PostgreSQL restart (here: every backend of the database terminated) costs one failed request
    per pooled connection; the pool replaces the broken connection and the next reads are served
    and audited as before, without restarting the web process."""
    app, tokens, database = web
    if database.backend != "postgresql":
        return
    with TestClient(app, raise_server_exceptions=False) as client:
        assert _page(client, tokens["doc"], "/patients/P1").status_code == 200
        pool = app.state.ctx.fast_pool
        assert pool.get_stats()["pool_size"] == 1  # one request at a time: one connection, opened on demand
        with database.engine.connect() as conn:
            killed = conn.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
        assert killed >= 1
        statuses = [_page(client, tokens["doc"], "/patients/P1").status_code for _ in range(4)]
        assert statuses == [500, 200, 200, 200]
        assert pool.get_stats().get("connections_lost", 0) + pool.get_stats().get("returns_bad", 0) == 1
    reads = [r for r in _audit(database) if r[1] == "read"]
    assert len(reads) == 4  # the failed statement wrote no audit row; every answered read did


# ---------------------------------------------------------------- the doctor's panels and the notices


def _appointments(engine) -> None:
    """联合入户预约 on P1's and P3's open joint tasks (two on P1's, with a confirmation and a refusal with
    its reason; one on P3's without answers), one on a closed task (not shown), and an ended
    assignment on P1 (团队指派: ended and open rows, newest first)."""
    from datetime import UTC, datetime

    from registry.models import Appointment, AppointmentReply, VisitTask

    with Session(engine) as s:
        task = {t.patient_id: t.id for t in s.exec(sa.select(VisitTask)).scalars()}
        s.add(VisitTask(patient_id="P1", kind="follow_up", basis="test:P1-old", basis_on=date(2026, 3, 1),
                        due_on=date(2026, 4, 1), nominal_due_on=date(2026, 4, 1), roles="doctor,police", joint=True,
                        rule="national-2018:test", risk_level=3, status="done"))
        s.flush()
        closed = s.exec(sa.select(VisitTask.id).where(VisitTask.basis == "test:P1-old")).scalar_one()
        first = Appointment(task_id=task["P1"], proposed_at=datetime(2026, 6, 12, 9, 30), place="村委会", proposed_by="doc",
                            created_at=datetime(2026, 6, 9, 1, 0, tzinfo=UTC))
        second = Appointment(task_id=task["P1"], proposed_at=datetime(2026, 6, 13, 14, 0), place=None, proposed_by="doc",
                             created_at=datetime(2026, 6, 9, 2, 0, tzinfo=UTC))
        other = Appointment(task_id=task["P3"], proposed_at=datetime(2026, 6, 11, 8, 0), place="家中", proposed_by="doc",
                            created_at=datetime(2026, 6, 9, 3, 0, tzinfo=UTC))
        old = Appointment(task_id=closed, proposed_at=datetime(2026, 3, 30, 8, 0), place="已结束任务的地点", proposed_by="doc",
                          created_at=datetime(2026, 3, 20, 3, 0, tzinfo=UTC))
        s.add_all([first, second, other, old])
        s.flush()
        at = datetime(2026, 6, 9, 4, 0, tzinfo=UTC)
        s.add_all([
            AppointmentReply(appointment_id=first.id, member_id="M-VIL", role="village", answer="confirmed", reason=None,
                             answered_by="vil", answered_at=at),
            AppointmentReply(appointment_id=first.id, member_id="M-POL", role="police", answer="declined", reason="值班",
                             answered_by="pol", answered_at=at),
            AppointmentReply(appointment_id=old.id, member_id="M-POL", role="police", answer="confirmed", reason=None,
                             answered_by="pol", answered_at=at),
        ])
        s.add(CareTeamAssignment(patient_id="P1", member_id="M-POL", role="police", from_on=date(2025, 1, 1),
                                 to_on=date(2025, 12, 31)))
        s.add(CareTeamAssignment(patient_id="P1", member_id="M-VIL", role="village", from_on=date(2026, 1, 1)))
        s.commit()


@contextmanager
def _engine_checkouts(engine):
    """Every connection the engine's pool hands out meanwhile (the synchronous DB calls)."""
    seen: list = []

    def count(*_args) -> None:
        seen.append(1)

    sa.event.listen(engine, "checkout", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "checkout", count)


def test_patient_page_panels_fast_equal_generic(web):
    """The doctor's panels (团队指派, 联合入户预约; rules.md §6.1) from the page's one statement equal the
    generic path's (``writes.assignments_of``, ``appointments.joint_tasks_of_patient``); the same
    HTML whichever path served the page; on the asyncio pool the page touches no synchronous DB
    connection (nothing blocks the event loop)."""
    from registry.web import reads

    app, tokens, database = web
    _appointments(database.engine)
    ctx = app.state.ctx
    if database.backend == "postgresql":
        compared = 0
        for username in ("doc", "doc2", "admin"):
            for pid in sorted(VISIBLE[username]):
                cur, _record, panels = fast.patient_page(_request(app, tokens[username]), pid, "x", panels=True)
                assert panels == reads.panels_of(ctx, cur, pid), (username, pid)
                assert (panels["assignments"] is None) == (username == "admin")
                compared += 1
        assert compared == 10
        _cur, _record, p1 = fast.patient_page(_request(app, tokens["doc"]), "P1", "x", panels=True)
        [task] = p1["appointment_tasks"]
        assert [a["proposed_at"] for a in task["appointments"]] == ["2026-06-13 14:00", "2026-06-12 09:30"]
        assert [(r["role"], r["answer"], r["reason"]) for r in task["appointments"][1]["replies"]] == [
            ("police", "declined", "值班"), ("village", "confirmed", "")]
        assert [(r["member_id"], r["to_on"]) for r in p1["assignments"]["rows"]] == [("M-VIL", None), ("M-POL", "2025-12-31")]
        assert [m["member_id"] for m in p1["assignments"]["members"]] == ["M-CIV", "M-DOC", "M-POL", "M-VIL"]
    pages = {}
    for mode in ("generic", "fast-threads", "fast-asyncio"):
        ctx.fast_reads = mode != "generic"
        with _client(app, mode) as client:
            for pid in ("P1", "P2", "P3"):
                _page(client, tokens["doc"], f"/patients/{pid}")  # the asyncio pool's connection is open
                with _engine_checkouts(database.engine) as checkouts:
                    r = _page(client, tokens["doc"], f"/patients/{pid}")
                assert r.status_code == 200
                if mode == "fast-asyncio" and database.backend == "postgresql":
                    assert checkouts == [], pid  # one statement on the asyncio pool, nothing else
                elif mode == "generic":
                    assert checkouts, pid  # (the probe sees the generic path's connections)
                pages[mode, pid] = r.text.replace(_csrf(database, tokens["doc"]), "CSRF")
    for pid in ("P1", "P2", "P3"):
        assert pages["fast-threads", pid] == pages["generic", pid] == pages["fast-asyncio", pid], pid
    p1 = pages["generic", "P1"]
    assert "值班" in p1 and "2026-06-13 14:00" in p1 and "村委会" in p1 and "已结束任务的地点" not in p1
    assert "M-VIL" in p1 and "2025-12-31" in p1


def _alerts(engine) -> None:
    """实时预警 in T1 (eight unread by ``doc``, one read, one older than the notices' 30 days) and one in T2."""
    from datetime import UTC, datetime

    from schedules.models import Alert, AlertRead

    at = datetime(2026, 6, 9, 1, 0, tzinfo=UTC)
    with Session(engine) as s:
        for i in range(8):
            s.add(Alert(kind=["risk_rise", "incident", "lost"][i % 3], source_id=100 + i, patient_id=["P1", "P3", "P5"][i % 3],
                        township_code="T1", event_on=date(2026, 6, 1) + timedelta(days=i), created_at=at))
        s.add(Alert(kind="risk_rise", source_id=200, patient_id="P2", township_code="T1", event_on=date(2026, 6, 9), created_at=at))
        s.add(Alert(kind="risk_rise", source_id=201, patient_id="P2", township_code="T1", event_on=date(2026, 4, 1), created_at=at))
        s.add(Alert(kind="lost", source_id=202, patient_id="P4", township_code="T2", event_on=date(2026, 6, 9), created_at=at))
        s.flush()
        read = s.exec(sa.select(Alert.id).where(Alert.source_id == 200)).scalar_one()
        s.add(AlertRead(alert_id=read, username="doc", read_at=at))
        s.commit()


def _notices_html(page: str) -> str:
    return page.split('id="notices"')[1].split("</section>")[0]


@pytest.mark.parametrize("mode", ["generic", "fast-threads", "fast-asyncio"])
def test_worklist_notices_in_the_fast_statement(web, mode, monkeypatch):
    """The work list's notices area (registry.web.notices) on the fast path: in a statement of its own
    on a session's first page, then inside the work list's one statement; the same page whichever
    path served it; marking alerts read shows on the very next page."""
    app, tokens, database = web
    _alerts(database.engine)
    app.state.ctx.fast_reads = mode != "generic"
    alone = _count_calls(monkeypatch, fast, "_notices_alone")
    with _client(app, mode) as client:
        pages = [_page(client, tokens[u], "/worklist").text for u in ("doc", "doc", "admin", "admin", "doc")]
        notes = _notices_html(pages[0])
        ids = [int(x.split('"')[0]) for x in notes.split('name="alert" value="')[1:]]
        r = client.post("/alerts/read", data={"csrf_token": _csrf(database, tokens["doc"]), "alert": ids[:3],
                                              "back": "/worklist"}, follow_redirects=False)
        assert r.status_code == 303
        after = _page(client, tokens["doc"], "/worklist").text
        with _engine_checkouts(database.engine) as checkouts:
            again = _page(client, tokens["doc"], "/worklist").text
    uses_fast = mode != "generic" and database.backend == "postgresql"
    if uses_fast and mode == "fast-asyncio":
        assert checkouts == []  # the cached page, its notices and audit row: one statement on the asyncio pool
    # fast path: one notices statement of its own per session (its first page), then inside the work list's
    assert len(alone) == (2 if uses_fast else 0)
    assert pages[0] == pages[1] == pages[4] and pages[2] == pages[3] and after == again
    # the newest five of the eight unread (newest first), "more"; not the read one, not the old one, not T2's
    assert ids == sorted(ids, reverse=True) and len(ids) == 5 and "还有更多未读预警" in notes
    assert "李二" not in notes and "黄四" not in notes and "黄四" in _notices_html(pages[2])
    later = [int(x.split('"')[0]) for x in _notices_html(after).split('name="alert" value="')[1:]]
    assert later[:2] == ids[3:] and len(later) == 5 and "还有更多未读预警" not in _notices_html(after)
    csrf = {u: _csrf(database, tokens[u]) for u in ("doc", "admin")}
    seen = test_worklist_notices_in_the_fast_statement.pages.setdefault(database.backend, {})
    seen[mode] = [p.replace(csrf["doc"], "CSRF").replace(csrf["admin"], "CSRF") for p in pages + [after]]
    if len(seen) == 3:
        assert seen["fast-threads"] == seen["generic"] == seen["fast-asyncio"]


test_worklist_notices_in_the_fast_statement.pages = {}


def test_worklist_cached_partial_equals_a_fresh_render(web):
    """The work list below the notices (filter form, rows, pager) is rendered once per cached page,
    role and filters (``WebContext.cached_partial``): the cached page is byte for byte the fresh
    render, with the chosen filters ``selected``, whichever filters came first for the same page."""
    app, tokens, _database = web
    ctx = app.state.ctx
    urls = ["/worklist", "/worklist?all=1", "/worklist?village=V1", "/worklist?village=V2&all=1", "/worklist?kind=follow_up",
            "/worklist?member=M-VIL&all=1", "/worklist?sort=due&all=1", "/worklist?sort=village&village=V1&kind=follow_up",
            "/worklist?page=2"]
    with TestClient(app) as client:
        rendered = {}
        for cache in (True, True, False):  # the second round comes from the cached partials
            ctx.cache_partials = cache
            for url in urls:
                r = _page(client, tokens["doc"], url)
                assert r.status_code == 200, url
                rendered.setdefault(url, []).append(r.text)
    for url, (first, cached, fresh) in rendered.items():
        assert first == cached == fresh, url
    assert '<option value="V2" selected>' in rendered["/worklist?village=V2&all=1"][0]
    assert '<option value="M-VIL" selected>' in rendered["/worklist?member=M-VIL&all=1"][0]
    assert '<option value="due" selected>' in rendered["/worklist?sort=due&all=1"][0]
    # the same cached page under other inputs: each its own partial, never another's selected options
    ctx.cache_partials = True
    data = {"rows": [], "total": 0, "overdue": 0, "as_of": "2026-06-10", "health_checks": None,
            "options": {"villages": [("V1", "东坑村"), ("V2", "西坑村")], "kinds": [], "members": [("M-VIL", "赵网格员")],
                        "sorts": [("", "优先级"), ("due", "到期日")]}}
    bodies = {}
    for chosen in ({"village": "V1"}, {"village": "V2"}, {"village": "V2", "sort": "due"}, {}):
        for show_all in (False, True):
            args = {"user_role": "township_doctor", "show_all": show_all, "chosen": chosen, "page": 1, "pages": 1, "query": ""}
            cached = ctx.cached_partial("_worklist_body.html", data, **args)
            assert cached is ctx.cached_partial("_worklist_body.html", data, **args)  # rendered once
            fresh = ctx.templates.get_template("_worklist_body.html").render(data=data, **args)
            assert cached.decode() == fresh
            bodies[tuple(chosen.items()), show_all] = fresh
    assert '<option value="V2" selected>' in bodies[(("village", "V2"),), False]
    assert '<option value="V1" selected>' not in bodies[(("village", "V2"),), False]
    assert '<input type="hidden" name="all" value="1">' in bodies[(), True]
    assert len(set(bodies.values())) == len(bodies)


def _more_tasks(engine) -> None:
    """Tasks for every part of the work list: health checks (overdue, due this week, later), a task after
    the week, one without a risk level, joint visits whose roles have an assigned member (valid on the due
    date or not), a village primary, a township primary or nobody (未指定)."""
    rows = [
        ("P1", "health_check", date(2026, 6, 1), "doctor", False, None),
        ("P2", "health_check", date(2026, 6, 15), "doctor", False, 1),
        ("P3", "health_check", date(2026, 6, 30), "doctor", False, None),
        ("P4", "health_check", date(2026, 5, 30), "doctor", False, 2),
        ("P2", "locate", date(2026, 6, 12), "doctor,police,village,civil_affairs", True, None),
        ("P3", "discharge_check", date(2026, 6, 9), "doctor,police,village,civil_affairs", True, 4),
        ("P5", "injection", date(2026, 6, 20), "doctor", False, 1),
        ("P4", "post_emergency", date(2026, 6, 11), "doctor,police,village", True, 2),
    ]
    seed_tasks(engine, rows, basis="more")
    with Session(engine) as s:
        s.add(TeamMember(member_id="M-POL2", name="周警官", role="police", phone="0750-1111", region_code="T1", primary=False))
        s.flush()
        # P3's police: M-POL2 from June (valid on its due date); P2's: M-POL2 until May (not valid on it)
        s.add(CareTeamAssignment(patient_id="P3", member_id="M-POL2", role="police", from_on=date(2026, 6, 1)))
        s.add(CareTeamAssignment(patient_id="P2", member_id="M-POL2", role="police", from_on=date(2026, 1, 1),
                                 to_on=date(2026, 5, 31)))
        s.commit()


def test_worklist_one_statement_equals_the_generic_path(web):
    """The fresh work list on PostgreSQL (registry.web.fast_worklist: one statement, compiled once per shape)
    gives the generic path's dict for every filter, sort, page and horizon, for doctors and the county
    admin; on SQLite the generic path serves (the fast path is PostgreSQL-only)."""
    from registry.web import fast_worklist

    app, _tokens, database = web
    _more_tasks(database.engine)
    ctx = app.state.ctx
    shapes = [{}, {"horizon_days": None}, {"health_checks_apart": True}, {"health_checks_apart": True, "horizon_days": None},
              {"health_checks_apart": True, "kind": "health_check"}, {"health_checks_apart": True, "village": "V2"},
              {"health_checks_apart": True, "member": "M-POL2", "horizon_days": None}, {"member": "M-VIL"},
              {"health_checks_apart": True, "member": "NOBODY"}, {"sort": "due", "horizon_days": None},
              {"sort": "village", "health_checks_apart": True}, {"limit": 2, "offset": 2, "horizon_days": None},
              {"limit": 3, "offset": 50}, {"limit": None, "horizon_days": None, "kind": "follow_up"}]
    compared = 0
    for username in ("doc", "admin", "doc2"):
        with Session(database.engine) as s:
            from registry.accounts import User

            user = s.get(User, username)
        scope = scope_for(user, ctx.tree, TODAY)
        for shape in shapes:
            kwargs = {"as_of": TODAY, "horizon_days": 7, "limit": 100, "offset": 0, **shape}
            want = queries.worklist(database.engine, scope, ctx.tree, **kwargs)
            if database.backend != "postgresql":
                assert not fast.enabled(ctx)
                continue
            got = fast_worklist.worklist(database.engine, scope, ctx.tree, **kwargs)
            assert got == want, (username, shape)
            assert list(got) == list(want)  # the same keys in the same order (the API's JSON)
            compared += 1
    if database.backend == "postgresql":
        assert compared == 3 * len(shapes)
        # the parts are exercised: joint rows with an assigned, a primary and no responsible member; the section
        scope = scope_for(user_of(database.engine, "admin"), ctx.tree, TODAY)
        page = fast_worklist.worklist(database.engine, scope, ctx.tree, as_of=TODAY, horizon_days=None, limit=100,
                                      health_checks_apart=True)
        calls = {(r["patient_id"], c["role"]): c["member_id"] for r in page["rows"] for c in r["call"]}
        assert calls[("P3", "police")] == "M-POL2" and calls[("P2", "police")] == "M-POL"
        assert calls[("P3", "civil_affairs")] == "M-CIV" and calls[("P3", "village")] is None and calls[("P4", "police")] is None
        assert page["health_checks"]["total"] == 4 and page["health_checks"]["overdue"] == 2
        assert page["options"]["members"] and page["options"]["villages"]
        with pytest.raises(ValueError):
            fast_worklist.worklist(database.engine, scope_for(user_of(database.engine, "police"), ctx.tree, TODAY),
                                   ctx.tree, as_of=TODAY)


def user_of(engine, username: str):
    from registry.accounts import User

    with Session(engine) as s:
        return s.get(User, username)


def test_fast_record_responsible_people_equal_generic(web):
    """rules.md §6.1 on the patient page: the fast statement's responsible person per required role (one
    copy of ``responsible_member_sql`` with the role as a column) equals the generic path's for joint
    tasks whose roles have an assigned member valid on the due date, one not valid then (the region's
    primary instead), a primary only, or nobody (未指定); roles a task does not require are not shown."""
    app, tokens, database = web
    if database.backend != "postgresql":
        return
    _more_tasks(database.engine)
    ctx = app.state.ctx
    people = {}
    for username in ("doc", "admin"):
        for pid in ("P2", "P3", "P4"):
            if pid not in VISIBLE[username]:
                continue
            cur, record = fast.patient_page(_request(app, tokens[username]), pid, "x")
            want = queries.patient_record(database.engine, scope_for(cur.user, ctx.tree, TODAY), ctx.tree, pid, as_of=TODAY)
            assert record == want, (username, pid)
            for task in record["tasks"]:
                for person in task["people"]:
                    people[(pid, task["kind"], person["role"])] = person["member_id"]
    assert people[("P3", "discharge_check", "police")] == "M-POL2"  # assigned, valid on the due date
    assert people[("P2", "locate", "police")] == "M-POL"  # assigned until May: the township's primary
    assert people[("P3", "discharge_check", "civil_affairs")] == "M-CIV"
    assert people[("P3", "discharge_check", "village")] is None and people[("P4", "post_emergency", "police")] is None
    assert ("P4", "post_emergency", "civil_affairs") not in people  # not required by the task
