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

Robots accept at most 20 messages per minute: the loop defers anything beyond that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from datetime import date, datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from registry.clock import now_utc
from registry.config import get_settings
from registry.errors import InvalidInput
from registry.models import Region
from schedules.models import OutboxMessage, Webhook

FORMATS = ("generic", "wecom", "dingtalk")
ROBOT_PER_MINUTE = 20
MARKDOWN_BYTES = 4096
MAX_ATTEMPTS = 12
BACKOFF_BASE = 30  # seconds; doubled per attempt, capped at one hour
SENDING_STALE = timedelta(minutes=10)
LIST_TITLES = {"followup": "随访任务", "joint": "联合入户", "risk": "风险预警", "medication": "服药与针剂", "assistance": "帮扶救助"}


def add_webhook(engine: Engine, *, name: str, url: str, fmt: str = "generic", secret: str | None = None,
                region_code: str | None = None) -> None:
    """Add or replace a webhook by name."""
    if fmt not in FORMATS:
        raise InvalidInput.single("WEBHOOK_FORMAT", f"通知格式只能是 {' / '.join(FORMATS)}", column="format", value=fmt)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput.single("WEBHOOK_URL", "通知地址应为 http(s):// 开头的 URL", column="url")
    t = Webhook.__table__
    with engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.name == name))
        conn.execute(sa.insert(t).values(name=name, url=url, format=fmt, secret=secret, region_code=region_code, active=True))


def list_webhooks(engine: Engine) -> list[dict]:
    t = Webhook.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.name)).mappings().all()
    return [{"name": r["name"], "format": r["format"], "host": urllib.parse.urlparse(r["url"]).netloc,
             "region_code": r["region_code"], "active": r["active"]} for r in rows]


def _ancestors(conn: Connection, code: str) -> set[str]:
    r = Region.__table__
    seen = set()
    while code and code not in seen:
        seen.add(code)
        code = conn.execute(sa.select(r.c.parent_code).where(r.c.code == code)).scalar()
    return seen


def list_payload(*, township_code: str, township_name: str, week: date, counts: dict, base_url: str | None) -> dict:
    """The message about one township's weekly lists: counts and a link only."""
    base = (base_url or get_settings().base_url).rstrip("/")
    # the township doctor's download of these lists (registry/web/pages.py, GET /lists/week)
    link = f"{base}/lists/week?township={urllib.parse.quote(township_code)}&week={week.isoformat()}"
    return {"event": "lists.weekly", "township": township_code, "township_name": township_name,
            "week": week.isoformat(), "counts": {k: int(v) for k, v in counts.items()}, "link": link}


def queue_list_notifications(conn: Connection, *, township_code: str, township_name: str, week: date, counts: dict,
                             base_url: str | None = None) -> int:
    """Queue the weekly-lists message for every matching webhook (caller's transaction)."""
    hooks = Webhook.__table__
    scope = _ancestors(conn, township_code)
    rows = conn.execute(sa.select(hooks.c.id, hooks.c.region_code).where(hooks.c.active == sa.true())).all()
    payload = json.dumps(list_payload(township_code=township_code, township_name=township_name, week=week,
                                      counts=counts, base_url=base_url), ensure_ascii=False)
    queued = 0
    t = OutboxMessage.__table__
    for hook_id, region in rows:
        if region is not None and region not in scope:
            continue
        key = f"lists:{township_code}:{week.isoformat()}"
        exists = conn.execute(sa.select(t.c.id).where(t.c.webhook_id == hook_id, t.c.dedupe_key == key)).first()
        if exists is None:
            conn.execute(sa.insert(t).values(webhook_id=hook_id, dedupe_key=key, payload=payload, status="pending",
                                             attempts=0, next_attempt_at=now_utc(), created_at=now_utc()))
            queued += 1
    return queued


def truncate_bytes(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def message_text(payload: dict, limit: int = MARKDOWN_BYTES) -> str:
    """The robot message, at most ``limit`` UTF-8 bytes: when too long the counts line is cut,
    never the link to the lists."""
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
        body = {"msgtype": "markdown", "markdown": {"title": "精防 一历五单", "text": text}}
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
            sa.or_(sa.and_(t.c.status == "pending", t.c.next_attempt_at <= now),
                   sa.and_(t.c.status == "sending", t.c.next_attempt_at <= now - SENDING_STALE)))).scalar_one()


def deliver_due(engine: Engine, *, client: httpx.Client | None = None, now: datetime | None = None, limit: int = 200) -> dict:
    """投递 Deliver every due message once: claim, post, mark sent or schedule a retry."""
    t, hooks = OutboxMessage.__table__, Webhook.__table__
    now = now or now_utc()
    counts = {"sent": 0, "failed": 0, "retry": 0, "deferred": 0}
    own_client = client is None
    client = client or httpx.Client(timeout=10.0)
    try:
        with engine.begin() as conn:  # a 'sending' message whose process died is retried
            conn.execute(sa.update(t).where(t.c.status == "sending", t.c.next_attempt_at <= now - SENDING_STALE)
                         .values(status="pending"))
            due = conn.execute(
                sa.select(t.c.id, t.c.webhook_id, t.c.payload, t.c.attempts)
                .where(t.c.status == "pending", t.c.next_attempt_at <= now).order_by(t.c.id).limit(limit)
            ).all()
            hook_rows = {h.id: h for h in conn.execute(sa.select(hooks)).all()}
        for msg in due:
            hook = hook_rows.get(msg.webhook_id)
            if hook is None or not hook.active:
                continue
            with engine.begin() as conn:
                # the robot's limit counts what it received: from every webhook row with its URL
                same_robot = sa.select(hooks.c.id).where(hooks.c.url == hook.url)
                recent = conn.execute(sa.select(sa.func.count()).select_from(t).where(
                    t.c.webhook_id.in_(same_robot), t.c.status == "sent",
                    t.c.sent_at > now - timedelta(seconds=60))).scalar_one()
                if recent >= ROBOT_PER_MINUTE:
                    conn.execute(sa.update(t).where(t.c.id == msg.id).values(next_attempt_at=now + timedelta(seconds=60)))
                    counts["deferred"] += 1
                    continue
                claimed = conn.execute(sa.update(t).where(t.c.id == msg.id, t.c.status == "pending")
                                       .values(status="sending", next_attempt_at=now)).rowcount
            if claimed != 1:
                continue  # another delivery loop took it
            url, body, headers = build_request(hook, json.loads(msg.payload), now=now, delivery_id=msg.id)
            try:
                error = check_response(hook, client.post(url, content=body, headers=headers))
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            attempts = msg.attempts + 1
            with engine.begin() as conn:
                if error is None:
                    conn.execute(sa.update(t).where(t.c.id == msg.id).values(status="sent", sent_at=now_utc(), attempts=attempts,
                                                                            last_error=None))
                    counts["sent"] += 1
                elif attempts >= MAX_ATTEMPTS:
                    conn.execute(sa.update(t).where(t.c.id == msg.id).values(status="failed", attempts=attempts, last_error=error))
                    counts["failed"] += 1
                else:
                    delay = min(BACKOFF_BASE * 2 ** (attempts - 1), 3600)
                    conn.execute(sa.update(t).where(t.c.id == msg.id).values(
                        status="pending", attempts=attempts, last_error=error, next_attempt_at=now + timedelta(seconds=delay)))
                    counts["retry"] += 1
    finally:
        if own_client:
            client.close()
    return counts
