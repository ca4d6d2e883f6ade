"""Issue 18 hardening of logins, accounts, audit and web security (SQLite and PostgreSQL).

Login backoff (page and API, stored in the database), the password policy, the account lifecycle
commands, the role/region level rule, the idle timeout (generic and one-statement paths), audit
completeness (form reads and re-renders, refused reads, CLI exports, account changes, masked ID
numbers), security headers, the body limit, the docs without a CDN and private files.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from jingfang.cli import app as cli_app
from registry.accounts import User, WebSession, hash_token
from registry.audit import cli_actor
from registry.web.app import create_app
from web_support import ID_P1, PASSWORD, TODAY, seed, seed_tasks, session_token

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 6, 10, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
def web(database):
    ids = seed(database.engine)
    seed_tasks(database.engine)
    return database, ids


def _app(database, **kw):
    return create_app(database.engine, today=lambda: TODAY, **kw)


def _audit(database, **where):
    clauses = " AND ".join(f"{k} = :{k}" for k in where)
    with database.engine.connect() as conn:
        return conn.execute(sa.text("SELECT actor, action, object_type, object_id, region_code, detail, source FROM audit_log"
                                    + (f" WHERE {clauses}" if clauses else "") + " ORDER BY id"), where).all()


def _page_login(client, username, password):
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


# ---------------------------------------------------------------- login backoff

def test_api_login_is_throttled_per_account_and_survives_a_restart(web):
    database, _ids = web
    with time_machine.travel(T0, tick=False) as traveller:
        client = TestClient(_app(database))
        for _ in range(10):
            r = client.post("/api/session", json={"username": "doc", "password": "wrong-password-1"})
            assert r.status_code == 401 and r.json()["error"] == "LOGIN_FAILED"
        # the right password during the lockout is refused too
        r = client.post("/api/session", json={"username": "doc", "password": PASSWORD})
        assert r.status_code == 429 and r.json()["error"] == "LOGIN_THROTTLED"
        assert r.headers["retry-after"] == str(15 * 60 + 1)
        assert "分钟后再试" in r.json()["message"]
        # another address, same account: still locked (per account); a restart (new app) keeps it
        other = TestClient(_app(database), client=("192.0.2.7", 4000))
        assert other.post("/api/session", json={"username": "doc", "password": PASSWORD}).status_code == 429
        # another account from the first address is locked as well (per address)
        assert client.post("/api/session", json={"username": "police", "password": PASSWORD}).status_code == 429
        # but from another address the other account logs in
        assert other.post("/api/session", json={"username": "police", "password": PASSWORD}).status_code == 200
        traveller.shift(timedelta(minutes=10))
        r = client.post("/api/session", json={"username": "doc", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) == 5 * 60 + 1
        traveller.shift(timedelta(minutes=5, seconds=1))
        ok = client.post("/api/session", json={"username": "doc", "password": PASSWORD})
        assert ok.status_code == 200, ok.text
    with database.engine.connect() as conn:  # a success clears the account's failures
        assert conn.execute(sa.text("SELECT count(*) FROM login_failure WHERE username = 'doc'")).scalar() == 0
    details = [r.detail for r in _audit(database, actor="doc", action="login")]
    assert details.count("接口登录失败") == 10 and details.count("接口登录被限制") == 3 and details[-1] == "接口登录"


def test_page_login_is_throttled_with_retry_after(web):
    database, _ids = web
    with time_machine.travel(T0, tick=False) as traveller:
        client = TestClient(_app(database), follow_redirects=False)
        for i in range(10):
            assert _page_login(client, f"nobody{i}", "wrong-password-1").status_code == 401
        r = _page_login(client, "doc", PASSWORD)
        assert r.status_code == 429 and "登录失败次数过多" in r.text and int(r.headers["retry-after"]) > 0
        assert "jf_session" not in r.headers.get("set-cookie", "")
        traveller.shift(timedelta(minutes=15, seconds=1))
        ok = _page_login(client, "doc", PASSWORD)
        assert ok.status_code == 303 and ok.headers["location"] == "/worklist"


# ---------------------------------------------------------------- password policy

@pytest.mark.parametrize("password, code", [
    ("short-pw1", "PASSWORD_TOO_SHORT"),
    ("wang-is-my-name", "PASSWORD_CONTAINS_USERNAME"),
    ("XWANGX12345", "PASSWORD_CONTAINS_USERNAME"),
    ("qwertyuiop", "PASSWORD_TOO_COMMON"),
    ("Password123", "PASSWORD_TOO_COMMON"),
])
def test_password_policy_on_user_add(database, password, code):
    seed(database.engine)
    result = CliRunner().invoke(cli_app, ["user", "add", "wang", "--role", "township_doctor", "--region", "T2",
                                          "--password", password, "--db", database.url])
    assert result.exit_code == 1 and f"错误 [{code}]" in result.output, result.output
    with Session(database.engine) as s:
        assert s.get(User, "wang") is None


def test_password_policy_on_every_change(web):
    database, _ids = web
    runner = CliRunner()
    r = runner.invoke(cli_app, ["user", "reset-password", "doc", "--password-stdin", "--db", database.url], input="12345678\n")
    assert r.exit_code == 1 and "错误 [PASSWORD_TOO_SHORT]" in r.output
    token = session_token(database.engine, "doc")
    client = TestClient(_app(database))
    h = {"Authorization": f"Bearer {token}"}
    r = client.post("/api/me/password", json={"old_password": PASSWORD, "new_password": "1234567890"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "PASSWORD_TOO_COMMON" and "过于常见" in r.json()["message"]
    r = client.post("/api/me/password", json={"old_password": "not-my-password", "new_password": "a-fresh-secret-42"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "PASSWORD_WRONG"


def test_password_change_page_ends_the_other_sessions(web):
    database, _ids = web
    other = session_token(database.engine, "doc")
    client = TestClient(_app(database), follow_redirects=False)
    assert _page_login(client, "doc", PASSWORD).status_code == 303
    page = client.get("/account/password")
    assert page.status_code == 200 and "修改密码" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    bad = client.post("/account/password", data={"csrf_token": csrf, "old_password": PASSWORD, "new_password": "doc-secret-123",
                                                  "new_password2": "doc-secret-123"})
    assert bad.status_code == 422 and "不能包含用户名" in bad.text
    ok = client.post("/account/password", data={"csrf_token": csrf, "old_password": PASSWORD,
                                                 "new_password": "a-fresh-secret-42", "new_password2": "a-fresh-secret-42"})
    assert ok.status_code == 303
    assert client.get("/worklist").status_code == 200  # this session stays
    assert client.get("/api/me", headers={"Authorization": f"Bearer {other}"}).status_code == 401  # the other ended
    fresh = TestClient(_app(database), client=("192.0.2.9", 1))
    assert fresh.post("/api/session", json={"username": "doc", "password": "a-fresh-secret-42"}).status_code == 200
    assert [r.detail for r in _audit(database, action="account")] == ["修改本人密码，结束其他 1 个会话"]


# ---------------------------------------------------------------- account lifecycle

def test_account_lifecycle_commands_are_audited(web):
    database, _ids = web
    runner = CliRunner()
    db = ["--db", database.url]
    client = TestClient(_app(database))

    token = session_token(database.engine, "doc")
    r = runner.invoke(cli_app, ["user", "deactivate", "doc", *db])
    assert r.exit_code == 0 and "已停用账号 doc，结束 1 个会话" in r.output
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post("/api/session", json={"username": "doc", "password": PASSWORD}).status_code == 401

    token = session_token(database.engine, "police")
    r = runner.invoke(cli_app, ["user", "reset-password", "police", "--password-stdin", *db], input="fresh-secret-for-p7\n")
    assert r.exit_code == 0 and "结束 1 个会话" in r.output, r.output
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post("/api/session", json={"username": "police", "password": PASSWORD}).status_code == 401
    assert client.post("/api/session", json={"username": "police", "password": "fresh-secret-for-p7"}).status_code == 200

    token = session_token(database.engine, "civil")
    r = runner.invoke(cli_app, ["user", "sessions", "revoke", "civil", *db])
    assert r.exit_code == 0 and "已结束账号 civil 的 1 个会话" in r.output
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    r = runner.invoke(cli_app, ["user", "set-role", "doc2", "police", "--region", "C", *db])
    assert r.exit_code == 0, r.output
    with Session(database.engine) as s:
        assert (s.get(User, "doc2").role, s.get(User, "doc2").region_code) == ("police", "C")
    r = runner.invoke(cli_app, ["user", "add", "zhao", "--role", "civil_affairs", "--region", "T2",
                                "--password-stdin", *db], input="zhao-has-a-secret\n")
    assert r.exit_code == 1 and "PASSWORD_CONTAINS_USERNAME" in r.output
    r = runner.invoke(cli_app, ["user", "add", "zhao", "--role", "civil_affairs", "--region", "T2",
                                "--password-stdin", *db], input="a-civil-secret-9\n")
    assert r.exit_code == 0, r.output
    assert runner.invoke(cli_app, ["user", "deactivate", "nobody", *db]).exit_code == 1

    rows = _audit(database, action="account")
    actor = cli_actor()
    assert [(r.actor, r.object_id, r.source) for r in rows] == [(actor, u, "cli") for u in
                                                                ("doc", "police", "civil", "doc2", "zhao")]
    assert rows[3].detail.startswith("角色 township_doctor@T2 → police@C")


@pytest.mark.parametrize("role, region, message", [
    ("township_doctor", "C", "乡镇精防医生只能绑定到乡镇(街道)，地区 C（台山市）是县(市、区)"),
    ("township_doctor", "V1", "乡镇精防医生只能绑定到乡镇(街道)，地区 V1（东坑村）是村(社区)"),
    ("county_admin", "T1", "县级管理员只能绑定到县(市、区)，地区 T1（台城街道）是乡镇(街道)"),
    ("police", "V1", "民警只能绑定到乡镇(街道)或县(市、区)，地区 V1（东坑村）是村(社区)"),
    ("civil_affairs", "V2", "民政专干只能绑定到乡镇(街道)或县(市、区)，地区 V2（西坑村）是村(社区)"),
])
def test_role_level_must_match_region_level(database, role, region, message):
    """The message names the levels by ``registry.codes.RegionLevel``'s labels (one home for labels)."""
    seed(database.engine)
    runner = CliRunner()
    r = runner.invoke(cli_app, ["user", "add", "li", "--role", role, "--region", region, "--password", "a-long-secret-1",
                                "--db", database.url])
    assert r.exit_code == 1 and "错误 [REGION_LEVEL_MISMATCH]" in r.output and message in r.output, r.output
    r = runner.invoke(cli_app, ["user", "set-role", "doc", role, "--region", region, "--db", database.url])
    assert r.exit_code == 1 and "错误 [REGION_LEVEL_MISMATCH]" in r.output and message in r.output, r.output
    with Session(database.engine) as s:
        assert s.get(User, "li") is None
        assert (s.get(User, "doc").role, s.get(User, "doc").region_code) == ("township_doctor", "T1")


@pytest.mark.parametrize("fast_reads", [False, True])
def test_idle_sessions_end(web, fast_reads):
    """30 minutes without a request end a session (generic and one-statement paths); use keeps it alive."""
    database, _ids = web
    with time_machine.travel(T0, tick=False) as traveller:
        app = _app(database)
        app.state.ctx.fast_reads = fast_reads
        client = TestClient(app, follow_redirects=False)
        busy, idle = session_token(database.engine, "doc"), session_token(database.engine, "admin")
        for _ in range(3):  # 3 × 20 minutes of use: the busy session lives on, the idle one ends
            traveller.shift(timedelta(minutes=20))
            r = client.get("/patients/P1", cookies={"jf_session": busy})
            assert r.status_code == 200, r.text
        assert client.get("/patients/P1", cookies={"jf_session": idle}).headers["location"] == "/login"
        traveller.shift(timedelta(minutes=30, seconds=1))
        for path in ("/patients/P1", "/worklist"):
            assert client.get(path, cookies={"jf_session": busy}).headers["location"] == "/login"
        r = client.get("/api/me", headers={"Authorization": f"Bearer {busy}"})
        assert r.status_code == 401 and r.json()["error"] == "SESSION_EXPIRED"
    with Session(database.engine) as s:
        row = s.get(WebSession, hash_token(busy))
        assert row.last_seen_at == T0 + timedelta(minutes=60)


# ---------------------------------------------------------------- audit

def test_form_pages_and_their_error_rerenders_are_audited(web):
    database, _ids = web
    client = TestClient(_app(database), follow_redirects=False)
    assert _page_login(client, "doc", PASSWORD).status_code == 303
    form = client.get("/patients/P1/follow-ups/new")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    bad = client.post("/patients/P1/follow-ups/new", data={"csrf_token": csrf, "visit_on": "2026-06-09", "mode": "9"})
    assert bad.status_code == 422 and "陈一" in bad.text  # the re-render shows the 一历
    status = client.post("/patients/P1/status", data={"csrf_token": csrf, "status": "dead", "status_on": "not-a-date"})
    assert status.status_code == 422
    reads = [(r.actor, r.object_id, r.region_code) for r in _audit(database, action="read", object_type="patient")]
    assert reads == [("doc", "P1", "V1")] * 3


def test_refused_reads_are_audited_and_never_name_a_hidden_patient(web):
    database, ids = web
    client = TestClient(_app(database))
    doc2 = {"Authorization": f"Bearer {session_token(database.engine, 'doc2')}"}
    assert client.get("/api/patients/P1", headers=doc2).status_code == 403
    civil = {"Authorization": f"Bearer {session_token(database.engine, 'civil')}"}
    # civil affairs probing the follow-up of P1 (not on their list): no patient named in the answer
    r = client.post(f"/api/follow-ups/{ids['f1']}/attendance", json={"attended": True}, headers=civil)
    assert r.status_code == 403 and r.json()["error"] == "PATIENT_FORBIDDEN"
    assert "P1" not in r.text and "陈一" not in r.text
    assert client.get("/api/audit", headers=civil).status_code == 403
    refused = [(r.actor, r.object_id, r.detail) for r in _audit(database, action="refused")]
    assert refused == [("doc2", "/api/patients/P1", "GET PATIENT_FORBIDDEN"),
                       ("civil", f"/api/follow-ups/{ids['f1']}/attendance", "POST PATIENT_FORBIDDEN"),
                       ("civil", "/api/audit", "GET ROLE_FORBIDDEN")]


def test_search_by_id_number_is_masked_in_the_audit_log(web):
    database, _ids = web
    client = TestClient(_app(database))
    h = {"Authorization": f"Bearer {session_token(database.engine, 'doc')}"}
    assert [p["patient_id"] for p in client.get("/api/patients", params={"q": ID_P1}, headers=h).json()["patients"]] == ["P1"]
    page = TestClient(_app(database), follow_redirects=False)
    _page_login(page, "doc", PASSWORD)
    assert page.get("/search", params={"q": ID_P1}).status_code == 200
    rows = _audit(database, action="search")
    assert len(rows) == 2
    with database.engine.connect() as conn:
        everything = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM audit_log")) for v in row)
    assert ID_P1 not in everything and "440781********0018" in rows[0].detail


def test_cli_exports_are_audited_with_the_os_user(web, tmp_path):
    database, _ids = web
    runner = CliRunner()
    db = ["--db", database.url]
    assert runner.invoke(cli_app, ["tasks", "--as-of", "2026-06-10", "--json", *db]).exit_code == 0
    assert runner.invoke(cli_app, ["rates", "--month", "2026-05", "--json", *db]).exit_code == 0
    r = runner.invoke(cli_app, ["report", "--month", "2026-05", "--out", str(tmp_path / "r.pdf"), *db])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["lists", "--week", "2026-06-08", "--township", "T1", "--out", str(tmp_path / "l"), *db])
    assert r.exit_code == 0, r.output
    rows = _audit(database, action="export")
    assert {(r.actor, r.object_type) for r in rows} == {(cli_actor(), t) for t in ("tasks", "rates", "monthly_report", "lists")}
    assert cli_actor().startswith("cli:") and cli_actor() != "cli:unknown"


# ---------------------------------------------------------------- web security

def test_security_headers_on_every_response(web):
    database, _ids = web
    client = TestClient(_app(database), follow_redirects=False)
    for path in ("/login", "/api/me", "/nowhere", "/static/app.css", "/openapi.json"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "script-src 'self'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "same-origin"
        assert "strict-transport-security" not in r.headers
    secure = TestClient(_app(database), base_url="https://testserver", follow_redirects=False)
    assert secure.get("/login").headers["strict-transport-security"].startswith("max-age=")


def test_hsts_when_the_base_url_is_https(web, monkeypatch):
    from registry.config import get_settings

    database, _ids = web
    monkeypatch.setenv("JINGFANG_BASE_URL", "https://jingfang.example.cn")
    get_settings.cache_clear()
    try:
        client = TestClient(_app(database), follow_redirects=False)
        assert "max-age" in client.get("/login").headers["strict-transport-security"]
    finally:
        monkeypatch.delenv("JINGFANG_BASE_URL")
        get_settings.cache_clear()


def test_templates_have_no_inline_script_or_style():
    """The CSP has no 'unsafe-inline': every web template must do without inline code."""
    for path in (ROOT / "templates" / "web").glob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path
        assert "<style" not in text and not re.search(r"\sstyle=", text), path
        assert not re.search(r"\son[a-z]+=", text) and "javascript:" not in text, path


def test_request_bodies_are_limited(web):
    database, _ids = web
    client = TestClient(_app(database))
    h = {"Authorization": f"Bearer {session_token(database.engine, 'doc')}"}
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    r = client.post("/api/patients", content=big, headers={**h, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "BODY_TOO_LARGE"

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"x" * 65536

    r = client.post("/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and r.json()["error"] == "BODY_TOO_LARGE"
    assert database.count("patient") == 5


def test_api_docs_load_nothing_from_a_cdn(web):
    database, _ids = web
    client = TestClient(_app(database))
    assert client.get("/api/docs").status_code == 404
    spec = client.get("/openapi.json")
    assert spec.status_code == 200 and "/api/session" in spec.json()["paths"]
    for path in ROOT.glob("registry/web/**/*.py"):
        assert "cdn.jsdelivr" not in path.read_text(encoding="utf-8") and "unpkg.com" not in path.read_text(encoding="utf-8")


def test_the_sqlite_database_file_is_private(tmp_path):
    from registry.db import make_engine, upgrade

    os.umask(old := os.umask(0o022))
    try:
        engine = make_engine(f"sqlite:///{tmp_path}/new.db")
        upgrade(engine)
        engine.dispose()
        assert stat.S_IMODE((tmp_path / "new.db").stat().st_mode) == 0o600
        loose = tmp_path / "old.db"
        loose.touch(mode=0o644)
        os.chmod(loose, 0o644)
        make_engine(f"sqlite:///{loose}").dispose()
        assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_files_the_command_writes_are_not_world_readable(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = ("import os, sys; from jingfang import cli; sys.argv = ['jingfang', '--help'];\n"
              "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
              f"open({str(out)!r}, 'w').write('x')")
    subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, preexec_fn=lambda: os.umask(0o022),
                   timeout=300, check=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_new_routes_in_the_role_matrix(web):
    """The password page is every role's own (and nobody else's); anonymous calls go to the login."""
    from web_support import USERS

    database, _ids = web
    anonymous = TestClient(_app(database), follow_redirects=False)
    assert anonymous.get("/account/password").headers["location"] == "/login"
    assert anonymous.post("/account/password", data={}).headers["location"] == "/login"
    assert anonymous.post("/api/me/password", json={}).status_code == 401
    for username in USERS:
        client = TestClient(_app(database), follow_redirects=False)
        client.cookies.set("jf_session", session_token(database.engine, username))
        page = client.get("/account/password")
        assert page.status_code == 200 and 'action="/account/password"' in page.text, username
        forged = client.post("/account/password", data={"csrf_token": "forged", "old_password": PASSWORD,
                                                        "new_password": "a-fresh-secret-42", "new_password2": "a-fresh-secret-42"})
        assert forged.status_code == 403, username
        assert client.get("/account/password?saved=abc").status_code == 422
    assert [r.actor for r in _audit(database, action="refused")] == list(USERS)
    assert _audit(database, action="account") == []
