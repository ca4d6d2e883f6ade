"""本人到场登记 and 通知落地页 (issue 14): the attendee's own attendance page (rules.md §6.2: their word
wins for their row) and webhook links every recipient role can open (rules.md §8, §12). Both databases."""

from __future__ import annotations

import json
import re
import urllib.parse
from datetime import date

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.accounts import User
from registry.models import CareTeamAssignment, FollowUp, FollowUpParticipant, Patient, TeamMember, VisitTask
from registry.web.app import create_app
from schedules.models import OutboxMessage
from schedules.notify import (add_webhook, message_text, queue_emergency_alert, queue_failure_alert,
                              queue_list_notifications)
from tests.web_support import TODAY, seed, session_token

# account: (role, region, member) — rules.md §6.1
ACCOUNTS = {
    "police_linked": ("police", "T1", "M-POL"),
    "police_other": ("police", "T1", "M-POL2"),
    "village": ("village", "V1", None),
}
SECRETS = ("精神分裂", "利培酮", "奥氮平", "440781198001010018")  # diagnosis, medication, ID number


def _task(pid: str, fu: FollowUp, roles: str) -> VisitTask:
    return VisitTask(patient_id=pid, kind="follow_up", basis=f"test:{pid}:{fu.id}", basis_on=date(2026, 4, 1),
                     due_on=fu.visit_on, nominal_due_on=fu.visit_on, roles=roles, joint=True, rule="test",
                     status="done", closed_by=fu.id, joint_outcome="incomplete", missing_roles=roles.split(",", 1)[1])


@pytest.fixture
def world(database):
    """web_support's county, plus closed joint tasks: P1 (V1, police + village, 2026-05-20, the seed's
    follow-up), P3 (V2, civil affairs, 2026-06-01), P6 (V2, police: M-POL2's by assignment, 2026-06-02),
    P4 (T2, police, 2026-06-03) and P2 (V1, police, 2026-04-01: older than 30 days)."""
    engine = database.engine
    ids = seed(engine)
    with Session(engine) as s:
        s.add(TeamMember(member_id="M-POL2", name="钱警官", role="police", phone="0750-1101", region_code="T1"))
        s.add(Patient(patient_id="P6", name="吴六", village_code="V2", guardian_name="吴母", economic_status=2, sex=1,
                      birth_date=date(1980, 1, 1), diagnosis="schizophrenia", registered_on=date(2025, 1, 10)))
        s.flush()
        s.add(CareTeamAssignment(patient_id="P6", member_id="M-POL2", role="police", from_on=date(2026, 1, 1)))
        f3 = FollowUp(patient_id="P3", visit_on=date(2026, 6, 1), mode=2, risk_level=0, insight=1, adherence=1)
        f6 = FollowUp(patient_id="P6", visit_on=date(2026, 6, 2), mode=2, risk_level=3, insight=2, adherence=1)
        f4 = FollowUp(patient_id="P4", visit_on=date(2026, 6, 3), mode=2, risk_level=3, insight=2, adherence=1)
        s.add_all([f3, f6, f4])
        s.flush()
        f1 = s.get(FollowUp, ids["f1"])
        f2 = s.get(FollowUp, ids["f2"])
        s.add_all([_task("P1", f1, "doctor,police,village"), _task("P3", f3, "doctor,civil_affairs"),
                   _task("P6", f6, "doctor,police"), _task("P4", f4, "doctor,police"), _task("P2", f2, "doctor,police")])
        hashed = s.get(User, "police").password_hash
        for name, (role, region, member) in ACCOUNTS.items():
            s.add(User(username=name, password_hash=hashed, role=role, region_code=region, display_name=name,
                       member_id=member))
        ids.update(f3=f3.id, f6=f6.id, f4=f4.id)
        s.commit()
    client = TestClient(create_app(engine, today=lambda: TODAY), follow_redirects=False)
    tokens = {u: session_token(engine, u) for u in [*ACCOUNTS, "doc", "doc2", "admin", "police", "civil"]}
    return client, tokens, ids, engine


def _get(client, tokens, user, url):
    return client.get(url, headers={"Authorization": f"Bearer {tokens[user]}"})


def _post_form(client, tokens, user, follow_up_id, **fields):
    page = _get(client, tokens, user, "/my/attendance")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(f"/follow-ups/{follow_up_id}/attendance", headers={"Authorization": f"Bearer {tokens[user]}"},
                       data={"csrf_token": csrf, "back": "/my/attendance", **fields})


def _row(engine, follow_up_id, role, member=...):
    """The role's row (the only one), or with ``member`` that person's row (None: the unnamed row)."""
    fp = FollowUpParticipant.__table__
    where = [fp.c.follow_up_id == follow_up_id, fp.c.role == role]
    if member is not ...:
        where.append(fp.c.member_id == member if member else fp.c.member_id.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(fp.c.attended, fp.c.source, fp.c.reason, fp.c.member_id).where(*where)).all()
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def _outcome(engine, follow_up_id):
    t = VisitTask.__table__
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(t.c.joint_outcome, t.c.missing_roles).where(t.c.closed_by == follow_up_id)).one())


@pytest.mark.parametrize("user,sees", [
    ("police_linked", {"陈一"}),                # responsible (T1's primary) for P1; P6 is M-POL2's by assignment
    ("police_other", {"吴六"}),
    ("police", {"陈一", "吴六"}),               # not linked: its role's joint visits in its township
    ("civil", {"张三"}),
    ("village", {"陈一"}),                      # V1 only
])
def test_the_attendee_page_shows_own_recent_joint_visits_and_nothing_clinical(world, user, sees):
    client, tokens, _ids, _engine = world
    page = _get(client, tokens, user, "/my/attendance")
    assert page.status_code == 200
    names = {"陈一", "李二", "张三", "黄四", "吴六"}
    assert {n for n in names if n in page.text} == sees  # 李二's visit is older than 30 days, 黄四 in T2
    assert not any(secret in page.text for secret in SECRETS)
    assert "未到场原因" in page.text and "我已到场" in page.text


def test_the_attendee_page_is_for_attendees_only(world):
    client, tokens, _ids, _engine = world
    assert _get(client, tokens, "doc", "/my/attendance").status_code == 403
    assert _get(client, tokens, "admin", "/my/attendance").status_code == 403


def test_own_record_from_the_page_wins_over_the_doctor_and_absent_needs_no_invite(world):
    """rules.md §6.2: absent with a reason is a record; the doctor never overwrites the attendee's row;
    the task's 到位 / 联合未到位 follows."""
    client, tokens, ids, engine = world
    assert _row(engine, ids["f6"], "police") is None  # the doctor recorded nobody
    r = _post_form(client, tokens, "police_other", ids["f6"], attended="0", reason="值班")
    assert r.status_code == 303 and r.headers["location"] == "/my/attendance?saved=1"
    assert tuple(_row(engine, ids["f6"], "police")) == (False, "self", "值班", "M-POL2")
    assert "值班" in _get(client, tokens, "police_other", "/my/attendance").text
    doc = {"Authorization": f"Bearer {tokens['doc']}"}
    r = client.post(f"/api/follow-ups/{ids['f6']}/participants", headers=doc,
                    json={"participants": [{"role": "police", "member_id": "M-POL2", "present": True}]})
    assert r.status_code == 200 and r.json()["kept"] == ["police:M-POL2"] and r.json()["written"] == []
    assert tuple(_row(engine, ids["f6"], "police")) == (False, "self", "值班", "M-POL2")
    assert _outcome(engine, ids["f6"]) == ("incomplete", "police")
    r = _post_form(client, tokens, "police_other", ids["f6"], attended="1", reason="ignored")
    assert r.status_code == 303
    assert tuple(_row(engine, ids["f6"], "police")) == (True, "self", None, "M-POL2")
    assert _outcome(engine, ids["f6"]) == ("complete", "")
    # the village account on P1 (V1): its own row, created; police still missing
    assert _post_form(client, tokens, "village", ids["f1"], attended="1").status_code == 303
    assert tuple(_row(engine, ids["f1"], "village"))[:2] == (True, "self")
    assert _outcome(engine, ids["f1"]) == ("incomplete", "police")


def test_nobody_records_on_a_visit_that_is_not_theirs(world):
    client, tokens, ids, engine = world

    def api(user, fid):
        return client.post(f"/api/follow-ups/{fid}/attendance", headers={"Authorization": f"Bearer {tokens[user]}"},
                           json={"attended": True})

    assert api("police_linked", ids["f6"]).status_code == 403  # M-POL2's visit, not on M-POL's lists
    assert api("police", ids["f4"]).status_code == 403  # another township
    assert api("civil", ids["f6"]).status_code == 403  # no civil-affairs role on that task
    assert _row(engine, ids["f6"], "police") is None and _row(engine, ids["f4"], "police") is None
    assert _row(engine, ids["f6"], "civil_affairs") is None
    bad = client.post(f"/api/follow-ups/{ids['f6']}/attendance", headers={"Authorization": f"Bearer {tokens['police_other']}"},
                      json={"attended": False, "reason": "x" * 201})
    assert bad.status_code == 422 and _row(engine, ids["f6"], "police") is None  # refused whole
    assert api("police_other", ids["f6"]).status_code == 200


# ---------------------------------------------------------------- webhook links (rules.md §8, §12)


def _messages(engine) -> dict[str, dict]:
    add_webhook(engine, name="T1群", url="http://127.0.0.1:9/hook", secret="s3cret", region_code="T1")
    with engine.begin() as conn:
        queue_list_notifications(conn, township_code="T1", township_name="台城街道", week=date(2026, 6, 8),
                                 counts={"followup": 3, "joint": 1}, base_url="http://testserver")
        queue_failure_alert(conn, township_code="T1", week=date(2026, 6, 8), reason="磁盘已满")
        queue_emergency_alert(conn, event="emergency.opened", township_code="T1", key="emergency-opened:1",
                              base_url="http://testserver")
        queue_emergency_alert(conn, event="emergency.overdue", township_code="T1", key="emergency-overdue:1",
                              base_url="http://testserver")
    with engine.connect() as conn:
        return {json.loads(p)["event"]: json.loads(p) for (p,) in conn.execute(sa.select(OutboxMessage.payload))}


def test_every_message_links_a_page_every_recipient_role_opens(world):
    client, tokens, _ids, engine = world
    messages = _messages(engine)
    assert set(messages) == {"lists.weekly", "lists.failed", "emergency.opened", "emergency.overdue"}
    with engine.connect() as conn:
        names = [n for (n,) in conn.execute(sa.select(Patient.name))] + [i for (i,) in conn.execute(sa.select(Patient.patient_id))]
    for event, payload in messages.items():
        body = json.dumps(payload, ensure_ascii=False)
        assert not any(secret in body for secret in [*names, *SECRETS, "东坑村", "陈父"]), event  # identifier-free
        text = message_text(payload)
        assert payload["link"] in text, event  # the robot's markdown carries the link
        parts = urllib.parse.urlsplit(payload["link"])
        url = f"{parts.path}?{parts.query}"
        for user in ("doc", "police", "civil", "admin", "police_linked", "village"):
            page = _get(client, tokens, user, url)
            assert page.status_code == 200, (event, user)
            assert not any(name in page.text for name in names if len(name) > 2)  # no patient on the landing page
            hrefs = re.findall(r'<a class="button[^"]*" href="([^"]+)"', page.text)
            assert hrefs, (event, user)
            for href in hrefs:  # and every page it offers this role opens too
                assert _get(client, tokens, user, href.replace("&amp;", "&")).status_code == 200, (event, user, href)
        assert _get(client, tokens, "doc2", url).status_code == 403  # another township's message
    doc = _get(client, tokens, "doc", urllib.parse.urlsplit(messages["lists.weekly"]["link"]).path + "?event=lists.weekly&township=T1&week=2026-06-08").text
    assert "/lists/week?township=T1&amp;week=2026-06-08" in doc
    linked = _get(client, tokens, "police_linked", "/notices?event=lists.weekly&township=T1").text
    assert "/lists/week" not in linked and "/my/attendance" in linked
    civil = _get(client, tokens, "civil", "/notices?event=emergency.overdue&township=T1").text
    assert "/emergencies/overdue" not in civil
    assert "/emergencies/overdue" in _get(client, tokens, "police", "/notices?event=emergency.overdue&township=T1").text
    assert _get(client, tokens, "doc", "/notices?week=bad").status_code == 422


# ---------------------------------------------------------------- per person (rules.md §6.2 [2026-12])


def test_two_officers_one_visit_each_row_is_a_person(world):
    """rules.md §6.2 [2026-12]: attendance is per person. The doctor records two officers on P1's
    visit (M-POL absent, M-POL2 present) and the village member: police are present (any officer),
    so 到位. M-POL's own record replaces only M-POL's row; M-POL2's row, the doctor's, stays; the
    doctor's later record does not overwrite M-POL's own."""
    client, tokens, ids, engine = world
    doc = {"Authorization": f"Bearer {tokens['doc']}"}
    r = client.post(f"/api/follow-ups/{ids['f1']}/participants", headers=doc, json={"participants": [
        {"role": "police", "member_id": "M-POL", "present": False, "reason": "外出"},
        {"role": "police", "member_id": "M-POL2", "present": True},
        {"role": "village", "present": True}]})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["written"]) == ["police:M-POL", "police:M-POL2", "village"]
    assert tuple(_row(engine, ids["f1"], "police", "M-POL")) == (False, "doctor", "外出", "M-POL")
    assert tuple(_row(engine, ids["f1"], "police", "M-POL2")) == (True, "doctor", None, "M-POL2")
    assert _outcome(engine, ids["f1"]) == ("complete", "")
    # M-POL (police_linked) says absent with another reason: only M-POL's row changes
    assert _post_form(client, tokens, "police_linked", ids["f1"], attended="0", reason="值班").status_code == 303
    assert tuple(_row(engine, ids["f1"], "police", "M-POL")) == (False, "self", "值班", "M-POL")
    assert tuple(_row(engine, ids["f1"], "police", "M-POL2")) == (True, "doctor", None, "M-POL2")
    assert _outcome(engine, ids["f1"]) == ("complete", "")
    # the doctor records both again: M-POL's own word is kept, M-POL2 is now absent → police missing
    r = client.post(f"/api/follow-ups/{ids['f1']}/participants", headers=doc, json={"participants": [
        {"role": "police", "member_id": "M-POL", "present": True},
        {"role": "police", "member_id": "M-POL2", "present": False, "reason": "调休"}]})
    assert r.json()["kept"] == ["police:M-POL"] and r.json()["written"] == ["police:M-POL2"]
    assert tuple(_row(engine, ids["f1"], "police", "M-POL")) == (False, "self", "值班", "M-POL")
    assert _outcome(engine, ids["f1"]) == ("incomplete", "police")
    # M-POL corrects their own: present → the role is present again
    assert _post_form(client, tokens, "police_linked", ids["f1"], attended="1").status_code == 303
    assert tuple(_row(engine, ids["f1"], "police", "M-POL2")) == (False, "doctor", "调休", "M-POL2")
    assert _outcome(engine, ids["f1"]) == ("complete", "")
    # the patient page lists each person (the doctor's full record)
    page = _get(client, tokens, "doc", "/patients/P1").text
    assert "民警·" in page and page.count("民警·") >= 2


def test_an_unlinked_account_records_the_roles_unnamed_row(world):
    """An account linked to no member records the role's unnamed row; the named rows stay."""
    client, tokens, ids, engine = world
    doc = {"Authorization": f"Bearer {tokens['doc']}"}
    r = client.post(f"/api/follow-ups/{ids['f6']}/participants", headers=doc, json={"participants": [
        {"role": "police", "member_id": "M-POL2", "present": False}, {"role": "police", "present": False}]})
    assert r.status_code == 200 and sorted(r.json()["written"]) == ["police", "police:M-POL2"]
    r = client.post(f"/api/follow-ups/{ids['f6']}/attendance", headers={"Authorization": f"Bearer {tokens['police']}"},
                    json={"attended": True})
    assert r.status_code == 200 and r.json()["member_id"] is None
    assert tuple(_row(engine, ids["f6"], "police", None)) == (True, "self", None, None)
    assert tuple(_row(engine, ids["f6"], "police", "M-POL2")) == (False, "doctor", None, "M-POL2")
    assert _outcome(engine, ids["f6"]) == ("complete", "")


def test_the_doctor_names_a_person_once_per_submission(world):
    client, tokens, ids, engine = world
    doc = {"Authorization": f"Bearer {tokens['doc']}"}
    for rows in ([{"role": "police", "member_id": "M-POL", "present": True}] * 2,
                 [{"role": "police", "present": True}, {"role": "police", "present": False}]):
        r = client.post(f"/api/follow-ups/{ids['f1']}/participants", headers=doc, json={"participants": rows})
        assert r.status_code == 422 and r.json()["issues"][0]["code"] == "DUPLICATE", r.text
    assert tuple(_row(engine, ids["f1"], "police")) == (False, "doctor", None, "M-POL")  # the seed's row, untouched


def _record_follow_up(client, auth, engine, data):
    """The doctor's follow-up form posted and recorded: its id and its attendance rows
    (role, member, attended, reason, source)."""
    r = client.post("/patients/P1/follow-ups/new", headers=auth, data=data)
    assert r.status_code == 303, r.text
    fid = int(r.headers["location"].rsplit("fu=", 1)[1])
    fp = FollowUpParticipant.__table__
    with engine.connect() as conn:
        rows = {tuple(x) for x in conn.execute(sa.select(fp.c.role, fp.c.member_id, fp.c.attended, fp.c.reason, fp.c.source)
                                               .where(fp.c.follow_up_id == fid))}
    return fid, rows


def test_the_follow_up_form_records_each_named_member_and_the_unnamed_row(world):
    """The doctor's form (rules.md §6.2, per person): a row per member of the patient's team in a joint
    role, and the role's row for anyone else; an unknown member is refused with nothing recorded."""
    client, tokens, _ids, engine = world
    auth = {"Authorization": f"Bearer {tokens['doc']}"}
    form = client.get("/patients/P1/follow-ups/new", headers=auth)
    assert form.status_code == 200
    assert 'name="attended@M-POL"' in form.text and "民警·刘警官" in form.text and 'name="attended_police"' in form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]*)"', form.text).group(1)
    data = {"csrf_token": csrf, "idempotency_key": key, "visit_on": "2026-06-09", "mode": "2", "risk_level": "0",
            "insight": "1", "attended@M-POL": "0", "reason@M-POL": "值班", "attended_police": "1",
            "attended@M-VIL": "1", "attended@M-CIV": "", "attended_village": "", "attended_civil_affairs": ""}
    bad = client.post("/patients/P1/follow-ups/new", headers=auth, data={**data, "attended@NOPE": "1"})
    assert bad.status_code == 422 and "NOPE" in bad.text
    fid, rows = _record_follow_up(client, auth, engine, data)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(FollowUp.__table__)
                            .where(FollowUp.__table__.c.visit_on == date(2026, 6, 9))).scalar() == 1  # the refused one: nothing
    assert rows == {("police", "M-POL", False, "值班", "doctor"), ("police", None, True, None, "doctor"),
                    ("village", "M-VIL", True, None, "doctor")}
    page = client.get("/patients/P1", headers=auth).text
    assert "民警·刘警官✗" in page and "民警✓" in page and "·赵网格员✓" in page  # each person on the timeline


# ---------------------------------------------------------------- the role's unnamed row and a named attendee (session 12)


def _police_rows(engine, follow_up_id):
    fp = FollowUpParticipant.__table__
    with engine.connect() as conn:
        return sorted((tuple(r) for r in conn.execute(sa.select(fp.c.member_id, fp.c.attended, fp.c.source, fp.c.reason)
                                                      .where(fp.c.follow_up_id == follow_up_id, fp.c.role == "police"))),
                      key=lambda r: r[0] or "")


def _exported_police(engine, follow_up_id):
    """participants.csv as exported (registry.exporting): the police rows of that visit."""
    from registry.exporting import export_select

    with engine.connect() as conn:
        visit = conn.execute(sa.select(FollowUp.visit_on, FollowUp.patient_id).where(FollowUp.id == follow_up_id)).one()
        rows = conn.execute(export_select("participants", conn.dialect.name)).mappings().all()
    return sorted((r["member_id"] or "", r["present"]) for r in rows
                  if r["patient_id"] == visit.patient_id and r["visit_on"] == visit.visit_on.isoformat() and r["role"] == "police")


def test_a_named_officers_own_absence_takes_over_the_doctors_unnamed_police_row(world):
    """rules.md §6.2: the doctor records "police present" without naming anyone on P6's visit; then
    M-POL2 (responsible, their own account) records themselves absent. The doctor's anonymous row
    was them: one police row remains, M-POL2 absent in their own word — police missing (联合未到位),
    and the patient page and the participants.csv export say the same."""
    client, tokens, ids, engine = world
    doc = {"Authorization": f"Bearer {tokens['doc']}"}
    r = client.post(f"/api/follow-ups/{ids['f6']}/participants", headers=doc,
                    json={"participants": [{"role": "police", "present": True}]})
    assert r.status_code == 200 and r.json()["written"] == ["police"]
    assert _outcome(engine, ids["f6"]) == ("complete", "")
    assert _post_form(client, tokens, "police_other", ids["f6"], attended="0", reason="值班").status_code == 303
    assert _police_rows(engine, ids["f6"]) == [("M-POL2", False, "self", "值班")]
    assert _outcome(engine, ids["f6"]) == ("incomplete", "police")
    page = _get(client, tokens, "doc", "/patients/P6").text
    assert "民警·钱警官✗" in page and "民警✓" not in page
    assert _exported_police(engine, ids["f6"]) == [("M-POL2", "0")]
    # the doctor records the unnamed row again: left out (M-POL2 spoke for themselves); naming works
    r = client.post(f"/api/follow-ups/{ids['f6']}/participants", headers=doc,
                    json={"participants": [{"role": "police", "present": True}]})
    assert r.json()["kept"] == ["police"] and r.json()["written"] == []
    assert _outcome(engine, ids["f6"]) == ("incomplete", "police")
    r = client.post(f"/api/follow-ups/{ids['f6']}/participants", headers=doc,
                    json={"participants": [{"role": "police", "member_id": "M-POL", "present": True}]})
    assert r.json()["written"] == ["police:M-POL"]
    assert _outcome(engine, ids["f6"]) == ("complete", "")


def test_the_opposite_order_ends_in_the_same_rows(world):
    """M-POL2 records their absence first, then the doctor records "police present" unnamed: the
    unnamed row is not created (reported kept) — the same rows and outcome as the other order."""
    client, tokens, ids, engine = world
    assert _post_form(client, tokens, "police_other", ids["f6"], attended="0", reason="值班").status_code == 303
    r = client.post(f"/api/follow-ups/{ids['f6']}/participants", headers={"Authorization": f"Bearer {tokens['doc']}"},
                    json={"participants": [{"role": "police", "present": True}]})
    assert r.status_code == 200 and r.json() == {"follow_up_id": ids["f6"], "written": [], "kept": ["police"]}
    assert _police_rows(engine, ids["f6"]) == [("M-POL2", False, "self", "值班")]
    assert _outcome(engine, ids["f6"]) == ("incomplete", "police")
    assert _exported_police(engine, ids["f6"]) == [("M-POL2", "0")]


def test_a_named_absent_officer_beside_the_doctors_other_officers_row_are_two_people(world):
    """The doctor names M-POL2 absent and keeps the role's row for someone else present (the form's
    其他人员): two people. M-POL2 confirming their absence changes their own row only — police stay
    present (到位)."""
    client, tokens, ids, engine = world
    r = client.post(f"/api/follow-ups/{ids['f6']}/participants", headers={"Authorization": f"Bearer {tokens['doc']}"},
                    json={"participants": [{"role": "police", "member_id": "M-POL2", "present": False},
                                           {"role": "police", "present": True}]})
    assert r.status_code == 200
    assert _post_form(client, tokens, "police_other", ids["f6"], attended="0", reason="值班").status_code == 303
    assert _police_rows(engine, ids["f6"]) == [(None, True, "doctor", None), ("M-POL2", False, "self", "值班")]
    assert _outcome(engine, ids["f6"]) == ("complete", "")
    assert _exported_police(engine, ids["f6"]) == [("", "1"), ("M-POL2", "0")]


def test_participants_csv_a_named_row_after_an_unnamed_one(world, tmp_path):
    """The import (contract.md participants.csv, source doctor): an unnamed police row present and a
    named officer absent on P1's visit are two people (police present) and a re-import changes
    nothing; on P6's visit an unnamed row alone is taken over by M-POL2's own record (the doctor's
    anonymous row was them), and a re-import of the file brings no unnamed row back."""
    from registry.importing import import_path

    client, tokens, ids, engine = world
    (tmp_path / "participants.csv").write_text(
        "patient_id,visit_on,role,member_id,present,reason\n"
        "P1,2026-05-20,police,,1,\n"
        "P1,2026-05-20,police,M-POL,0,值班\n", encoding="utf-8")
    assert import_path(engine, tmp_path, today=TODAY).tables["participants"].written == 2
    assert _police_rows(engine, ids["f1"]) == [(None, True, "doctor", None), ("M-POL", False, "doctor", "值班")]
    assert _outcome(engine, ids["f1"]) == ("incomplete", "village")  # police present; nobody of the village recorded
    assert import_path(engine, tmp_path, today=TODAY).tables["participants"].written == 0
    assert _exported_police(engine, ids["f1"]) == [("", "1"), ("M-POL", "0")]
    (tmp_path / "participants.csv").write_text(
        "patient_id,visit_on,role,member_id,present,reason\n"
        "P6,2026-06-02,police,,1,\n", encoding="utf-8")
    assert import_path(engine, tmp_path, today=TODAY).tables["participants"].written == 1
    assert _outcome(engine, ids["f6"]) == ("complete", "")
    r = client.post(f"/api/follow-ups/{ids['f6']}/attendance", headers={"Authorization": f"Bearer {tokens['police_other']}"},
                    json={"attended": False, "reason": "值班"})
    assert r.status_code == 200, r.text
    assert _police_rows(engine, ids["f6"]) == [("M-POL2", False, "self", "值班")]
    assert import_path(engine, tmp_path, today=TODAY).tables["participants"].written == 0
    assert _police_rows(engine, ids["f6"]) == [("M-POL2", False, "self", "值班")]
    assert _outcome(engine, ids["f6"]) == ("incomplete", "police")
    assert _exported_police(engine, ids["f6"]) == [("M-POL2", "0")]


def test_the_follow_up_form_records_the_doctor_absent(world):
    """rules.md §6 ("doctor: always"), §6.2: a joint visit the doctor did not attend (led by the police
    and the village) — the doctor records it on the form as 未到场 with a reason, as participants.csv
    can: the doctor's row, absent; the joint task it closes is 联合未到位 with the doctor missing first.
    The flag is checked as the import checks ``present``; a bad value is refused with nothing recorded."""
    from schedules.generation import generate

    client, tokens, _ids, engine = world
    generate(engine, as_of=TODAY, patient_ids=["P1"])  # P1's joint follow-up task (不稳定: police + village)
    auth = {"Authorization": f"Bearer {tokens['doc']}"}
    form = client.get("/patients/P1/follow-ups/new", headers=auth)
    assert 'name="attended_doctor"' in form.text and 'name="reason_doctor"' in form.text
    assert 'aria-describedby="h-attended_doctor"' in form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]*)"', form.text).group(1)
    data = {"csrf_token": csrf, "idempotency_key": key, "visit_on": "2026-06-09", "mode": "2", "risk_level": "0",
            "insight": "1", "attended@M-POL": "1", "attended@M-VIL": "1", "attended_doctor": "0",
            "reason_doctor": "由派出所和村委带领入户"}
    bad = client.post("/patients/P1/follow-ups/new", headers=auth, data={**data, "attended_doctor": "7"})
    assert bad.status_code == 422 and "attended_doctor" in bad.text
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(FollowUp.__table__)
                            .where(FollowUp.__table__.c.visit_on == date(2026, 6, 9))).scalar() == 0
    fid, rows = _record_follow_up(client, auth, engine, data)
    fp = FollowUpParticipant.__table__
    assert rows == {("doctor", None, False, "由派出所和村委带领入户", "doctor"), ("police", "M-POL", True, None, "doctor"),
                    ("village", "M-VIL", True, None, "doctor")}
    t = VisitTask.__table__
    with engine.connect() as conn:  # the write's own run closed P1's joint follow-up task with this visit
        closed = conn.execute(sa.select(t.c.joint_outcome, t.c.missing_roles)
                              .where(t.c.closed_by == fid, t.c.joint.is_(True))).all()
    assert closed and all(tuple(c) == ("incomplete", "doctor") for c in closed)
    # blank: no doctor row (the doctor who records the visit was there); the API takes the field too
    r = client.post("/api/patients/P1/follow-ups", headers=auth, json={
        "visit_on": "2026-06-10", "mode": 2, "risk_level": 0, "insight": 1, "attended_doctor": 0, "reason_doctor": "外出培训"})
    assert r.status_code == 201, r.text
    with engine.connect() as conn:
        assert tuple(conn.execute(sa.select(fp.c.role, fp.c.attended, fp.c.reason)
                                  .where(fp.c.follow_up_id == r.json()["id"])).one()) == ("doctor", False, "外出培训")
