"""Webhook delivery to a real HTTP receiver on 127.0.0.1: retries with backoff, exactly-once
delivery, HMAC signatures, WeCom/DingTalk errcode handling, byte limits, 20 messages/min."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from registry.clock import now_utc
from registry.models import Region
from schedules.models import OutboxMessage
from schedules.notify import (
    MARKDOWN_BYTES, ROBOT_PER_MINUTE, add_webhook, build_request, deliver_due, queue_list_notifications, truncate_bytes,
)

D = date.fromisoformat
COUNTS = {"followup": 12, "joint": 3, "risk": 2, "medication": 4, "assistance": 5}


class Receiver:
    """A real HTTP server on 127.0.0.1 (random port) answering from a script of responses."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload = receiver.responses.pop(0) if receiver.responses else (200, {"errcode": 0, "errmsg": "ok"})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def seed_regions(engine):
    with engine.begin() as conn:
        conn.execute(sa.insert(Region), [
            {"code": "C", "name": "县", "level": "county", "parent_code": None},
            {"code": "T", "name": "东镇", "level": "township", "parent_code": "C"},
            {"code": "T9", "name": "西镇", "level": "township", "parent_code": "C"},
        ])


def queue(engine, township="T", week="2026-06-08"):
    with engine.begin() as conn:
        return queue_list_notifications(conn, township_code=township, township_name="东镇", week=D(week), counts=COUNTS,
                                        base_url="http://jingfang.example")


def outbox(engine):
    t = OutboxMessage.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()


def test_generic_webhook_retries_then_delivers_exactly_once(database):
    seed_regions(database.engine)
    with Receiver([(500, {}), (503, {}), (200, {"ok": True})]) as rx:
        add_webhook(database.engine, name="county-hub", url=rx.url + "/hook", fmt="generic", secret="s3cret")
        assert queue(database.engine) == 1
        assert queue(database.engine) == 0  # the same week again queues nothing
        now = now_utc()
        results = []
        for step in range(6):  # the loop runs on; backoff is honoured by the clock passed in
            results.append(deliver_due(database.engine, now=now))
            now += timedelta(minutes=5)
        assert [r["retry"] for r in results[:2]] == [1, 1] and sum(r["sent"] for r in results) == 1
        assert len(rx.requests) == 3
        [msg] = outbox(database.engine)
        assert (msg["status"], msg["attempts"]) == ("sent", 3)
        last = rx.requests[-1]
        body = last["body"]
        stamp = last["headers"]["X-Jingfang-Timestamp"]
        expected = hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert last["headers"]["X-Jingfang-Signature"] == f"sha256={expected}"
        assert last["headers"]["X-Jingfang-Delivery"] == str(msg["id"])
        payload = json.loads(body)
        assert payload["counts"] == COUNTS and payload["link"] == "http://jingfang.example/notices?event=lists.weekly&township=T&week=2026-06-08"
        assert set(payload) == {"event", "township", "township_name", "week", "counts", "link"}


def test_backoff_waits_before_retrying(database):
    seed_regions(database.engine)
    with Receiver([(500, {})]) as rx:
        add_webhook(database.engine, name="hub", url=rx.url, fmt="generic", secret="s")
        queue(database.engine)
        now = now_utc()
        assert deliver_due(database.engine, now=now)["retry"] == 1
        assert deliver_due(database.engine, now=now + timedelta(seconds=10)) == {"sent": 0, "failed": 0, "retry": 0, "deferred": 0}
        assert deliver_due(database.engine, now=now + timedelta(seconds=31))["sent"] == 1
        assert len(rx.requests) == 2


@pytest.mark.parametrize("fmt", ["wecom", "dingtalk"])
def test_robot_errcode_is_checked(database, fmt):
    seed_regions(database.engine)
    with Receiver([(200, {"errcode": 45009, "errmsg": "api freq out of limit"}), (200, {"errcode": 0, "errmsg": "ok"})]) as rx:
        add_webhook(database.engine, name="robot", url=rx.url + "/send?key=abc", fmt=fmt, secret="SEC" if fmt == "dingtalk" else None)
        queue(database.engine)
        now = now_utc()
        first = deliver_due(database.engine, now=now)
        assert first["retry"] == 1 and "45009" in outbox(database.engine)[0]["last_error"]
        assert deliver_due(database.engine, now=now + timedelta(minutes=2))["sent"] == 1
        body = json.loads(rx.requests[-1]["body"])
        assert body["msgtype"] == "markdown"
        text = body["markdown"]["content" if fmt == "wecom" else "text"]
        assert "东镇" in text and "随访任务 12" in text and "http://jingfang.example/notices?event=lists.weekly" in text
        if fmt == "dingtalk":
            assert "timestamp=" in rx.requests[-1]["path"] and "sign=" in rx.requests[-1]["path"]


def test_robot_rate_limit_twenty_per_minute(database):
    seed_regions(database.engine)
    with Receiver([]) as rx:
        add_webhook(database.engine, name="robot", url=rx.url, fmt="wecom")
        for i in range(ROBOT_PER_MINUTE + 5):
            queue(database.engine, week=(D("2026-01-05") + timedelta(weeks=i)).isoformat())
        now = now_utc()
        first = deliver_due(database.engine, now=now)
        assert (first["sent"], first["deferred"]) == (ROBOT_PER_MINUTE, 5)
        second = deliver_due(database.engine, now=now + timedelta(seconds=61))
        assert second["sent"] == 5 and len(rx.requests) == ROBOT_PER_MINUTE + 5


def test_two_webhook_rows_for_one_robot_share_its_limit(database):
    seed_regions(database.engine)
    with Receiver([]) as rx:
        add_webhook(database.engine, name="robot-a", url=rx.url, fmt="wecom")
        add_webhook(database.engine, name="robot-b", url=rx.url, fmt="wecom")
        for i in range(15):  # 15 weeks × 2 rows = 30 messages to the same robot
            queue(database.engine, week=(D("2026-01-05") + timedelta(weeks=i)).isoformat())
        now = now_utc()
        first = deliver_due(database.engine, now=now)
        assert (first["sent"], first["deferred"]) == (ROBOT_PER_MINUTE, 30 - ROBOT_PER_MINUTE)
        assert len(rx.requests) == ROBOT_PER_MINUTE


def test_region_scoped_webhook_and_no_identifiers(database):
    seed_regions(database.engine)
    add_webhook(database.engine, name="east", url="http://127.0.0.1:9/x", secret="s", region_code="T")
    add_webhook(database.engine, name="west", url="http://127.0.0.1:9/y", secret="s", region_code="T9")
    add_webhook(database.engine, name="county", url="http://127.0.0.1:9/z", secret="s", region_code="C")
    assert queue(database.engine, township="T") == 2
    for msg in outbox(database.engine):
        assert set(json.loads(msg["payload"])) == {"event", "township", "township_name", "week", "counts", "link"}


def test_markdown_cut_on_utf8_bytes():
    text = "精防" * 3000
    cut = truncate_bytes(text, MARKDOWN_BYTES)
    assert len(cut.encode("utf-8")) <= MARKDOWN_BYTES and cut == "精防" * 682 + "精"

    class Hook:
        format, url, secret = "wecom", "http://127.0.0.1/x", None

    payload = {"township": "T", "township_name": "镇" * 3000, "week": "2026-06-08", "counts": {},
               "link": "http://127.0.0.1/lists/week?township=T&week=2026-06-08"}
    _, body, _ = build_request(Hook, payload, now=now_utc(), delivery_id=1)
    content = json.loads(body)["markdown"]["content"]
    assert len(content.encode("utf-8")) <= MARKDOWN_BYTES
    assert content.endswith("\n[查看五单](http://127.0.0.1/lists/week?township=T&week=2026-06-08)")  # the cut spares the link


def test_bad_webhook_rejected(database):
    from registry.errors import InvalidInput

    with pytest.raises(InvalidInput):
        add_webhook(database.engine, name="x", url="ftp://example", fmt="generic", secret="s")
    with pytest.raises(InvalidInput):
        add_webhook(database.engine, name="x", url="http://127.0.0.1/", fmt="slack")


def test_outbox_statuses_are_the_enum(database):
    """发件状态 (issue 12: one home for labels): every status the delivery stores is a member of
    ``registry.codes.OutboxStatus`` — the stored strings, unchanged (no migration) — with its Chinese
    label; ``jingfang notify`` prints the delivery's counts by those labels."""
    from typer.testing import CliRunner

    from jingfang.cli import app as cli_app
    from registry.codes import OutboxStatus, values
    from schedules.models import Webhook
    from schedules.notify import MAX_ATTEMPTS, set_webhook_enabled

    assert values(OutboxStatus) == ["pending", "sending", "sent", "failed", "cancelled"]
    assert [s.label for s in OutboxStatus] == ["待发送", "发送中", "已发送", "失败", "已取消"]
    engine = database.engine
    seed_regions(engine)
    with Receiver([]) as ok, Receiver([(500, {})]) as bad:
        for name, url in (("ok", ok.url), ("bad", bad.url), ("off", ok.url), ("later", ok.url)):
            add_webhook(engine, name=name, url=url + "/hook", fmt="generic", secret="s")
        assert queue(engine) == 4
        t, w = OutboxMessage.__table__, Webhook.__table__
        with engine.connect() as conn:
            hook = {name: i for i, name in conn.execute(sa.select(w.c.id, w.c.name))}
        with engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.webhook_id == hook["bad"]).values(attempts=MAX_ATTEMPTS - 1))  # its last try
            conn.execute(sa.update(t).where(t.c.webhook_id == hook["later"]).values(next_attempt_at=now_utc() + timedelta(days=1)))
        set_webhook_enabled(engine, "off", False)
        counts = deliver_due(engine)
        assert (counts[OutboxStatus.SENT.value], counts[OutboxStatus.FAILED.value]) == (1, 1)
    by_hook = {m["webhook_id"]: m["status"] for m in outbox(engine)}
    assert {name: OutboxStatus(by_hook[i]).label for name, i in hook.items()} == {
        "ok": "已发送", "bad": "失败", "off": "已取消", "later": "待发送"}
    r = CliRunner().invoke(cli_app, ["notify", "--db", database.url])
    assert r.exit_code == 0 and r.output.strip() == "已发送 0，失败 0，待重试 0", r.output
