"""联合入户预约 Appointments for joint visits (rules.md §6.1, §8, §12; issue 14), on both databases.

The doctor proposes → the named members see it on /mylist → confirm / decline (reason required) →
the doctor sees the replies; another account 403; past time refused; the queued message carries
no identifier.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from registry import appointments
from registry.errors import InvalidInput
from registry.models import Appointment, AppointmentReply, VisitTask
from schedules.models import OutboxMessage
from schedules.notify import add_webhook, message_text
from tests.test_named_teams import linked  # noqa: F401  (the fixture: linked accounts, rules.md §6.1)
from tests.web_support import ID_P1, session_token

WHEN = "2026-06-11T09:30"  # the app's today is 2026-06-10 (tests/web_support.TODAY)


def h(tokens, user):
    return {"Authorization": f"Bearer {tokens[user]}"}


def task_id(engine, pid: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(VisitTask.__table__.c.id).where(VisitTask.__table__.c.patient_id == pid)).scalar_one()


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table.__table__)).scalar_one()


def test_propose_see_answer_and_the_doctor_sees_the_replies(linked):  # noqa: F811
    client, tokens, db = linked
    engine = db.engine
    add_webhook(engine, name="台城群", url="http://127.0.0.1:9/send?key=k", fmt="wecom", region_code="T1")
    tid = task_id(engine, "P1")  # doctor,police,village: 刘警官 (M-POL, T1 primary), 赵网格员 (M-VIL, V1 primary)
    r = client.post(f"/api/tasks/{tid}/appointments", json={"proposed_at": WHEN, "place": "患者家中"}, headers=h(tokens, "doc"))
    assert r.status_code == 201, r.text
    body = r.json()
    appointment_id = body["id"]
    assert body["recipients"] == [{"role": "police", "member_id": "M-POL"}, {"role": "village", "member_id": "M-VIL"}]
    assert body["queued"] == 1

    # the identifier-free message: counts, the township and a link every recipient role can open
    with engine.connect() as conn:
        [payload] = [json.loads(p) for p in conn.execute(sa.select(OutboxMessage.__table__.c.payload)).scalars()]
    assert payload["event"] == "appointment.proposed" and payload["township"] == "T1"
    assert payload["counts"] == {"appointments": 1, "members": 2}
    assert payload["link"].endswith("/notices?event=appointment.proposed&township=T1")
    text = json.dumps(payload, ensure_ascii=False) + message_text(payload)
    for secret in ("P1", "陈一", ID_P1, "精神分裂症", "schizophrenia", "刘警官", "赵网格员", "M-POL", "患者家中", "09:30"):
        assert secret not in text
    link = payload["link"][payload["link"].index("/notices"):]
    for user in ("police_linked", "village", "doc"):  # the link is a page every recipient role may open
        assert client.get(link, headers=h(tokens, user)).status_code == 200
    for user in ("police_linked", "village"):
        assert client.get("/mylist", headers=h(tokens, user)).status_code == 200

    # the named member sees it on /mylist; another officer does not
    mine = client.get("/mylist", headers=h(tokens, "police_linked")).text
    assert "2026-06-11 09:30" in mine and f"/appointments/{appointment_id}/reply" in mine
    other = client.get("/mylist", headers=h(tokens, "police_other")).text
    assert f"/appointments/{appointment_id}/reply" not in other

    # only the linked member's own reply; others 403, nothing written
    for user in ("police_other", "police", "civil_linked", "doc", "admin"):
        r = client.post(f"/api/appointments/{appointment_id}/reply", json={"answer": "confirmed"}, headers=h(tokens, user))
        assert r.status_code == 403, user
    assert count(engine, AppointmentReply) == 0

    # declining needs a reason
    r = client.post(f"/api/appointments/{appointment_id}/reply", json={"answer": "declined"}, headers=h(tokens, "police_linked"))
    assert r.status_code == 422 and r.json()["error"] == "APPOINTMENT_REASON_REQUIRED"
    assert count(engine, AppointmentReply) == 0
    r = client.post(f"/api/appointments/{appointment_id}/reply", json={"answer": "declined", "reason": "当天值班"},
                    headers=h(tokens, "police_linked"))
    assert r.status_code == 200 and r.json()["answer"] == "declined"
    page = client.get("/patients/P1", headers=h(tokens, "doc")).text
    assert "刘警官" in page and "不能参加" in page and "当天值班" in page

    # a changed answer replaces the old one (one row per member)
    r = client.post(f"/api/appointments/{appointment_id}/reply", json={"answer": "confirmed"}, headers=h(tokens, "police_linked"))
    assert r.status_code == 200
    assert count(engine, AppointmentReply) == 1
    page = client.get("/patients/P1", headers=h(tokens, "doc")).text
    assert "确认参加" in page and "当天值班" not in page
    assert "确认参加" in client.get("/mylist", headers=h(tokens, "police_linked")).text


def test_refused_proposals_write_nothing(linked):  # noqa: F811
    client, tokens, db = linked
    engine = db.engine
    tokens = {**tokens, "doc2": session_token(engine, "doc2")}
    add_webhook(engine, name="台城群", url="http://127.0.0.1:9/send?key=k", fmt="wecom")
    cases = [
        ("doc", task_id(engine, "P1"), "2026-06-09T09:00", 422, "APPOINTMENT_IN_PAST"),
        ("doc", task_id(engine, "P1"), "明天上午", 422, "BAD_DATETIME"),
        ("doc", task_id(engine, "P2"), WHEN, 422, "APPOINTMENT_NOT_JOINT"),  # doctor only
        ("doc2", task_id(engine, "P1"), WHEN, 403, "TASK_FORBIDDEN"),  # another township's doctor
        ("police_linked", task_id(engine, "P1"), WHEN, 403, "ROLE_FORBIDDEN"),
        ("doc", 999999, WHEN, 403, "TASK_FORBIDDEN"),
    ]
    for user, tid, when, status, code in cases:
        r = client.post(f"/api/tasks/{tid}/appointments", json={"proposed_at": when}, headers=h(tokens, user))
        assert (r.status_code, r.json()["error"]) == (status, code), (user, tid, when)
    with engine.begin() as conn:
        conn.execute(sa.update(VisitTask.__table__).where(VisitTask.__table__.c.patient_id == "P3").values(status="done"))
    r = client.post(f"/api/tasks/{task_id(engine, 'P3')}/appointments", json={"proposed_at": WHEN}, headers=h(tokens, "doc"))
    assert r.json()["error"] == "APPOINTMENT_TASK_CLOSED"
    assert count(engine, Appointment) == 0 and count(engine, OutboxMessage) == 0


def test_reply_to_an_unknown_appointment_is_403_and_civil_affairs_answers_its_own(linked):  # noqa: F811
    client, tokens, db = linked
    r = client.post("/api/appointments/424242/reply", json={"answer": "confirmed"}, headers=h(tokens, "civil_linked"))
    assert r.status_code == 403 and r.json()["error"] == "APPOINTMENT_FORBIDDEN"
    tid = task_id(db.engine, "P3")  # doctor,civil_affairs: 孙专干 (M-CIV)
    appointment_id = client.post(f"/api/tasks/{tid}/appointments", json={"proposed_at": WHEN},
                                 headers=h(tokens, "doc")).json()["id"]
    r = client.post(f"/api/appointments/{appointment_id}/reply", json={"answer": "confirmed"}, headers=h(tokens, "civil_other"))
    assert r.status_code == 403
    r = client.post(f"/api/appointments/{appointment_id}/reply", json={"answer": "maybe"}, headers=h(tokens, "civil_linked"))
    assert r.status_code == 422 and r.json()["error"] == "BAD_CODE"
    r = client.post(f"/api/appointments/{appointment_id}/reply", json={"answer": "confirmed"}, headers=h(tokens, "civil_linked"))
    assert r.status_code == 200 and r.json()["role"] == "civil_affairs"
    assert "孙专干" in client.get("/patients/P3", headers=h(tokens, "doc")).text


NOW = datetime(2026, 6, 10, 14, 0)


@given(minutes=st.integers(-100000, 100000), roles=st.sets(st.sampled_from(["police", "village", "civil_affairs"])))
def test_check_proposal_pure(minutes, roles):
    when = NOW + timedelta(minutes=minutes)
    want = ("APPOINTMENT_NOT_JOINT" if not roles else "APPOINTMENT_IN_PAST" if minutes < 0 else None)
    try:
        appointments.check_proposal(status="open", roles=["doctor", *roles], proposed_at=when, now_local=NOW)
        got = None
    except InvalidInput as exc:
        got = exc.code
    assert got == want
    with pytest.raises(InvalidInput) as exc:
        appointments.check_proposal(status="done", roles=["doctor", "police"], proposed_at=when, now_local=NOW)
    assert exc.value.code == "APPOINTMENT_TASK_CLOSED"


def _logged_in(engine):
    """``login(username)``: a browser-like client logged in through the form (cookies, CSRF)."""
    from fastapi.testclient import TestClient

    from registry.web.app import create_app
    from tests.web_support import PASSWORD, TODAY

    def login(username):
        client = TestClient(create_app(engine, today=lambda: TODAY), follow_redirects=False)
        token = csrf(client.get("/login").text)
        assert client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token}).status_code == 303
        return client
    return login


def csrf(html):
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@given(reason=st.one_of(st.none(), st.text(alphabet=" 当天值班ab", max_size=5)))
def test_check_reply_reason_rule(reason):
    cleaned = (reason or "").strip() or None
    assert appointments.check_reply("confirmed", reason)[0] == "confirmed"
    if cleaned is None:
        with pytest.raises(InvalidInput) as exc:
            appointments.check_reply("declined", reason)
        assert exc.value.code == "APPOINTMENT_REASON_REQUIRED"
    else:
        assert appointments.check_reply("declined", reason) == ("declined", cleaned)
    with pytest.raises(InvalidInput) as exc:
        appointments.check_reply("declined", "长" * 201)
    assert exc.value.code == "BAD_VALUE"


def test_the_web_forms_propose_and_answer(linked):  # noqa: F811
    """The patient page's form (doctor) and the /mylist form (the named member), with the session's CSRF token."""
    import re

    _client, _tokens, db = linked
    engine = db.engine

    login = _logged_in(engine)

    doc = login("doc")
    page = doc.get("/patients/P1").text
    tid = task_id(engine, "P1")
    assert f'action="/tasks/{tid}/appointments"' in page
    r = doc.post(f"/tasks/{tid}/appointments", data={"proposed_at": WHEN, "place": "村委会", "csrf_token": csrf(page)})
    assert r.status_code == 303 and r.headers["location"].startswith("/patients/P1")
    assert "2026-06-11 09:30" in doc.get("/patients/P1").text and "尚无答复" in doc.get("/patients/P1").text

    officer = login("police_linked")
    mine = officer.get("/mylist").text
    [appointment_id] = re.findall(r'action="/appointments/(\d+)/reply"', mine)
    r = officer.post(f"/appointments/{appointment_id}/reply", data={"answer": "declined", "csrf_token": csrf(mine)})
    assert r.status_code == 422 and count(engine, AppointmentReply) == 0
    r = officer.post(f"/appointments/{appointment_id}/reply",
                     data={"answer": "declined", "reason": "外出培训", "csrf_token": csrf(mine)})
    assert r.status_code == 303
    assert "外出培训" in doc.get("/patients/P1").text
    other = login("police_other")
    r = other.post(f"/appointments/{appointment_id}/reply",
                   data={"answer": "confirmed", "csrf_token": csrf(other.get("/mylist").text)})
    assert r.status_code == 403


def test_a_refused_answer_or_proposal_stays_on_its_page_with_the_message_by_the_form(linked):  # noqa: F811
    """rules.md §6.1: 不能参加 needs a reason; a proposal cannot be in the past. The phone user who gets it
    wrong sees the same page again (422), the message under the form it sent and what was typed kept —
    not an error page with “返回首页” and the field's code (the walk of the front line's day)."""
    import re

    _client, _tokens, db = linked
    engine = db.engine

    login = _logged_in(engine)

    def form_of(html, form_id):
        return re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S).group(0)

    doc = login("doc")
    page = doc.get("/patients/P1").text
    tid = task_id(engine, "P1")
    r = doc.post(f"/tasks/{tid}/appointments", data={"proposed_at": "2026-06-09T09:00", "place": "村委会门口",
                                                     "csrf_token": csrf(page)})
    assert r.status_code == 422 and count(engine, Appointment) == 0
    form = form_of(r.text, f"propose-{tid}")
    assert "不能早于当前时间" in form and "(proposed_at)" not in r.text and "返回首页" not in r.text
    assert 'value="2026-06-09T09:00"' in form and 'value="村委会门口"' in form
    assert "陈一" in r.text and "团队指派" in r.text  # the whole patient page, its panels too
    r = doc.post(f"/tasks/{tid}/appointments", data={"proposed_at": WHEN, "place": "村委会", "csrf_token": csrf(page)})
    assert r.status_code == 303

    officer = login("police_linked")
    mine = officer.get("/mylist").text
    [appointment_id] = re.findall(r'action="/appointments/(\d+)/reply"', mine)
    r = officer.post(f"/appointments/{appointment_id}/reply", data={"answer": "declined", "reason": " ",
                                                                     "csrf_token": csrf(mine)})
    assert r.status_code == 422 and count(engine, AppointmentReply) == 0
    assert "我的名单" in r.text and "返回首页" not in r.text and "(reason)" not in r.text
    form = form_of(r.text, f"reply-{appointment_id}")
    assert "不能参加时必须填写原因" in form and '<option value="declined" selected>' in form
    # every control of the form has its label (a screen reader, a phone's autofill)
    assert form.count("<label>") == 2 and "<select" in form.split("</label>")[0]
    # another township's task: still 403, the patient never named
    other_tid = task_id(engine, "P4")
    r = doc.post(f"/tasks/{other_tid}/appointments", data={"proposed_at": "bad", "csrf_token": csrf(page)})
    assert r.status_code == 403 and "黄四" not in r.text
