"""站内预警 The in-app notices of real-time alerts (rules.md §12, §8): reads shared by the alerts page
(``registry.web.alerts``) and the notices area of the doctor's work list and the police / civil
affairs list (``registry.web.pages``).

A user sees the alerts of the townships of their region (a township user: their township; the
county admin: every township below). An account linked to its team member and not a supervisor
(``Scope.linked``, rules.md §6.1) is a responsible member: it sees only the alerts of its own
patients (rules.md §12 "the in-app notices of the responsible members"); an unlinked account stands
for its role in the region and a supervisor reads its township's, as for the lists. The patient's name and a link to the record are shown only
for patients inside the user's scope (``Scope.patient_clause``: police and civil affairs only the
patients on their lists, rules.md §8); for the others the kind, date and village only. Never a
diagnosis. ``read`` is per user (``alert_read``).
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from registry.clock import now_utc
from registry.codes import AlertKind, RegionLevel
from registry.errors import PermissionDenied
from registry.models import Patient, Region
from schedules.models import Alert, AlertRead

SHOWN_DAYS = 30  # the page lists the alerts of the last 30 days
NOTICE_ROWS = 5  # the notices area shows the newest unread ones


def townships_of(cur, tree, township: str = "") -> list[str]:
    """The townships whose alerts the user reads; ``township`` (the link of an alert message) must
    be one of them, else PermissionDenied."""
    own = tree.township_of(cur.user.region_code)
    if own is not None:
        allowed = [own]
    else:
        allowed = sorted(c for c in tree.descendants(cur.user.region_code) if tree.level(c) == RegionLevel.TOWNSHIP.value)
    if township:
        if township not in allowed:
            raise PermissionDenied(f"乡镇 {township[:20]} 不在您的管辖范围内", code="REGION_FORBIDDEN")
        return [township]
    return allowed


def newest_first(alerts):
    """The order of the alerts page and the notices area: the newest alert first."""
    return alerts.c.id.desc()


def shown_since(today):
    """The first day whose alerts are shown (the last ``SHOWN_DAYS`` days)."""
    return today - timedelta(days=SHOWN_DAYS)


EMERGENCY_KINDS = (AlertKind.EMERGENCY_OPENED.value, AlertKind.EMERGENCY_OVERDUE.value)


def alert_select(cur, townships, *, unread_only: bool = False, limit: int = 200, user=None, since=None,
                 region=None) -> sa.Select:
    """The townships' alerts of the last ``SHOWN_DAYS`` days, newest first, with read state (the query
    of ``alert_rows``; the work list's one-statement read embeds the notices' one, registry.web.fast).

    ``townships``: a list of codes, or an SQL array; ``user``, ``since``, ``region``: SQL expressions
    (bind parameters) standing for the user's name, ``shown_since`` and the user's region, so that one
    compiled statement serves every full-record user of the same region level (registry.web.fast)."""
    a, r, v = Alert.__table__, AlertRead.__table__, Region.__table__
    p = Patient.__table__.alias("alert_patient")  # the scope clause below is on the patient table itself
    since = shown_since(cur.scope.today) if since is None else since
    user = cur.user.username if user is None else user
    in_townships = (a.c.township_code.in_(townships) if isinstance(townships, (list, tuple))
                    else a.c.township_code == sa.any_(townships))
    visible = (sa.select(Patient.patient_id).where(cur.scope.patient_clause(region=region), Patient.patient_id == a.c.patient_id)
               .correlate(a))
    read = sa.select(r.c.alert_id).where(r.c.alert_id == a.c.id, r.c.username == user).exists()
    q = (sa.select(a.c.id, a.c.kind, a.c.event_on, a.c.township_code, a.c.created_at, v.c.name.label("village"),
                   sa.case((visible.exists(), p.c.name), else_=sa.null()).label("name"),
                   sa.case((visible.exists(), a.c.patient_id), else_=sa.null()).label("patient_id"),
                   # an emergency's alert names its record (rules.md §9, §12: reach the police at once);
                   # no IN (…): the work list's one statement compiles this with its values as parameters
                   sa.case((sa.and_(sa.or_(*(a.c.kind == k for k in EMERGENCY_KINDS)), visible.exists()), a.c.source_id),
                           else_=sa.null()).label("record_id"),
                   read.label("read"))
         .select_from(a.join(p, p.c.patient_id == a.c.patient_id).join(v, v.c.code == p.c.village_code))
         .where(in_townships, a.c.event_on >= since)
         .order_by(newest_first(a)).limit(limit))
    if cur.scope.linked:  # rules.md §12: the notices of the responsible members — its own patients' alerts only
        q = q.where(visible.exists())
    if unread_only:
        q = q.where(~read)
    return q


def alert_view(x, tree) -> dict:
    """One alert row (a mapping: ``alert_select``'s columns) as the pages show it."""
    return {"id": x["id"], "kind": x["kind"], "kind_label": AlertKind(x["kind"]).label, "event_on": x["event_on"].isoformat(),
            "township": tree.name(x["township_code"]), "village": x["village"], "name": x["name"],
            "patient_id": x["patient_id"], "record_id": x["record_id"], "read": bool(x["read"])}


def alert_rows(conn: Connection | Engine, cur, tree, townships: list[str], *, unread_only: bool = False,
               limit: int = 200) -> list[dict]:
    """The townships' alerts of the last ``SHOWN_DAYS`` days, newest first, with read state."""
    return _shaped(conn, alert_select(cur, townships, unread_only=unread_only, limit=limit), tree)


def _shaped(conn: Connection | Engine, q: sa.Select, tree) -> list[dict]:
    own = isinstance(conn, Engine)
    c = conn.connect() if own else conn
    try:
        rows = c.execute(q).mappings().all()
    finally:
        if own:
            c.close()
    return [alert_view(x, tree) for x in rows]


def notices_select(cur, tree, townships=None, **parameters) -> sa.Select:
    """站内通知 The query of ``notices``: the newest unread alerts of the user's townships, one more
    than the area shows (so it knows there are more). ``townships`` and ``parameters``: SQL
    expressions for the user's values (``alert_select``)."""
    return alert_select(cur, townships_of(cur, tree) if townships is None else townships, unread_only=True,
                        limit=NOTICE_ROWS + 1, **parameters)


def notices_of(rows: list[dict]) -> dict:
    """The notices area from ``notices_select``'s rows shaped by ``alert_view``."""
    return {"rows": rows[:NOTICE_ROWS], "more": len(rows) > NOTICE_ROWS}


def notices(conn: Connection | Engine, cur, tree) -> dict:
    """站内通知 The newest unread alerts of the user's townships, for a notices area."""
    return notices_of(_shaped(conn, notices_select(cur, tree), tree))


def mark_read(engine: Engine, cur, tree, alert_ids: list[int]) -> int:
    """标为已读 Mark the user's alerts read (only alerts of the user's townships; already read: kept)."""
    a, r = Alert.__table__, AlertRead.__table__
    townships = townships_of(cur, tree)
    with engine.begin() as conn:
        ids = conn.execute(sa.select(a.c.id).where(a.c.id.in_(alert_ids), a.c.township_code.in_(townships),
                                                   ~sa.select(r.c.alert_id).where(r.c.alert_id == a.c.id,
                                                                                  r.c.username == cur.user.username).exists())
                           ).scalars().all()
        if ids:
            conn.execute(sa.insert(r), [{"alert_id": i, "username": cur.user.username, "read_at": now_utc()} for i in ids])
    return len(ids)
