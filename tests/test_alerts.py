"""Real-time alerts (rules.md §12): each kind from each write path (import, web form, API) alerts once,
through the outbox to a real receiver on 127.0.0.1, identifier-free, with a link the township's police
and doctor open; a history import alerts nothing; the rule twins agree. Both databases."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given, strategies as st

from registry.alerts import flags_lost_at, flags_lost_sql, is_recent, risk_rose_at, risk_rose_sql
from registry.importing import import_path
from registry.models import FollowUp, Patient
from registry.web.app import create_app
from schedules.alerts import detect
from schedules.models import Alert
from schedules.notify import add_webhook, deliver_due, message_text
from test_schedule_notify import Receiver
from twins import TWIN_SETTINGS, attempt_histories, scratch, seed as seed_twins, truth
from web_support import ID_P1, TODAY, seed, session_token

BASE = "http://jingfang.example"
# one follow-up per kind: P2 (last risk 0) rises to 3; P3 counts a 肇事; P1 is flagged 失访 (lost reason 4)
EVENTS = [
    {"patient_id": "P2", "visit_on": "2026-06-08", "mode": "2", "risk_level": "3", "insight": "2"},
    {"patient_id": "P3", "visit_on": "2026-06-09", "mode": "2", "risk_level": "1", "insight": "1", "incidents_disturbance": "1"},
    {"patient_id": "P1", "visit_on": "2026-06-09", "mode": "2", "lost_reason": "4"},
]
IMPORT_COLUMNS = ["patient_id", "visit_on", "mode", "lost_reason", "risk_level", "insight", "incidents_disturbance"]


def _client(engine, username: str) -> TestClient:
    client = TestClient(create_app(engine, today=lambda: TODAY), follow_redirects=False)
    client.cookies.set("jf_session", session_token(engine, username))
    return client


def _write(path: str, engine, tmp_path) -> None:
    if path == "import":
        folder = tmp_path / "imp"
        folder.mkdir()
        lines = [",".join(IMPORT_COLUMNS)] + [",".join(e.get(c, "") for c in IMPORT_COLUMNS) for e in EVENTS]
        (folder / "followups.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        import_path(engine, folder, today=TODAY)
    elif path == "api":
        client = TestClient(create_app(engine, today=lambda: TODAY))
        client.headers["Authorization"] = f"Bearer {session_token(engine, 'doc')}"
        for e in EVENTS:
            body = {k: (v if k in ("visit_on",) else int(v)) for k, v in e.items() if k != "patient_id"}
            r = client.post(f"/api/patients/{e['patient_id']}/follow-ups", json=body)
            assert r.status_code == 201, r.text
    else:
        client = _client(engine, "doc")
        for e in EVENTS:
            page = client.get(f"/patients/{e['patient_id']}/follow-ups/new")
            assert page.status_code == 200, page.text[:500]
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            data = {k: v for k, v in e.items() if k != "patient_id"}
            r = client.post(f"/patients/{e['patient_id']}/follow-ups/new", data={**data, "csrf_token": csrf})
            assert r.status_code in (200, 303), r.text[:2000]


def _alerts(engine) -> list[tuple]:
    a = Alert.__table__
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(a.c.kind, a.c.patient_id, a.c.township_code).order_by(a.c.kind))]


def _identifiers(engine) -> list[str]:
    p = Patient.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(p.c.patient_id, p.c.name, p.c.id_number, p.c.phone, p.c.guardian_name,
                                      p.c.guardian_phone, p.c.diagnosis)).all()
    out = {ID_P1, "精神分裂症"}
    for r in rows:
        out.update(str(v) for v in r if v)
    return sorted(out)


@pytest.mark.parametrize("path", ["import", "form", "api"])
def test_each_kind_alerts_once_from_each_write_path(database, tmp_path, path):
    engine = database.engine
    seed(engine)  # history: P1's 2026-05-20 follow-up is risk 3 with a 肇事 — older than 7 days, alerts nothing
    with Receiver([]) as rx:
        add_webhook(engine, name="township", url=rx.url + "/hook", fmt="generic", secret="s3cret", region_code="T1")
        add_webhook(engine, name="other", url=rx.url + "/other", fmt="wecom", region_code="T2")
        assert detect(engine, today=TODAY, base_url=BASE)["queued"] == 0
        assert _alerts(engine) == []
        _write(path, engine, tmp_path)
        counts = detect(engine, today=TODAY, base_url=BASE)
        assert {k: counts[k] for k in ("risk_rise", "incident", "lost")} == {"risk_rise": 1, "incident": 1, "lost": 1}
        assert counts["queued"] == 1  # one message for the township's webhook, none for the other township's
        assert _alerts(engine) == [("incident", "P3", "T1"), ("lost", "P1", "T1"), ("risk_rise", "P2", "T1")]
        assert deliver_due(engine)["sent"] == 1
        # a rerun (a restart, the next tick) finds the same events and sends nothing new
        again = detect(engine, today=TODAY, base_url=BASE)
        assert again == {"risk_rise": 0, "incident": 0, "lost": 0, "emergency_opened": 0, "emergency_overdue": 0, "queued": 0}
        assert deliver_due(engine) == {"sent": 0, "failed": 0, "retry": 0, "deferred": 0}
        assert len(rx.requests) == 1 and rx.requests[0]["path"] == "/hook"
        body = rx.requests[0]["body"].decode("utf-8")
    payload = json.loads(body)
    assert payload["event"] == "alerts.new" and payload["township"] == "T1"
    assert payload["counts"] == {"risk_rise": 1, "incident": 1, "lost": 1}
    robot = message_text(payload)
    for ident in _identifiers(engine):
        assert ident not in body.replace("T1", "").replace(BASE, ""), ident
        assert ident not in robot.replace("T1", "").replace(BASE, ""), ident
    # the link opens for the township's police and doctor (and civil affairs); not for another township's doctor
    link = payload["link"].removeprefix(BASE)
    assert link == "/alerts?township=T1"
    for username in ("police", "doc", "civil", "admin"):
        r = _client(engine, username).get(link)
        assert r.status_code == 200, (username, r.text[:300])
        assert "新发肇事肇祸" in r.text and "精神分裂症" not in r.text
    assert _client(engine, "doc2").get(link).status_code == 403
    # police and civil affairs see names only of patients on their lists (rules.md §8): after these
    # events all three are on the police's 风险预警单; civil affairs has only P3 (帮扶救助单)
    police_page = _client(engine, "police").get(link).text
    assert all(n in police_page for n in ("陈一", "李二", "张三"))
    civil_page = _client(engine, "civil").get(link).text
    assert "张三" in civil_page and "陈一" not in civil_page and "李二" not in civil_page and "不在您的名单内" in civil_page


def test_an_attempt_after_a_death_flags_nobody_lost(database, tmp_path):
    """An unreached attempt dated after the patient's death (the visit that found them dead is accepted,
    rules.md §1, §3) raises no 失访 alert (§12 alerts concern a patient 在册); the same attempt on a living
    patient does."""
    engine = database.engine
    seed(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(Patient.__table__).where(Patient.__table__.c.patient_id == "P1")
                     .values(status="dead", status_on=date(2026, 6, 5)))
    folder = tmp_path / "imp"
    folder.mkdir()
    (folder / "followups.csv").write_text("patient_id,visit_on,mode,lost_reason\nP1,2026-06-09,2,4\nP2,2026-06-09,2,4\n",
                                          encoding="utf-8")
    import_path(engine, folder, today=TODAY)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(FollowUp.__table__)
                              .where(FollowUp.__table__.c.visit_on == date(2026, 6, 9))).scalar_one()
    assert stored == 2  # both attempts were accepted
    counts = detect(engine, today=TODAY, base_url=BASE)
    assert counts["lost"] == 1
    assert [a for a in _alerts(engine) if a[0] == "lost"] == [("lost", "P2", "T1")]


def test_notices_on_the_members_pages_and_mark_read(database):
    engine = database.engine
    seed(engine)
    _write("api", engine, None)
    detect(engine, today=TODAY, base_url=BASE)
    doc = _client(engine, "doc")
    page = doc.get("/worklist")
    assert page.status_code == 200 and 'id="notices"' in page.text and "危险性升至3级及以上" in page.text
    police = _client(engine, "police")
    assert 'id="notices"' in police.get("/mylist").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    ids = re.findall(r'name="alert" value="(\d+)"', page.text)
    assert len(ids) == 3
    r = doc.post("/alerts/read", data={"csrf_token": csrf, "alert": ids, "back": "/worklist"})
    assert r.status_code == 303 and r.headers["location"] == "/worklist"
    assert 'id="notices"' not in doc.get("/worklist").text  # all read for the doctor
    assert 'id="notices"' in police.get("/mylist").text  # still unread for the police
    assert database.count("alert_read") == 3
    # a forged form marks nothing
    assert doc.post("/alerts/read", data={"csrf_token": "forged", "alert": ids}).status_code == 403
    assert database.count("alert_read") == 3


def test_history_import_alerts_nothing(database, tmp_path):
    """A county's first import of years of follow-ups: only events dated within 7 days alert."""
    engine = database.engine
    seed(engine)
    folder = tmp_path / "hist"
    folder.mkdir()
    rows = [",".join(IMPORT_COLUMNS)]
    day = date(2024, 1, 5)
    while day < TODAY - timedelta(days=8):
        rows.append(f"P2,{day.isoformat()},2,,4,2,1")  # risk 4 and a 肇事, every month for years
        day += timedelta(days=30)
    (folder / "followups.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    import_path(engine, folder, today=TODAY)
    counts = detect(engine, today=TODAY, base_url=BASE)
    assert counts == {"risk_rise": 0, "incident": 0, "lost": 0, "emergency_opened": 0, "emergency_overdue": 0, "queued": 0}


def _twins(conn, after_misses: int = 3) -> tuple[dict, dict]:
    """Per stored follow-up id: (SQL, Python) of (``risk_rose``, ``flags_lost``) — the SQL twins as
    the detector reads them, the Python rules over each patient's attempts."""
    f, p = FollowUp.__table__, Patient.__table__
    prev, g, h = f.alias("prev"), f.alias("g"), f.alias("h")
    got = {r.id: (bool(r.rise), bool(r.lost)) for r in conn.execute(
        sa.select(f.c.id, truth(risk_rose_sql(f, prev, p)).label("rise"), truth(flags_lost_sql(f, g, h, p, after_misses)).label("lost"))
        .select_from(f.join(p, p.c.patient_id == f.c.patient_id)))}
    registered = dict(conn.execute(sa.select(p.c.patient_id, p.c.registered_on)).all())
    rows = conn.execute(sa.select(f)).all()
    expected = {}
    for r in rows:
        mine = [a for a in rows if a.patient_id == r.patient_id]
        expected[r.id] = (risk_rose_at(mine, r, registered[r.patient_id]),
                          flags_lost_at(mine, r, registered[r.patient_id], after_misses))
    return got, expected


def test_rule_twins_agree(database):
    """``risk_rose_at`` / ``flags_lost_at`` and their SQL twins on random histories: several attempts on
    one day entered in any order (``id`` independent of ``seq``), attempts dated before registration."""

    @TWIN_SETTINGS
    @given(history=attempt_histories(), after_misses=st.sampled_from([1, 2, 3]))
    def check(history, after_misses):
        people, rows = history
        with scratch(database.engine) as conn:
            seed_twins(conn, people, rows)
            got, expected = _twins(conn, after_misses)
        assert got == expected

    check()
    assert is_recent(TODAY, TODAY) and not is_recent(TODAY - timedelta(days=8), TODAY)


def _add_patient(engine, patient_id: str, registered_on: date) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(Patient.__table__).values(patient_id=patient_id, name="测试", sex=1, birth_date=date(1980, 1, 1),
                                                         diagnosis="schizophrenia", village_code="V1", registered_on=registered_on))


def _add_follow_ups(engine, rows: list[dict]) -> list[int]:
    """Insert ``rows`` one by one (their ids in this order: the entry order) and return the ids."""
    f = FollowUp.__table__
    with engine.begin() as conn:
        return [conn.execute(sa.insert(f).values(mode=2, **r).returning(f.c.id)).scalar_one() for r in rows]


def _alert_sources(engine, kind: str) -> list[tuple]:
    a = Alert.__table__
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(a.c.patient_id, a.c.source_id).where(a.c.kind == kind)
                                               .order_by(a.c.patient_id))]


def test_risk_rise_follows_the_attempt_order_and_registration(database):
    """The previous complete follow-up is ``registry.attempts``' (rules.md §5): on one date the one
    entered last is the later, whatever its sequence number; a follow-up dated before registration is
    no one's previous and raises no alert itself (rules.md §12)."""
    engine = database.engine
    seed(engine)  # P1's latest: 2026-05-20, risk 3
    # P1 on 2026-06-08: seq 2 (risk 1) entered first, then seq 1 (risk 4): the risk-4 visit follows the risk-1 one
    _x, y = _add_follow_ups(engine, [{"patient_id": "P1", "visit_on": date(2026, 6, 8), "seq": 2, "risk_level": 1},
                                     {"patient_id": "P1", "visit_on": date(2026, 6, 8), "seq": 1, "risk_level": 4}])
    # P6 registered 2026-06-01: a risk-4 visit of 2026-05-25 is history before registration, not the previous one
    _add_patient(engine, "P6", date(2026, 6, 1))
    _pre, first = _add_follow_ups(engine, [{"patient_id": "P6", "visit_on": date(2026, 5, 25), "risk_level": 4},
                                           {"patient_id": "P6", "visit_on": date(2026, 6, 8), "risk_level": 3}])
    # P7 registered 2026-06-09: a recent risk-4 visit of 2026-06-05 predates registration: no event
    _add_patient(engine, "P7", date(2026, 6, 9))
    _add_follow_ups(engine, [{"patient_id": "P7", "visit_on": date(2026, 6, 5), "risk_level": 4}])
    counts = detect(engine, today=TODAY, base_url=BASE)
    assert counts["risk_rise"] == 2
    assert _alert_sources(engine, "risk_rise") == [("P1", y), ("P6", first)]
    with engine.connect() as conn:
        got, expected = _twins(conn)
    assert got == expected


def test_lost_follows_the_attempt_order_and_registration(database):
    """The run of unreached attempts is counted in ``registry.attempts``' order over the attempts dated
    on or after registration (rules.md §5, §12), as the scheduler counts it for the locate task."""
    engine = database.engine
    seed(engine)  # P2's latest: 2026-04-01, reached
    # P2 on 2026-06-06: seq 2 unreached entered first, then seq 1 reached: the run restarts after the reached one
    _add_follow_ups(engine, [{"patient_id": "P2", "visit_on": date(2026, 6, 6), "seq": 2, "lost_reason": 1},
                             {"patient_id": "P2", "visit_on": date(2026, 6, 6), "seq": 1, "risk_level": 0},
                             {"patient_id": "P2", "visit_on": date(2026, 6, 7), "lost_reason": 1},
                             {"patient_id": "P2", "visit_on": date(2026, 6, 8), "lost_reason": 1}])
    # P6 registered 2026-06-04: the unreached attempt of 2026-06-03 is not part of the run; the third after registration flags
    _add_patient(engine, "P6", date(2026, 6, 4))
    *_, third = _add_follow_ups(engine, [{"patient_id": "P6", "visit_on": date(2026, 6, d), "lost_reason": 2} for d in (3, 5, 7, 9)])
    counts = detect(engine, today=TODAY, base_url=BASE)
    assert counts["lost"] == 1
    assert _alert_sources(engine, "lost") == [("P6", third)]
    with engine.connect() as conn:
        got, expected = _twins(conn)
    assert got == expected


def test_the_scheduler_process_alerts_within_a_minute_of_an_api_write(database, tmp_path):
    """The real scheduler service (its 20-second detector) delivers an API write's alert to the
    township's webhook within one minute; the write itself never waited on it."""
    import time

    import time_machine

    from registry.clock import local_today
    from tests.test_schedule_service import start_scheduler, stop, wait_log
    from tests.waiting import wait_for

    engine = database.engine
    seed(engine)
    with Receiver([]) as rx:
        add_webhook(engine, name="township", url=rx.url + "/hook", fmt="generic", secret="s3cret", region_code="T1")
        started = time.monotonic()
        proc = start_scheduler(database.url, tmp_path)
        try:
            wait_log(proc, "调度服务已运行", timeout=240)
            # the child's clock is today 09:00 Asia/Shanghai, ticking: write on the same clock
            from registry.config import LOCAL_TZ
            from datetime import datetime, time as dt_time
            morning = datetime.combine(local_today(), dt_time(9, 0), tzinfo=LOCAL_TZ)
            with time_machine.travel(morning + timedelta(seconds=time.monotonic() - started), tick=True):
                today = local_today()
                client = TestClient(create_app(engine, today=lambda: today))
                client.headers["Authorization"] = f"Bearer {session_token(engine, 'doc')}"
                r = client.post("/api/patients/P3/follow-ups", json={"visit_on": (today - timedelta(days=1)).isoformat(),
                                                                     "mode": 2, "risk_level": 1, "insight": 1,
                                                                     "incidents_crime": 1})
                assert r.status_code == 201, r.text
            written = time.monotonic()
            alerts = lambda: [q for q in rx.requests if json.loads(q["body"])["event"] == "alerts.new"]  # noqa: E731
            wait_for(alerts, "the alert message", timeout=60)  # the catch-up's weekly lists come too
            assert time.monotonic() - written < 60
        finally:
            stop(proc)
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE IF EXISTS apscheduler_jobs")
    [message] = alerts()
    payload = json.loads(message["body"])
    assert payload["counts"] == {"incident": 1} and payload["township"] == "T1"
    assert "张三" not in message["body"].decode("utf-8")
