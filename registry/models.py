"""登记模型 Registry tables: regions, patients, follow-ups, health checks, teams, audit.

SQLModel table classes (one per entity). Coded columns store the enum values of
``registry.codes`` and carry CHECK constraints generated from those enums, so a bad code
is refused by the database too, on SQLite and PostgreSQL alike. Table models do not
validate on construction (a SQLModel property): input is validated in
``registry.validation`` before it gets here.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from registry import codes


class UTCDateTime(TypeDecorator):
    """时间戳 Aware UTC timestamps on every backend (SQLite returns naive values otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime: timestamps must be timezone-aware")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def in_check(column: str, enum_cls) -> sa.CheckConstraint:
    """CHECK (column IN (codes of enum_cls))."""
    vals = ", ".join(repr(v) if isinstance(v, str) else str(int(v)) for v in codes.values(enum_cls))
    return sa.CheckConstraint(f"{column} IN ({vals})", name=f"{column}_code")


class Region(SQLModel, table=True):
    """行政区划 A county, township or village with its 行政区划 code and resident population."""

    __tablename__ = "region"
    __table_args__ = (in_check("level", codes.RegionLevel), sa.CheckConstraint("population >= 0", name="population_nonneg"))

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=100)
    level: str = Field(max_length=16)
    parent_code: str | None = Field(default=None, foreign_key="region.code", index=True, max_length=32)
    population: int | None = None


class Patient(SQLModel, table=True):
    """患者 A registered patient (rules.md §1): identity, diagnosis, status, guardian, LAI plan."""

    __tablename__ = "patient"
    __table_args__ = (
        in_check("sex", codes.Sex),
        in_check("diagnosis", codes.Diagnosis),
        in_check("report_type", codes.ReportType),
        in_check("consent", codes.Consent),
        in_check("economic_status", codes.EconomicStatus),
        in_check("status", codes.PatientStatus),
        sa.CheckConstraint("status = 'active' OR status_on IS NOT NULL", name="status_on_required"),
        sa.CheckConstraint("lai_interval_weeks IS NULL OR lai_interval_weeks BETWEEN 1 AND 52", name="lai_interval_range"),
        sa.Index("ix_patient_village_status", "village_code", "status"),
        sa.Index("ix_patient_updated_at", "updated_at"),  # patient-month state freshness (registry.rates.month_state)
        # the daily generation's date-dependent conditions (schedules.generation.changed_patients)
        sa.Index("ix_patient_registered_on", "registered_on"),
        sa.Index("ix_patient_status_on", "status_on"),
        sa.Index("ix_patient_lai_last_on", "lai_last_on"),
    )

    patient_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=100)
    sex: int
    birth_date: date
    id_number: str | None = Field(default=None, max_length=18)
    village_code: str = Field(foreign_key="region.code", max_length=32)
    address: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=32)
    diagnosis: str = Field(max_length=40)
    diagnosed_on: date | None = None
    registered_on: date
    report_type: int = 2
    consent: int = 1
    guardian_name: str | None = Field(default=None, max_length=100)
    guardian_phone: str | None = Field(default=None, max_length=32)
    guardian_reward: bool = False  # 以奖代补 guardian reward enrolled
    economic_status: int | None = None
    status: str = Field(default="active", max_length=16)
    status_on: date | None = None
    status_detail: str | None = Field(default=None, max_length=255)  # death cause / move destination
    lai_drug: str | None = Field(default=None, max_length=100)
    lai_interval_weeks: int | None = None
    lai_last_on: date | None = None
    lai_dose: str | None = Field(default=None, max_length=50)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class FollowUp(SQLModel, table=True):
    """随访 One follow-up attempt with every field of the 2018 随访服务记录表 (rules.md §3).

    Rows are keyed by (patient, date, seq) — whose unique index also serves every
    "a patient's follow-ups by date" lookup; ``id`` is the entry order, which breaks
    same-day ties ("the one entered last").
    """

    __tablename__ = "follow_up"
    __table_args__ = (
        sa.UniqueConstraint("patient_id", "visit_on", "seq", name="uq_follow_up_key"),
        sa.Index("ix_follow_up_updated_at", "updated_at"),  # patient-month state freshness (registry.rates.month_state)
        sa.Index("ix_follow_up_visit_on", "visit_on"),  # follow-ups a new date brings in or drops (schedules.generation)
        # issue 16: a retried web submit carries the same key and never records the visit twice
        sa.UniqueConstraint("idempotency_key", name="uq_follow_up_idempotency_key"),
        in_check("mode", codes.FollowUpMode),
        in_check("lost_reason", codes.LostReason),
        in_check("risk_level", codes.RiskLevel),
        in_check("insight", codes.Insight),
        in_check("sleep", codes.Condition),
        in_check("diet", codes.Condition),
        in_check("sf_self_care", codes.Condition),
        in_check("sf_housework", codes.Condition),
        in_check("sf_work", codes.SocialFunction),
        in_check("sf_study", codes.Condition),
        in_check("sf_social", codes.Condition),
        in_check("lock_status", codes.LockStatus),
        in_check("hospital_status", codes.HospitalStatus),
        in_check("adherence", codes.Adherence),
        in_check("adverse_reaction", codes.AdverseReaction),
        in_check("treatment_effect", codes.TreatmentEffect),
        in_check("classification", codes.Classification),
        sa.CheckConstraint(
            "incidents_mild >= 0 AND incidents_disturbance >= 0 AND incidents_crime >= 0"
            " AND incidents_other >= 0 AND self_harm >= 0 AND suicide_attempt >= 0",
            name="incident_counts_nonneg",
        ),
        sa.CheckConstraint(
            "classification IS NULL OR risk_level IS NULL OR ((classification <> 3 OR risk_level = 0)"
            " AND (risk_level < 3 OR classification = 1))",
            name="classification_matches_risk",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    visit_on: date
    seq: int = 1
    mode: int | None = None
    met_with: str | None = Field(default=None, max_length=50)  # 本人 / 家属 / ...
    lost_reason: int | None = None
    death_on: date | None = None
    death_cause: str | None = Field(default=None, max_length=100)
    risk_level: int | None = None
    symptoms: str | None = Field(default=None, max_length=64)  # comma-separated Symptom codes
    symptoms_other: str | None = Field(default=None, max_length=255)
    symptoms_obvious: bool | None = None
    insight: int | None = None
    sleep: int | None = None
    diet: int | None = None
    sf_self_care: int | None = None
    sf_housework: int | None = None
    sf_work: int | None = None
    sf_study: int | None = None
    sf_social: int | None = None
    incidents_mild: int | None = None
    incidents_disturbance: int | None = None
    incidents_crime: int | None = None
    incidents_other: int | None = None
    self_harm: int | None = None
    suicide_attempt: int | None = None
    lock_status: int | None = None
    hospital_status: int | None = None
    last_discharge_on: date | None = None
    lab_tests: str | None = Field(default=None, max_length=255)
    adherence: int | None = None
    adverse_reaction: int | None = None
    adverse_reaction_serious: bool | None = None
    physical_illness_serious: bool | None = None
    treatment_effect: int | None = None
    referral: bool | None = None
    referral_reason: str | None = Field(default=None, max_length=255)
    referral_to: str | None = Field(default=None, max_length=255)
    specialist_contacted: bool | None = None
    joint_notified: bool | None = None  # 是否通知联席部门
    notified_police: str | None = Field(default=None, max_length=100)
    notified_community: str | None = Field(default=None, max_length=100)
    medication: str | None = Field(default=None, max_length=1000)  # JSON list of {drug, dose, frequency}
    advised_medication: str | None = Field(default=None, max_length=1000)
    lai_drug: str | None = Field(default=None, max_length=100)
    lai_interval_weeks: int | None = None
    lai_dose: str | None = Field(default=None, max_length=50)
    rehabilitation_measures: str | None = Field(default=None, max_length=255)
    classification: int | None = None
    next_visit_on: date | None = None
    doctor_signature: str | None = Field(default=None, max_length=100)
    psych_support_patient: bool | None = None
    psych_support_family: bool | None = None
    rehabilitation: bool | None = None  # 参加社区康复
    entered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Last change (a corrected re-import updates it; unchanged rows keep it): lets incremental
    # computations such as a patient-month state table find follow-ups edited after a month closed.
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # 提交幂等键 The web form's idempotency key (issue 16), generated when the form is opened;
    # NULL for imported and API rows (many NULLs are allowed by the unique constraint).
    idempotency_key: str | None = Field(default=None, max_length=64)


class FollowUpParticipant(SQLModel, table=True):
    """联合随访参与者 A joint-visit participant's attendance, one row per role (rules.md §6, §6.2).

    ``attended`` is the person's presence (到场 1 / 未到场 0; the ``present`` column of
    ``participants.csv``); absent with a ``reason`` is a valid record. ``source`` says who recorded it:
    the doctor (form, API, import) or the attendee from their own account, whose word wins for the
    row (``registry.joint_visits.attendance_replaces``)."""

    __tablename__ = "follow_up_participant"
    __table_args__ = (in_check("role", codes.TeamRole), in_check("source", codes.AttendanceSource))

    follow_up_id: int = Field(foreign_key="follow_up.id", primary_key=True)
    role: str = Field(primary_key=True, max_length=20)
    member_id: str | None = Field(default=None, foreign_key="team_member.member_id", max_length=64)
    attended: bool = False
    reason: str | None = Field(default=None, max_length=200)  # 未到场原因 (or a note)
    source: str = Field(default="doctor", max_length=16)  # AttendanceSource
    recorded_by: str | None = Field(default=None, max_length=100)  # username, or "import"
    recorded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class HealthCheck(SQLModel, table=True):
    """健康体检 An annual health check (基本公卫3)."""

    __tablename__ = "health_check"
    __table_args__ = (
        sa.UniqueConstraint("patient_id", "checked_on", name="uq_health_check"),
        # the daily generation replans the patients of checks changed or dated since its last run
        sa.Index("ix_health_check_updated_at", "updated_at"),
        sa.Index("ix_health_check_checked_on", "checked_on"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    checked_on: date
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # last change (ARCHITECTURE §9)


class TeamMember(SQLModel, table=True):
    """个案管理团队成员 A team member with role, phone and the township or village served (rules.md §6)."""

    __tablename__ = "team_member"
    __table_args__ = (in_check("role", codes.TeamRole), sa.Index("ix_team_member_region_role", "region_code", "role"))

    member_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=100)
    role: str = Field(max_length=20)
    phone: str | None = Field(default=None, max_length=32)
    region_code: str = Field(foreign_key="region.code", max_length=32)


class CareTeamAssignment(SQLModel, table=True):
    """关爱帮扶小组 An explicit member of one patient's team; without any, the team defaults to the
    members serving the patient's village and township (rules.md §6)."""

    __tablename__ = "care_team_assignment"

    patient_id: str = Field(foreign_key="patient.patient_id", primary_key=True, max_length=64)
    member_id: str = Field(foreign_key="team_member.member_id", primary_key=True, max_length=64)


class AuditLog(SQLModel, table=True):
    """审计日志 Who read, searched, exported or wrote what, when and from where (rules.md §8)."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_at", "at"), sa.Index("ix_audit_log_object", "object_type", "object_id"))

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=20)  # read | search | export | write | import | login
    object_type: str = Field(max_length=40)
    object_id: str | None = Field(default=None, max_length=200)
    region_code: str | None = Field(default=None, max_length=32)
    detail: str | None = Field(default=None, max_length=1000)
    source: str | None = Field(default=None, max_length=100)  # IP address or "cli"


class VisitTask(SQLModel, table=True):
    """随访任务 One visit the team owes a patient (rules.md §5–§6).

    Unique on (patient_id, kind, basis): generation inserts with ON CONFLICT DO UPDATE (open and
    changed rows only), so repeated or concurrent runs never duplicate a task.
    """

    __tablename__ = "visit_task"
    __table_args__ = (
        sa.UniqueConstraint("patient_id", "kind", "basis", name="uq_visit_task_key"),
        sa.Index("ix_visit_task_status_due", "status", "due_on"),
        in_check("kind", codes.TaskKind),
        in_check("status", codes.TaskStatus),
        in_check("joint_outcome", codes.JointOutcome),
        sa.Index("ix_visit_task_closed_by", "closed_by"),
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
    # rules.md §6.2 [2026-12]: the follow-up that closed a visit task, and for a joint task how
    # (到位 / 联合未到位) with the required roles nobody attended (comma-separated, contract order);
    # kept current when attendance changes (registry.joint_visits.refresh_outcomes)
    closed_by: int | None = None  # follow_up.id (no FK: tasks are derived data, see patient_id)
    joint_outcome: str | None = Field(default=None, max_length=16)
    missing_roles: str | None = Field(default=None, max_length=64)
