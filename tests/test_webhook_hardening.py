"""Webhook hardening (issue 18), with real HTTP receivers on 127.0.0.1 and both databases:
`webhook add` replaces in place (a leaked robot key is rotated), `remove` / `disable` / `enable`,
a generic webhook needs a secret, every change is audited without the secret, a robot's rejected
posts count toward its 20-per-minute limit, and a slow receiver is not posted twice in parallel."""

from __future__ import annotations

import getpass
import json
import threading
import time
from datetime import timedelta

import sqlalchemy as sa
from typer.testing import CliRunner

from jingfang.cli import app
from registry.clock import now_utc
from registry.models import AuditLog
from schedules import notify
from schedules.models import Webhook
from schedules.notify import ROBOT_PER_MINUTE, add_webhook, deliver_due, list_webhooks
from tests.test_schedule_notify import D, Receiver, outbox, queue, seed_regions
from tests.waiting import wait_for


def cli(database, *args: str):
    return CliRunner().invoke(app, ["webhook", *args, "--db", database.url])


def hooks(engine) -> list[dict]:
    t = Webhook.__table__
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.id)).mappings()]


def webhook_audit(engine) -> list[dict]:
    t = AuditLog.__table__
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t).where(t.c.object_type == "webhook").order_by(t.c.id)).mappings()]


def test_add_again_replaces_in_place_and_rotates_a_leaked_robot_key(database):
    """Before issue 18 the second `add` of a name with outbox rows was an IntegrityError traceback."""
    seed_regions(database.engine)
    with Receiver([]) as old, Receiver([]) as new:
        result = cli(database, "add", "robot", old.url + "/send?key=LEAKED", "--format", "wecom")
        assert result.exit_code == 0, result.output
        queue(database.engine)  # a message waits for the robot
        [before] = hooks(database.engine)
        result = cli(database, "add", "robot", new.url + "/send?key=ROTATED", "--format", "wecom")
        assert result.exit_code == 0, result.output + repr(result.exception)
        assert "已替换通知地址 robot" in result.stdout
        [after] = hooks(database.engine)
        assert after["id"] == before["id"] and after["url"] == new.url + "/send?key=ROTATED"
        assert deliver_due(database.engine)["sent"] == 1
        assert old.requests == [] and len(new.requests) == 1  # the queued message went to the new key
        assert "key=ROTATED" in new.requests[0]["path"]


def test_disable_enable_and_remove(database):
    seed_regions(database.engine)
    engine = database.engine
    with Receiver([]) as rx:
        assert cli(database, "add", "hub", rx.url, "--secret", "s1").exit_code == 0
        assert cli(database, "add", "robot", rx.url + "/robot", "--format", "wecom").exit_code == 0
        queue(engine, week="2026-06-01")
        result = cli(database, "disable", "hub")
        assert result.exit_code == 0 and "取消待发消息 1 条" in result.stdout
        queue(engine, week="2026-06-08")  # a disabled hook gets no new message
        assert [(m["webhook_id"], m["status"]) for m in outbox(engine)] == [(1, "cancelled"), (2, "pending"), (2, "pending")]
        assert deliver_due(engine)["sent"] == 2 and {r["path"] for r in rx.requests} == {"/robot"}
        assert [w["active"] for w in list_webhooks(engine)] == [False, True]

        assert cli(database, "enable", "hub").exit_code == 0
        queue(engine, week="2026-06-15")
        assert sorted(m["webhook_id"] for m in outbox(engine) if m["status"] == "pending") == [1, 2]
        # a message queued before the hook was disabled is not posted afterwards
        with engine.begin() as conn:
            conn.execute(sa.update(Webhook).where(Webhook.__table__.c.name == "robot").values(active=False))
        assert deliver_due(engine)["sent"] == 1
        assert [m["status"] for m in outbox(engine) if m["webhook_id"] == 2][-1] == "cancelled"
        assert cli(database, "enable", "robot").exit_code == 0

        # remove with history: the row stays for the outbox history, without URL or secret
        queue(engine, week="2026-06-22")
        result = cli(database, "remove", "hub")
        assert result.exit_code == 0 and "取消待发消息 1 条" in result.stdout
        hub = hooks(engine)[0]
        assert hub["removed_at"] is not None and (hub["url"], hub["secret"], hub["active"]) == ("", None, False)
        assert [w["name"] for w in list_webhooks(engine)] == ["robot"]
        statuses = [(m["webhook_id"], m["status"]) for m in outbox(engine)]
        assert (1, "sent") in statuses and (1, "cancelled") in statuses and (1, "pending") not in statuses
        queue(engine, week="2026-06-29")
        assert all(m["webhook_id"] == 2 for m in outbox(engine) if m["status"] == "pending")
        # the name is free for a new `add`: the same row comes back
        assert cli(database, "add", "hub", rx.url + "/v2", "--secret", "s2").exit_code == 0
        assert hooks(engine)[0]["id"] == 1 and hooks(engine)[0]["removed_at"] is None
        # a webhook without history is deleted; an unknown name is a clear error
        assert cli(database, "add", "spare", rx.url, "--secret", "s3").exit_code == 0
        assert cli(database, "remove", "spare").exit_code == 0
        assert [h["name"] for h in hooks(engine)] == ["hub", "robot"]
        for command in ("remove", "disable", "enable"):
            result = cli(database, command, "spare")
            assert result.exit_code == 1 and "WEBHOOK_NOT_FOUND" in result.output and "Traceback" not in result.output


def test_a_generic_webhook_requires_a_secret(database):
    seed_regions(database.engine)
    for extra in ([], ["--secret", "  "]):
        result = cli(database, "add", "hub", "http://127.0.0.1:9/hook", "--format", "generic", *extra)
        assert result.exit_code == 1, result.output
        assert "[WEBHOOK_SECRET_REQUIRED]" in result.output and "必须设置签名密钥" in result.output
    result = cli(database, "add", "hub", "http://127.0.0.1:9/hook")  # generic is the default format
    assert result.exit_code == 1 and "[WEBHOOK_SECRET_REQUIRED]" in result.output
    assert hooks(database.engine) == []
    # a row stored before secrets were required is never posted unsigned
    with Receiver([]) as rx:
        with database.engine.begin() as conn:
            conn.execute(sa.insert(Webhook).values(name="old", url=rx.url, format="generic", secret=None, active=True))
        queue(database.engine)
        assert deliver_due(database.engine)["retry"] == 1
        assert rx.requests == [] and "未设置签名密钥" in outbox(database.engine)[0]["last_error"]
        assert cli(database, "add", "old", rx.url, "--secret", "now-set").exit_code == 0  # the operator sets one
        assert deliver_due(database.engine, now=now_utc() + timedelta(minutes=1))["sent"] == 1
        assert "X-Jingfang-Signature" in rx.requests[0]["headers"]


def test_every_webhook_change_is_audited_without_the_secret(database):
    engine = database.engine
    url = "https://user:pw@qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRETKEY123"
    assert cli(database, "add", "robot", url, "--format", "wecom").exit_code == 0
    assert cli(database, "add", "robot", url.replace("123", "456"), "--format", "wecom").exit_code == 0
    assert cli(database, "add", "hub", "http://127.0.0.1:9/h", "--secret", "HMACSECRET").exit_code == 0
    assert cli(database, "disable", "hub").exit_code == 0
    assert cli(database, "enable", "hub").exit_code == 0
    assert cli(database, "remove", "hub").exit_code == 0
    assert cli(database, "add", "hub", "http://127.0.0.1:9/h").exit_code == 1  # refused: nothing to audit
    rows = webhook_audit(engine)
    assert [(r["object_id"], r["detail"].split("：")[0]) for r in rows] == [  # Chinese on the audit page (issue 16)
        ("robot", "新增通知地址"), ("robot", "替换通知地址"), ("hub", "新增通知地址"),
        ("hub", "停用通知地址"), ("hub", "启用通知地址"), ("hub", "删除通知地址")]
    assert {(r["actor"], r["source"], r["action"]) for r in rows} == {(f"cli:{getpass.getuser()}", "cli", "write")}
    assert "主机 qyapi.weixin.qq.com" in rows[0]["detail"] and "密钥 已设置" in rows[2]["detail"]
    for r in rows:
        for secret in ("SECRETKEY", "HMACSECRET", "pw", "key="):
            assert secret not in r["detail"]


def test_a_robots_rejected_posts_count_toward_its_limit(database):
    """A robot that answers errcode 45009 (too many requests) to every post: the loop posts at
    most 20 times a minute all the same (before issue 18 only delivered posts counted)."""
    seed_regions(database.engine)
    rejected = (200, {"errcode": 45009, "errmsg": "api freq out of limit"})
    with Receiver([rejected] * 200) as rx:
        add_webhook(database.engine, name="robot", url=rx.url, fmt="wecom")
        for i in range(ROBOT_PER_MINUTE + 5):
            queue(database.engine, week=(D("2026-01-05") + timedelta(weeks=i)).isoformat())
        now = now_utc()
        first = deliver_due(database.engine, now=now)
        assert (first["retry"], first["deferred"], len(rx.requests)) == (ROBOT_PER_MINUTE, 5, ROBOT_PER_MINUTE)
        # half a minute later the robot has had its 20: nothing is posted (a rejected message
        # waits a minute, so one message is never posted twice within a minute either)
        assert deliver_due(database.engine, now=now + timedelta(seconds=30)) == {"sent": 0, "failed": 0, "retry": 0, "deferred": 0}
        assert len(rx.requests) == ROBOT_PER_MINUTE
        for minute in range(1, 6):
            deliver_due(database.engine, now=now + timedelta(seconds=61 * minute))
            assert len(rx.requests) <= ROBOT_PER_MINUTE * (minute + 1)


class SlowReceiver(Receiver):
    """Answers its first request only after ``delay`` seconds; counts requests open at once."""

    def __init__(self, delay: float):
        super().__init__([])
        self.delay, self.open, self.most_open, self.release = delay, 0, 0, threading.Event()
        lock = threading.Lock()
        handler = self.server.RequestHandlerClass
        original = handler.do_POST
        receiver = self

        def do_post(handler_self):
            with lock:
                receiver.open += 1
                receiver.most_open = max(receiver.most_open, receiver.open)
                first = len(receiver.requests) == 0
            try:
                if first:
                    receiver.release.wait(receiver.delay)
                original(handler_self)
            finally:
                with lock:
                    receiver.open -= 1

        handler.do_POST = do_post

    def __exit__(self, *exc):
        self.release.set()
        super().__exit__(*exc)


def test_the_post_deadline_is_shorter_than_the_stuck_message_window():
    assert notify.delivery_timeout().read * 4 <= notify.post_deadline() < notify.SENDING_STALE.total_seconds()


def test_a_slow_receiver_is_not_posted_twice_in_parallel(database, monkeypatch):
    """The receiver answers only after longer than the stuck-message window (shortened to 8 s here):
    the post times out long before (its deadline is derived from the window), the message is
    retried once with backoff, and a second delivery loop meanwhile posts nothing. Before issue 18
    the post waited 10 s, so the second loop took the message for stuck and posted it in parallel."""
    seed_regions(database.engine)
    monkeypatch.setattr(notify, "SENDING_STALE", timedelta(seconds=8))
    with SlowReceiver(delay=9.5) as rx:
        add_webhook(database.engine, name="hub", url=rx.url, fmt="generic", secret="s")
        queue(database.engine)
        start = now_utc()
        first: dict = {}
        loop = threading.Thread(target=lambda: first.update(deliver_due(database.engine, now=start)))
        loop.start()
        time.sleep(8.6)  # past the window: a stuck 'sending' message would be taken again now
        second = deliver_due(database.engine, now=start + timedelta(seconds=8.6))
        loop.join(timeout=30)
        assert second == {"sent": 0, "failed": 0, "retry": 0, "deferred": 0}
        assert first == {"sent": 0, "failed": 0, "retry": 1, "deferred": 0}
        [msg] = outbox(database.engine)
        assert (msg["status"], msg["attempts"]) == ("pending", 1) and "Timeout" in msg["last_error"]
        assert rx.most_open == 1  # never two posts of the message at once
        rx.release.set()
        wait_for(lambda: rx.open == 0, "the receiver to finish the first request")
        monkeypatch.undo()  # the normal window (and timeout) for the retry
        assert deliver_due(database.engine, now=start + timedelta(seconds=40))["sent"] == 1
        [msg] = outbox(database.engine)
        assert (msg["status"], msg["attempts"]) == ("sent", 2)
        assert len(rx.requests) <= 2 and json.loads(rx.requests[-1]["body"])["township"] == "T"
