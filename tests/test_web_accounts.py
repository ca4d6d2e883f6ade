"""Accounts, sessions, CSRF on forms, page errors and the demo accounts (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from registry.accounts import User, WebSession, hash_token
from jingfang.cli import app as cli_app
from registry.web.app import create_app
from jingfang.demo_accounts import DEMO_PASSWORD, create_demo_users
from web_support import PASSWORD, TODAY, seed, seed_tasks, session_token


@pytest.fixture
def client(database):
    seed(database.engine)
    seed_tasks(database.engine)
    return TestClient(create_app(database.engine, today=lambda: TODAY), follow_redirects=False)


def test_user_add_command(database):
    seed(database.engine)
    runner = CliRunner()
    ok = runner.invoke(cli_app, ["user", "add", "wang", "--role", "township_doctor", "--region", "T2",
                                 "--password", "longenough1", "--name", "王医生", "--db", database.url])
    assert ok.exit_code == 0, ok.output
    assert "已创建账号 wang（乡镇精防医生，地区 T2）" in ok.output
    with Session(database.engine) as s:
        user = s.get(User, "wang")
        assert user.password_hash.startswith("$argon2id$") and "longenough1" not in user.password_hash
        assert (user.role, user.region_code, user.display_name) == ("township_doctor", "T2", "王医生")
    cases = [
        (["wang", "--role", "police", "--region", "T1", "--password", "longenough1"], "USERNAME_TAKEN"),
        (["li", "--role", "mayor", "--region", "T1", "--password", "longenough1"], "ROLE_INVALID"),
        (["li", "--role", "police", "--region", "NOWHERE", "--password", "longenough1"], "REGION_NOT_FOUND"),  # one code for an unknown region everywhere (issue 16)
        (["li", "--role", "police", "--region", "T1", "--password", "short"], "PASSWORD_TOO_SHORT"),
        (["li si", "--role", "police", "--region", "T1", "--password", "longenough1"], "USERNAME_INVALID"),
    ]
    for args, code in cases:
        result = runner.invoke(cli_app, ["user", "add", *args, "--db", database.url])
        assert result.exit_code == 1
        assert f"错误 [{code}]" in result.output


def test_page_forms_need_the_csrf_token(client, database):
    client.get("/login")
    forged = client.post("/login", data={"username": "doc", "password": PASSWORD, "csrf_token": "forged"})
    assert forged.status_code == 403 and "登录表单已过期" in forged.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', forged.text).group(1)  # a fresh form
    ok = client.post("/login", data={"username": "doc", "password": PASSWORD, "csrf_token": token})
    assert ok.status_code == 303 and ok.headers["location"] == "/worklist"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    before = database.count("follow_up")
    r = client.post("/patients/P1/follow-ups/new", data={"visit_on": "2026-06-09", "risk_level": "0"})
    assert r.status_code == 403 and "表单已过期或来源无效" in r.text
    assert database.count("follow_up") == before


def test_secure_cookie_when_configured(database):
    seed(database.engine)
    c = TestClient(create_app(database.engine, today=lambda: TODAY, secure_cookies=True), follow_redirects=False)
    assert "Secure" in c.get("/login").headers["set-cookie"]


def test_expired_session_is_refused(client, database):
    token = session_token(database.engine, "doc")
    with Session(database.engine) as s:
        row = s.get(WebSession, hash_token(token))
        row.expires_at = row.created_at - timedelta(seconds=1)
        s.add(row)
        s.commit()
    r = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"] == "SESSION_EXPIRED"
    client.cookies.set("jf_session", token)
    page = client.get("/worklist")
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_pages_answer_errors_in_chinese_never_500(client, database):
    client.cookies.set("jf_session", session_token(database.engine, "doc"))
    assert client.get("/patients/P4").status_code == 403  # other township
    assert "不在您的管辖范围" in client.get("/patients/P4").text
    assert client.get("/dashboard").status_code == 403
    assert client.get("/no/such/page").status_code == 404
    assert "页面或接口不存在" in client.get("/no/such/page").text
    admin = TestClient(client.app)
    admin.cookies.set("jf_session", session_token(database.engine, "admin"))
    bad_month = admin.get("/dashboard?month=2026-13")
    assert bad_month.status_code == 422 and "月份“" in bad_month.text and "(month)" not in bad_month.text
    assert admin.get("/worklist?page=abc").status_code == 422
    form = client.get("/patients/new")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    r = client.post("/patients/new", data={"csrf_token": csrf, "patient_id": "P1", "name": "重复", "sex": "3",
                                           "birth_date": "1990-01-01", "village_code": "V3", "diagnosis": "抑郁症",
                                           "registered_on": "2026-06-01", "id_number": "440781199001010010"})
    assert r.status_code == 422
    for field, text in [("patient_id", "已存在"), ("sex", "不是有效编码"), ("diagnosis", "不属于六类严重精神障碍"),
                        ("village_code", "不在您的管辖范围"), ("id_number", "身份证号")]:
        block = re.search(rf'id="f-{field}">(.*?)</div>\s*(?=<div class="field|</div></fieldset>)', r.text, re.S)
        assert block and "has-error" in r.text and text in block.group(1), field
    assert 'value="重复"' in r.text  # the form keeps what was typed
    status = client.get("/patients/P2/status")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', status.text).group(1)
    bad = client.post("/patients/P2/status", data={"csrf_token": csrf, "status": "dead", "status_on": "2030-01-01"})
    assert bad.status_code == 422 and "晚于今天" in bad.text


def test_demo_accounts(database):
    seed(database.engine)
    lines: list[str] = []
    with database.engine.connect() as conn:
        admin_before = conn.execute(sa.text("SELECT password_hash, role, region_code FROM app_user WHERE username = 'admin'")).first()
    rows = create_demo_users(database.engine, echo=lines.append)
    # issue 18: an existing account (the seeded admin) is never changed; the missing ones are created
    assert admin_before is not None
    with database.engine.connect() as conn:
        seeded = set(conn.execute(sa.text("SELECT username FROM app_user")).scalars()) - {r[0] for r in rows}
    every = [("admin", "county_admin", "C"), ("doctor", "township_doctor", "T1"), ("police", "police", "T1"),
             ("civil", "civil_affairs", "T1")]
    assert "admin" in seeded and rows == [r for r in every if r[0] not in seeded] and rows
    assert any("用户名 doctor" in line and DEMO_PASSWORD in line for line in lines)
    assert any("用户名 admin 已存在，未更改" in line for line in lines)
    assert create_demo_users(database.engine, echo=lines.append) == []  # re-running changes nothing
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT password_hash, role, region_code FROM app_user WHERE username = 'admin'")).first() == admin_before
    c = TestClient(create_app(database.engine, today=lambda: TODAY))
    r = c.post("/api/session", json={"username": "doctor", "password": DEMO_PASSWORD})
    assert r.status_code == 200 and r.json()["role"] == "township_doctor"


def _csrf(page_text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_text).group(1)


def test_doctor_registers_a_patient_and_records_a_move_through_pages(client, database):
    client.cookies.set("jf_session", session_token(database.engine, "doc"))
    form = client.get("/patients/new")
    assert form.status_code == 200 and "东坑村（V1）" in form.text  # only the doctor's villages
    assert "江南村" not in form.text
    r = client.post("/patients/new", data={"csrf_token": _csrf(form.text), "patient_id": "N1", "name": "吴六", "sex": "1",
                                           "birth_date": "1975-05-05", "village_code": "V2", "diagnosis": "F31",
                                           "registered_on": "2026-06-08", "guardian_name": "吴妻", "economic_status": "2"})
    assert r.status_code == 303 and r.headers["location"] == "/patients/N1"
    page = client.get("/patients/N1")
    assert "吴六" in page.text and "双相(情感)障碍" in page.text
    status = client.get("/patients/N1/status")
    r = client.post("/patients/N1/status", data={"csrf_token": _csrf(status.text), "status": "moved_out",
                                                 "status_on": "2026-06-09", "status_detail": "迁往广州"})
    assert r.status_code == 303
    assert "迁出" in client.get("/patients/N1").text
    with database.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT object_id, detail, source FROM audit_log WHERE action = 'write' ORDER BY id").all()
    assert [(r.object_id, r.source) for r in rows] == [("N1", "testclient"), ("N1", "testclient")]
    assert "迁出" in rows[1].detail


def test_week_lists_download_per_list_for_its_readers_only(client, database):
    """rules.md §7: each list goes to its readers alone, one PDF and one XLSX per list (issue 16;
    until then the doctor downloaded one zip of all five lists and one workbook mixing them)."""
    import subprocess

    from openpyxl import load_workbook

    client.cookies.set("jf_session", session_token(database.engine, "doc"))
    page = client.get("/lists/week")
    assert page.status_code == 200
    for slug in ("followup", "joint", "medication"):
        assert f"/lists/week/{slug}.pdf?week=2026-06-08&amp;township=T1" in page.text  # Monday of 2026-06-10
    assert "/lists/week/risk." not in page.text and "/lists/week/assistance." not in page.text
    r = client.get("/lists/week/followup.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert 'filename="2026-06-08_T1_followup.pdf"' in r.headers["content-disposition"]
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=r.content, capture_output=True, check=True).stdout.decode()
    assert "随访任务单" in text and "联合入户单" not in text
    x = client.get("/lists/week/medication.xlsx")
    assert x.status_code == 200 and "spreadsheetml" in x.headers["content-type"]
    assert load_workbook(io.BytesIO(x.content)).sheetnames == ["4服药与针剂单"]
    with database.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT actor, object_type, object_id, source FROM audit_log WHERE action = 'export' ORDER BY id").all()
    assert [tuple(row) for row in rows] == [("doc", "list", "T1/2026-06-08/followup", "testclient"),
                                           ("doc", "list", "T1/2026-06-08/medication", "testclient")]
    # police: the joint visits and the risk warnings, never the doctor's lists (diagnosis, medication)
    police = TestClient(client.app)
    police.cookies.set("jf_session", session_token(database.engine, "police"))
    listed = police.get("/lists/week").text
    assert "/lists/week/risk.pdf" in listed and "/lists/week/joint.pdf" in listed and "/lists/week/followup." not in listed
    for slug in ("followup", "medication", "assistance"):
        for fmt in ("pdf", "xlsx"):
            assert police.get(f"/lists/week/{slug}.{fmt}", follow_redirects=False).status_code == 403, slug
    assert police.get("/lists/week/risk.pdf").status_code == 200
    assert police.get("/lists/week/joint.xlsx").status_code == 200
    civil = TestClient(client.app)
    civil.cookies.set("jf_session", session_token(database.engine, "civil"))
    assert civil.get("/lists/week/assistance.xlsx").status_code == 200
    assert [civil.get(f"/lists/week/{s}.pdf").status_code for s in ("followup", "risk", "medication")] == [403] * 3
    admin = TestClient(client.app)
    admin.cookies.set("jf_session", session_token(database.engine, "admin"))
    assert admin.get("/lists/week/joint.pdf", follow_redirects=False).status_code == 403
    assert client.get("/lists/week/nothing.pdf").status_code == 403
    assert client.get("/lists/week/followup.docx").status_code == 422


def test_the_weekly_message_link_opens_that_weeks_lists(client, database):
    """The link a weekly-lists message carries (schedules.notify) opens that township's lists of
    that week, for its own people only."""
    from schedules.notify import list_payload

    link = list_payload(township_code="T1", township_name="一镇", week=date(2026, 6, 1), counts={"joint": 1},
                        base_url="http://testserver")["link"]
    client.cookies.set("jf_session", session_token(database.engine, "doc"))
    notice = client.get(link)  # /notices (issue 14: a page every recipient role opens), which links the doctor's lists
    assert notice.status_code == 200 and 'href="/lists/week?township=T1&amp;week=2026-06-01"' in notice.text
    r = client.get("/lists/week?township=T1&week=2026-06-01")
    assert r.status_code == 200 and "/lists/week/followup.pdf?week=2026-06-01&amp;township=T1" in r.text
    assert client.get("/lists/week/followup.pdf?week=2026-06-01&township=T1").status_code == 200
    other = client.get("/lists/week?township=T2&week=2026-06-01")
    assert other.status_code == 403 and "不在您的管辖范围内" in other.text
    assert client.get("/lists/week/followup.pdf?township=T2").status_code == 403
    for week in ("2026-13-01", "1900-01-01"):
        bad = client.get(f"/lists/week?week={week}")
        assert bad.status_code == 422 and "周次" in bad.text and "(week)" not in bad.text


@pytest.mark.parametrize("username", ["doc", "admin", "police"])
def test_nasty_page_requests_never_500(client, database, username):
    client.cookies.set("jf_session", session_token(database.engine, username))
    urls = ["/patients/%00", "/patients/" + "x" * 300, "/patients/%ED%A0%80", "/search?q=%00", "/search?q=" + "甲" * 500,
            "/audit?actor=%00", "/dashboard?month=%00", "/dashboard?month=9999-99", "/worklist?page=-5",
            "/worklist?page=99999999999999999999", "/reports/monthly.pdf?month=abc", "/patients/P1/follow-ups/new?x=%00"]
    for url in urls:
        r = client.get(url)
        assert r.status_code < 500, (url, r.status_code)
    form = client.get("/login")
    for data in ({"username": "a\x00b", "password": "x"}, {"username": "doc", "password": "\x00"}, {}):
        assert client.post("/login", data={**data, "csrf_token": _csrf(form.text)}).status_code < 500
    big = client.post("/follow-ups/99999999999999/attendance", data={"csrf_token": "x"})
    assert big.status_code == 422
