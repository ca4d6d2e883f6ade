"""应急处置 The 应急处置记录单 (rules.md §9): open and complete from form and API, the 24-hour deadline
(Python rule and SQL twin, the overdue list, the county alert), bad input refused with nothing
written, police opening for their own patients only, the post_emergency task, the ledger entry,
the PDF. Every test runs on SQLite and PostgreSQL (``database`` fixture)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from registry import emergencies as rules
from registry.config import LOCAL_TZ
from registry.ledger import ledger_entries
from registry.models import Emergency, FollowUp
from registry.web.app import create_app
from schedules.generation import generate
from schedules.notify import add_webhook, queue_overdue_emergency_alerts
from web_support import TODAY, USERS, seed, seed_tasks, session_token

NOW = "2026-06-10 09:00 +0800"


@pytest.fixture
def web(database):
    seed(database.engine)
    seed_tasks(database.engine)
    client = TestClient(create_app(database.engine, today=lambda: TODAY))
    tokens = {u: session_token(database.engine, u) for u in USERS}
    return client, tokens, database


def auth(tokens, user):
    return {"Authorization": f"Bearer {tokens[user]}"}


def count(database, table="emergency") -> int:
    with database.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


OPEN = {"situations": [2], "reported_at": "2026-06-10 08:00", "place": "东坑村村口", "reporter": "陈父",
        "reporter_identity": "监护人", "report_route": "电话", "started_at": "2026-06-10 08:20",
        "scene": "持棍追打邻居"}
COMPLETE = {"ended_at": "2026-06-10 08:50", "measures": ["counselling", "police_help"], "effect": "已控制，送院观察",
            "participant_doctor": "王医生", "participant_police": "刘警官", "police_organ": "台城派出所",
            "police_signed_by": "刘警官"}


# ----------------------------------------------------------------------------- open / complete


@time_machine.travel(NOW, tick=False)
def test_open_and_complete_through_the_api(web):
    client, tokens, database = web
    r = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"),
                    json={**OPEN, "diagnosis": "精神分裂症", "diagnosis_certainty": "confirmed"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["situations"] == "2" and body["complete"] is False and body["deadline"] == "2026-06-11 08:00"
    r2 = client.patch(f"/api/emergencies/{body['id']}", headers=auth(tokens, "doc"), json=COMPLETE)
    assert r2.status_code == 200, r2.text
    done = r2.json()
    assert done["complete"] is True and done["measures"] == "counselling,police_help"
    assert done["diagnosis"] == "精神分裂症"  # kept: a field not sent keeps its value
    assert done["post_emergency_due"] == "2026-06-24"
    with database.engine.connect() as conn:
        row = conn.execute(sa.select(Emergency.__table__)).one()
        audits = conn.execute(sa.text("SELECT detail FROM audit_log WHERE object_type = 'emergency' AND action = 'write'")).scalars().all()
    assert row.completed_at is not None and row.opened_by == "doc"
    assert audits == ["应急处置登记", "应急处置完成"]


@time_machine.travel(NOW, tick=False)
def test_open_and_complete_through_the_form(web):
    client, tokens, database = web
    client.cookies.set("jf_session", tokens["doc"])
    page = client.get("/patients/P1/emergencies/new")
    assert page.status_code == 200 and "应急处置记录单" in page.text
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"csrf_token": csrf, "situations": ["1", "3"], "reported_at": "2026-06-10T07:30", "place": "家中"}
    r = client.post("/patients/P1/emergencies/new", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    url = r.headers["location"].split("?")[0]
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(Emergency.situations, Emergency.reported_at)).one() == ("1,3", datetime(2026, 6, 10, 7, 30))
    r = client.post(url, data={"csrf_token": csrf, "ended_at": "2026-06-10T08:30", "measures": ["counselling"],
                               "effect": "情绪平稳"}, follow_redirects=False)
    assert r.status_code == 303
    shown = client.get(url)
    assert "已完成" in shown.text
    listed = client.get("/patients/P1/emergencies")
    assert listed.status_code == 200 and "伤害自身行为或危险" in listed.text


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("body, code", [
    ({**OPEN, "ended_at": "2026-06-10 08:10"}, "EMERGENCY_END_BEFORE_START"),
    ({**OPEN, "reported_at": "2026-06-10 10:00", "started_at": None}, "EMERGENCY_REPORT_IN_FUTURE"),
    ({**OPEN, "police_signed_by": "刘警官"}, "EMERGENCY_SIGNOFF_WITHOUT_POLICE"),
    ({**OPEN, "situations": [5]}, "BAD_CODE"),
    ({**OPEN, "reported_at": "2026-06-31 08:00"}, "BAD_DATETIME"),
    ({k: v for k, v in OPEN.items() if k != "situations"}, "REQUIRED"),
])
@time_machine.travel(NOW, tick=False)
def test_bad_input_is_refused_in_chinese_and_nothing_is_written(web, body, code):
    client, tokens, database = web
    before = (count(database), count(database, "audit_log"))
    r = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json=body)
    assert r.status_code == 422, r.text
    issues = r.json()["issues"]
    assert code in [i["code"] for i in issues]
    message = next(i["message"] for i in issues if i["code"] == code)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in message)
    assert (count(database), count(database, "audit_log")) == before


@time_machine.travel(NOW, tick=False)
def test_completing_with_a_bad_end_writes_nothing(web):
    client, tokens, database = web
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json=OPEN).json()["id"]
    r = client.patch(f"/api/emergencies/{eid}", headers=auth(tokens, "doc"), json={**COMPLETE, "ended_at": "2026-06-10 08:00"})
    assert r.status_code == 422 and r.json()["issues"][0]["code"] == "EMERGENCY_END_BEFORE_START"
    assert "早于处置开始时间" in r.json()["issues"][0]["message"]
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(Emergency.ended_at, Emergency.effect)).one() == (None, None)
    # the form shows the same error and keeps what was typed
    client.cookies.set("jf_session", tokens["doc"])
    csrf = client.get(f"/emergencies/{eid}").text.split('name="csrf_token" value="')[1].split('"')[0]
    page = client.post(f"/emergencies/{eid}", data={"csrf_token": csrf, "ended_at": "2026-06-10T08:00", "effect": "好转"})
    assert page.status_code == 422 and "早于处置开始时间" in page.text and "好转" in page.text


# ----------------------------------------------------------------------------- police


@time_machine.travel(NOW, tick=False)
def test_police_open_for_their_own_patient_and_403_otherwise(web):
    client, tokens, database = web
    r = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "police"), json=OPEN)
    assert r.status_code == 201, r.text
    assert "diagnosis" not in r.json()  # rules.md §8: police never read the diagnosis
    for patient in ("P2", "P4", "NOPE"):  # not on the police lists / other township / unknown
        denied = client.post(f"/api/patients/{patient}/emergencies", headers=auth(tokens, "police"), json=OPEN)
        assert denied.status_code == 403 and denied.json()["error"] == "PATIENT_FORBIDDEN"
    # police cannot write the diagnosis
    bad = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "police"), json={**OPEN, "diagnosis": "x"})
    assert bad.status_code == 422 and bad.json()["issues"][0]["code"] == "UNKNOWN_FIELD"
    # civil affairs may not open one for a patient outside its lists; another township's doctor cannot read it
    assert client.post("/api/patients/P1/emergencies", headers=auth(tokens, "civil"), json=OPEN).status_code == 403
    eid = r.json()["id"]
    assert client.get(f"/api/emergencies/{eid}", headers=auth(tokens, "doc2")).status_code == 403
    assert client.get(f"/api/emergencies/{eid}", headers=auth(tokens, "doc")).status_code == 200
    assert count(database) == 1
    # the police view of a record a doctor filled in carries no diagnosis
    client.patch(f"/api/emergencies/{eid}", headers=auth(tokens, "doc"), json={"diagnosis": "精神分裂症"})
    assert "精神分裂症" not in client.get(f"/api/emergencies/{eid}", headers=auth(tokens, "police")).text
    client.cookies.set("jf_session", tokens["police"])
    assert "精神分裂症" not in client.get(f"/emergencies/{eid}").text


# ----------------------------------------------------------------------------- every team member opens (rules.md §9)


def _team_accounts(database) -> dict[str, str]:
    """Village, 综治 and linked accounts next to web_support's users (rules.md §6.1): a linked account works
    from its own patients; M-POL2 / M-CIV2 are members responsible for no patient. Returns their tokens."""
    from sqlmodel import Session
    from web_support import _HASH

    from registry.accounts import User
    from registry.models import TeamMember

    extra = {"vil": ("village", "V1", None), "vil_t": ("village", "T1", None), "gov": ("governance", "T1", None),
             "pol_m": ("police", "T1", "M-POL"), "pol_x": ("police", "T1", "M-POL2"),
             "civ_m": ("civil_affairs", "T1", "M-CIV"), "civ_x": ("civil_affairs", "T1", "M-CIV2"),
             "vil_m": ("village", "V1", "M-VIL")}
    with Session(database.engine) as s:
        s.add_all([TeamMember(member_id="M-POL2", name="钱警官", role="police", phone="0750-1101", region_code="T1"),
                   TeamMember(member_id="M-CIV2", name="吴专干", role="civil_affairs", phone="0750-1301", region_code="T1")])
        s.flush()
        for name, (role, region, member) in extra.items():
            s.add(User(username=name, password_hash=_HASH[0], role=role, region_code=region, display_name=name,
                       member_id=member))
        s.commit()
    return {name: session_token(database.engine, name) for name in extra}


# (account, the patient it may open one for, patients outside its scope): P1 is on the police lists (V1) and
# has a task requiring police and village; P3 (V2) is on the civil-affairs list; P4 is another township's
TEAM_CASES = [
    ("doc", "P2", ["P4", "NOPE"]),
    ("police", "P1", ["P2", "P3", "P4"]),
    ("vil", "P1", ["P2", "P3", "P4"]),
    ("vil_t", "P1", ["P3", "P4"]),
    ("civil", "P3", ["P1", "P2", "P4"]),
    ("pol_m", "P1", ["P3"]),
    ("civ_m", "P3", ["P1"]),
    ("vil_m", "P1", ["P3"]),
    ("pol_x", None, ["P1"]),  # linked to a member responsible for nobody: no patient of its own (§6.1)
    ("civ_x", None, ["P3"]),
]


@time_machine.travel(NOW, tick=False)
def test_every_team_role_opens_one_for_its_own_patients_only(web):
    """rules.md §9: anyone on the patient's team opens the record — doctor, police, village, civil affairs —
    each within the scope it reads the patient in (a linked account: its own patients, §6.1); audited and
    alerted (§12); 综治 and the county admin are not team members."""
    from schedules.alerts import detect

    client, tokens, database = web
    tokens = {**tokens, **_team_accounts(database)}
    opened = []
    for user, allowed, denied in TEAM_CASES:
        for patient in denied:
            r = client.post(f"/api/patients/{patient}/emergencies", headers=auth(tokens, user), json=OPEN)
            assert r.status_code == 403 and r.json()["error"] == "PATIENT_FORBIDDEN", (user, patient, r.text)
        if allowed is None:
            continue
        r = client.post(f"/api/patients/{allowed}/emergencies", headers=auth(tokens, user), json=OPEN)
        assert r.status_code == 201, (user, r.text)
        assert r.json()["opened_by"] == user and ("diagnosis" in r.json()) == (user == "doc")  # rules.md §8
        opened.append((user, allowed, r.json()["id"]))
    for user in ("gov", "admin"):
        r = client.post("/api/patients/P1/emergencies", headers=auth(tokens, user), json=OPEN)
        assert r.status_code == 403 and r.json()["error"] == "ROLE_FORBIDDEN"
    assert count(database) == len(opened)
    with database.engine.connect() as conn:
        written = conn.execute(sa.text("SELECT actor, object_id, detail FROM audit_log WHERE object_type = 'emergency'"
                                       " AND action = 'write' ORDER BY id")).all()
    assert [tuple(w) for w in written] == [(u, f"{p}/{eid}", "应急处置登记") for u, p, eid in opened]
    assert detect(database.engine)["emergency_opened"] == len(opened)  # each opening alerted once (§12)
    assert detect(database.engine)["emergency_opened"] == 0


@time_machine.travel(NOW, tick=False)
def test_village_and_civil_affairs_open_the_doctor_or_police_complete(web):
    """An opening-only account writes the event's fields, reads the records it opened and cannot complete
    them; the doctor (or the police) completes the record [decision, rules.md §9]."""
    client, tokens, database = web
    tokens = {**tokens, **_team_accounts(database)}
    for field, value in (("ended_at", "2026-06-10 08:50"), ("measures", ["counselling"]), ("effect", "好转"),
                         ("filled_by", "赵网格员"), ("police_signed_by", "刘警官"), ("diagnosis", "x")):
        r = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "vil"), json={**OPEN, field: value})
        assert r.status_code == 422 and r.json()["issues"][0]["code"] == "UNKNOWN_FIELD", field
    assert count(database) == 0
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "vil"),
                      json={**OPEN, "participant_police": "刘警官"}).json()["id"]
    other = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json=OPEN).json()["id"]
    assert client.get(f"/api/emergencies/{eid}", headers=auth(tokens, "vil")).status_code == 200
    denied = client.get(f"/api/emergencies/{other}", headers=auth(tokens, "vil"))  # not its own record
    assert denied.status_code == 403 and denied.json()["error"] == "PATIENT_FORBIDDEN"
    assert client.get(f"/api/emergencies/{eid}", headers=auth(tokens, "vil_m")).status_code == 403
    r = client.patch(f"/api/emergencies/{eid}", headers=auth(tokens, "vil"), json={"effect": "好转"})
    assert r.status_code == 403 and r.json()["error"] == "ROLE_FORBIDDEN"
    done = client.patch(f"/api/emergencies/{eid}", headers=auth(tokens, "doc"), json=COMPLETE)
    assert done.status_code == 200 and done.json()["complete"] is True
    assert client.patch(f"/api/emergencies/{eid}", headers=auth(tokens, "police"), json={"effect": "好转，已回家"}).status_code == 200
    # the page: the button on the patient page, the form without the completion, the record read-only
    client.cookies.set("jf_session", tokens["vil"])
    patient = client.get("/patients/P1")
    assert patient.status_code == 200 and "/patients/P1/emergencies/new" in patient.text
    form = client.get("/patients/P1/emergencies/new")
    assert form.status_code == 200 and 'name="situations"' in form.text and 'name="scene"' in form.text
    for hidden in ("ended_at", "measures", "effect", "filled_by", "police_signed_by", "diagnosis"):
        assert f'name="{hidden}"' not in form.text
    assert "由精防医生或民警在24小时内补全" in form.text
    csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/patients/P1/emergencies/new", data={"csrf_token": csrf, "situations": ["3"],
                                                           "reported_at": "2026-06-10T07:30", "place": "村委会"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    mine = client.get(r.headers["location"])
    assert mine.status_code == 200 and "村委会" in mine.text and "<fieldset disabled>" in mine.text
    assert "精防医生或民警须在报告时间后24小时内" in mine.text
    listed = client.get("/patients/P1/emergencies")
    assert listed.status_code == 200 and f"/emergencies/{other}\"" not in listed.text and f"/emergencies/{eid}\"" in listed.text
    for user in ("gov", "pol_x"):  # 综治 reads P1 but is no team member; pol_x does not read P1
        client.cookies.set("jf_session", tokens[user])
        page = client.get("/patients/P1")
        assert "/emergencies/new" not in page.text
    client.cookies.set("jf_session", tokens["gov"])
    assert client.get("/patients/P1/emergencies/new").status_code == 403


# ----------------------------------------------------------------------------- the 24-hour deadline


def rec(reported: str, **kw):
    base = dict(reported_at=datetime.fromisoformat(reported), ended_at=None, measures=None, effect=None,
                participant_police=None, police_signed_by=None, started_at=None, situations="3")
    return SimpleNamespace(**(base | kw))


def test_overdue_rule_at_the_boundary():
    record = rec("2026-06-10 08:00")
    at = lambda text: datetime.fromisoformat(text).replace(tzinfo=LOCAL_TZ)  # noqa: E731
    assert not rules.emergency_overdue(record, at("2026-06-11 08:00"))
    assert rules.emergency_overdue(record, at("2026-06-11 08:00:01"))
    assert rules.emergency_overdue(record, datetime(2026, 6, 11, 0, 1, tzinfo=timezone.utc))  # 08:01 in Shanghai
    done = rec("2026-06-10 08:00", ended_at=datetime(2026, 6, 10, 9), measures="counselling", effect="好转")
    assert rules.is_complete(done) and not rules.emergency_overdue(done, at("2026-06-20 00:00"))
    police_unsigned = rec("2026-06-10 08:00", ended_at=datetime(2026, 6, 10, 9), measures="restraint", effect="好转",
                          participant_police="刘警官")
    assert not rules.is_complete(police_unsigned) and rules.emergency_overdue(police_unsigned, at("2026-06-12 00:00"))


maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.fixed_dictionaries({
    "reported_min": st.integers(0, 3 * 24 * 60),
    "ended": st.booleans(), "measures": maybe(st.sampled_from(["counselling", "restraint,other", ""])),
    "effect": maybe(st.sampled_from(["好转", " ", ""])), "police": maybe(st.sampled_from(["刘警官", " "])),
    "signed": maybe(st.sampled_from(["刘警官", ""])), "situations": st.sampled_from(["1", "2", "3", "1,4", "3,4", "2,3"]),
    "started": st.booleans()}), min_size=1, max_size=6), now_min=st.integers(0, 4 * 24 * 60))
def test_rules_and_sql_twins_agree(database, records, now_min):
    base = datetime(2026, 6, 1)
    now = (base + timedelta(minutes=now_min)).replace(tzinfo=LOCAL_TZ)
    e = Emergency.__table__
    with database.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM emergency"))
        conn.execute(sa.text("DELETE FROM patient"))
        conn.execute(sa.text("DELETE FROM region"))
        conn.execute(sa.text("INSERT INTO region (code, name, level) VALUES ('V', '村', 'village')"))
        conn.execute(sa.text("INSERT INTO patient (patient_id, name, sex, birth_date, village_code, diagnosis, registered_on,"
                             " report_type, consent, guardian_reward, status, created_at, updated_at) VALUES ('P', '甲', 1,"
                             " '1980-01-01', 'V', 'schizophrenia', '2025-01-01', 2, 1, false, 'active', :t, :t)"),
                     {"t": datetime(2026, 1, 1)})
        objs = []
        for i, r in enumerate(records, start=1):
            reported = base + timedelta(minutes=r["reported_min"])
            values = dict(id=i, patient_id="P", situations=r["situations"], reported_at=reported,
                          started_at=reported + timedelta(hours=30) if r["started"] else None,
                          ended_at=reported + timedelta(hours=1) if r["ended"] else None, measures=r["measures"],
                          effect=r["effect"], participant_police=r["police"], police_signed_by=r["signed"], opened_by="t",
                          created_at=now, updated_at=now)
            conn.execute(sa.insert(e).values(**values))
            objs.append(SimpleNamespace(**values))
        complete = set(conn.execute(sa.select(e.c.id).where(rules.complete_sql(e))).scalars())
        overdue = set(conn.execute(sa.select(e.c.id).where(rules.overdue_sql(now, e))).scalars())
        events = sorted(conn.execute(rules.ledger_events_select()).all())
        due = dict(conn.execute(sa.select(e.c.id, rules.local_day(e.c.ended_at))).all())
    assert complete == {o.id for o in objs if rules.is_complete(o)}
    assert overdue == {o.id for o in objs if rules.emergency_overdue(o, now)}
    assert [d for _p, d in events] == sorted(rules.occurred_on(o) for o in objs if rules.enters_ledger(o.situations))
    assert {i: (d if d is None or isinstance(d, date) else date.fromisoformat(d)) for i, d in due.items()} == {
        o.id: o.ended_at.date() if o.ended_at else None for o in objs}


@time_machine.travel(NOW, tick=True)
def test_overdue_list_and_county_alert_once(web):
    client, tokens, database = web
    add_webhook(database.engine, name="county", url="http://127.0.0.1:9/hook", secret="s" * 32, region_code="C")
    add_webhook(database.engine, name="other", url="http://127.0.0.1:9/other", secret="s" * 32, region_code="T2")
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json=OPEN).json()["id"]
    done = client.post("/api/patients/P2/emergencies", headers=auth(tokens, "doc"), json={**OPEN, "situations": [3]}).json()["id"]
    client.patch(f"/api/emergencies/{done}", headers=auth(tokens, "doc"),
                 json={"ended_at": "2026-06-10 08:40", "measures": ["counselling"], "effect": "好转"})
    assert client.get("/api/emergencies/overdue", headers=auth(tokens, "doc")).json() == []
    assert queue_overdue_emergency_alerts(database.engine) == 0
    with time_machine.travel("2026-06-11 08:01 +0800", tick=False):
        rows = client.get("/api/emergencies/overdue", headers=auth(tokens, "doc")).json()
        assert [r["id"] for r in rows] == [eid] and "结束时间" in rows[0]["missing"]
        assert [r["id"] for r in client.get("/api/emergencies/overdue", headers=auth(tokens, "admin")).json()] == [eid]
        assert client.get("/api/emergencies/overdue", headers=auth(tokens, "doc2")).json() == []
        client.cookies.set("jf_session", tokens["doc"])
        assert "超时未完成" in client.get("/emergencies/overdue").text
        assert queue_overdue_emergency_alerts(database.engine) == 1  # the county's hook; not T2's
        assert queue_overdue_emergency_alerts(database.engine) == 0  # once per event
        # rules.md §12: the real-time detector — both openings and the one overdue record, once each
        from schedules.alerts import detect

        first = detect(database.engine)
        assert (first["emergency_opened"], first["emergency_overdue"]) == (2, 1)
        again = detect(database.engine)
        assert (again["emergency_opened"], again["emergency_overdue"]) == (0, 0)
    with database.engine.connect() as conn:
        payloads = conn.execute(sa.text("SELECT dedupe_key, payload FROM outbox_message ORDER BY id")).all()
    direct = [(k, body) for k, body in payloads if k.startswith("emergency-")]
    # the opening is alerted by the real-time detector (schedules.alerts, AlertKind.EMERGENCY_OPENED)
    assert [k for k, _p in direct] == [f"emergency-overdue:{eid}"]
    overdue = json.loads(direct[-1][1])
    assert overdue["event"] == "emergency.overdue" and overdue["township"] == "T1" and overdue["counts"] == {"emergencies": 1}
    assert overdue["link"].endswith("/notices?event=emergency.overdue&township=T1")  # every role opens it (§12)
    for _k, body in payloads:  # identifier-free (rules.md §8, §12)
        for secret in ("P1", "P2", "陈一", "李二", "440781", "精神分裂症", "东坑村村口"):
            assert secret not in body
    # the detector's messages (rules.md §12): counts only
    with database.engine.connect() as conn:
        bodies = conn.execute(sa.text("SELECT payload FROM outbox_message WHERE dedupe_key NOT LIKE 'emergency-%'")).scalars().all()
    assert bodies and all(json.loads(b)["counts"].get("emergency_opened") for b in bodies)
    assert any(json.loads(b)["counts"].get("emergency_overdue") for b in bodies)
    for body in bodies:
        for secret in ("P1", "P2", "陈一", "李二", "440781", "精神分裂症", "东坑村村口"):
            assert secret not in body


@time_machine.travel(NOW, tick=False)
def test_the_open_list_shows_what_is_still_to_complete(web):
    """待完成的应急处置 (rules.md §9: complete within 24 hours): every record of the caller's not yet
    complete, the overdue ones marked; a complete record and another township's are not on it; the
    opening-only village account sees the records it opened. Page, API, menu and the opening's notice."""
    client, tokens, database = web
    tokens = {**tokens, **_team_accounts(database)}
    early = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"),
                        json={**OPEN, "reported_at": "2026-06-09 07:00", "started_at": "2026-06-09 07:10"}).json()["id"]
    fresh = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "police"), json=OPEN).json()["id"]
    done = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json={**OPEN, "situations": [3]}).json()["id"]
    assert client.patch(f"/api/emergencies/{done}", headers=auth(tokens, "doc"),
                        json={"ended_at": "2026-06-10 08:40", "measures": ["counselling"], "effect": "好转"}).status_code == 200
    village = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "vil"), json=OPEN).json()["id"]
    for user in ("doc", "police", "admin"):
        rows = client.get("/api/emergencies/open", headers=auth(tokens, user)).json()
        assert [(r["id"], r["overdue"]) for r in rows] == [(early, True), (fresh, False), (village, False)], user
        assert "diagnosis" not in rows[0] and "结束时间" in rows[0]["missing"]
    assert [r["id"] for r in client.get("/api/emergencies/overdue", headers=auth(tokens, "doc")).json()] == [early]
    assert client.get("/api/emergencies/open", headers=auth(tokens, "doc2")).json() == []
    assert [r["id"] for r in client.get("/api/emergencies/open", headers=auth(tokens, "vil")).json()] == [village]
    client.cookies.set("jf_session", tokens["police"])
    page = client.get("/emergencies/open")
    assert page.status_code == 200 and "待完成的应急处置" in page.text and 'href="/emergencies/open">应急处置</a>' in page.text
    assert f'href="/emergencies/{early}"' in page.text and f'href="/emergencies/{fresh}"' in page.text
    assert f'href="/emergencies/{done}"' not in page.text and "已超时" in page.text and "精神分裂症" not in page.text
    notice = client.get("/notices?event=emergency.opened&township=T1")
    assert notice.status_code == 200 and 'href="/emergencies/open"' in notice.text
    with database.engine.connect() as conn:
        audited = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE object_type = 'emergency' AND object_id = 'open'"
                                       " AND action = 'read'")).scalar_one()
    assert audited == 6  # three API reads, doc2's, the village's and the page: every read audited
    client.cookies.set("jf_session", tokens["gov"])
    assert 'href="/emergencies/open"' not in client.get("/mylist").text  # 综治 reads no record (§9)


# ----------------------------------------------------------------------------- post_emergency task


def _tasks(database, kind="post_emergency"):
    with database.engine.connect() as conn:
        return conn.execute(sa.text("SELECT patient_id, basis, due_on, roles, joint, status, close_reason FROM visit_task"
                                    " WHERE kind = :k AND basis NOT LIKE 'test:%' ORDER BY id"), {"k": kind}).all()


@pytest.mark.parametrize("incremental", [False, True])
@time_machine.travel(NOW, tick=False)
def test_post_emergency_task_due_and_closed_by_a_home_visit(web, incremental):
    client, tokens, database = web
    generate(database.engine, as_of=TODAY)  # the basis of the incremental runs
    # (the seeded test:P2 task supersedes P2's generated one: compare the emergency patient's chain)
    follow_ups_before = [t for t in _tasks(database, "follow_up") if t.patient_id == "P1"]
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json=OPEN).json()["id"]
    assert _tasks(database) == []  # no end time yet: nothing owed
    client.patch(f"/api/emergencies/{eid}", headers=auth(tokens, "doc"), json=COMPLETE)
    generate(database.engine, as_of=TODAY, incremental=incremental)
    (task,) = _tasks(database)
    due = task.due_on if isinstance(task.due_on, date) else date.fromisoformat(task.due_on)
    assert (task.patient_id, task.basis, task.roles, bool(task.joint), task.status) == (
        "P1", f"emergency:{eid}", "doctor,police,village", True, "open")
    assert due >= date(2026, 6, 24) and due <= date(2026, 6, 30)  # end + 14 days, moved to a working day
    assert [t for t in _tasks(database, "follow_up") if t.patient_id == "P1"] == follow_ups_before  # the §5 chain is neither moved nor closed
    # a phone call does not close it; a complete home visit on or after the end does
    with database.engine.begin() as conn:
        conn.execute(sa.insert(FollowUp.__table__).values(patient_id="P1", visit_on=date(2026, 6, 10), seq=1, mode=3,
                                                          risk_level=1, updated_at=datetime.now(timezone.utc)))
    generate(database.engine, as_of=TODAY, incremental=incremental)
    assert _tasks(database)[0].status == "open"
    with database.engine.begin() as conn:
        conn.execute(sa.insert(FollowUp.__table__).values(patient_id="P1", visit_on=date(2026, 6, 10), seq=2, mode=2,
                                                          risk_level=1, updated_at=datetime.now(timezone.utc)))
    generate(database.engine, as_of=TODAY, incremental=incremental)
    (task,) = _tasks(database)
    assert (task.status, task.close_reason) == ("done", "home_visit")
    # a joint task (rules.md §6, §6.2): closed by that home visit, nobody else recorded → 联合未到位
    with database.engine.connect() as conn:
        home = conn.execute(sa.text("SELECT id FROM follow_up WHERE patient_id = 'P1' AND mode = 2"
                                    " AND visit_on = :d"), {"d": date(2026, 6, 10)}).scalar_one()
        closed = conn.execute(sa.text("SELECT closed_by, joint_outcome, missing_roles FROM visit_task"
                                      " WHERE kind = 'post_emergency'")).one()
    assert tuple(closed) == (home, "incomplete", "police,village")


@time_machine.travel(NOW, tick=False)
def test_post_emergency_task_exists_when_the_home_visit_is_recorded_before_the_end(web):
    """rules.md §9 through the web: the emergency opened without its end, the home visit recorded
    (API), only then the record completed with an end before that visit — the post-emergency task
    exists, already closed by that visit and judged (rules.md §6.2), after the write's own run and
    after the scheduler's."""
    client, tokens, database = web
    generate(database.engine, as_of=TODAY)
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json=OPEN).json()["id"]
    r = client.post("/api/patients/P1/follow-ups", headers=auth(tokens, "doc"),
                    json={"visit_on": "2026-06-10", "mode": 2, "risk_level": 1, "insight": 1, "attended_police": 1,
                          "attended_village": 0, "reason_village": "外出"})
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    assert _tasks(database) == []  # no end time yet: nothing owed
    assert client.patch(f"/api/emergencies/{eid}", headers=auth(tokens, "doc"), json=COMPLETE).status_code == 200
    for incremental in (None, True, False):  # the write's run, then the daily run, then a full one
        if incremental is not None:
            generate(database.engine, as_of=TODAY, incremental=incremental)
        (task,) = _tasks(database)
        assert (task.basis, task.status, task.close_reason) == (f"emergency:{eid}", "done", "home_visit")
        with database.engine.connect() as conn:
            closed = conn.execute(sa.text("SELECT closed_by, joint_outcome, missing_roles FROM visit_task"
                                          " WHERE kind = 'post_emergency'")).one()
        assert tuple(closed) == (fid, "incomplete", "village")


# ----------------------------------------------------------------------------- ledger


@time_machine.travel(NOW, tick=False)
def test_emergency_of_situation_1_or_2_enters_the_ledger(web):
    client, tokens, database = web
    client.post("/api/patients/P2/emergencies", headers=auth(tokens, "doc"),
                json={**OPEN, "situations": [3], "started_at": None, "reported_at": "2026-06-01 10:00"})
    with database.engine.connect() as conn:
        first = ledger_entries(conn, TODAY, emergencies=rules.ledger_events_select())
    assert [e.patient_id for e in first] == ["P1"]  # P1 by incident
    client.post("/api/patients/P2/emergencies", headers=auth(tokens, "doc"),
                json={**OPEN, "situations": [1, 3], "started_at": "2026-06-02 23:30", "reported_at": "2026-06-03 00:10"})
    with database.engine.connect() as conn:
        entries = [e for e in ledger_entries(conn, TODAY, emergencies=rules.ledger_events_select()) if e.patient_id == "P2"]
    assert [(e.entered_on, e.reason.value, e.left_on) for e in entries] == [(date(2026, 6, 2), "emergency", None)]
    r = client.get("/api/ledger", headers=auth(tokens, "doc"))
    assert {(x["patient_id"], x["reason"]) for x in r.json()} >= {("P2", "emergency")}


# ----------------------------------------------------------------------------- PDF


@time_machine.travel(NOW, tick=False)
def test_pdf_of_the_record_in_chinese(web, tmp_path):
    client, tokens, database = web
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"),
                      json={**OPEN, "diagnosis": "精神分裂症"}).json()["id"]
    client.cookies.set("jf_session", tokens["doc"])
    r = client.get(f"/emergencies/{eid}/pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    path = tmp_path / "e.pdf"
    path.write_bytes(r.content)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "应急处置记录单" in text and "危害公共安全或他人安全的行为或危险" in text and "精神分裂症" in text
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    assert "CJK" in fonts
    client.cookies.set("jf_session", tokens["police"])
    police = client.get(f"/emergencies/{eid}/pdf")
    path.write_bytes(police.content)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "精神分裂症" not in text and "东坑村村口" in text
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'export' AND object_type = 'emergency'")).scalar_one() == 2


# ----------------------------------------------------------------------------- 风险预警单


@time_machine.travel(NOW, tick=False)
def test_emergencies_of_the_week_on_the_risk_warning_list(web):
    from schedules.lists import build_lists

    client, tokens, database = web
    # P2 is on no list; an emergency in the week before Monday 2026-06-15 puts it on the 风险预警单
    client.post("/api/patients/P2/emergencies", headers=auth(tokens, "doc"),
                json={**OPEN, "situations": [3], "started_at": None, "reported_at": "2026-06-09 10:00"})
    data = build_lists(database.engine, township_code="T1", week=date(2026, 6, 15))
    risk = next(wl for wl in data["lists"] if wl.slug == "risk")
    rows = {r["patient_id"]: r for r in risk.rows}
    assert "上周应急处置" in rows["P2"]["reasons"]
    later = build_lists(database.engine, township_code="T1", week=date(2026, 6, 22))  # not the week after
    assert "P2" not in {r["patient_id"] for r in next(wl for wl in later["lists"] if wl.slug == "risk").rows}


@time_machine.travel(NOW, tick=False)
def test_tasks_json_shows_the_post_emergency_kind(web):
    from typer.testing import CliRunner

    from jingfang.cli import app

    client, tokens, database = web
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json={**OPEN, **COMPLETE}).json()["id"]
    db = ["--db", database.url]
    assert CliRunner().invoke(app, ["schedule", "--as-of", "2026-06-10", *db]).exit_code == 0
    result = CliRunner().invoke(app, ["tasks", "--as-of", "2026-07-31", "--json", *db])
    assert result.exit_code == 0, result.output
    tasks = [t for t in json.loads(result.stdout) if t["kind"] == "post_emergency"]
    assert len(tasks) == 1 and eid
    assert tasks[0]["patient_id"] == "P1" and tasks[0]["roles"] == ["doctor", "police", "village"] and tasks[0]["joint"] is True
    assert "§9" in tasks[0]["rule"]


@time_machine.travel(NOW, tick=True)
def test_an_emergency_alert_links_the_police_to_the_record_itself(web):
    """rules.md §9, §12 ("emergencies that reach the police at once"): the alert of an opened record
    names it — on the police officer's /mylist notices, the doctor's work list and /alerts a link
    opens the record to complete it, not only the patient page two taps away. A role that does not
    read every record (civil affairs) gets no such link; the date column is the event's, not a visit's."""
    from schedules.alerts import detect

    client, tokens, database = web
    eid = client.post("/api/patients/P1/emergencies", headers=auth(tokens, "doc"), json=OPEN).json()["id"]
    assert detect(database.engine)["emergency_opened"] == 1
    link = f'href="/emergencies/{eid}"'
    for user, page in (("police", "/mylist"), ("police", "/alerts"), ("doc", "/worklist"), ("doc", "/alerts")):
        html = client.get(page, headers=auth(tokens, user)).text
        assert link in html and "打开记录单" in html, (user, page)
        assert client.get(f"/emergencies/{eid}", headers=auth(tokens, user)).status_code == 200  # the link opens
    alerts = client.get("/alerts", headers=auth(tokens, "police")).text
    assert "应急处置登记" in alerts and "随访日期" not in alerts
    for page in ("/mylist", "/alerts"):
        assert not re.search(r"/emergencies/\d", client.get(page, headers=auth(tokens, "civil")).text)  # no record link
