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


def _seed_alerts(engine) -> None:
    """Two real-time alerts of T1 (rules.md §12), so /alerts and the notices areas have rows to lay out."""
    import sqlalchemy as sa

    from registry.clock import now_utc
    from schedules.models import Alert

    with engine.begin() as conn:
        conn.execute(sa.insert(Alert), [
            {"kind": "incident", "source_id": 900001, "patient_id": "P1", "township_code": "T1", "event_on": TODAY, "created_at": now_utc()},
            {"kind": "risk_rise", "source_id": 900002, "patient_id": "P2", "township_code": "T1", "event_on": TODAY, "created_at": now_utc()},
        ])


# a township address as a doctor writes it (session 13: cut off in a 280 px box on the edit form)
LONG_ADDRESS = "台城街道东坑村委会东坑村新屋巷三十二号之一（村委会往北约二百米，旧粮所宿舍楼后第二排，门前有一棵大榕树）"
LONG_HOSPITAL = "江门市第三人民医院（江门市精神卫生中心）精神科二病区（老年精神科）"


def _seed_long_text(engine) -> None:
    """P1's address, guardian's address and diagnosing hospital at their real length: every page that
    shows them (record, lists, the edit form) must show them whole, at 360 px and at 1280 px."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE patient SET address = :a, guardian_address = :g, diagnosing_hospital = :h "
                             "WHERE patient_id = 'P1'"), {"a": LONG_ADDRESS, "g": "同上：" + LONG_ADDRESS, "h": LONG_HOSPITAL})


@pytest.fixture(scope="module")
def server(_sqlite_template, tmp_path_factory):
    from schedules.generation import generate

    path = tmp_path_factory.mktemp("web-browser") / "jingfang.db"
    shutil.copy(_sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    seed(engine)
    generate(engine, as_of=TODAY)  # the real scheduler makes the tasks
    _seed_history(engine)
    _seed_alerts(engine)
    _seed_long_text(engine)
    from schedules.lists import write_township_lists

    # the week's 五单 issued (archive id 1), for the archive pages (issue 15)
    write_township_lists(engine, township_code="T1", week=TODAY, out_dir=path.parent / "issued", actor="scheduler")
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


def _seed_history(engine) -> None:
    """Issue 13: a change of P1 with a long reason (the history tab) and a move of P3 waiting for T2 (待接收)."""
    from registry.web import edits
    from registry.web.scopes import scope_for
    from registry.accounts import User
    from registry.regions import LiveRegionTree
    from sqlmodel import Session

    with Session(engine) as s:
        doc = s.get(User, "doc")
    scope = scope_for(doc, LiveRegionTree(engine), TODAY)
    edits.edit_patient(engine, scope, "P1", {"diagnosed_on": "2024-12-01",
                                             "reason": "确诊日期按市精神卫生中心出院小结更正，经家属电话确认"}, today=TODAY, source="test")
    edits.request_transfer(engine, scope, "P3", {"to_township": "T2", "reason": "随子女迁居大江镇江南村"}, today=TODAY,
                           source="test")
    # issue 14: P1's joint visit of 2026-05-20 closed 联合未到位, the officer absent with a reason (/my/attendance)
    import sqlalchemy as sa

    from registry.models import FollowUp, FollowUpParticipant, VisitTask

    with Session(engine) as s:
        fu = s.execute(sa.select(FollowUp).where(FollowUp.patient_id == "P1").order_by(FollowUp.visit_on)).scalars().first()
        s.add(VisitTask(patient_id="P1", kind="follow_up", basis="browser:P1", basis_on=fu.visit_on, due_on=fu.visit_on,
                        nominal_due_on=fu.visit_on, roles="doctor,police,village", joint=True, rule="test", status="done",
                        closed_by=fu.id, joint_outcome="incomplete", missing_roles="police,village"))
        row = s.execute(sa.select(FollowUpParticipant).where(FollowUpParticipant.follow_up_id == fu.id,
                                                             FollowUpParticipant.role == "police")).scalars().one()
        row.reason, row.source = "在派出所值班处理治安警情，未能到场", "self"
        s.add(row)
        s.commit()


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
    page.wait_for_selector(".alert ul")  # the form posts through static/app.js, then the server's page with the errors
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
    page.wait_for_url("**/patients/P1?saved=1&fu=*")
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


# ---------------------------------------------------------------- issue 16: phone first

PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 900}
ROLE_PAGES = {
    "doc": ["/worklist", "/worklist?all=1", "/worklist?kind=health_check", "/patients/P1", "/patients/P3",
            "/patients/P1/follow-ups/new", "/patients/new", "/patients/P2/status", "/search?q=陈", "/search?q=无此人",
            "/patients/P4", "/lists/week", "/ledger", "/gaps", "/reward", "/lists/archive", "/lists/archive/1/joint",
            "/joint-visits/incomplete", "/alerts", "/account/password",
            "/patients/P1/edit", "/patients/P1/history", "/patients/P2/transfer", "/transfers",  # issue 13
            "/patients/P1/emergencies/new", "/patients/P1/emergencies", "/emergencies/overdue", "/emergencies/open",
            "/notices?event=lists.weekly&township=T1&week=2026-06-08"],  # issue 14
    "doc2": ["/transfers", "/patients/P4/edit", "/patients/P4/history"],  # a move waiting for T2 (issue 13)
    "police": ["/mylist", "/patients/P1", "/patients/P2", "/lists/week", "/ledger", "/lists/archive", "/account/password",
               "/alerts", "/alerts?township=T1",
               "/patients/P1/history", "/patients/P1/emergencies/new", "/patients/P1/emergencies", "/emergencies/overdue",
               "/emergencies/open", "/my/attendance", "/notices?event=emergency.overdue&township=T1"],  # issue 14
    "civil": ["/mylist", "/patients/P3", "/lists/week", "/reward", "/lists/archive", "/alerts", "/account/password",
              "/my/attendance", "/notices?event=lists.weekly&township=T1&week=2026-06-08",
              "/patients/P3/emergencies/new"],  # rules.md §9: every team member opens one
    "admin": ["/dashboard", "/worklist", "/worklist?all=1", "/search?q=黄", "/audit", "/patients/P1", "/ledger", "/export",
              "/gaps", "/reward", "/lists/archive?township=T1", "/lists/archive/1/followup", "/joint-visits/incomplete",
              "/alerts",
              "/account/password", "/patients/P1/edit", "/patients/P1/history", "/transfers", "/emergencies/overdue",
              "/notices?event=emergency.overdue&township=T1"],
}
REFUSED = {("doc", "/patients/P4"): 403, ("police", "/patients/P2"): 403, ("police", "/patients/P1/history"): 403}  # another township's patient; not on the police lists
# what a thumb taps: buttons, fields, menu entries, phone numbers, choice labels
TAP_TARGETS = ("button, a.button, input:not([type=hidden]):not([type=radio]):not([type=checkbox]), select, textarea, "
               "a.tel, .choice, header nav a, .menu-button, .pager a, "
               ".actions a, .notices a, .who a, "  # a form's 取消, 全部预警 and the alerts' names, 我的账号 (the walk)
               "label:has(> input[type=checkbox]), label:has(> input[type=radio])")  # /alerts' 未读 box (session 13)
# every control a person fills has a name a screen reader (and a phone's autofill) reads: a <label>, or aria-label
UNLABELLED_JS = """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea')).filter(e =>
  !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')
).map(e => e.outerHTML.slice(0, 120))"""
# a menu entry broken over two lines ("今日工" / "作": the desktop's menu bar squeezed its entries, session 13)
BROKEN_MENU_JS = """() => Array.from(document.querySelectorAll('header nav a, .who a, .who span, .who button')).filter(e => {
  const text = document.createRange(); text.selectNodeContents(e);
  return new Set(Array.from(text.getClientRects()).map(r => Math.round(r.top))).size > 1;
}).map(e => e.textContent.trim())"""
SMALL_TARGETS_JS = """(sel) => Array.from(document.querySelectorAll(sel)).filter(e => {
  const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && r.height < 43.5;
}).map(e => e.outerHTML.slice(0, 120))"""


def phone_login(browser, base: str, username: str, viewport=PHONE, **context_args):
    context = browser.new_context(viewport=viewport, locale="zh-CN", **context_args)
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page


def no_sideways_scroll(page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url}: {width[0]} px wide in a {width[1]} px viewport"


def open_menu(page) -> None:
    if not page.is_visible("header nav"):
        page.click(".menu-button")
    assert page.is_visible("header nav")


def test_every_page_fits_the_phone_and_the_desktop(server, browser):
    base, _engine = server
    for viewport in (PHONE, DESKTOP):
        anonymous = browser.new_context(viewport=viewport)
        login_page = anonymous.new_page()
        login_page.goto(base + "/login")
        no_sideways_scroll(login_page)
        anonymous.close()
        for username, paths in ROLE_PAGES.items():
            context, page = phone_login(browser, base, username, viewport)
            for path in paths:
                response = page.goto(base + path)
                want = REFUSED.get((username, path), 200)  # a refusal page must fit the screen too
                assert response is not None and response.status == want, (username, path, response and response.status)
                no_sideways_scroll(page)
                assert page.evaluate(UNLABELLED_JS) == [], (username, path)
                if viewport is PHONE:
                    assert not page.is_visible("header nav")  # the menu is folded on a phone
                    assert page.evaluate(SMALL_TARGETS_JS, TAP_TARGETS) == [], path
                    name = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "home"
                    page.screenshot(path=str(ARTIFACTS / f"phone-{username}-{name}.png"), full_page=True)
                else:
                    assert page.is_visible("header nav") and not page.is_visible(".menu-button")  # desktop as it was
                    assert page.evaluate(BROKEN_MENU_JS) == [], (username, path)
                    if path == "/dashboard":  # the desktop keeps the fraction on hover: the matrix stays narrow
                        assert not page.is_visible("#rates .frac") and page.get_attribute("#rates .rate", "title")
            if viewport is PHONE:
                open_menu(page)
                assert page.evaluate(SMALL_TARGETS_JS, TAP_TARGETS) == []
                page.screenshot(path=str(ARTIFACTS / f"phone-{username}-menu.png"))
            context.close()


def test_the_menu_opens_without_javascript(server, browser):
    base, _engine = server
    context, page = phone_login(browser, base, "doc", java_script_enabled=False)
    assert not page.is_visible("header nav")
    page.click(".menu-button")
    assert page.is_visible("header nav a[href='/search']")
    page.click("header nav a[href='/search']")
    page.wait_for_url("**/search")
    context.close()


BARE_PHONES_JS = """() => { const out = []; const w = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
  while (w.nextNode()) { const n = w.currentNode; if (/\\d{4}-\\d{4}|1\\d{10}/.test(n.textContent) && !n.parentElement.closest("a[href^='tel:']")
    && !n.parentElement.closest('.mono, footer')) out.push(n.textContent.trim()); } return out; }"""


def test_phone_numbers_are_tap_to_call(server, browser):
    base, _engine = server
    context, page = phone_login(browser, base, "doc")
    page.goto(base + "/patients/P1")
    hrefs = page.eval_on_selector_all("a[href^='tel:']", "as => as.map(a => a.getAttribute('href'))")
    assert {"tel:13800000001", "tel:0750-1100", "tel:0750-1200"} <= set(hrefs)  # guardian, police, village
    for path in ("/worklist?all=1", "/patients/P3", "/ledger"):
        page.goto(base + path)
        assert page.evaluate(BARE_PHONES_JS) == [], path  # every phone number shown is inside a tel: link
    context.close()
    context, page = phone_login(browser, base, "police")
    page.goto(base + "/patients/P1")
    hrefs = page.eval_on_selector_all("a[href^='tel:']", "as => as.map(a => a.getAttribute('href'))")
    assert {"tel:13800000001", "tel:0750-1100"} <= set(hrefs)
    page.goto(base + "/ledger")  # session 13: the guardian's number on the officer's ledger was plain text
    assert "tel:13800000001" in page.eval_on_selector_all("#ledger a[href^='tel:']", "as => as.map(a => a.getAttribute('href'))")
    assert page.evaluate(BARE_PHONES_JS) == []
    context.close()


def _rows_of(engine, patient_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, idempotency_key FROM follow_up WHERE patient_id = :p"), {"p": patient_id}).all()


def _fill_visit(page, note: str) -> None:
    page.fill("#i-visit_on", "2026-06-09")
    page.check("input[name=mode][value='2']")
    page.select_option("#i-risk_level", "0")
    page.fill("#i-lab_tests", note)


def test_a_follow_up_draft_survives_a_reload_and_a_lost_signal(server, browser):
    base, engine = server
    context, page = phone_login(browser, base, "doc")
    before = len(_rows_of(engine, "P3"))
    page.goto(base + "/patients/P3/follow-ups/new")
    assert page.get_attribute("#i-visit_on", "type") == "date"
    key = page.input_value("input[name=idempotency_key]")
    _fill_visit(page, "草稿：血常规正常")
    page.screenshot(path=str(ARTIFACTS / "phone-doc-follow-up-form.png"), full_page=True)

    page.reload()
    assert page.is_visible("#draft-note") and "已恢复本机保存的草稿" in page.inner_text("#draft-note")
    assert page.input_value("#i-lab_tests") == "草稿：血常规正常"
    assert page.input_value("#i-risk_level") == "0" and page.is_checked("input[name=mode][value='2']")
    assert page.input_value("input[name=idempotency_key]") == key  # the same submission as before the reload

    context.set_offline(True)
    page.click("button[type=submit]")
    page.wait_for_selector("#submit-failed", state="visible")
    assert "网络不可用" in page.inner_text("#submit-failed")
    assert len(_rows_of(engine, "P3")) == before
    page.screenshot(path=str(ARTIFACTS / "phone-doc-follow-up-offline.png"), full_page=True)
    context.set_offline(False)
    page.click("button[type=submit]")
    page.wait_for_url("**/patients/P3?saved=1&fu=*")
    rows = _rows_of(engine, "P3")
    assert len(rows) == before + 1 and [r.idempotency_key for r in rows].count(key) == 1
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('jf-draft:'))") == []  # cleared on save

    page.goto(base + "/patients/P3/follow-ups/new")  # a new form: no draft, a new key
    assert not page.is_visible("#draft-note") and page.input_value("#i-lab_tests") == ""
    assert page.input_value("input[name=idempotency_key]") != key
    context.close()


def test_a_submit_whose_answer_is_lost_is_recorded_once(server, browser):
    base, engine = server
    context, page = phone_login(browser, base, "doc")
    before = len(_rows_of(engine, "P2"))
    page.goto(base + "/patients/P2/follow-ups/new")
    key = page.input_value("input[name=idempotency_key]")
    _fill_visit(page, "回复丢失")

    def lose_the_answer(route):
        route.fetch()  # the server records the visit ...
        route.abort("internetdisconnected")  # ... and the signal drops before the answer arrives

    page.route("**/patients/P2/follow-ups/new", lose_the_answer)
    page.click("button[type=submit]")
    page.wait_for_selector("#submit-failed", state="visible")
    assert len(_rows_of(engine, "P2")) == before + 1
    page.unroute("**/patients/P2/follow-ups/new")
    page.reload()  # even after a reload the draft (and its key) come back
    assert page.input_value("#i-lab_tests") == "回复丢失"
    page.click("button[type=submit]")
    page.wait_for_url("**/patients/P2?saved=1&fu=*")
    rows = _rows_of(engine, "P2")
    assert len(rows) == before + 1 and [r.idempotency_key for r in rows].count(key) == 1
    context.close()


def test_logout_clears_the_drafts(server, browser):
    base, _engine = server
    context, page = phone_login(browser, base, "doc")
    page.goto(base + "/patients/P1/follow-ups/new")
    page.fill("#i-lab_tests", "未提交")
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('jf-draft:doc:'))") == ["jf-draft:doc:P1"]
    open_menu(page)
    page.click("#logout button")
    page.wait_for_url("**/login")
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('jf-draft:'))") == []
    context.close()


def test_forms_are_reachable_and_submittable_on_a_phone(server, browser):
    base, engine = server
    context, page = phone_login(browser, base, "doc")
    page.goto(base + "/worklist?all=1")
    page.select_option("#worklist-filters select[name=village]", "V1")
    page.click("#worklist-filters button")
    page.wait_for_url("**/worklist?*village=V1*")
    shown = page.eval_on_selector_all("#worklist tr[data-patient]", "rs => rs.map(r => r.dataset.patient)")
    assert shown and set(shown) <= {"P1", "P2", "P5"}  # 东坑村's patients only
    open_menu(page)
    page.click("header nav a[href='/search']")
    page.fill("input[name=q]", "陈")
    page.click(".searchbar button")
    assert "陈一" in page.inner_text("#results")
    page.goto(base + "/patients/new")
    page.fill("#i-patient_id", "N16")
    page.fill("#i-name", "吴十六")
    page.check("input[name=sex][value='1']")
    page.fill("#i-birth_date", "1990-02-03")
    page.select_option("#i-village_code", "V1")
    page.select_option("#i-diagnosis", index=1)
    page.click("button[type=submit]")
    page.wait_for_url("**/patients/N16")
    page.fill("#f-checked_on input[name=checked_on]", "2026-06-10")  # registered today: checked today
    page.click("#f-checked_on button")
    page.wait_for_url("**/patients/N16?saved=1")
    page.goto(base + "/patients/N16/status")
    page.check("input[name=status][value=moved_out]")
    page.fill("#i-status_on", "2026-06-10")
    page.click("button[type=submit]")
    page.wait_for_url("**/patients/N16")
    assert "迁出" in page.inner_text("h1")
    open_menu(page)
    page.click("header nav a[href='/lists/week']")
    page.wait_for_url("**/lists/week")
    with page.expect_download() as download:
        # the first list's PDF (随访任务单, the doctor's); the issued week is served from its archive
        # (rules.md §7), so the "正在生成" status may come and go before a selector sees it
        page.click("ul.downloads a[data-download]")
    name = download.value.suggested_filename
    assert "T1" in name and name.endswith(".pdf"), name
    page.wait_for_selector("#download-status:has-text('已生成')")
    context.close()

    context, page = phone_login(browser, base, "police")
    page.goto(base + "/patients/P1")
    page.locator("#attendance button").first.click()
    page.wait_for_url("**/patients/P1")
    context.close()

    context, page = phone_login(browser, base, "admin")
    assert page.is_visible("#rates .rate + .frac")  # the fraction shows beside the rate: no mouse to hover on a phone
    page.fill("input[name=month]", "2026-05")
    page.click(".page-head .searchbar button")
    page.wait_for_url("**/dashboard?month=2026-05")
    no_sideways_scroll(page)
    with page.expect_download() as download:
        page.click("a[data-download]")
        page.wait_for_selector("a[data-download][aria-busy=true]")
    assert download.value.suggested_filename.endswith("2026-05.pdf")
    page.goto(base + "/audit")
    page.select_option("select[name=action]", "export")
    page.click(".searchbar button")
    page.wait_for_url("**/audit?*action=export*")
    assert "导出" in page.inner_text("#audit")
    context.close()


# what a box shows of its value: all of it, neither cut off sideways nor scrolled inside
SHOWS_WHOLE_JS = """(sel) => { const e = document.querySelector(sel);
  return {value: e.value, sideways: e.scrollWidth - e.clientWidth, down: e.scrollHeight - e.clientHeight, width: e.clientWidth}; }"""


def shows_whole(page, selector: str) -> dict:
    box = page.evaluate(SHOWS_WHOLE_JS, selector)
    assert box["sideways"] <= 0 and box["down"] <= 0, (page.url, selector, box)
    return box


def test_long_text_fields_show_their_whole_value(server, browser):
    """修改信息 (session 13): a long 现住址 was cut off inside a 280 px input on the desktop. The stored
    value and one typed or pasted in show whole on the edit, registration, status, move and follow-up
    forms, at 1280 × 900 and at 360 × 780, and no page grows wider than the screen; a line break
    pasted into a one-line field is saved as a space."""
    base, engine = server
    for viewport in (DESKTOP, PHONE):
        context, page = phone_login(browser, base, "doc", viewport)
        page.goto(base + "/patients/P1/edit")
        for selector, value in (("#i-address", LONG_ADDRESS), ("#i-guardian_address", "同上：" + LONG_ADDRESS),
                                ("#i-diagnosing_hospital", LONG_HOSPITAL)):
            box = shows_whole(page, selector)
            assert box["value"] == value
        assert shows_whole(page, "#i-address")["width"] > viewport["width"] / 2  # across the form, not a 280 px box
        page.fill("#i-reason", "按村委会出具的居住证明更正，核对门牌号和路线说明，经患者家属电话确认无误")
        shows_whole(page, "#i-reason")
        page.fill("#i-status_detail", "迁往" + LONG_ADDRESS)
        shows_whole(page, "#i-status_detail")
        no_sideways_scroll(page)
        page.screenshot(path=str(ARTIFACTS / f"long-text-edit-{viewport['width']}.png"), full_page=True)
        for path, selectors in (("/patients/new", ("#i-address", "#i-guardian_address", "#i-diagnosing_hospital")),
                                ("/patients/P1/follow-ups/new", ("#i-lab_tests", "#i-referral_to", "#i-referral_reason",
                                                                 "#i-symptoms_other", "#i-rehabilitation_measures")),
                                ("/patients/P1/status", ("#i-status_detail",)), ("/patients/P1/transfer", ("#i-reason",))):
            page.goto(base + path)
            for selector in selectors:
                page.fill(selector, LONG_ADDRESS + LONG_HOSPITAL)
                shows_whole(page, selector)
            no_sideways_scroll(page)
        page.goto(base + "/patients/P1")
        assert LONG_ADDRESS in page.inner_text("main")
        no_sideways_scroll(page)
        context.close()

    # a line break pasted into a one-line field is saved as a space, never refused as a control character
    context, page = phone_login(browser, base, "doc", DESKTOP)
    page.goto(base + "/patients/P1/edit")
    page.fill("#i-address", "")
    page.locator("#i-address").press_sequentially("幸福路")
    page.keyboard.press("Enter")  # does not break the line
    page.evaluate("""() => { const e = document.querySelector('#i-address'); e.value += '\\n8号';
      e.dispatchEvent(new Event('input', {bubbles: true})); }""")
    assert page.input_value("#i-address") == "幸福路 8号"
    page.click("button[type=submit]")
    page.wait_for_url("**/patients/P1/history?saved=1")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT address FROM patient WHERE patient_id = 'P1'")).scalar_one() == "幸福路 8号"
    context.close()
