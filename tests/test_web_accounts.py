"""Accounts, sessions, CSRF on forms, page errors and the demo accounts (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from registry.accounts import User, WebSession, hash_token
from registry.cli import app as cli_app
from registry.web.app import create_app
from registry.web.demo import DEMO_PASSWORD, create_demo_users
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
        (["li", "--role", "police", "--region", "NOWHERE", "--password", "longenough1"], "REGION_UNKNOWN"),
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
    page = client.get("/worklist", cookies={"jf_session": token})
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_pages_answer_errors_in_chinese_never_500(client, database):
    client.cookies.set("jf_session", session_token(database.engine, "doc"))
    assert client.get("/patients/P4").status_code == 403  # other township
    assert "不在您的管辖范围" in client.get("/patients/P4").text
    assert client.get("/dashboard").status_code == 403
    assert client.get("/no/such/page").status_code == 404
    assert "页面或接口不存在" in client.get("/no/such/page").text
    bad_month = client.get("/dashboard?month=2026-13", cookies={"jf_session": session_token(database.engine, "admin")})
    assert bad_month.status_code == 422 and "月份(month)" in bad_month.text
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
    rows = create_demo_users(database.engine, echo=lines.append)
    assert rows == [("admin", "county_admin", "C"), ("doctor", "township_doctor", "T1"), ("police", "police", "T1"),
                    ("civil", "civil_affairs", "T1")]
    assert any("用户名 doctor" in line and DEMO_PASSWORD in line for line in lines)
    create_demo_users(database.engine, echo=lines.append)  # re-running resets, never duplicates
    c = TestClient(create_app(database.engine, today=lambda: TODAY))
    r = c.post("/api/session", json={"username": "doctor", "password": DEMO_PASSWORD})
    assert r.status_code == 200 and r.json()["role"] == "township_doctor"
