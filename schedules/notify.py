"""通知 Outbox and webhook delivery: counts and a link, never a name, ID number or diagnosis.

The weekly lists queue one ``outbox_message`` per configured webhook, in the same transaction
as the export's audit row (unique on (webhook, dedupe key): re-running a week queues nothing
new). The delivery loop claims each due message with a conditional UPDATE (pending → sending),
posts it, and marks it sent, or schedules a retry with exponential backoff. Formats:

* ``generic`` — the JSON payload, signed ``X-Jingfang-Signature: sha256=<HMAC-SHA256(secret,
  timestamp + "." + body)>`` with ``X-Jingfang-Timestamp`` and ``X-Jingfang-Delivery`` (the
  message id, for the receiver to de-duplicate); success = HTTP 2xx.
* ``wecom`` — 企业微信群机器人 markdown, content ≤ 4096 UTF-8 bytes; success = ``errcode == 0``.
* ``dingtalk`` — 钉钉自定义机器人 markdown (加签 when a secret is set), text ≤ 4096 bytes
  [decision]; success = ``errcode == 0``.

Robots accept at most 20 messages per minute: the loop defers anything beyond that; every post
counts, also one the robot rejected (HTTP error or ``errcode`` ≠ 0), and a robot's message is
retried a minute later at the soonest, so one message is never posted twice within a minute.

Webhooks are data (issue 18): ``add`` creates or replaces one in place (same row: its queued
messages go to the new URL, so a leaked robot key is rotated by adding it again); ``disable`` /
``remove`` stop it — its pending messages are marked ``cancelled`` (history kept; a removed
row keeps its name and outbox rows, but no URL or secret); ``enable`` takes new messages again.
A generic webhook always has a secret (every generic message is signed). Each change writes an
audit row without the secret or the URL's path and query (a robot's key is in its query).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from datetime import date, datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from registry import audit
from registry.clock import now_utc
from registry.codes import AlertKind, OutboxStatus
from registry.config import get_settings
from registry.errors import InvalidInput, NotFound
from registry.models import Region
from schedules.models import OutboxMessage, Webhook

FORMATS = ("generic", "wecom", "dingtalk")
FORMAT_LABELS = {"generic": "通用 JSON", "wecom": "企业微信", "dingtalk": "钉钉"}  # what people read
ROBOT_PER_MINUTE = 20
MARKDOWN_BYTES = 4096
MAX_ATTEMPTS = 12
BACKOFF_BASE = 30  # seconds; doubled per attempt, capped at one hour
# an outbox message's stored status (registry.codes.OutboxStatus), as bound in the SQL below
PENDING, SENDING, SENT = OutboxStatus.PENDING.value, OutboxStatus.SENDING.value, OutboxStatus.SENT.value
FAILED, CANCELLED = OutboxStatus.FAILED.value, OutboxStatus.CANCELLED.value
# A message 'sending' for this long is taken to be lost with its process and is posted again.
SENDING_STALE = timedelta(minutes=10)
# One post must end well inside that window, or a second delivery loop would post the message again
# while the receiver is still answering the first (robots cannot de-duplicate): every phase of a
# post (connect, write, wait for the answer, pool) is bounded by a fortieth of the window (15 s),
# and the whole post, body included, by a tenth (60 s). Derived, not set: a shorter window
# shortens the post (``delivery_timeout``, ``post_deadline``).
PHASE_SHARE = 40
POST_SHARE = 10
ANSWER_BYTES = 65536  # a receiver's answer is read up to this size (robots answer a small JSON object)
ROBOT_RETRY_MIN = timedelta(seconds=60)  # a robot's rejected message waits out its minute window
LIST_TITLES = {"followup": "随访任务", "joint": "联合入户", "risk": "风险预警", "medication": "服药与针剂", "assistance": "帮扶救助"}


def delivery_timeout() -> httpx.Timeout:
    """Each phase of one post: ``SENDING_STALE / PHASE_SHARE`` (15 s for the 10-minute window)."""
    return httpx.Timeout(SENDING_STALE.total_seconds() / PHASE_SHARE)


def post_deadline() -> float:
    """Seconds one post may take in all: ``SENDING_STALE / POST_SHARE`` (60 s), which holds the four
    phases of ``delivery_timeout``; the answer's body is read against it."""
    return SENDING_STALE.total_seconds() / POST_SHARE


assert 4 * SENDING_STALE.total_seconds() / PHASE_SHARE <= SENDING_STALE.total_seconds() / POST_SHARE < SENDING_STALE.total_seconds()


def _url_host(url: str) -> str:
    """Host and port only: a robot's key is in its query, credentials may be in the netloc."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or ""
    return f"{host}:{parsed.port}" if parsed.port else host


def _audit(conn: Connection, *, actor: str, source: str | None, name: str, detail: str) -> None:
    """One audit row per webhook change (rules.md §8, issue 18); never the secret or the URL's key."""
    audit.record(conn, actor=actor, action="write", object_type="webhook", object_id=name, detail=detail, source=source)


def check_webhook(*, name: str, url: str, fmt: str, secret: str | None) -> None:
    """Refuse a webhook that could not be delivered or that would send unsigned generic messages."""
    if not name or len(name) > 60:
        raise InvalidInput.single("WEBHOOK_NAME", "通知地址名称应为 1–60 个字符", column="name", value=name[:80])
    if fmt not in FORMATS:
        raise InvalidInput.single("WEBHOOK_FORMAT", f"通知格式只能是 {' / '.join(f'{k}（{v}）' for k, v in FORMAT_LABELS.items())}", column="format", value=fmt)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 500:
        raise InvalidInput.single("WEBHOOK_URL", "通知地址应为 http(s):// 开头的 URL（不超过 500 个字符）", column="url")
    if fmt == "generic" and not (secret or "").strip():
        raise InvalidInput.single(
            "WEBHOOK_SECRET_REQUIRED",
            "generic 格式的通知地址必须设置签名密钥（--secret）：每条消息都要签名，接收方据此验证来源",
            column="secret")
    if secret is not None and len(secret) > 200:
        raise InvalidInput.single("WEBHOOK_SECRET", "密钥不能超过 200 个字符", column="secret")


def add_webhook(engine: Engine, *, name: str, url: str, fmt: str = "generic", secret: str | None = None,
                region_code: str | None = None, actor: str = "system", source: str | None = None) -> str:
    """新增或替换通知地址 Add a webhook, or replace one of that name in place (same row, so its queued
    messages go to the new URL: how a leaked robot key is rotated). The webhook is enabled.
    Returns ``"added"`` or ``"replaced"``; audited in the same transaction."""
    check_webhook(name=name, url=url, fmt=fmt, secret=secret)
    secret = secret.strip() if secret and secret.strip() else None
    t = Webhook.__table__
    values = dict(url=url, format=fmt, secret=secret, region_code=region_code, active=True, removed_at=None)
    with engine.begin() as conn:
        hook_id = conn.execute(sa.select(t.c.id).where(t.c.name == name)).scalar()
        if hook_id is None:
            conn.execute(sa.insert(t).values(name=name, **values))
            verb = "added"
        else:
            conn.execute(sa.update(t).where(t.c.id == hook_id).values(**values))
            verb = "replaced"
        _audit(conn, actor=actor, source=source, name=name,
               detail=f"{'替换' if verb == 'replaced' else '新增'}通知地址：格式 {FORMAT_LABELS.get(fmt, fmt)}，"
                      f"主机 {_url_host(url)}，地区 {region_code or '全部'}，密钥 {'已设置' if secret else '无'}")
    return verb


def _cancel_pending(conn: Connection, hook_id: int, reason: str) -> int:
    t = OutboxMessage.__table__
    return conn.execute(sa.update(t).where(t.c.webhook_id == hook_id, t.c.status == PENDING)
                        .values(status=CANCELLED, last_error=reason)).rowcount or 0


def _live_hook(conn: Connection, name: str):
    t = Webhook.__table__
    row = conn.execute(sa.select(t).where(t.c.name == name, t.c.removed_at.is_(None))).first()
    if row is None:
        raise NotFound(message=f"没有名为“{name}”的通知地址", code="WEBHOOK_NOT_FOUND")
    return row


def set_webhook_enabled(engine: Engine, name: str, enabled: bool, *, actor: str = "system",
                        source: str | None = None) -> int:
    """启用/停用 Enable or disable a webhook. A disabled one gets no new messages and its pending
    ones are cancelled (a message already being posted ends as it ends). Returns the cancelled count."""
    t = Webhook.__table__
    with engine.begin() as conn:
        hook = _live_hook(conn, name)
        conn.execute(sa.update(t).where(t.c.id == hook.id).values(active=enabled))
        cancelled = 0 if enabled else _cancel_pending(conn, hook.id, "通知地址已停用")
        _audit(conn, actor=actor, source=source, name=name,
               detail=f"{'启用' if enabled else '停用'}通知地址" + (f"：取消待发消息 {cancelled} 条" if cancelled else ""))
    return cancelled


def remove_webhook(engine: Engine, name: str, *, actor: str = "system", source: str | None = None) -> int:
    """删除通知地址 Remove a webhook: it gets no new messages, its pending ones are cancelled. A row
    with outbox history stays (the history refers to it) without URL or secret; one without
    history is deleted. ``add`` with the same name later re-creates it in place. Returns the
    cancelled count."""
    t, out = Webhook.__table__, OutboxMessage.__table__
    with engine.begin() as conn:
        hook = _live_hook(conn, name)
        cancelled = _cancel_pending(conn, hook.id, "通知地址已删除")
        history = conn.execute(sa.select(out.c.id).where(out.c.webhook_id == hook.id).limit(1)).first()
        if history is None:
            conn.execute(sa.delete(t).where(t.c.id == hook.id))
        else:
            conn.execute(sa.update(t).where(t.c.id == hook.id).values(
                active=False, removed_at=now_utc(), url="", secret=None))
        _audit(conn, actor=actor, source=source, name=name,
               detail="删除通知地址" + (f"：取消待发消息 {cancelled} 条" if cancelled else ""))
    return cancelled


def list_webhooks(engine: Engine) -> list[dict]:
    t = Webhook.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.removed_at.is_(None)).order_by(t.c.name)).mappings().all()
    return [{"name": r["name"], "format": r["format"], "host": _url_host(r["url"]),
             "region_code": r["region_code"], "active": r["active"]} for r in rows]


def _ancestors(conn: Connection, code: str) -> set[str]:
    r = Region.__table__
    seen = set()
    while code and code not in seen:
        seen.add(code)
        code = conn.execute(sa.select(r.c.parent_code).where(r.c.code == code)).scalar()
    return seen


def notice_link(base_url: str | None, *, event: str, township_code: str, week: date | None = None) -> str:
    """通知链接 The link of every outgoing message: ``/notices`` (registry/web/landing.py), the page every
    role the message goes to may open — doctor, police, civil affairs, 综治, village, county admin —
    each seeing its own pages (rules.md §8, §12). Township, event and week only: no identifier."""
    base = (base_url or get_settings().base_url).rstrip("/")
    query = {"event": event, "township": township_code} | ({"week": week.isoformat()} if week else {})
    return f"{base}/notices?{urllib.parse.urlencode(query)}"


def list_payload(*, township_code: str, township_name: str, week: date, counts: dict, base_url: str | None) -> dict:
    """The message about one township's weekly lists: counts and a link only."""
    # the landing page for every reader (registry/web/landing.py: each role its own lists), never a page one role lacks
    link = notice_link(base_url, event="lists.weekly", township_code=township_code, week=week)
    return {"event": "lists.weekly", "township": township_code, "township_name": township_name,
            "week": week.isoformat(), "counts": {k: int(v) for k, v in counts.items()}, "link": link}


def queue_list_notifications(conn: Connection, *, township_code: str, township_name: str, week: date, counts: dict,
                             base_url: str | None = None) -> int:
    """Queue the weekly-lists message for every matching webhook (caller's transaction)."""
    payload = json.dumps(list_payload(township_code=township_code, township_name=township_name, week=week,
                                      counts=counts, base_url=base_url), ensure_ascii=False)
    return _queue_for_township(conn, township_code, f"lists:{township_code}:{week.isoformat()}", payload)


def queue_failure_alert(conn: Connection, *, township_code: str, week: date, reason: str) -> int:
    """五单失败告警 Queue an alert that one township's weekly lists failed, for every webhook whose region
    covers it (caller's transaction). Identifier-free: the township, the week and the kind of error
    only. Once per township and week (dedupe key), like the lists' own message."""
    name = _township_name(conn, township_code)
    payload = json.dumps({"event": "lists.failed", "township": township_code, "township_name": name,
                          "week": week.isoformat(), "error": reason[:80],
                          "link": notice_link(None, event="lists.failed", township_code=township_code, week=week)},
                         ensure_ascii=False)
    return _queue_for_township(conn, township_code, f"lists-failed:{township_code}:{week.isoformat()}", payload)


def _township_name(conn: Connection, township_code: str) -> str:
    r = Region.__table__
    return conn.execute(sa.select(r.c.name).where(r.c.code == township_code)).scalar() or township_code


def _queue_for_township(conn: Connection, township_code: str, key: str, payload: str) -> int:
    """Queue ``payload`` for every active webhook whose region covers the township (its own, an
    ancestor's, or none: every region), once per (webhook, ``key``); the caller's transaction."""
    hooks = Webhook.__table__
    scope = _ancestors(conn, township_code)
    rows = conn.execute(sa.select(hooks.c.id, hooks.c.region_code)
                        .where(hooks.c.active == sa.true(), hooks.c.removed_at.is_(None))).all()
    t = OutboxMessage.__table__
    queued = 0
    for hook_id, region in rows:
        if region is not None and region not in scope:
            continue
        if conn.execute(sa.select(t.c.id).where(t.c.webhook_id == hook_id, t.c.dedupe_key == key)).first() is None:
            conn.execute(sa.insert(t).values(webhook_id=hook_id, dedupe_key=key, payload=payload, status=PENDING,
                                             attempts=0, next_attempt_at=now_utc(), created_at=now_utc()))
            queued += 1
    return queued


EMERGENCY_EVENTS = {"emergency.opened": AlertKind.EMERGENCY_OPENED.label, "emergency.overdue": AlertKind.EMERGENCY_OVERDUE.label}


def emergency_payload(*, event: str, township_code: str, township_name: str, count: int, base_url: str | None = None) -> dict:
    """应急处置告警 The message about an emergency (rules.md §9, §12): the event, the township, a count
    and a link (``/notices``, which every role of the township and the county may open, §12; the
    doctor, police and county admin find the overdue list there) — never a name, number or diagnosis."""
    return {"event": event, "title": EMERGENCY_EVENTS[event], "township": township_code, "township_name": township_name,
            "counts": {"emergencies": int(count)},
            "link": notice_link(base_url, event=event, township_code=township_code)}


def queue_emergency_alert(conn: Connection, *, event: str, township_code: str, key: str, count: int = 1,
                          base_url: str | None = None) -> int:
    """应急处置告警 Queue one emergency alert for every active webhook whose region covers the
    township — the county's too (caller's transaction). Once per event: ``key`` (e.g.
    ``emergency-overdue:<record id>``, never shown) is the outbox's dedupe key. A small function on
    purpose: the general real-time alert framework (rules.md §12) can re-route it."""
    name = _township_name(conn, township_code)
    payload = json.dumps(emergency_payload(event=event, township_code=township_code, township_name=name, count=count,
                                           base_url=base_url), ensure_ascii=False)
    return _queue_for_township(conn, township_code, key, payload)


ALERT_TITLES = {k.value: k.label for k in AlertKind}  # the kinds' Chinese labels (registry.codes)


def alert_payload(*, township_code: str, township_name: str, counts: dict, base_url: str | None) -> dict:
    """实时预警消息 The message about a township's new alerts (rules.md §12): counts by kind, the
    township and a link to ``/alerts`` — a page the township's doctors, police and civil affairs
    all open (registry/web/alerts.py); never a name, number, ID or diagnosis."""
    base = (base_url or get_settings().base_url).rstrip("/")
    link = f"{base}/alerts?township={urllib.parse.quote(township_code)}"
    return {"event": "alerts.new", "township": township_code, "township_name": township_name,
            "counts": {k: int(v) for k, v in counts.items()}, "link": link}


def queue_alert_notifications(conn: Connection, *, township_code: str, counts: dict, key: str,
                              base_url: str | None = None) -> int:
    """Queue one alert message for every active webhook covering the township (caller's
    transaction); once per (webhook, ``key``)."""
    name = _township_name(conn, township_code)
    payload = json.dumps(alert_payload(township_code=township_code, township_name=name, counts=counts, base_url=base_url),
                         ensure_ascii=False)
    return _queue_for_township(conn, township_code, key, payload)


APPOINTMENT_EVENT = "appointment.proposed"


def appointment_payload(*, township_code: str, township_name: str, appointments: int, members: int,
                        base_url: str | None = None) -> dict:
    """联合入户预约通知 The message about a proposed joint-visit appointment (rules.md §6.1, §8, §12):
    counts, the township and a link to ``/mylist`` (the page every recipient role — police, village,
    civil affairs, each linked to its member — opens to answer) — never a name, patient id, ID
    number, time or place of the visit, or diagnosis."""
    base = (base_url or get_settings().base_url).rstrip("/")
    return {"event": APPOINTMENT_EVENT, "title": "联合入户预约待答复", "township": township_code,
            "township_name": township_name, "counts": {"appointments": int(appointments), "members": int(members)},
            "link": notice_link(base, event=APPOINTMENT_EVENT, township_code=township_code)}


def queue_appointment_message(conn: Connection, *, township_code: str, key: str, appointments: int = 1, members: int = 0,
                              base_url: str | None = None) -> int:
    """联合入户预约通知 Queue the appointment message for every active webhook whose region covers
    the township (caller's transaction, so a refused proposal queues nothing). Once per ``key``
    (``appointment:<id>``, never shown)."""
    name = _township_name(conn, township_code)
    payload = json.dumps(appointment_payload(township_code=township_code, township_name=name, appointments=appointments,
                                             members=members, base_url=base_url), ensure_ascii=False)
    return _queue_for_township(conn, township_code, key, payload)


def queue_overdue_emergency_alerts(engine: Engine, now: datetime | None = None) -> int:
    """超时告警 Queue the county alert for every emergency past its 24-hour deadline (rules.md §9),
    once per record (the dedupe key): one set-based query (``registry.emergencies.overdue_sql``),
    the message counting the township's overdue records. Run with the delivery loop (every minute)."""
    from registry import emergencies  # noqa: PLC0415
    from registry.models import Emergency, Patient  # noqa: PLC0415

    now = now or now_utc()
    e, p, r, t = Emergency.__table__, Patient.__table__, Region.__table__, OutboxMessage.__table__
    township = sa.func.coalesce(r.c.parent_code, p.c.village_code)
    queued = 0
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(e.c.id, township.label("township"))
            .select_from(e.join(p, p.c.patient_id == e.c.patient_id).outerjoin(r, r.c.code == p.c.village_code))
            .where(emergencies.overdue_sql(now, e),
                   # not yet queued (any webhook): the sweep costs one indexed probe per overdue record
                   sa.not_(sa.select(t.c.id).where(t.c.dedupe_key == sa.literal("emergency-overdue:")
                                                   + sa.cast(e.c.id, sa.String)).exists()))
        ).all()
        per_township: dict[str, int] = {}
        for row in rows:
            per_township[row.township] = per_township.get(row.township, 0) + 1
        for row in rows:
            queued += queue_emergency_alert(conn, event="emergency.overdue", township_code=row.township,
                                            key=f"emergency-overdue:{row.id}", count=per_township[row.township])
    return queued


def truncate_bytes(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def message_text(payload: dict, limit: int = MARKDOWN_BYTES) -> str:
    """The robot message, at most ``limit`` UTF-8 bytes: when too long the counts line is cut,
    never the link to the lists."""
    if payload.get("event") == APPOINTMENT_EVENT:
        counts = payload.get("counts", {})
        return truncate_bytes(f"### 精防 联合入户预约\n{payload.get('township_name', '')}（{payload.get('township')}）"
                              f" 有 {counts.get('appointments', 0)} 个联合入户预约待 {counts.get('members', 0)} 名成员答复。"
                              f"\n[查看]({payload.get('link')})", limit)
    link = f"\n[查看]({payload['link']})" if payload.get("link") else ""
    if payload.get("event") == "lists.failed":
        head = (f"### 精防 一历五单\n{payload.get('township_name', '')}（{payload.get('township')}）"
                f" {payload.get('week')} 周五单生成失败（{payload.get('error')}），请管理员查看调度运行记录（jingfang runs）。")
        return truncate_bytes(head, max(0, limit - len(link.encode("utf-8")))) + link
    if payload.get("event") in EMERGENCY_EVENTS:
        head = (f"### 精防 {EMERGENCY_EVENTS[payload['event']]}\n{payload.get('township_name', '')}（{payload.get('township')}）"
                f" {payload.get('counts', {}).get('emergencies', 0)} 起。")
        return truncate_bytes(head, max(0, limit - len(link.encode("utf-8")))) + link
    if payload.get("event") == "alerts.new":
        parts = "，".join(f"{ALERT_TITLES.get(k, k)} {v} 人次" for k, v in payload.get("counts", {}).items())
        link = f"\n[查看预警]({payload.get('link')})"
        head = f"### 精防 实时预警\n{payload.get('township_name', '')}（{payload.get('township')}）新预警：{parts}。"
        return truncate_bytes(head, max(0, limit - len(link.encode("utf-8")))) + link
    counts = payload.get("counts", {})
    parts = "，".join(f"{LIST_TITLES.get(k, k)} {v}" for k, v in counts.items())
    head = (f"### 精防 一历五单\n{payload.get('township_name', '')}（{payload.get('township')}）"
            f" {payload.get('week')} 周五单已生成：{parts}。")
    link = f"\n[查看五单]({payload.get('link')})"
    return truncate_bytes(head, max(0, limit - len(link.encode("utf-8")))) + link


def build_request(hook, payload: dict, *, now: datetime, delivery_id: int) -> tuple[str, bytes, dict]:
    """URL, body and headers for one message in the webhook's format."""
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "jingfang-scheduler"}
    if hook.format == "generic":
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        stamp = str(int(now.timestamp()))
        headers["X-Jingfang-Timestamp"] = stamp
        headers["X-Jingfang-Delivery"] = str(delivery_id)
        if hook.secret:
            digest = hmac.new(hook.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers["X-Jingfang-Signature"] = f"sha256={digest}"
        return hook.url, body, headers
    text = truncate_bytes(message_text(payload, MARKDOWN_BYTES), MARKDOWN_BYTES)
    url = hook.url
    if hook.format == "wecom":
        body = {"msgtype": "markdown", "markdown": {"content": text}}
    else:
        body = {"msgtype": "markdown", "markdown": {"title": "精防 实时预警" if payload.get("event") == "alerts.new" else "精防 一历五单",
                                                 "text": text}}
        if hook.secret:
            ts = str(int(now.timestamp() * 1000))
            sign = base64.b64encode(hmac.new(hook.secret.encode(), f"{ts}\n{hook.secret}".encode(), hashlib.sha256).digest())
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"timestamp": ts, "sign": sign.decode()})
    return url, json.dumps(body, ensure_ascii=False).encode("utf-8"), headers


def check_response(hook, response: httpx.Response) -> str | None:
    """None when delivered, else the error text (robots answer 200 with an errcode on failure)."""
    if not 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    if hook.format in ("wecom", "dingtalk"):
        try:
            data = response.json()
        except ValueError:
            return "响应不是 JSON"
        if data.get("errcode") != 0:
            return f"errcode {data.get('errcode')}: {data.get('errmsg', '')}"[:500]
    return None


def due_count(engine: Engine, now: datetime | None = None) -> int:
    t = OutboxMessage.__table__
    now = now or now_utc()
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t).where(
            sa.or_(sa.and_(t.c.status == PENDING, t.c.next_attempt_at <= now),
                   sa.and_(t.c.status == SENDING, t.c.next_attempt_at <= now - SENDING_STALE)))).scalar_one()


def _post(client: httpx.Client, hook, url: str, body: bytes, headers: dict) -> str | None:
    """Post once within ``post_deadline()``; None when delivered, else the error text."""
    deadline = time.monotonic() + post_deadline()
    try:
        with client.stream("POST", url, content=body, headers=headers, timeout=delivery_timeout()) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    return f"超时：{post_deadline():g} 秒内未收完应答"
                if size > ANSWER_BYTES:
                    return f"应答超过 {ANSWER_BYTES} 字节"
            return check_response(hook, httpx.Response(response.status_code, content=b"".join(chunks)))
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]


def deliver_due(engine: Engine, *, client: httpx.Client | None = None, now: datetime | None = None, limit: int = 200) -> dict:
    """投递 Deliver every due message once: claim, post, mark sent or schedule a retry.

    ``now`` is the round's clock; a claim is stamped with it plus the real time the round has
    taken, so a message claimed late in a long round is not yet 'stuck' for another loop."""
    t, hooks = OutboxMessage.__table__, Webhook.__table__
    now = now or now_utc()
    started = time.monotonic()
    counts = {SENT: 0, FAILED: 0, "retry": 0, "deferred": 0}  # messages by the status they ended in; retry: back to pending
    own_client = client is None
    client = client or httpx.Client(timeout=delivery_timeout())
    try:
        with engine.begin() as conn:  # a 'sending' message whose process died is retried
            conn.execute(sa.update(t).where(t.c.status == SENDING, t.c.next_attempt_at <= now - SENDING_STALE)
                         .values(status=PENDING))
            due = conn.execute(
                sa.select(t.c.id, t.c.webhook_id, t.c.payload, t.c.attempts)
                .where(t.c.status == PENDING, t.c.next_attempt_at <= now).order_by(t.c.id).limit(limit)
            ).all()
        for msg in due:
            claim_at = now + timedelta(seconds=time.monotonic() - started)
            with engine.begin() as conn:
                hook = conn.execute(sa.select(hooks).where(hooks.c.id == msg.webhook_id)).first()
                if hook is None or not hook.active or hook.removed_at is not None:
                    # queued before the webhook was disabled or removed: it gets nothing more
                    conn.execute(sa.update(t).where(t.c.id == msg.id, t.c.status == PENDING).values(
                        status=CANCELLED, last_error="通知地址已删除" if hook is None or hook.removed_at else "通知地址已停用"))
                    continue
                robot = hook.format in ("wecom", "dingtalk")
                if robot:
                    # the robot's limit counts every post it received, rejected ones too, from every
                    # webhook row with its URL (a message is posted at most once a minute: ROBOT_RETRY_MIN)
                    same_robot = sa.select(hooks.c.id).where(hooks.c.url == hook.url)
                    cutoff = now - timedelta(seconds=60)
                    recent = conn.execute(sa.select(sa.func.count()).select_from(t).where(
                        t.c.webhook_id.in_(same_robot), sa.or_(t.c.posted_at > cutoff, t.c.sent_at > cutoff))).scalar_one()
                    if recent >= ROBOT_PER_MINUTE:
                        conn.execute(sa.update(t).where(t.c.id == msg.id).values(next_attempt_at=now + timedelta(seconds=60)))
                        counts["deferred"] += 1
                        continue
                unsigned = hook.format == "generic" and not hook.secret
                claimed = conn.execute(sa.update(t).where(t.c.id == msg.id, t.c.status == PENDING).values(
                    status=SENDING, next_attempt_at=claim_at, **({} if unsigned else {"posted_at": claim_at}))).rowcount
            if claimed != 1:
                continue  # another delivery loop took it
            if unsigned:  # a row stored before secrets were required: never sent unsigned
                error = "generic 通知地址未设置签名密钥，未发送（用 webhook add 设置 --secret）"
            else:
                url, body, headers = build_request(hook, json.loads(msg.payload), now=now, delivery_id=msg.id)
                error = _post(client, hook, url, body, headers)
            attempts = msg.attempts + 1
            mine = sa.and_(t.c.id == msg.id, t.c.status == SENDING)  # unless reclaimed as stuck meanwhile
            with engine.begin() as conn:
                if error is None:
                    conn.execute(sa.update(t).where(t.c.id == msg.id).values(status=SENT, sent_at=now_utc(), attempts=attempts,
                                                                            last_error=None))
                    counts[SENT] += 1
                elif attempts >= MAX_ATTEMPTS:
                    conn.execute(sa.update(t).where(mine).values(status=FAILED, attempts=attempts, last_error=error))
                    counts[FAILED] += 1
                else:
                    delay = timedelta(seconds=min(BACKOFF_BASE * 2 ** (attempts - 1), 3600))
                    if robot:
                        delay = max(delay, ROBOT_RETRY_MIN)
                    conn.execute(sa.update(t).where(mine).values(
                        status=PENDING, attempts=attempts, last_error=error, next_attempt_at=claim_at + delay))
                    counts["retry"] += 1
    finally:
        if own_client:
            client.close()
    return counts
