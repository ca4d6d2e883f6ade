"""随访任务表 Scheduler tables: visit tasks, scheduler runs, holiday table, webhooks, outbox.

rules.md §5 (tasks, idempotency on (patient, kind, basis)), §7 (一历五单), issue 5
(run records, operator-editable holiday table, notification outbox).
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from registry.codes import CodedStr
from registry.models import UTCDateTime, in_check, utcnow


class TaskKind(CodedStr):
    """任务类型 Kind of an open task (contract.md)."""

    FIRST_VISIT = "first_visit", "首次面访"
    FOLLOW_UP = "follow_up", "随访"
    RETRY = "retry", "再次随访"
    LOCATE = "locate", "失访查找"
    DISCHARGE_CHECK = "discharge_check", "出院随访"
    HEALTH_CHECK = "health_check", "健康体检"
    INJECTION = "injection", "长效针剂注射"


# Kinds closed by any later follow-up attempt (rules.md §5 Idempotency).
VISIT_KINDS = (
    TaskKind.FIRST_VISIT,
    TaskKind.FOLLOW_UP,
    TaskKind.RETRY,
    TaskKind.LOCATE,
    TaskKind.DISCHARGE_CHECK,
)


class TaskStatus(CodedStr):
    """任务状态 Task status."""

    OPEN = "open", "待办"
    DONE = "done", "已完成"
    CANCELLED = "cancelled", "已取消"


class VisitTask(SQLModel, table=True):
    """随访任务 One visit the team owes a patient (rules.md §5–§6).

    Unique on (patient_id, kind, basis): generation inserts with ON CONFLICT DO UPDATE (open and
    changed rows only), so repeated or concurrent runs never duplicate a task.
    """

    __tablename__ = "visit_task"
    __table_args__ = (
        sa.UniqueConstraint("patient_id", "kind", "basis", name="uq_visit_task_key"),
        sa.Index("ix_visit_task_status_due", "status", "due_on"),
        in_check("kind", TaskKind),
        in_check("status", TaskStatus),
    )

    id: int | None = Field(default=None, primary_key=True)
    # no foreign key to patient (migration 0006): tasks are derived data, generation only selects
    # existing patients and patients are never deleted; the per-row FK check was most of the cost
    # of writing 1.5 M tasks (docs/scheduler.md "Decisions")
    patient_id: str = Field(max_length=64)
    kind: str = Field(max_length=20)
    basis: str = Field(max_length=64)  # "follow_up:123", "registration:2026-05-20", "year:2026", "lai:2026-05-01"
    basis_on: date  # date of the basis event; a later follow-up attempt closes visit tasks
    due_on: date  # after the working-day shift (rules.md §5)
    nominal_due_on: date  # before the working-day shift (for recomputation when a year's table loads)
    window_start: date | None = None  # LAI window (−3 days)
    window_end: date | None = None  # LAI window (+7 days)
    status: str = Field(default="open", max_length=16)
    roles: str = Field(default="doctor", max_length=64)  # comma-separated, contract order
    joint: bool = False
    rule: str = Field(max_length=120)  # "national-2018@1:§5 不稳定+14d"
    risk_level: int | None = None
    calendar_estimated: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    close_reason: str | None = Field(default=None, max_length=100)


class ScheduleRun(SQLModel, table=True):
    """调度运行记录 One run of generation or of the weekly lists: start, end, counts, error."""

    __tablename__ = "schedule_run"
    __table_args__ = (sa.Index("ix_schedule_run_started", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=40)  # generate | lists | deliver
    as_of: date | None = None
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="running", max_length=16)  # running | ok | error
    counts: str | None = Field(default=None, max_length=4000)  # JSON object
    error: str | None = Field(default=None, max_length=4000)
    source: str | None = Field(default=None, max_length=40)  # cli | scheduler


class CalendarDay(SQLModel, table=True):
    """节假日表 Operator-edited day: a statutory holiday (working=False) or a 调休上班日 (working=True).

    For a year listed here the table is authoritative (every other weekday works, every other
    weekend day rests); it extends ``chinesecalendar`` for years that package does not know.
    """

    __tablename__ = "calendar_day"

    day: date = Field(primary_key=True)
    working: bool
    name: str | None = Field(default=None, max_length=60)


class Webhook(SQLModel, table=True):
    """通知地址 A configured webhook: generic JSON (HMAC signed), WeCom robot or DingTalk robot."""

    __tablename__ = "webhook"
    __table_args__ = (sa.CheckConstraint("format IN ('generic', 'wecom', 'dingtalk')", name="format_code"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=60, sa_column_kwargs={"unique": True})
    url: str = Field(max_length=500)
    format: str = Field(default="generic", max_length=16)
    secret: str | None = Field(default=None, max_length=200)
    region_code: str | None = Field(default=None, max_length=32)  # only lists of this region (None = all)
    active: bool = True


class OutboxMessage(SQLModel, table=True):
    """通知发件箱 A message waiting to be delivered to a webhook (written with the lists, same transaction)."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        sa.UniqueConstraint("webhook_id", "dedupe_key", name="uq_outbox_dedupe"),
        sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id")
    dedupe_key: str = Field(max_length=120)  # e.g. "lists:440781101:2026-06-08"
    payload: str = Field(max_length=8000)  # JSON: counts and link, never a patient identifier
    status: str = Field(default="pending", max_length=16)  # pending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
