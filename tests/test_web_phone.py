"""Issue 16 at the HTTP level (SQLite and PostgreSQL): a retried follow-up submit records the visit
once (idempotency key), dates typed as YYYYMMDD, the work list's week first, its health-check
section and its filters, the installable app's manifest and icons."""

from __future__ import annotations

import re
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.models import HealthCheck, VisitTask
from registry.web.app import create_app
from web_support import PASSWORD, TODAY, seed, seed_tasks


@pytest.fixture
def client(database):
    seed(database.engine)
    seed_tasks(database.engine)
    c = TestClient(create_app(database.engine, today=lambda: TODAY), follow_redirects=False)
    c.database = database
    return c


def _login(client, username: str = "doc") -> None:
    form = client.get("/login")
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": _csrf(form.text)})
    assert r.status_code == 303


def _csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def _key(text: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]*)"', text).group(1)


def _follow_ups(engine, patient_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, visit_on, idempotency_key FROM follow_up WHERE patient_id = :p ORDER BY id"),
                            {"p": patient_id}).all()


def test_a_retried_follow_up_submit_records_the_visit_once(client):
    _login(client)
    engine = client.database.engine
    form = client.get("/patients/P2/follow-ups/new")
    key = _key(form.text)
    assert len(key) >= 20
    assert client.get("/patients/P2/follow-ups/new").text.count(key) == 0  # a new form, a new key
    before = len(_follow_ups(engine, "P2"))
    data = {"csrf_token": _csrf(form.text), "idempotency_key": key, "visit_on": "2026-06-09", "mode": "2",
            "risk_level": "0", "insight": "1"}
    first = client.post("/patients/P2/follow-ups/new", data=data)
    assert first.status_code == 303 and first.headers["location"].startswith("/patients/P2?saved=1&fu=")
    second = client.post("/patients/P2/follow-ups/new", data=data)  # the retry after a lost answer
    assert second.status_code == 303
    assert second.headers["location"] == first.headers["location"]  # the first's result
    rows = _follow_ups(engine, "P2")
    assert len(rows) == before + 1
    assert [r.idempotency_key for r in rows].count(key) == 1
    # another submit of the same visit from a new form is a new record (the key, not the content, decides)
    again = client.post("/patients/P2/follow-ups/new", data={**data, "idempotency_key": _key(client.get(
        "/patients/P2/follow-ups/new").text)})
    assert again.status_code == 303 and again.headers["location"] != first.headers["location"]
    assert len(_follow_ups(engine, "P2")) == before + 2
    # the key belongs to P2's visit: sent for another patient it is refused, nothing recorded
    other = client.post("/patients/P3/follow-ups/new", data=data)
    assert other.status_code == 409 and "另一名患者" in other.text
    assert len(_follow_ups(engine, "P3")) == 1
    # a malformed key is refused with the field named
    bad = client.post("/patients/P3/follow-ups/new", data={**data, "idempotency_key": "x'; DROP"})
    assert bad.status_code == 422 and "提交编号" in bad.text


def test_a_form_with_errors_keeps_its_key(client):
    _login(client)
    form = client.get("/patients/P2/follow-ups/new")
    key = _key(form.text)
    r = client.post("/patients/P2/follow-ups/new", data={"csrf_token": _csrf(form.text), "idempotency_key": key,
                                                          "visit_on": "2026-06-09", "mode": "2"})  # risk level missing
    assert r.status_code == 422 and _key(r.text) == key
    assert not [row for row in _follow_ups(client.database.engine, "P2") if row.idempotency_key == key]


def test_dates_typed_as_yyyymmdd_are_accepted(client):
    _login(client)
    engine = client.database.engine
    form = client.get("/patients/P2/follow-ups/new")
    assert 'type="date"' in form.text and 'id="i-visit_on"' in form.text
    r = client.post("/patients/P2/follow-ups/new", data={"csrf_token": _csrf(form.text), "idempotency_key": _key(form.text),
                                                          "visit_on": "20260608", "mode": "2", "risk_level": "0"})
    assert r.status_code == 303
    assert date(2026, 6, 8) in [row.visit_on if isinstance(row.visit_on, date) else date.fromisoformat(str(row.visit_on))
                                for row in _follow_ups(engine, "P2")]
    page = client.get("/patients/P1")
    r = client.post("/patients/P1/health-check", data={"csrf_token": _csrf(page.text), "checked_on": "20260607"})
    assert r.status_code == 303
    with Session(engine) as s:
        assert s.exec(sa.select(HealthCheck.checked_on).where(HealthCheck.patient_id == "P1")).scalars().all() == [date(2026, 6, 7)]
    bad = client.post("/patients/P1/health-check", data={"csrf_token": _csrf(page.text), "checked_on": "20261399"})
    assert bad.status_code == 422 and "20261399" in bad.text


def _add_tasks(engine, rows) -> None:
    with Session(engine) as s:
        for pid, kind, due, roles in rows:
            s.add(VisitTask(patient_id=pid, kind=kind, basis=f"t16-{pid}-{kind}-{due}", basis_on=date(2026, 1, 1),
                            window_start=due, window_end=due, due_on=due, nominal_due_on=due, roles=roles, joint="," in roles, rule="rules.md §5",
                            risk_level=None, status="open"))
        s.commit()


def _rows(text: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr class="[^"]*" data-patient="([^"]+)" data-kind="([^"]+)">', text)


def test_the_week_first_health_checks_apart_and_filters(client):
    engine = client.database.engine
    _add_tasks(engine, [("P1", "health_check", date(2026, 5, 1), "doctor"),
                        ("P2", "health_check", date(2026, 6, 2), "doctor"),
                        ("P3", "health_check", date(2026, 6, 14), "doctor"),
                        ("P3", "discharge_check", date(2026, 8, 1), "doctor"),
                        ("P2", "locate", date(2026, 5, 15), "doctor")])
    _login(client)
    week = client.get("/worklist")
    assert week.status_code == 200
    rows = _rows(week.text)
    assert ("P1", "follow_up") in rows and ("P3", "follow_up") in rows
    assert not [r for r in rows if r[1] == "health_check"]  # their own section
    section = re.search(r'<section class="card health-checks".*?</section>', week.text, re.S).group(0)
    assert "共 3 人，逾期 2 人" in section
    assert "东坑村：2 人（逾期 2）" in section and "西坑村：1 人" in section
    assert ("P2", "follow_up") not in rows  # due 2026-07-01: later than this week

    everything = client.get("/worklist?all=1").text
    rows = _rows(everything)
    kinds_due = [r for r in rows]
    # this week's (overdue or due by 2026-06-17) before the later ones, whatever their risk
    assert kinds_due.index(("P3", "follow_up")) < kinds_due.index(("P2", "follow_up"))
    assert kinds_due.index(("P3", "follow_up")) < kinds_due.index(("P3", "discharge_check"))
    assert "以后到期" in everything

    only_checks = _rows(client.get("/worklist?kind=health_check").text)
    assert sorted(only_checks) == [("P1", "health_check"), ("P2", "health_check"), ("P3", "health_check")]
    v2 = _rows(client.get("/worklist?village=V2&all=1").text)
    assert v2 and {p for p, _k in v2} == {"P3"}
    police = _rows(client.get("/worklist?member=M-POL").text)
    assert police == [("P1", "follow_up")]  # the joint visit needing 刘警官
    civil = _rows(client.get("/worklist?member=M-CIV").text)
    assert civil == [("P3", "follow_up")]
    # the default order: overdue, then risk (P1 is 3级, the lost-contact search unknown); by due date: 05-15 first
    assert rows.index(("P1", "follow_up")) < rows.index(("P2", "locate"))
    by_due = _rows(client.get("/worklist?all=1&sort=due").text)
    assert by_due.index(("P2", "locate")) < by_due.index(("P1", "follow_up"))
    for bad in ("kind=nope", "sort=nope"):
        r = client.get(f"/worklist?{bad}")
        assert r.status_code == 422 and ("任务类型" in r.text or "排序" in r.text)
    page2 = client.get("/worklist?page=2&village=V1&all=1")
    assert page2.status_code == 200


def test_the_app_is_installable(client):
    manifest = client.get("/static/manifest.webmanifest")
    assert manifest.status_code == 200
    data = manifest.json()
    assert data["short_name"] == "精防" and data["display"] == "standalone"
    sizes = set()
    for icon in data["icons"]:
        r = client.get(icon["src"])
        assert r.status_code == 200, icon
        if icon["type"] == "image/png":
            assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
            w, h = int.from_bytes(r.content[16:20], "big"), int.from_bytes(r.content[20:24], "big")
            assert f"{w}x{h}" == icon["sizes"]
            sizes.add(w)
    assert {192, 512} <= sizes
    login = client.get("/login").text
    assert 'rel="manifest"' in login and 'name="viewport"' in login and "<script>" not in login and "<style" not in login


def test_the_api_takes_an_idempotency_key_header(client):
    from web_support import session_token

    engine = client.database.engine
    headers = {"Authorization": f"Bearer {session_token(engine, 'doc')}", "Idempotency-Key": "api-retry-0001"}
    body = {"visit_on": "2026-06-09", "mode": 2, "risk_level": 0}
    before = len(_follow_ups(engine, "P2"))
    first = client.post("/api/patients/P2/follow-ups", json=body, headers=headers)
    second = client.post("/api/patients/P2/follow-ups", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert len(_follow_ups(engine, "P2")) == before + 1
    bad = client.post("/api/patients/P2/follow-ups", json=body, headers={**headers, "Idempotency-Key": "no"})
    assert bad.status_code == 422 and bad.json()["issues"][0]["column"] == "idempotency_key"
    assert len(_follow_ups(engine, "P2")) == before + 1


def test_a_refusal_page_keeps_the_header_and_footer(client):
    """Session 13's walk: a 403 (a police officer opening a patient not on their list) showed the header
    as "police ·  · " and the footer's date blank — the error page lacked the pages' frame."""
    _login(client, "police")
    r = client.get("/patients/P2")
    assert r.status_code == 403 and "无权" in r.text
    who = re.search(r'<div class="who">\s*<span>([^<]*)</span>', r.text).group(1)
    assert who.split(" · ")[1:] == ["民警", "台城街道"], who
    assert f"今天 {TODAY.isoformat()}" in r.text
    assert 'href="/mylist"' in r.text  # the menu, to go on from the refusal
