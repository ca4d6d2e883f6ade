"""实时预警检测 The alert detector of the scheduler process (rules.md §12, §8).

Every write path (import, web form, API) stamps ``follow_up.updated_at``; none of them waits on a
webhook. The scheduler runs ``detect`` every ``DETECT_SECONDS`` (20 s, ``schedules.jobs:run_alerts``),
which in ONE transaction:

1. runs each source of ``SOURCES`` — a set-based SELECT of the events among the follow-ups changed
   since the watermark (``alert_scan``, minus ``OVERLAP`` for writes that committed late), dated
   recently (``registry.alerts.recent_sql``: a history import alerts nothing) — and inserts one
   ``alert`` row per event with insert-or-ignore on the unique (kind, source row): an event alerts
   once, however often it is scanned, across restarts and crashes;
2. queues, per township with new alerts, one outbox message per webhook covering the township
   (``schedules.notify.queue_alert_notifications``): counts by kind, the township and a link to
   ``/alerts?township=`` (a page every role of the township reads), never a name, number, ID or
   diagnosis; and marks those alerts queued;
3. moves the watermark.

Then the job delivers the due outbox at once (``deliver_due``), so an alert reaches the webhooks
within 20–40 s of the write. Adding a kind (the emergency record's "opened" and "overdue") is one
``AlertKind`` member and one ``Source`` here: a function returning the SELECT of
(source_id, patient_id, township_code, event_on) of its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from registry.alerts import flags_lost_sql, recent_day_sql, recent_sql, risk_rose_sql
from registry.clock import local_today, now_utc
from registry.codes import AlertKind
from registry.rules import incident_sql
from registry.emergencies import occurred_on_sql, overdue_sql
from registry.models import Emergency, FollowUp, Patient, Region
from registry.profile import Profile, load_profile
from registry.register import in_register_sql
from schedules.models import Alert, AlertScan
from schedules.notify import queue_alert_notifications

DETECT_SECONDS = 20
# A write stamps updated_at before it commits: rows of a transaction that committed after the last
# scan began but were stamped earlier are caught by re-reading this much before the watermark (an
# import transaction longer than this would miss its alerts; the unique key makes re-reading free).
OVERLAP = timedelta(minutes=15)


@dataclass(frozen=True)
class Source:
    """预警来源 One kind of event: ``select(since, today, profile, now)`` returns its events' rows
    (source_id, patient_id, township_code, event_on) among the rows changed since ``since`` (or, for an
    event that time alone brings, such as a deadline passing, as of ``now``)."""

    kind: AlertKind
    select: Callable[[datetime | None, date, Profile, datetime], sa.Select]


def _follow_up_events(condition: Callable[[sa.Table, Profile], sa.ColumnElement[bool]]):
    def select(since: datetime | None, today: date, profile: Profile, now: datetime) -> sa.Select:
        f = FollowUp.__table__
        p, v = Patient.__table__, Region.__table__
        changed = [f.c.updated_at >= since] if since is not None else []
        return (sa.select(f.c.id.label("source_id"), f.c.patient_id, v.c.parent_code.label("township_code"),
                          f.c.visit_on.label("event_on"))
                .select_from(f.join(p, p.c.patient_id == f.c.patient_id).join(v, v.c.code == p.c.village_code))
                .where(*changed, recent_sql(f, today), v.c.parent_code.is_not(None), condition(f, profile)))
    return select


def _risk_rise(f, profile: Profile):
    return risk_rose_sql(f, FollowUp.__table__.alias("prev"), Patient.__table__)


def _incident(f, profile: Profile):
    return incident_sql(f)


def _lost(f, profile: Profile):
    """失访 (rules.md §12) of a patient 在册 on the attempt's date (rules.md §1): an attempt that found a
    patient already dead or moved out (accepted since session 12: only a visit that *reached* the patient
    is refused after the status date) flags nobody lost."""
    t = FollowUp.__table__
    return sa.and_(flags_lost_sql(f, t.alias("run"), t.alias("between"), Patient.__table__, profile.lost_after_misses),
                   in_register_sql(Patient.__table__, f.c.visit_on))


def _emergency_rows(condition, today: date) -> sa.Select:
    """The emergencies meeting ``condition`` whose day is recent (the same window as the follow-ups:
    a record typed in long after the event alerts nothing), as alert rows."""
    e, p, v = Emergency.__table__, Patient.__table__, Region.__table__
    day = occurred_on_sql(e)
    return (sa.select(e.c.id.label("source_id"), e.c.patient_id, v.c.parent_code.label("township_code"),
                      day.label("event_on"))
            .select_from(e.join(p, p.c.patient_id == e.c.patient_id).join(v, v.c.code == p.c.village_code))
            .where(*condition, recent_day_sql(day, today), v.c.parent_code.is_not(None)))


def _emergencies_overdue(since: datetime | None, today: date, profile: Profile, now: datetime) -> sa.Select:
    """应急处置超时 (rules.md §9, §12): every recent record past its 24-hour deadline as of ``now``
    (``registry.emergencies.overdue_sql``) — time alone brings it, so every scan looks at all of them;
    the unique (kind, record) key alerts each once. The county hears of it through
    ``schedules.notify.queue_overdue_emergency_alerts`` too."""
    return _emergency_rows([overdue_sql(now, Emergency.__table__)], today)


def _emergencies_opened(since: datetime | None, today: date, profile: Profile, now: datetime) -> sa.Select:
    """应急处置已登记 (rules.md §9, §12): every emergency record opened since ``since`` whose day is
    recent (the same window as the follow-ups: a record typed in long after the event alerts nothing)."""
    e = Emergency.__table__
    return _emergency_rows([e.c.created_at >= since] if since is not None else [], today)


SOURCES: tuple[Source, ...] = (
    Source(AlertKind.RISK_RISE, _follow_up_events(_risk_rise)),
    Source(AlertKind.INCIDENT, _follow_up_events(_incident)),
    Source(AlertKind.LOST, _follow_up_events(_lost)),
    Source(AlertKind.EMERGENCY_OPENED, _emergencies_opened),
    Source(AlertKind.EMERGENCY_OVERDUE, _emergencies_overdue),
)


def _insert_ignore(conn: Connection, rows: sa.Select, kind: AlertKind, now: datetime) -> int:
    """Insert the events not alerted yet (unique (kind, source_id): insert-or-ignore)."""
    src = rows.subquery("events")
    select = sa.select(sa.literal(kind.value).label("kind"), src.c.source_id, src.c.patient_id, src.c.township_code,
                       src.c.event_on, sa.literal(now, type_=Alert.__table__.c.created_at.type).label("created_at")
                       ).where(sa.true())  # SQLite: a WHERE keeps ON CONFLICT unambiguous after INSERT … SELECT
    cols = ["kind", "source_id", "patient_id", "township_code", "event_on", "created_at"]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Alert.__table__).from_select(cols, select).on_conflict_do_nothing(
        index_elements=["kind", "source_id"]).returning(Alert.__table__.c.id)
    return len(conn.execute(stmt).all())  # rowcount is not reliable for INSERT … SELECT on psycopg


def detect(engine: Engine, *, today: date | None = None, now: datetime | None = None,
           profile: Profile | None = None, base_url: str | None = None) -> dict:
    """检测预警 One scan: new alerts inserted once, their messages queued, the watermark moved
    (one transaction). Returns counts by kind and the messages queued."""
    today = today or local_today()
    now = now or now_utc()
    profile = profile or load_profile()
    scan = AlertScan.__table__
    counts: dict = {k.value: 0 for k in AlertKind}
    with engine.begin() as conn:
        mark = conn.execute(sa.select(scan.c.scanned_from).where(scan.c.id == 1)).scalar()
        since = mark - OVERLAP if mark is not None else None
        for source in SOURCES:
            counts[source.kind.value] += _insert_ignore(conn, source.select(since, today, profile, now), source.kind, now)
        counts["queued"] = queue_pending(conn, now=now, base_url=base_url)
        if mark is None:
            conn.execute(sa.insert(scan).values(id=1, scanned_from=now))
        else:
            conn.execute(sa.update(scan).where(scan.c.id == 1).values(scanned_from=max(mark, now)))
    return counts


def queue_pending(conn: Connection, *, now: datetime, base_url: str | None = None) -> int:
    """Queue the messages of the alerts not queued yet, one per township and webhook: counts by
    kind (set-based per township, never per patient); mark them queued."""
    a = Alert.__table__
    rows = conn.execute(sa.select(a.c.township_code, a.c.kind, sa.func.count(), sa.func.min(a.c.id), sa.func.max(a.c.id))
                        .where(a.c.queued_at.is_(None)).group_by(a.c.township_code, a.c.kind)).all()
    townships: dict[str, dict] = {}
    for township, kind, n, lo, hi in rows:
        t = townships.setdefault(township, {"counts": {}, "lo": lo, "hi": hi})
        t["counts"][kind] = int(n)
        t["lo"], t["hi"] = min(t["lo"], lo), max(t["hi"], hi)
    queued = 0
    for township, t in sorted(townships.items()):
        counts = {k.value: t["counts"][k.value] for k in AlertKind if k.value in t["counts"]}
        queued += queue_alert_notifications(conn, township_code=township, counts=counts,
                                            key=f"alerts:{township}:{t['lo']}-{t['hi']}", base_url=base_url)
        conn.execute(sa.update(a).where(a.c.township_code == township, a.c.queued_at.is_(None), a.c.id <= t["hi"])
                     .values(queued_at=now))
    return queued
