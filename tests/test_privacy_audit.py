"""Privacy and scope audit (rules.md §6.1, §8, §10; 精神卫生法 第四条), SQLite and PostgreSQL.

Each test is a defect the audit found, reproduced through the real app (FastAPI TestClient on a
seeded database, tests/web_support.py and the linked accounts of tests/test_named_teams.py):

* one app serves several accounts: a page cached for one scope is never served to another
  (the work-list cache was keyed by role and region only, so a linked officer got the township's
  list after an unlinked colleague had opened it);
* a linked, non-supervisor account cannot fetch the township's issued lists from the archive
  when it cannot download them from the week page (SUPERVISOR_ONLY);
* an emergency record of another region answers exactly as one that does not exist;
* list accounts' tasks carry only the fields their lists need (no rule text naming the patient's
  classification or hospital stay; no risk level for civil affairs);
* 综治 reads its township's 易肇事肇祸台账 (rules.md §10) and every list role's patient page shows
  its own list fields.
"""

from __future__ import annotations

import json
import re
from datetime import date

import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.models import AuditLog
from registry.web.app import create_app
from schedules.models import ListIssue, ListIssueFile
from tests.test_named_teams import linked  # noqa: F401  (the fixture: linked accounts, rules.md §6.1)
from tests.web_support import TODAY, seed, session_token


def _get(client, tokens, user, url):
    return client.get(url, headers={"Authorization": f"Bearer {tokens[user]}"})


# ---------------------------------------------------------------- one app, several accounts: the cache

def test_a_cached_work_list_is_never_served_to_another_scope(linked):  # noqa: F811
    """rules.md §6.1, §8: the work list of an unlinked officer (the township's police tasks) is cached;
    the linked officers of the same township and role asking next get their own tasks only, on the
    API and on 我的名单 — and the other way round."""
    client, tokens, _db = linked
    township = {r["patient_id"] for r in _get(client, tokens, "police", "/api/worklist?all=true").json()["rows"]}
    assert township == {"P1", "P6"}
    for user, own in (("police_linked", {"P1"}), ("police_other", {"P6"}), ("police_lead", {"P1", "P6"})):
        rows = _get(client, tokens, user, "/api/worklist?all=true").json()["rows"]
        assert {r["patient_id"] for r in rows} == own, user
        page = _get(client, tokens, user, "/mylist").text
        assert {pid for pid in ("P1", "P6") if f'href="/patients/{pid}"' in page} == own, user
    # a linked account first, then the unlinked one: still the township's list
    assert {r["patient_id"] for r in _get(client, tokens, "civil_other", "/api/worklist?all=true").json()["rows"]} == set()
    assert {r["patient_id"] for r in _get(client, tokens, "civil_lead", "/api/worklist?all=true").json()["rows"]} == {"P3"}


# ---------------------------------------------------------------- the township's lists, from the archive too

def _issue_week(engine) -> dict[str, int]:
    """T1's week of 2026-06-08 as issued: a stored file per list (bytes stand in for the rendered lists)."""
    with Session(engine) as s:
        issue = ListIssue(township_code="T1", week=date(2026, 6, 8), version=1, issued_by="scheduler", counts="{}")
        s.add(issue)
        s.flush()
        files = {slug: ListIssueFile(issue_id=issue.id, slug=slug, fmt="pdf", file_name=f"2026-06-08_T1_{slug}.pdf",
                                     sha256="0" * 64, size=4, content=f"{slug}".encode())
                 for slug in ("followup", "joint", "risk", "medication", "assistance")}
        s.add_all(files.values())
        s.commit()
        return {slug: f.id for slug, f in files.items()}


def test_a_linked_account_cannot_take_the_township_s_lists_from_the_archive(linked):  # noqa: F811
    """rules.md §6.1: a linked, non-supervisor officer cannot download the township's week lists
    (SUPERVISOR_ONLY) — nor the same lists as issued, from the 五单存档 page, its API or a file link."""
    client, tokens, database = linked
    files = _issue_week(database.engine)
    for user in ("police_linked", "police_other", "civil_linked", "civil_other"):
        for url in ("/lists/week", "/lists/archive", "/api/lists/archive", f"/lists/archive/files/{files['joint']}",
                    f"/lists/archive/files/{files['risk']}", f"/lists/archive/files/{files['assistance']}"):
            r = _get(client, tokens, user, url)
            assert r.status_code == 403 and "SUPERVISOR_ONLY" in r.text, (user, url)
    # the supervisor and an unlinked account still read their own lists' files (and only those)
    for user, readable in (("police_lead", {"joint", "risk"}), ("police", {"joint", "risk"}),
                           ("civil_lead", {"joint", "assistance"})):
        for slug, file_id in files.items():
            r = _get(client, tokens, user, f"/lists/archive/files/{file_id}")
            assert r.status_code == (200 if slug in readable else 404), (user, slug)
        assert _get(client, tokens, user, "/lists/archive").status_code == 200
    with database.engine.connect() as conn:
        refused = conn.execute(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.action == "refused", AuditLog.actor == "police_linked")).scalar()
    assert refused == 6  # every refusal audited (rules.md §8)


# ---------------------------------------------------------------- emergency record numbers

def _message(r) -> str:
    """An error answer's message: the JSON's, or the page's alert."""
    if r.headers["content-type"].startswith("application/json"):
        return r.json()["message"]
    return re.search(r'<p class="alert" role="alert">(.*?)</p>', r.text, re.S).group(1)


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_an_emergency_elsewhere_answers_as_one_that_does_not_exist(database):
    """rules.md §8: another township's doctor (and a list account off the patient's lists) probing record
    numbers gets the same 403 for a record of a patient outside its scope as for a number no record
    has — on the page, the PDF, the API read and the API completion — so no probe learns which exist."""
    seed(database.engine)
    client = TestClient(create_app(database.engine, today=lambda: TODAY))
    doc = {"Authorization": f"Bearer {session_token(database.engine, 'doc')}"}
    opened = client.post("/api/patients/P1/emergencies", headers=doc, json={
        "situations": [2], "reported_at": "2026-06-10 08:00", "place": "东坑村村口", "reporter": "陈父", "scene": "持棍追打邻居"})
    assert opened.status_code == 201, opened.text
    real, missing = opened.json()["id"], opened.json()["id"] + 1000
    for user in ("doc2", "civil"):
        h = {"Authorization": f"Bearer {session_token(database.engine, user)}"}
        seen = []
        for n in (real, missing):
            answers = [client.get(f"/emergencies/{n}", headers=h), client.get(f"/emergencies/{n}/pdf", headers=h),
                       client.get(f"/api/emergencies/{n}", headers=h),
                       client.patch(f"/api/emergencies/{n}", headers=h, json={"effect": "x"})]
            for r in answers:
                assert r.status_code == 403, (user, n, r.request.url, r.status_code)
                assert "陈一" not in r.text and "P1" not in r.text
            assert answers[2].json() == {"error": "PATIENT_FORBIDDEN", "message": f"无权查看应急处置记录 {n}"}
            seen.append([re.sub(rf"记录 {n}\b", "记录 N", _message(r)) for r in answers])
        assert seen[0] == seen[1], user  # the record and the number nobody has: the same answers


# ---------------------------------------------------------------- minimum necessary: a task's fields

def test_list_accounts_tasks_carry_only_their_lists_fields(linked):  # noqa: F811
    """rules.md §7–§8: a task's ``rule`` names the clause that set its date (不稳定, 住院, …): on no list of
    police, 综治, village or civil affairs, so their work list and patient record leave it out; civil
    affairs' lists carry no risk level either. The doctor keeps both."""
    client, tokens, database = linked
    with database.engine.begin() as conn:  # the scheduler's rule texts name the classification
        conn.execute(sa.text("UPDATE visit_task SET rule = 'national-2018:§5 不稳定+14d'"))
    for user, hidden in (("police", {"rule"}), ("police_linked", {"rule"}), ("governance", {"rule"}),
                         ("village", {"rule"}), ("civil_lead", {"rule", "risk_level"}), ("civil_linked", {"rule", "risk_level"})):
        work = _get(client, tokens, user, "/api/worklist?all=true").json()["rows"]
        assert work, user
        assert all(not hidden & row.keys() for row in work), user
        pid = work[0]["patient_id"]
        record = _get(client, tokens, user, f"/api/patients/{pid}").json()
        assert record["tasks"] and all(not hidden & task.keys() for task in record["tasks"]), user
        for text in (json.dumps(work, ensure_ascii=False), json.dumps(record, ensure_ascii=False),
                     _get(client, tokens, user, "/mylist").text, _get(client, tokens, user, f"/patients/{pid}").text):
            assert "不稳定" not in text, user
        if user.startswith("police"):
            assert work[0]["risk_level"] is not None  # the 风险预警单's own field stays
    doctor = _get(client, tokens, "doc", "/api/worklist?all=true").json()["rows"]
    assert all(row["rule"] == "national-2018:§5 不稳定+14d" and "risk_level" in row for row in doctor)
    assert _get(client, tokens, "doc", "/api/patients/P3").json()["tasks"][0]["rule"] == "national-2018:§5 不稳定+14d"


# ---------------------------------------------------------------- each list role its own fields and pages

def test_each_list_role_s_patient_page_shows_its_own_list_fields(linked):  # noqa: F811
    """rules.md §7–§8: police, 综治 and village read the 风险预警单's fields (risk, last visit, 失访,
    肇事/肇祸); civil affairs the 帮扶救助单's (economic status, 以奖代补, rehabilitation). The village and
    综治 pages showed civil affairs' headings with blanks (经济状况 —, 以奖代补 未纳入) instead of theirs."""
    client, tokens, _db = linked
    for user, pid in (("police", "P1"), ("governance", "P1"), ("village", "P1"), ("civil_lead", "P3")):
        page = _get(client, tokens, user, f"/patients/{pid}")
        assert page.status_code == 200, user
        police_view = user != "civil_lead"
        assert ("最近危险性评估" in page.text) == police_view and ("近12个月肇事/肇祸" in page.text) == police_view, user
        assert ("经济状况" in page.text) != police_view and ("以奖代补" in page.text) != police_view, user


def test_governance_reads_its_township_s_ledger(linked):  # noqa: F811
    """rules.md §10: "Police and 综治 see their township's ledger (no diagnosis)" — 综治 too, page and API,
    audited; civil affairs and the village do not."""
    client, tokens, database = linked
    page = _get(client, tokens, "governance", "/ledger")
    assert page.status_code == 200 and "陈一" in page.text and "精神分裂症" not in page.text
    assert 'href="/ledger"' in page.text  # in its menu
    api = _get(client, tokens, "governance", "/api/ledger")
    assert api.status_code == 200 and {r["patient_id"] for r in api.json()} == {"P1", "P6"}
    for user in ("civil_lead", "village"):
        assert _get(client, tokens, user, "/ledger").status_code == 403, user
    with database.engine.connect() as conn:
        reads = conn.execute(sa.select(AuditLog.actor).where(AuditLog.action == "read", AuditLog.object_type == "ledger")).scalars().all()
    assert reads == ["governance", "governance"]


# ---------------------------------------------------------------- refusals answered by a page are audited too

def test_refused_reward_forms_are_audited(database):
    """issue 18, rules.md §8: every refused request is an audit row. The 以奖代补 forms answer a refusal with
    their own page (the reason shown) instead of the error page, and wrote no row: a probe of patient
    numbers through them went unrecorded. Once per request, the patient's name never shown."""
    seed(database.engine)
    client = TestClient(create_app(database.engine, today=lambda: TODAY))
    client.cookies.set("jf_session", session_token(database.engine, "civil"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/reward?year=2025").text).group(1)
    probes = [("/reward/enrol", {"patient_id": "P4", "year": "2025"}),           # another township's patient
              ("/reward/P4/2025/decision", {"decision": "approve"}),
              ("/reward/P4/2025/payment", {"paid_on": "2026-01-05"}),
              ("/reward/NOBODY/2025/decision", {"decision": "approve"})]       # a number nobody has: the same
    for url, data in probes:
        r = client.post(url, data={"csrf_token": token, **data})
        assert r.status_code == 403 and "黄四" not in r.text, url
    police = TestClient(create_app(database.engine, today=lambda: TODAY))
    police.cookies.set("jf_session", session_token(database.engine, "police"))
    police_token = re.search(r'name="csrf_token" value="([^"]+)"', police.get("/account/password").text).group(1)
    assert police.post("/reward/P1/2025/decision", data={"csrf_token": police_token, "decision": "approve"}).status_code == 403
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(AuditLog.actor, AuditLog.object_id, AuditLog.detail)
                            .where(AuditLog.action == "refused").order_by(AuditLog.id)).all()
    assert [tuple(r) for r in rows] == [("civil", url, "POST PATIENT_FORBIDDEN") for url, _ in probes] + [
        ("police", "/reward/P1/2025/decision", "POST ROLE_FORBIDDEN")]  # not a reader of the page: once
