"""Browser tests: headless Debian Chromium (Playwright) against a real uvicorn server on 127.0.0.1.

SQLite only (browser tests are slow on 2 cores); the API tests cover both databases.
Screenshots of the main pages go to tests/artifacts/.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn

from registry.db import make_engine
from registry.web.app import create_app
from web_support import ID_P1, PASSWORD, TODAY, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(_sqlite_template, tmp_path_factory):
    from schedules.generation import generate

    path = tmp_path_factory.mktemp("web-browser") / "jingfang.db"
    shutil.copy(_sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    seed(engine)
    generate(engine, as_of=TODAY)  # the real scheduler makes the tasks
    app = create_app(engine, today=lambda: TODAY)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}", engine
    srv.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def login(browser, base: str, username: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def audit(engine, **where):
    clauses = " AND ".join(f"{k} = :{k}" for k in where)
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT actor, action, object_type, object_id, source FROM audit_log WHERE {clauses}"), where).all()


def test_each_role_logs_in_to_its_home(server, browser):
    base, engine = server
    bad = browser.new_page()
    bad.goto(base + "/login")
    bad.fill("input[name=username]", "doc")
    bad.fill("input[name=password]", "wrong-password")
    bad.click("button[type=submit]")
    assert "用户名或密码错误" in bad.inner_text("[role=alert]")
    assert bad.input_value("input[name=username]") == "doc"
    bad.close()
    homes = {"doc": ("/worklist", "今日工作清单"), "admin": ("/dashboard", "月度指标看板"),
             "police": ("/mylist", "我的名单"), "civil": ("/mylist", "我的名单")}
    for username, (path, heading) in homes.items():
        page = login(browser, base, username)
        assert page.url == base + path
        assert heading in page.inner_text("h1")
        page.screenshot(path=str(ARTIFACTS / f"home-{username}.png"), full_page=True)
        cookie = next(c for c in page.context.cookies() if c["name"] == "jf_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        page.close()
    assert {row.actor for row in audit(engine, action="login")} >= {"doc", "admin", "police", "civil"}


def test_doctor_records_follow_up_and_task_leaves_the_list(server, browser):
    base, engine = server
    page = login(browser, base, "doc")
    row = page.locator("#worklist tr[data-patient=P1]")
    assert row.count() == 1
    assert "逾期" in row.inner_text() and "联合入户" in row.inner_text()
    assert "刘警官" in row.inner_text() and "赵网格员" in row.inner_text()  # the team members to call
    page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)

    page.goto(base + "/patients/P1")
    assert page.inner_text("#id-number") == ID_P1  # unmasked on the doctor's own patient page
    assert "精神分裂症" in page.inner_text("#diagnosis")
    page.screenshot(path=str(ARTIFACTS / "patient-record.png"), full_page=True)

    page.goto(base + "/patients/P1/follow-ups/new")
    page.fill("#i-visit_on", "2026-06-09")
    page.check("input[name=mode][value='2']")
    page.select_option("#i-risk_level", "3")
    page.check("input[name=classification][value='3']")  # contradicts risk 3 (rules.md §4)
    page.fill("#i-incidents_mild", "两次")
    page.fill("#i-lab_tests", "血常规正常")
    page.click("button[type=submit]")
    assert "请修改标红的" in page.inner_text(".alert")
    assert "稳定要求危险性为0级" in page.inner_text("#f-classification .error")
    assert "次数“两次”无效" in page.inner_text("#f-incidents_mild .error")
    assert page.input_value("#i-lab_tests") == "血常规正常"  # what was typed is kept
    assert page.input_value("#i-visit_on") == "2026-06-09"
    page.screenshot(path=str(ARTIFACTS / "follow-up-form-errors.png"), full_page=True)

    page.select_option("#i-risk_level", "0")
    page.fill("#i-incidents_mild", "0")
    page.check("input[name=insight][value='1']")
    page.select_option("#i-attended_police", "1")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/patients/P1?saved=1")
    assert "已保存" in page.inner_text("[role=status]")
    assert "2026-06-09" in page.inner_text("#timeline")

    page.fill("#f-checked_on input[name=checked_on]", "2026-06-30")  # in the future
    page.click("#f-checked_on button")
    assert "晚于今天" in page.inner_text("#f-checked_on .error")
    page.fill("#f-checked_on input[name=checked_on]", "2026-06-08")
    page.click("#f-checked_on button")
    page.wait_for_load_state()
    assert "已保存" in page.inner_text("[role=status]") and "2026-06-08" in page.inner_text("main")

    page.goto(base + "/worklist")
    assert page.locator("#worklist tr[data-patient=P1]").count() == 0
    assert audit(engine, actor="doc", action="write", object_type="follow_up")
    assert audit(engine, actor="doc", action="read", object_type="patient", object_id="P1")
    page.close()


def test_police_sees_only_their_list_and_never_a_diagnosis(server, browser):
    base, engine = server
    page = login(browser, base, "police")
    text = page.inner_text("main")
    assert "陈一" in text and "李二" not in text and "张三" not in text
    response = page.goto(base + "/patients/P2")
    assert response.status == 403
    assert "无权" in page.inner_text("h1")
    response = page.goto(base + "/patients/P1")
    assert response.status == 200
    body = page.inner_text("body")
    assert "精神分裂症" not in body and "诊断" not in body and "利培酮" not in body
    assert "440781********0018" in body and ID_P1 not in body
    page.screenshot(path=str(ARTIFACTS / "police-patient.png"), full_page=True)
    rows = page.locator("#attendance tr")
    before = page.inner_text("#attendance")
    assert "登记到场" in before
    page.locator("#attendance button", has_text="登记到场").first.click()
    page.wait_for_load_state()
    assert "已到场" in page.inner_text("#attendance")
    assert rows.count() >= 2
    assert audit(engine, actor="police", action="write", object_type="follow_up_participant")
    page.close()


def test_admin_dashboard_search_and_audit(server, browser):
    base, engine = server
    page = login(browser, base, "admin")
    assert page.locator("#rates").count() == 1
    assert "在册患者规范管理率" in page.inner_text("#rates")
    assert "台城街道" in page.inner_text("#rates thead") and "大江镇" in page.inner_text("#rates thead")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.goto(base + "/search?q=黄")
    assert "黄四" in page.inner_text("#results")
    page.goto(base + "/audit")
    audit_text = page.inner_text("#audit")
    assert "检索" in audit_text and "127.0.0.1" in audit_text
    page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)
    pdf = page.request.get(base + "/reports/monthly.pdf?month=2026-05")
    assert pdf.status == 200 and pdf.body()[:5] == b"%PDF-"
    assert audit(engine, actor="admin", action="export", object_type="monthly_report")
    assert audit(engine, actor="admin", action="search")
    page.close()
