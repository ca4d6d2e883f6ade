"""应急处置 The rules over an emergency record (rules.md §9) [2026-12], each with its SQL twin.

One home (ARCHITECTURE §15): the Python form and the SQL form of each rule side by side;
``tests/test_emergencies.py`` checks that they agree on both databases.

- **Complete** (``is_complete`` / ``complete_sql``): end time, at least one measure and the effect
  are recorded, and — when police took part (a police participant named) — the police sign-off.
- **Overdue** (``emergency_overdue`` / ``overdue_sql``): not complete when more than 24 hours
  have passed since the report time (rules.md §9: the county is alerted, §12, and the record is
  listed overdue). The event times are the Asia/Shanghai wall clock of the form (models.Emergency);
  ``now`` is an aware instant, compared on that clock.
- **Ledger event** (``enters_ledger`` / ``ledger_events_select``): an emergency of situation 1
  or 2 is an entering event of the 易肇事肇祸台账 (rules.md §10, reason ``emergency``), dated on
  the emergency's day: its start time's date, else its report time's date [decision].
- **Who** (rules.md §9 "opened by anyone on the patient's team (a police officer may open it)"):
  ``OPEN_ROLES``, the web account roles standing for a team member (rules.md §6: 精防医生, 民警,
  村(社区)干部/网格员, 民政专干; 助残员 and 志愿者 have no account role, 综治 and the county admin are not
  team members), each for a patient in its own scope. ``COMPLETE_ROLES`` complete and correct it: the
  doctor who fills it in (the record's 填表医生) and the police (the sign-off) [decision: the rule
  before 2026-12 kept]; an opening-only account writes the event's fields and reads the records it
  opened (registry.web.emergencies).
- **Post-emergency visit** (``post_emergency_due``, ``closes_post_emergency`` / ``closes_post_emergency_sql``):
  owed once the end time is known, due on the end date + 14 days [decision, rules.md §9]; closed by
  the first complete home visit (face-to-face, mode 2) dated on or after the end date [decision:
  the end date itself counts]. Separate from the §5 chain (schedules.generation).
  ``closing_post_emergency`` / ``closing_post_emergency_sql``: the follow-up that closed it, the first
  such visit by (date, entry order) [decision, as rules.md §5 orders attempts]; a joint task
  (rules.md §6), so ``registry.joint_visits`` stores it as ``closed_by`` and assesses the visit
  (到位 / 联合未到位, rules.md §6.2).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from registry.accounts import UserRole
from registry.codes import LEDGER_SITUATIONS, EmergencySituation, FollowUpMode
from registry.config import LOCAL_TZ
from registry.models import Emergency, FollowUp
from registry.rules import complete_sql as follow_up_complete_sql, is_complete as follow_up_is_complete

DEADLINE = timedelta(hours=24)  # rules.md §9: completed within 24 hours of the report time
POST_EMERGENCY_DAYS = 14  # rules.md §9 [decision]: the post-emergency visit is due end date + 14 days
# rules.md §9 "opened by anyone on the patient's team": the account roles standing for a team member (§6)
OPEN_ROLES = (UserRole.TOWNSHIP_DOCTOR.value, UserRole.POLICE.value, UserRole.VILLAGE.value, UserRole.CIVIL_AFFAIRS.value)
# completed (end time, measures, effect, police sign-off) and corrected by the doctor who fills it in, or the police
COMPLETE_ROLES = (UserRole.TOWNSHIP_DOCTOR.value, UserRole.POLICE.value)


def split_codes(text: str | None) -> list[str]:
    """多选编码 A stored comma-separated code list as its items ("1,2" → ["1", "2"])."""
    return [part for part in (text or "").split(",") if part]


def local_wall_clock(now: datetime) -> datetime:
    """本地时间 An aware instant as the naive Asia/Shanghai wall clock the record's times use."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(LOCAL_TZ).replace(tzinfo=None)


# ----------------------------------------------------------------------------- complete


def is_complete(record: Any) -> bool:
    """记录完整 End time, measures and effect recorded, and the police sign-off when police took
    part (rules.md §9)."""
    if record.ended_at is None or not split_codes(record.measures) or not (record.effect or "").strip():
        return False
    if (record.participant_police or "").strip() and not (record.police_signed_by or "").strip():
        return False
    return True


def _filled(column) -> sa.ColumnElement[bool]:
    return sa.func.coalesce(sa.func.trim(column), "") != ""


def complete_sql(e=None) -> sa.ColumnElement[bool]:
    """记录完整 SQL twin of ``is_complete`` (``e``: the emergency table or an alias)."""
    e = Emergency.__table__ if e is None else e
    return sa.and_(e.c.ended_at.is_not(None), _filled(e.c.measures), _filled(e.c.effect),
                   sa.or_(sa.not_(_filled(e.c.participant_police)), _filled(e.c.police_signed_by)))


# ----------------------------------------------------------------------------- overdue


def deadline(record: Any) -> datetime:
    """完成时限 The wall-clock instant by which the record must be complete (report time + 24 h)."""
    return record.reported_at + DEADLINE


def emergency_overdue(record: Any, now: datetime) -> bool:
    """超时未完成 Not complete more than 24 hours after the report time (rules.md §9); ``now`` aware."""
    return not is_complete(record) and local_wall_clock(now) > deadline(record)


def overdue_sql(now: datetime, e=None) -> sa.ColumnElement[bool]:
    """超时未完成 SQL twin of ``emergency_overdue``: report time before ``now`` − 24 h, not complete."""
    e = Emergency.__table__ if e is None else e
    cutoff = local_wall_clock(now) - DEADLINE
    return sa.and_(e.c.reported_at < sa.literal(cutoff, sa.DateTime()), sa.not_(complete_sql(e)))


# ----------------------------------------------------------------------------- ledger (rules.md §10)


class local_day(FunctionElement):
    """The date of a wall-clock ``DATETIME`` column (PostgreSQL ``CAST AS DATE``, SQLite ``date()``)."""

    type = sa.Date()
    inherit_cache = True
    name = "emergency_local_day"


@compiles(local_day)
def _local_day_default(element, compiler, **kw):
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


@compiles(local_day, "sqlite")
def _local_day_sqlite(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)})"


def occurred_on(record: Any) -> date:
    """发生日期 The emergency's day: the start time's date, else the report time's (local clock)."""
    return (record.started_at or record.reported_at).date()


def occurred_on_sql(e=None) -> sa.ColumnElement:
    """SQL twin of ``occurred_on``."""
    e = Emergency.__table__ if e is None else e
    return local_day(sa.func.coalesce(e.c.started_at, e.c.reported_at))


def enters_ledger(situations: str | None) -> bool:
    """入账 An emergency of situation 1 or 2 enters the 易肇事肇祸台账 (rules.md §9, §10)."""
    held = set(split_codes(situations))
    return any(str(s.value) in held for s in LEDGER_SITUATIONS)


def enters_ledger_sql(e=None) -> sa.ColumnElement[bool]:
    """SQL twin of ``enters_ledger`` (the stored list is comma-separated: match whole items)."""
    e = Emergency.__table__ if e is None else e
    listed = sa.literal(",") + e.c.situations + sa.literal(",")
    return sa.or_(*[listed.like(f"%,{s.value},%") for s in LEDGER_SITUATIONS])


def ledger_events_select() -> sa.Select:
    """入账事件 The emergencies of situation 1 or 2 as ``patient_id, occurred_on`` — the
    ``emergencies`` input of ``registry.ledger.ledger_select``."""
    e = Emergency.__table__
    return sa.select(e.c.patient_id, occurred_on_sql(e).label("occurred_on")).where(enters_ledger_sql(e))


def reward_events_select() -> sa.Select:
    """以奖代补事件 The emergencies of situation 2 (危害公共安全或他人安全) as ``patient_id, occurred_on`` —
    the ``emergencies`` input of ``registry.guardian_reward.duties_select`` (rules.md §11 duty 2)."""
    e = Emergency.__table__
    return sa.select(e.c.patient_id, occurred_on_sql(e).label("occurred_on")).where(
        has_situation_sql(e, EmergencySituation.PUBLIC_SAFETY))


def reward_event_days(records) -> list[date]:
    """以奖代补事件 The dates of a patient's emergencies of situation 2 — the ``emergencies`` input of
    ``registry.guardian_reward.assess`` (rules.md §11 duty 2)."""
    return sorted({occurred_on(r) for r in records if has_situation(r.situations, EmergencySituation.PUBLIC_SAFETY)})


def has_situation(situations: str | None, situation: EmergencySituation) -> bool:
    """情形 Whether a record's stored situations (comma-separated codes) include ``situation``."""
    return str(situation.value) in set(split_codes(situations))


def has_situation_sql(e, situation: EmergencySituation) -> sa.ColumnElement[bool]:
    """SQL twin of ``has_situation`` (whole items of the comma-separated list)."""
    listed = sa.literal(",") + e.c.situations + sa.literal(",")
    return listed.like(f"%,{situation.value},%")


def ledger_event_days(records) -> list[date]:
    """入账事件 The dates of a patient's emergencies of situation 1 or 2 — the ``emergencies`` input
    of ``registry.ledger.ledger_history``."""
    return sorted({occurred_on(r) for r in records if enters_ledger(r.situations)})


# ----------------------------------------------------------------------------- post-emergency visit


def post_emergency_due(record: Any) -> date | None:
    """应急处置后随访 Due date of the post-emergency visit: end date + 14 days, None while the end
    time is unknown (rules.md §9 [decision])."""
    return None if record.ended_at is None else record.ended_at.date() + timedelta(days=POST_EMERGENCY_DAYS)


def closes_post_emergency(fu: Any, ended_on: date) -> bool:
    """面访关闭 A complete home visit (mode 2, face-to-face) dated on or after the end date closes
    the post-emergency visit (rules.md §9)."""
    return (fu.mode == FollowUpMode.HOME and fu.visit_on >= ended_on
            and follow_up_is_complete(fu.lost_reason, fu.risk_level, fu.hospital_status))


def closes_post_emergency_sql(f, ended_on) -> sa.ColumnElement[bool]:
    """SQL twin of ``closes_post_emergency`` (``f``: a follow-up table or alias; ``ended_on``: a date expression)."""
    return sa.and_(f.c.mode == FollowUpMode.HOME.value, f.c.visit_on >= ended_on, follow_up_complete_sql(f))


def closing_post_emergency(ended_on: date, follow_ups: Any) -> Any | None:
    """结束应急处置后随访的随访 The follow-up that closes the post-emergency visit of an emergency
    ended on ``ended_on``: the first of ``follow_ups`` (objects with ``id``, ``visit_on``, ``mode``,
    ``lost_reason``, ``risk_level``, ``hospital_status``) by (date, entry order) that
    ``closes_post_emergency``; None when none does (rules.md §9)."""
    hits = [fu for fu in follow_ups if closes_post_emergency(fu, ended_on)]
    return min(hits, key=lambda fu: (fu.visit_on, fu.id)) if hits else None


def closing_post_emergency_sql(t) -> sa.ScalarSelect:
    """SQL twin of ``closing_post_emergency``: the id of the follow-up that closes post-emergency
    task ``t`` (a ``visit_task`` table or alias; its ``basis_on`` is the emergency's end date), NULL: none."""
    f = FollowUp.__table__.alias("pec")
    return (sa.select(f.c.id)
            .where(f.c.patient_id == t.c.patient_id, closes_post_emergency_sql(f, t.c.basis_on))
            .order_by(f.c.visit_on, f.c.id)
            .limit(1)
            .scalar_subquery())
