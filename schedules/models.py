"""随访任务表 Scheduler tables: visit tasks, scheduler runs, holiday table, webhooks, outbox.

rules.md §5 (tasks, idempotency on (patient, kind, basis)), §7 (一历五单), issue 5
(run records, operator-editable holiday table, notification outbox).
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from registry.codes import OutboxStatus
from registry.models import UTCDateTime, utcnow


class ScheduleRun(SQLModel, table=True):
    """调度运行记录 One run of generation or of the weekly lists: start, end, counts, error."""

    __tablename__ = "schedule_run"
    __table_args__ = (sa.Index("ix_schedule_run_started", "started_at"), sa.Index("ix_schedule_run_status", "status"))

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=40)  # generate | lists | deliver
    as_of: date | None = None
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="running", max_length=16)  # running | ok | error
    counts: str | None = Field(default=None, max_length=4000)  # JSON object
    error: str | None = Field(default=None, max_length=4000)
    source: str | None = Field(default=None, max_length=40)  # cli | scheduler
    # the process doing the run (issue 18): a 'running' row whose process is gone is marked an error
    pid: int | None = None
    host: str | None = Field(default=None, max_length=255)


class GenerationBasis(SQLModel, table=True):
    """生成基线 What the last successful whole-register generation covered (one row, ``id`` 1).

    The daily run replans only the patients whose inputs changed since ``changes_since`` and those
    whose date-dependent conditions change between ``as_of`` and its own date; a different
    profile, holiday package or calendar year, or no row at all, makes it a full run
    (docs/scheduler.md, "Incremental daily runs"). Written in the run's own transaction."""

    __tablename__ = "generation_basis"

    id: int = Field(primary_key=True)
    as_of: date
    changes_since: datetime = Field(sa_type=UTCDateTime)  # every change stamped earlier was read
    profile: str = Field(max_length=200)  # name@version#content hash
    holidays: int  # the holiday package's last year
    calendar: str = Field(max_length=4000)  # JSON: year → hash of the operator rows of that year
    full: bool  # whether the run that wrote it replanned everybody
    run_at: datetime = Field(sa_type=UTCDateTime)


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
    active: bool = True  # `webhook disable` / `enable`
    # `webhook remove` (issue 18): the row stays for its outbox history, without URL or secret
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


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
    status: str = Field(default=OutboxStatus.PENDING.value, max_length=16)  # registry.codes.OutboxStatus
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    posted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # last post, whatever the answer (robot limit)


# ---------------------------------------------------------------- 五单存档 (rules.md §7, issue 15)


class ListIssue(SQLModel, table=True):
    """五单存档 One issue of a township's week: who issued it and when (rules.md §7 "Every issued week
    is kept as issued"). A week has version 1; an explicit ``--reissue`` adds version 2, 3, … and
    keeps the older ones; the highest version is the one served."""

    __tablename__ = "list_issue"
    __table_args__ = (sa.UniqueConstraint("township_code", "week", "version", name="uq_list_issue_week_version"),)

    id: int | None = Field(default=None, primary_key=True)
    township_code: str = Field(max_length=32)
    week: date  # the Monday
    version: int = 1
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    issued_by: str = Field(max_length=120)
    counts: str = Field(max_length=4000)  # JSON: rows per list
    reason: str | None = Field(default=None, max_length=500)  # why a re-issue was made


class ListIssueFile(SQLModel, table=True):
    """存档文件 One issued file (a list's PDF or XLSX): its bytes as issued and their SHA-256."""

    __tablename__ = "list_issue_file"
    __table_args__ = (sa.UniqueConstraint("issue_id", "slug", "fmt", name="uq_list_issue_file"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="list_issue.id")
    slug: str = Field(max_length=20)
    fmt: str = Field(max_length=8)  # pdf | xlsx
    file_name: str = Field(max_length=200)
    sha256: str = Field(max_length=64)
    size: int
    content: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class ListIssueRow(SQLModel, table=True):
    """存档行 One row of an issued list, as issued (JSON), the target of a paper sign-in."""

    __tablename__ = "list_issue_row"
    __table_args__ = (sa.Index("ix_list_issue_row_issue", "issue_id", "slug", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="list_issue.id")
    slug: str = Field(max_length=20)
    section: str = Field(max_length=10)  # rows | checks (the 随访任务单's health-check section)
    position: int
    patient_id: str = Field(max_length=64)
    village: str = Field(max_length=100)
    data: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON object: the row as issued


class ListSignIn(SQLModel, table=True):
    """纸质签到回录 A paper sign-in result recorded against an archived row: who signed, whether the
    visit took place, the date, a note; who recorded it and when."""

    __tablename__ = "list_sign_in"
    __table_args__ = (sa.Index("ix_list_sign_in_row", "row_id"),)

    id: int | None = Field(default=None, primary_key=True)
    row_id: int = Field(foreign_key="list_issue_row.id")
    signed_by: str = Field(max_length=100)
    visited: bool
    signed_on: date
    note: str | None = Field(default=None, max_length=500)
    recorded_by: str = Field(max_length=120)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ListDownload(SQLModel, table=True):
    """下载记录 Who downloaded which list file of which week, when, and through which channel (web or
    command line); ``file_id`` names the archived file served (None: a week not issued yet, rendered
    on the spot)."""

    __tablename__ = "list_download"
    __table_args__ = (sa.Index("ix_list_download_week", "township_code", "week"),)

    id: int | None = Field(default=None, primary_key=True)
    file_id: int | None = Field(default=None, foreign_key="list_issue_file.id")
    township_code: str = Field(max_length=32)
    week: date
    slug: str = Field(max_length=20)
    fmt: str = Field(max_length=8)
    sha256: str = Field(max_length=64)
    actor: str = Field(max_length=120)
    role: str | None = Field(default=None, max_length=30)
    channel: str = Field(max_length=10)  # web | cli | job (the scheduler re-writing an issued week)
    source: str | None = Field(default=None, max_length=100)
    downloaded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Alert(SQLModel, table=True):
    """实时预警 One alert event (rules.md §12), unique on (kind, source row): each event alerts once,
    across restarts and concurrent detectors (insert-or-ignore). Identifier-free apart from the
    source row; ``queued_at`` is set in the transaction that queues its webhook messages."""

    __tablename__ = "alert"
    __table_args__ = (
        sa.UniqueConstraint("kind", "source_id", name="uq_alert_event"),
        sa.Index("ix_alert_township_created", "township_code", "created_at"),
        sa.Index("ix_alert_queued", "queued_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # registry.codes.AlertKind
    source_id: int  # the follow-up (or emergency) row that caused it
    patient_id: str = Field(max_length=64)
    township_code: str = Field(max_length=32)
    event_on: date  # the follow-up's date
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    queued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertRead(SQLModel, table=True):
    """预警已读 A user has read (dismissed) an alert in the in-app notices."""

    __tablename__ = "alert_read"

    alert_id: int = Field(foreign_key="alert.id", primary_key=True)
    username: str = Field(primary_key=True, max_length=64)
    read_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AlertScan(SQLModel, table=True):
    """预警扫描水位 The alert detector's watermark (one row, ``id`` 1): when its last scan began."""

    __tablename__ = "alert_scan"

    id: int = Field(primary_key=True)
    scanned_from: datetime = Field(sa_type=UTCDateTime)
