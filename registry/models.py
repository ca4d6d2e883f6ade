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
        in_check("household_type", codes.HouseholdType),
        in_check("employment", codes.Employment),
        in_check("past_lockup", codes.PastLockup),
        in_check("outpatient_treatment", codes.OutpatientTreatment),
        sa.CheckConstraint("admissions IS NULL OR admissions >= 0", name="admissions_nonneg"),
        sa.CheckConstraint(f"status = '{codes.PatientStatus.ACTIVE.value}' OR status_on IS NOT NULL", name="status_on_required"),
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
    # 个人信息补充表 (2018): the supplement's fields beyond identity, diagnosis and guardian
    guardian_relation: str | None = Field(default=None, max_length=20)  # 与患者关系
    guardian_address: str | None = Field(default=None, max_length=255)
    village_contact: str | None = Field(default=None, max_length=100)  # 村(居)委会联系人
    village_contact_phone: str | None = Field(default=None, max_length=32)
    household_type: int | None = None  # 户别 codes.HouseholdType
    employment: int | None = None  # 就业情况 codes.Employment
    first_onset_on: date | None = None  # 初次发病时间
    past_lockup: int | None = None  # 既往关锁情况 codes.PastLockup
    outpatient_treatment: int | None = None  # 既往治疗情况(门诊) codes.OutpatientTreatment
    admissions: int | None = None  # 曾住精神专科医院/综合医院精神科次数
    diagnosing_hospital: str | None = Field(default=None, max_length=100)  # 确诊医院
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
    family_signature: str | None = Field(default=None, max_length=100)  # 患者(家属)签名
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
    """联合随访参与者 A joint-visit participant's attendance, one row per person (rules.md §6, §6.2 [2026-12]).

    A person is the team member (``member_id``): one row per (follow-up, role, member). A row with no
    member is the role's unnamed row (the doctor ticked "police present" without naming anyone): at
    most one per (follow-up, role), kept by a partial unique index on both databases. ``attended`` is
    the person's presence (到场 1 / 未到场 0; the ``present`` column of ``participants.csv``); absent
    with a ``reason`` is a valid record. ``source`` says who recorded it: the doctor (form, API,
    import) or the attendee from their own account, whose word wins for their own row
    (``registry.joint_visits.attendance_replaces``). A role is present when any of its rows is."""

    __tablename__ = "follow_up_participant"
    __table_args__ = (
        in_check("role", codes.TeamRole), in_check("source", codes.AttendanceSource),
        sa.UniqueConstraint("follow_up_id", "role", "member_id", name="uq_follow_up_participant_person"),
        sa.Index("uq_follow_up_participant_unnamed", "follow_up_id", "role", unique=True,
                 postgresql_where=sa.text("member_id IS NULL"), sqlite_where=sa.text("member_id IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    follow_up_id: int = Field(foreign_key="follow_up.id")
    role: str = Field(max_length=20)
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


class Injection(SQLModel, table=True):
    """长效针剂注射 One long-acting injection given (rules.md §5; contract.md injections.csv).

    The LAI history: one row per injection, keyed by (patient, date). The plan's last injection
    (``patient.lai_last_on``) is kept equal to the latest row's date by every writer."""

    __tablename__ = "injection"
    __table_args__ = (sa.UniqueConstraint("patient_id", "given_on", name="uq_injection"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    given_on: date
    drug: str | None = Field(default=None, max_length=100)
    dose: str | None = Field(default=None, max_length=50)
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
    # 主责成员 the region's primary member for this role (rules.md §6.1 [2026-12]; the county marks one
    # per region and role)
    primary: bool = Field(default=False)


class CareTeamAssignment(SQLModel, table=True):
    """关爱帮扶小组成员指派 A dated assignment of a member to one patient's team in one role (rules.md §6.1
    [2026-12]): valid from ``from_on`` through ``to_on`` (both inclusive; ``to_on`` NULL = open).
    ``role`` is the member's role (registry.validation checks it on every write)."""

    __tablename__ = "care_team_assignment"
    __table_args__ = (
        in_check("role", codes.TeamRole),
        sa.CheckConstraint("to_on IS NULL OR to_on >= from_on", name="assignment_dates_order"),
        sa.UniqueConstraint("patient_id", "member_id", "role", "from_on", name="uq_care_team_assignment"),
        sa.Index("ix_care_team_assignment_patient_role", "patient_id", "role"),
        sa.Index("ix_care_team_assignment_member", "member_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    member_id: str = Field(foreign_key="team_member.member_id", max_length=64)
    role: str = Field(max_length=20)
    from_on: date
    to_on: date | None = None


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


class PatientChange(SQLModel, table=True):
    """变更记录 One changed patient field: who, when, old and new value, reason (issue 13; rules.md §8).

    Values are stored as the import format writes them (ISO dates, codes, 1/0), ``None`` for
    blank. Written by ``registry.patient_edits`` in the transaction of the change itself.
    """

    __tablename__ = "patient_change"
    __table_args__ = (sa.Index("ix_patient_change_patient", "patient_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=100)
    field: str = Field(max_length=40)
    old_value: str | None = Field(default=None, max_length=1000)
    new_value: str | None = Field(default=None, max_length=1000)
    reason: str | None = Field(default=None, max_length=255)


class PatientTransfer(SQLModel, table=True):
    """迁出/迁入 A move of a patient from one township to another (issue 13; rules.md §5 "transferred in").

    Requested by the sending township (``outcome`` pending, 待接收), then accepted (the patient's
    village becomes one of the receiving township's) or refused with a reason (the patient stays).
    """

    __tablename__ = "patient_transfer"
    __table_args__ = (
        in_check("outcome", codes.TransferOutcome),
        sa.Index("ix_patient_transfer_to", "to_township", "outcome"),
        sa.Index("ix_patient_transfer_patient", "patient_id"),
        # one pending move per patient, kept by the database on both dialects (the write path's check
        # alone could let two concurrent requests through on SQLite, which has no row lock)
        sa.Index("uq_patient_transfer_pending", "patient_id", unique=True,
                 postgresql_where=sa.text(f"outcome = '{codes.TransferOutcome.PENDING.value}'"),
                 sqlite_where=sa.text(f"outcome = '{codes.TransferOutcome.PENDING.value}'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    from_township: str = Field(foreign_key="region.code", max_length=32)
    to_township: str = Field(foreign_key="region.code", max_length=32)
    from_village: str = Field(foreign_key="region.code", max_length=32)
    to_village: str | None = Field(default=None, foreign_key="region.code", max_length=32)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    requested_by: str = Field(max_length=100)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, max_length=100)
    outcome: str = Field(default="pending", max_length=16)
    reason: str | None = Field(default=None, max_length=255)  # why the patient moves (request)
    refusal_reason: str | None = Field(default=None, max_length=255)


class Emergency(SQLModel, table=True):
    """应急处置记录单 One emergency with the full record of rules.md §9 [2026-12].

    The event times (report, start, end, police sign-off) are the Asia/Shanghai wall clock as the
    paper form writes them (naive ``DATETIME``); the row's own stamps are UTC. Multi-valued codes
    are stored sorted and comma-separated (``situations`` "1,2", ``measures`` "counselling,restraint"),
    like the follow-up's symptoms. The rules over a record live in ``registry.emergencies``.
    """

    __tablename__ = "emergency"
    __table_args__ = (
        in_check("diagnosis_certainty", codes.DiagnosisCertainty),
        sa.Index("ix_emergency_patient", "patient_id", "reported_at"),
        sa.Index("ix_emergency_updated_at", "updated_at"),  # the incremental generation's changed set
        sa.Index("ix_emergency_open", "completed_at", "reported_at"),  # the 24-hour overdue list
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    situations: str = Field(max_length=16)  # EmergencySituation codes, "1,2"
    place: str | None = Field(default=None, max_length=255)
    reporter: str | None = Field(default=None, max_length=100)
    reported_at: datetime = Field(sa_type=sa.DateTime())  # local wall clock
    report_route: str | None = Field(default=None, max_length=100)  # 报告途径 (电话、当面 …)
    reporter_identity: str | None = Field(default=None, max_length=100)  # 报告人身份 (监护人、村委 …)
    started_at: datetime | None = Field(default=None, sa_type=sa.DateTime())
    ended_at: datetime | None = Field(default=None, sa_type=sa.DateTime())
    scene: str | None = Field(default=None, max_length=2000)  # 现场情况
    measures: str | None = Field(default=None, max_length=120)  # EmergencyMeasure codes
    measures_other: str | None = Field(default=None, max_length=255)
    participant_doctor: str | None = Field(default=None, max_length=100)
    participant_psychiatrist: str | None = Field(default=None, max_length=100)
    participant_nurse: str | None = Field(default=None, max_length=100)
    participant_police: str | None = Field(default=None, max_length=100)
    police_organ: str | None = Field(default=None, max_length=100)
    diagnosis: str | None = Field(default=None, max_length=100)  # never shown to police (rules.md §8)
    diagnosis_certainty: str | None = Field(default=None, max_length=16)
    effect: str | None = Field(default=None, max_length=1000)  # 处置效果
    filled_by: str | None = Field(default=None, max_length=100)  # 填表医生
    filled_on: date | None = None
    police_signed_by: str | None = Field(default=None, max_length=100)  # 公安签字
    police_signed_at: datetime | None = Field(default=None, sa_type=sa.DateTime())
    opened_by: str = Field(max_length=64)  # the account that opened it
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # when the record became complete
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


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


class GuardianYear(SQLModel, table=True):
    """以奖代补监护年度 One guardian's enrolment for one year (rules.md §11): the enrolled part of the
    year, the status (``codes.GuardianYearStatus``), civil affairs' decision and the payment."""

    __tablename__ = "guardian_year"
    __table_args__ = (
        sa.UniqueConstraint("patient_id", "year", name="uq_guardian_year"),
        in_check("status", codes.GuardianYearStatus),
        sa.CheckConstraint("enrolled_from <= enrolled_to", name="guardian_year_period"),
        sa.CheckConstraint("paid_amount IS NULL OR paid_amount > 0", name="guardian_year_amount_positive"),
        sa.CheckConstraint("status <> 'paid' OR (paid_on IS NOT NULL AND paid_amount IS NOT NULL)",
                           name="guardian_year_paid_fields"),
        sa.Index("ix_guardian_year_year", "year"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(foreign_key="patient.patient_id", max_length=64)
    year: int
    enrolled_from: date
    enrolled_to: date
    status: str = Field(default="provisional", max_length=16)
    decided_by: str | None = Field(default=None, max_length=100)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reason: str | None = Field(default=None, max_length=500)
    paid_on: date | None = None
    paid_amount: int | None = None  # 元
    enrolled_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# ---------------------------------------------------------------- 联合入户预约 (rules.md §6.1, issue 14)


class Appointment(SQLModel, table=True):
    """联合入户预约 The doctor's proposed date and time for an open joint visit task (rules.md §6.1).

    ``proposed_at`` is local time (Asia/Shanghai, no zone), as people agree on it; the named
    responsible members of the task's required roles answer in ``appointment_reply``."""

    __tablename__ = "appointment"
    __table_args__ = (sa.Index("ix_appointment_task", "task_id"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="visit_task.id")
    proposed_at: datetime = Field(sa_type=sa.DateTime)  # local date and time (no zone)
    place: str | None = Field(default=None, max_length=200)  # 地点说明
    proposed_by: str = Field(max_length=100)  # username
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AppointmentReply(SQLModel, table=True):
    """预约答复 One named member's answer to an appointment: confirmed, or declined with a reason."""

    __tablename__ = "appointment_reply"
    __table_args__ = (in_check("role", codes.TeamRole), in_check("answer", codes.AppointmentAnswer))

    appointment_id: int = Field(foreign_key="appointment.id", primary_key=True)
    member_id: str = Field(foreign_key="team_member.member_id", primary_key=True, max_length=64)
    role: str = Field(max_length=20)
    answer: str = Field(max_length=16)  # AppointmentAnswer
    reason: str | None = Field(default=None, max_length=200)  # required when declined
    answered_by: str = Field(max_length=100)  # username
    answered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
