"""任务生成 Set-based generation of every task the rules owe, over the whole population.

rules.md §5–§6 applied in SQL (one pass with window functions: latest attempt, latest and
previous complete follow-up, unreached streak, recent 肇事/肇祸), written in one statement — on
PostgreSQL a materialised plan whose new keys are inserted and whose changed open tasks are
updated by id, on SQLite ``INSERT … SELECT … ON CONFLICT (patient_id, kind, basis) DO UPDATE …
WHERE open and changed``: running twice changes nothing, two runs at once never duplicate (runs
are serialised — PostgreSQL advisory lock, SQLite write lock — and the key is unique). A run is
one transaction: killed midway it leaves no trace and the next run redoes it. On PostgreSQL a
full run over many patients (``shard_count``) is cut into patient_id ranges planned and written
in parallel, one transaction per range, while the run's own transaction holds the lock: killed
midway, each range is complete or untouched, and the next run completes the rest.
``schedules.planning`` states the same rules per patient in Python; the tests check agreement.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from registry.clock import now_utc
from registry.config import get_settings, parallelism
from registry.attempts import latest_first_sql, rank_sql, usable_sql
from registry.codes import Classification, HospitalStatus, LostReason, PatientStatus
from registry.emergencies import POST_EMERGENCY_DAYS, closes_post_emergency_sql, local_day
from registry.models import Emergency, FollowUp, HealthCheck, Patient
from registry.profile import Profile, load_profile
from registry.register import (CONSENT_REFUSED, RE_REGISTERED, basis_stands_sql, cancel_reason_sql, consent_refused_sql,
                               consents_sql, eligible_sql, health_check_cancel_reason_sql, left_sql)
from registry.rules import classification_sql, complete_sql, incident_sql, reached_sql, rules_version
from registry.doctor_date import doctor_date_applies_sql, doctor_due_sql
from registry.joint_visits import refresh_outcomes
from registry.teams import has_guardian_sql, incident_cutoff, required_roles_sql
from schedules.calendar import WorkCalendar, unknown_years
from registry.codes import VISIT_KINDS, CloseReason, TaskKind, TaskStatus
from registry.models import VisitTask
from schedules.sqldates import add_days, add_period

ADVISORY_LOCK_KEY = 5_020_261_105  # pg_advisory_xact_lock key of the generation run
SHARD_LOCK_KEY = ADVISORY_LOCK_KEY + 1  # held shared by each shard's transaction (``_lock``)
MAX_SHARDS = 8
SHARD_MIN_PATIENTS = 100_000  # below 2× this a run is one transaction (a county: a few thousand)
VISIT_KIND_VALUES = [k.value for k in VISIT_KINDS]
LAI_STOPPED = CloseReason.LAI_STOPPED.value  # the cancel reason of an injection task whose plan was stopped
# rules.md §5: the cancel reasons that only say the patient was not owed the task then (dead, moved
# out, refused consent — §5 last row, ``registry.register.cancel_reason`` —, the LAI plan stopped, or
# the task's basis no longer belonging to the registration, ``re_registered``: a date corrected back).
# A task cancelled for one of them that the rules owe again (a status or consent corrected, consent
# given, the plan resumed) is reopened: its key (patient, kind, basis) is the task (§5 idempotency),
# so a new row cannot stand for it. A task done, or cancelled because its year ended, stays closed.
REOPENED_REASONS = (PatientStatus.DEAD.value, PatientStatus.MOVED_OUT.value, CONSENT_REFUSED, LAI_STOPPED, RE_REGISTERED)
# the situations in which the latest attempt is complete (a follow-up or a discharge check is owed)
COMPLETE_SITUATIONS = ["in_hospital", "unstable", "fairly_stable_new", "fairly_stable_continuing", "stable"]

_work_day_meta = sa.MetaData()
work_day = sa.Table(
    "tmp_work_day",
    _work_day_meta,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("shifted", sa.Date, nullable=False),
    sa.Column("estimated", sa.Boolean, nullable=False),
    prefixes=["TEMPORARY"],
)


CALENDAR_HORIZON_DAYS = 400  # at least this far past the as-of date (an LAI interval is at most 52 weeks)


def _calendar_range(conn: Connection, as_of: date, profile: Profile,
                    patient_ids: list[str] | None = None) -> tuple[date, date]:
    """The days a due date can fall on (of ``patient_ids`` when given): every task's nominal due
    date lies between its basis date and that date plus its interval, so the range runs from the
    earliest basis date to the latest basis date plus the longest interval. Basis dates: the
    registration (a first visit; a follow-up counts only on or after it, ``registry.attempts``),
    the last injection, an emergency's end (the post-emergency visit, rules.md §9 — it may precede
    the registration: a patient transferred in, docs/scheduler.md) and January 1 of the as-of year
    (the health check); none is later than ``as_of`` but an injection's. The longest interval is
    the profile's longest visit interval or ``CALENDAR_HORIZON_DAYS``. A due date outside the range
    would have no row in the working-day table, and the plan's inner join would drop its task
    silently (until session 13, an emergency that ended before the registration year)."""
    p, e = Patient.__table__, Emergency.__table__
    ended = sa.select(sa.func.min(e.c.ended_at))
    stmt = sa.select(sa.func.min(p.c.registered_on), sa.func.min(p.c.lai_last_on), sa.func.max(p.c.lai_last_on))
    if patient_ids is not None:
        stmt = stmt.where(p.c.patient_id.in_(patient_ids))
        ended = ended.where(e.c.patient_id.in_(patient_ids))
    lo, lai_lo, lai_hi, ended_lo = conn.execute(stmt.add_columns(ended.scalar_subquery())).one()
    if isinstance(ended_lo, str):  # SQLite: a scalar subquery's DATETIME comes back as text
        ended_lo = datetime.fromisoformat(ended_lo)
    ended_day = ended_lo.date() if ended_lo is not None else None  # the wall clock's day (``local_day``)
    start = min(d for d in (lo, lai_lo, ended_day, date(as_of.year, 1, 1)) if d is not None)
    longest = max([CALENDAR_HORIZON_DAYS] + [iv.months * 31 + iv.days + 1 for iv in profile.visit.values()])
    end = max(d for d in (as_of, lai_hi) if d is not None) + timedelta(days=longest)
    # whole years: the same range for most runs, so the shift map is computed once per process
    return date(start.year, 1, 1), date(end.year, 12, 31)


def work_day_rows(conn: Connection, as_of: date, profile: Profile, calendar: WorkCalendar,
                  patient_ids: list[str] | None = None) -> list[dict]:
    """工作日表 Every day a due date of this run (of ``patient_ids`` when given) can fall on, with
    the working day it moves to (rules.md §5) and whether that year's holidays are only
    estimated; computed once per run (every shard fills its own temporary table from the same rows)."""
    start, end = _calendar_range(conn, as_of, profile, patient_ids)
    if profile.holiday_policy == "none":
        return [{"day": start + timedelta(days=i), "shifted": start + timedelta(days=i), "estimated": False}
                for i in range((end - start).days + 1)]
    return [{"day": d, "shifted": s, "estimated": e} for d, s, e in calendar.shift_map(start, end)]


def _fill_work_days(conn: Connection, rows: list[dict]) -> None:
    work_day.drop(conn, checkfirst=True)
    work_day.create(conn)
    if conn.dialect.name == "postgresql":  # one statement, three arrays: not a batch of thousands of rows
        conn.execute(
            sa.text("INSERT INTO tmp_work_day (day, shifted, estimated) SELECT * FROM unnest("
                    "CAST(:day AS date[]), CAST(:shifted AS date[]), CAST(:estimated AS boolean[]))"),
            {k: [r[k] for r in rows] for k in ("day", "shifted", "estimated")},
        )
    else:
        conn.execute(work_day.insert(), rows)


def _lock(conn: Connection) -> None:
    """Serialise generation runs: advisory lock (PostgreSQL) / take the write lock now (SQLite).

    On PostgreSQL the run then waits until no shard of an earlier, killed run still works: a shard
    holds ``SHARD_LOCK_KEY`` shared for its transaction, and a killed client's backend finishes its
    statement before it notices and rolls back."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        # a barrier, not a lock held: taken (waiting for any orphaned shard) and released at once
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": SHARD_LOCK_KEY})
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": SHARD_LOCK_KEY})
        _batch_settings(conn)
    else:
        conn.execute(sa.update(VisitTask).where(sa.false()).values(status=VisitTask.status))


def _batch_settings(conn: Connection) -> None:
    """One large batch statement: sort in memory, skip JIT compilation (this transaction only)."""
    work_mem = get_settings().generation_work_mem  # validated: digits and kB/MB/GB
    conn.exec_driver_sql(f"SET LOCAL work_mem = '{work_mem}'")
    conn.exec_driver_sql("SET LOCAL jit = off")


def shard_count(patients: int, requested: int | None = None) -> int:
    """分片数 How many shards a full PostgreSQL run uses for ``patients`` patients.

    ``requested`` (else ``JINGFANG_GENERATION_SHARDS``, else the CPUs this process may use, at
    most ``MAX_SHARDS``) caps it; every shard gets at least ``JINGFANG_GENERATION_SHARD_PATIENTS``
    patients (default ``SHARD_MIN_PATIENTS``), so a county's run stays one transaction."""
    if requested is None:
        requested = parallelism("JINGFANG_GENERATION_SHARDS", MAX_SHARDS)
    per_shard = get_settings().generation_shard_patients or SHARD_MIN_PATIENTS
    return max(1, min(requested, patients // per_shard))


def in_range(column, patient_range: tuple[str | None, str | None] | None) -> sa.ColumnElement:
    """分片 ``lo <= patient_id < hi`` in byte order (``COLLATE "C"``; an open end is None): the
    shards of a sharded run partition the patients, each with every row of its patients."""
    if patient_range is None:
        return sa.true()
    lo, hi = patient_range
    key = column.collate("C")
    terms = ([key >= lo] if lo is not None else []) + ([key < hi] if hi is not None else [])
    return sa.and_(sa.true(), *terms)


def plan_select(profile: Profile, as_of: date, stamp: datetime, dialect: str = "sqlite",
                patient_ids: list[str] | None = None, *, existing: bool = False,
                patient_range: tuple[str | None, str | None] | None = None) -> sa.Select:
    """The SELECT producing every task row owed as of ``as_of`` (visit, health check, injection)
    that is not stored yet or stored open with other values; with ``patient_ids``, the same rows
    for those patients only; with ``patient_range`` (PostgreSQL), for the patients of one shard
    (``in_range``). With ``existing``, each row also carries ``existing_id``: the id of the
    stored open task it changes, or NULL for a new task."""
    p = Patient.__table__.alias("p")

    def eligible(as_of_: date) -> sa.ColumnElement:
        cond = sa.and_(eligible_sql(p, as_of_), in_range(p.c.patient_id, patient_range))
        return cond if patient_ids is None else sa.and_(cond, p.c.patient_id.in_(patient_ids))

    att = _ranked_attempts(p, eligible(as_of), as_of, dialect, patient_range)
    agg = _latest_per_patient(att, profile, as_of, dialect)
    sit = _situations(agg, p, eligible(as_of), profile, dialect)
    s = sit.c
    return _new_or_changed(_visit_rows(s, profile), _health_check_rows(sit, profile, as_of), _injection_rows(s, profile, as_of),
                           stamp, dialect, existing=existing, patient_range=patient_range,
                           post_emergency_rows=_post_emergency_rows(s, profile, as_of))


def _ranked_attempts(p, eligible: sa.ColumnElement, as_of: date, dialect: str,
                     patient_range: tuple[str | None, str | None] | None) -> sa.CTE:
    """``att``: every usable attempt of an eligible patient (registry.attempts, registry.register)
    with its rank latest first (``rn``), completeness, classification and the running count of
    complete attempts (``ccount``: 1 on the latest complete one, 2 on the previous complete one)."""
    f = FollowUp.__table__.alias("f")
    complete_i = sa.case((complete_sql(f), 1), else_=0)
    # narrow rows first (OFFSET 0 keeps PostgreSQL from flattening): the sort then moves ~60-byte rows
    base = (
        sa.select(
            f.c.patient_id,
            f.c.id,
            f.c.visit_on,
            f.c.lost_reason,
            f.c.risk_level,
            f.c.hospital_status,
            f.c.next_visit_on,
            # 肇事肇祸 (registry.rules.incident_sql) as a count, tested ``> 0`` in ``agg``: the same rows for
            # counts ≥ 0 (the table's check); kept as written so the pinned generation SQL stays put
            (sa.func.coalesce(f.c.incidents_disturbance, 0) + sa.func.coalesce(f.c.incidents_crime, 0)).label("incidents"),
            complete_i.label("complete"),
            classification_sql(f).label("cls"),
        )
        .select_from(f.join(p, p.c.patient_id == f.c.patient_id))
        # the shard's range on the follow-ups too: filtered in the scan, not after the join
        .where(usable_sql(f, p, as_of), eligible,
               in_range(f.c.patient_id, patient_range))
        .offset(0)
        .subquery("base")
    )
    b = base.c
    border = latest_first_sql(base)  # rules.md §5 order (registry.attempts)
    # PostgreSQL: partition with the "C" collation (byte order): the same groups, a far cheaper sort
    part = b.patient_id.collate("C") if dialect == "postgresql" else b.patient_id
    att = (
        sa.select(
            *base.c,
            # the same frame as ccount (row_number ignores it): one window, one WindowAgg pass
            rank_sql(base, part, rows=(None, 0)).label("rn"),
            sa.func.sum(b.complete).over(partition_by=part, order_by=border, rows=(None, 0)).label("ccount"),
        )
        .cte("att")
    )
    return att


def _latest_per_patient(att: sa.CTE, profile: Profile, as_of: date, dialect: str) -> sa.CTE:
    """``agg``: one row per patient with attempts: the latest attempt, the latest and previous
    complete follow-up, the unreached streak and a recent 肇事/肇祸 (rules.md §5–§6)."""
    a = att.c
    first = a.rn == 1
    latest_complete = sa.and_(a.complete == 1, a.ccount == 1)
    previous_complete = sa.and_(a.complete == 1, a.ccount == 2)
    cutoff = incident_cutoff(profile.roles, as_of)
    gkey = a.patient_id.collate("C") if dialect == "postgresql" else a.patient_id
    agg = (
        sa.select(
            gkey.label("patient_id"),
            sa.func.max(sa.case((first, a.id))).label("latest_id"),
            sa.func.max(sa.case((first, a.visit_on))).label("latest_on"),
            sa.func.max(sa.case((first, a.lost_reason))).label("latest_lost"),
            sa.func.max(sa.case((first, a.complete))).label("latest_complete"),
            sa.func.max(sa.case((first, a.hospital_status))).label("latest_hospital"),
            sa.func.max(sa.case((first, a.cls))).label("latest_cls"),
            sa.func.max(sa.case((first, a.next_visit_on))).label("latest_next_on"),
            sa.func.max(sa.case((latest_complete, a.risk_level))).label("lc_risk"),
            sa.func.max(sa.case((latest_complete, a.cls))).label("lc_cls"),
            sa.func.max(sa.case((previous_complete, a.cls))).label("prev_cls"),
            sa.func.min(sa.case((reached_sql(att), a.rn))).label("first_reached_rn"),
            sa.func.count().label("n"),
            sa.func.max(sa.case((sa.and_(a.visit_on >= cutoff, a.incidents > 0), 1), else_=0)).label("incident"),
        )
        .group_by(gkey)
        .cte("agg")
    )
    return agg


def _situations(agg: sa.CTE, p, eligible: sa.ColumnElement, profile: Profile, dialect: str) -> sa.CTE:
    """``sit``: every eligible patient with the situation that decides the visit task (rules.md §5)."""
    g = agg.c
    streak = sa.func.coalesce(g.first_reached_rn, g.n + 1) - 1
    situation = sa.case(
        (g.latest_id.is_(None), "first_visit"),
        (sa.and_(g.latest_complete == 1, g.latest_hospital == HospitalStatus.IN_HOSPITAL.value), "in_hospital"),
        (sa.and_(g.latest_complete == 1, g.latest_cls == Classification.UNSTABLE.value), "unstable"),
        (sa.and_(g.latest_complete == 1, g.latest_cls == Classification.FAIRLY_STABLE.value,
                 sa.or_(g.prev_cls.is_(None), g.prev_cls == Classification.STABLE.value)), "fairly_stable_new"),
        (sa.and_(g.latest_complete == 1, g.latest_cls == Classification.FAIRLY_STABLE.value), "fairly_stable_continuing"),
        (g.latest_complete == 1, "stable"),
        (g.latest_lost.is_(None), "incomplete"),
        (sa.or_(g.latest_lost == LostReason.THREE_MISSES.value, streak >= profile.lost_after_misses), "locate"),
        else_="retry",
    )
    has_guardian = has_guardian_sql(p.c.guardian_name)
    sit = (
        sa.select(
            p.c.patient_id,
            p.c.registered_on,
            p.c.consent,
            p.c.economic_status,
            has_guardian.label("has_guardian"),
            p.c.lai_drug,
            p.c.lai_interval_weeks,
            p.c.lai_last_on,
            g.latest_id,
            g.latest_on,
            g.latest_next_on,
            g.lc_risk,
            g.lc_cls,
            g.incident,
            situation.label("situation"),
        )
        .select_from(p.outerjoin(agg, agg.c.patient_id == (p.c.patient_id.collate("C") if dialect == "postgresql" else p.c.patient_id)))
        .where(eligible)
        .cte("sit")
    )
    return sit


def _visit_rows(s, profile: Profile) -> sa.Select:
    """The visit task of each patient (rules.md §5) with the roles it requires (§6)."""
    rules = profile.roles
    kind = sa.case(
        (s.situation == "first_visit", TaskKind.FIRST_VISIT.value),
        (s.situation == "in_hospital", TaskKind.DISCHARGE_CHECK.value),
        (s.situation.in_(["incomplete", "retry"]), TaskKind.RETRY.value),
        (s.situation == "locate", TaskKind.LOCATE.value),
        else_=TaskKind.FOLLOW_UP.value,
    )
    basis_on = sa.case((s.situation == "first_visit", s.registered_on), else_=s.latest_on)
    basis = sa.case(
        (s.situation == "first_visit", "registration:" + sa.cast(s.registered_on, sa.String)),
        else_="follow_up:" + sa.cast(s.latest_id, sa.String),
    )
    table_due = sa.case(
        *[(s.situation == key, add_period(basis_on, iv.months, iv.days)) for key, iv in profile.visit.items()],
    )
    table_rule = sa.case(*[(s.situation == key, sa.literal(profile.rule(iv.clause))) for key, iv in profile.visit.items()])
    # rules.md §5 [decision, 2026-12]: the doctor's own date, when earlier (one home: registry.doctor_date);
    # the latest attempt is complete exactly in the situations of a follow-up or discharge check
    complete = s.situation.in_(COMPLETE_SITUATIONS)
    by_doctor = doctor_date_applies_sql(table_due, s.latest_on, s.latest_next_on, complete)
    nominal = doctor_due_sql(table_due, s.latest_on, s.latest_next_on, complete)
    rule = sa.case((by_doctor, sa.literal(profile.rule(profile.doctor_date_clause))), else_=table_rule)
    # rules.md §6: the roles a visit task requires (one home: registry.teams)
    need = required_roles_sql(rules, latest_risk=s.lc_risk, latest_class=s.lc_cls, incident=s.incident == 1,
                              locate=s.situation == "locate", has_guardian=s.has_guardian,
                              economic_status=s.economic_status)
    visit_rows = sa.select(
        s.patient_id.label("patient_id"),
        kind.label("kind"),
        basis.label("basis"),
        basis_on.label("basis_on"),
        nominal.label("nominal_due_on"),
        sa.cast(sa.null(), sa.Date).label("window_start"),
        sa.cast(sa.null(), sa.Date).label("window_end"),
        need.roles.label("roles"),
        need.joint.label("joint"),
        rule.label("rule"),
        s.lc_risk.label("risk_level"),
    )
    return visit_rows


def _health_check_rows(sit: sa.CTE, profile: Profile, as_of: date) -> sa.Select:
    """The year's health check of each patient with consent and without a check this year (基本公卫3;
    rules.md §5: ``sit`` holds the eligible patients, ``registry.register.consents_sql`` the consent)."""
    s = sit.c
    year = as_of.year
    hc = HealthCheck.__table__
    check_done = (
        sa.select(hc.c.patient_id)
        .where(hc.c.patient_id == s.patient_id, hc.c.checked_on.between(date(year, 1, 1), min(as_of, date(year, 12, 31))))
        .exists()
    )
    health_rows = sa.select(
        s.patient_id,
        sa.literal(TaskKind.HEALTH_CHECK.value),
        sa.literal(f"year:{year}"),
        sa.literal(date(year, 1, 1), sa.Date),
        sa.literal(date(year, profile.health_check_month, profile.health_check_day), sa.Date),
        sa.cast(sa.null(), sa.Date),
        sa.cast(sa.null(), sa.Date),
        sa.literal("doctor"),
        sa.literal(False),
        sa.literal(profile.rule(profile.health_check_clause)),
        s.lc_risk,
    ).where(consents_sql(sit), sa.not_(check_done))
    return health_rows


def _injection_rows(s, profile: Profile, as_of: date) -> sa.Select:
    """The next long-acting injection of each patient on a plan (规范2018)."""
    interval_days = s.lai_interval_weeks * 7
    lai_rows = sa.select(
        s.patient_id,
        sa.literal(TaskKind.INJECTION.value),
        "lai:" + sa.cast(s.lai_last_on, sa.String),
        s.lai_last_on,
        add_days(s.lai_last_on, interval_days),
        add_days(s.lai_last_on, interval_days - profile.lai_window_before),
        add_days(s.lai_last_on, interval_days + profile.lai_window_after),
        sa.literal("doctor"),
        sa.literal(False),
        sa.literal(profile.rule(profile.lai_clause)),
        s.lc_risk,
    ).where(
        s.lai_drug.is_not(None), s.lai_drug != "", s.lai_interval_weeks.is_not(None), s.lai_last_on.is_not(None),
        s.lai_last_on <= as_of,
    )
    return lai_rows


POST_EMERGENCY_ROLES = "doctor,police,village"  # rules.md §9: doctor + police + village, contract order
POST_EMERGENCY_CLAUSE = f"§9 应急处置后面访 结束+{POST_EMERGENCY_DAYS}d"


def _post_emergency_rows(s, profile: Profile, as_of: date) -> sa.Select:
    """The post-emergency visit of each emergency with a known end (rules.md §9, ``registry.emergencies``):
    due on the end date + 14 days, joint (doctor, police, village). Separate from the §5 chain: its
    own key (``emergency:<id>``), and it neither closes nor moves the visit task.

    Owed for every such emergency, whether or not its closing home visit is already recorded: the
    task's existence does not depend on when the scheduler runs (rules.md §9 "after an emergency the
    patient owes"). A task planned here whose visit came first is closed in the same run by
    ``close_and_cancel`` (``home_visit``, its closing visit and 到位 judged, rules.md §6.2); a task
    stored closed is never planned again (``_new_or_changed``)."""
    e = Emergency.__table__
    ended_on = local_day(e.c.ended_at)
    return (
        sa.select(
            s.patient_id,
            sa.literal(TaskKind.POST_EMERGENCY.value),
            "emergency:" + sa.cast(e.c.id, sa.String),
            ended_on,
            add_period(ended_on, 0, POST_EMERGENCY_DAYS),
            sa.cast(sa.null(), sa.Date),
            sa.cast(sa.null(), sa.Date),
            sa.literal(POST_EMERGENCY_ROLES),
            sa.literal(True),
            sa.literal(profile.rule(POST_EMERGENCY_CLAUSE)),
            s.lc_risk,
        )
        .select_from(s.patient_id.table.join(e, e.c.patient_id == s.patient_id))
        .where(e.c.ended_at.is_not(None), ended_on <= as_of)
    )


def _new_or_changed(visit_rows: sa.Select, health_rows: sa.Select, lai_rows: sa.Select, stamp: datetime, dialect: str,
                    *, existing: bool, patient_range: tuple[str | None, str | None] | None,
                    post_emergency_rows: sa.Select | None = None) -> sa.Select:
    """Every owed row with its working-day due date, keeping only new rows and rows whose stored
    open task differs (with ``existing``: carrying that task's id)."""
    if dialect == "postgresql":
        # OFFSET 0 fence: the CASE rules are evaluated once per row, not again in the joins and sort keys
        fenced = visit_rows.offset(0).subquery("visit_rows")
        visit_rows = sa.select(*fenced.c)
    parts = [visit_rows, health_rows, lai_rows] + ([post_emergency_rows] if post_emergency_rows is not None else [])
    u = sa.union_all(*parts).subquery("u")
    t = VisitTask.__table__
    same_key = sa.and_(t.c.patient_id == u.c.patient_id, t.c.kind == u.c.kind, t.c.basis == u.c.basis)
    # skip rows already stored unchanged (or closed, but for a cancelled task owed again: reopened,
    # ``reopenable``): a no-change run writes and locks nothing
    kept = sa.or_(
        sa.and_(t.c.status != TaskStatus.OPEN.value, sa.not_(reopenable(t))),
        sa.and_(
            t.c.status == TaskStatus.OPEN.value,
            t.c.due_on == work_day.c.shifted,
            t.c.nominal_due_on == u.c.nominal_due_on,
            t.c.calendar_estimated == work_day.c.estimated,
            t.c.roles == u.c.roles,
            t.c.joint == u.c.joint,
            t.c.rule == u.c.rule,
            t.c.risk_level.is_not_distinct_from(u.c.risk_level),
            t.c.window_start.is_not_distinct_from(u.c.window_start),
            t.c.window_end.is_not_distinct_from(u.c.window_end),
        ),
    )
    source = u.join(work_day, work_day.c.day == u.c.nominal_due_on)
    if existing:  # one probe of the key yields both the filter and the stored task's id
        source = source.outerjoin(t, sa.and_(same_key, in_range(t.c.patient_id, patient_range)))
        wanted = sa.or_(t.c.id.is_(None), sa.not_(kept))
        extra = [t.c.id.label("existing_id")]
    else:
        wanted = sa.not_(sa.select(t.c.id).where(same_key, kept).exists())
        extra = []
    return (
        sa.select(
            u.c.patient_id,
            u.c.kind,
            u.c.basis,
            u.c.basis_on,
            work_day.c.shifted.label("due_on"),
            u.c.nominal_due_on,
            u.c.window_start,
            u.c.window_end,
            sa.literal(TaskStatus.OPEN.value).label("status"),
            u.c.roles,
            u.c.joint,
            u.c.rule,
            u.c.risk_level,
            work_day.c.estimated.label("calendar_estimated"),
            sa.literal(stamp, VisitTask.__table__.c.created_at.type).label("created_at"),
            *extra,
        )
        .select_from(source)
        .where(u.c.patient_id.is_not(None), wanted)
        # insert in key order: index pages stay in cache (3–4× faster than the join's order at a million patients)
        .order_by(*[u.c[k].collate("C") if dialect == "postgresql" else u.c[k] for k in ("patient_id", "kind", "basis")])
    )


KEY = ("patient_id", "kind", "basis")
UPDATABLE = ("due_on", "nominal_due_on", "window_start", "window_end", "roles", "joint", "rule", "risk_level", "calendar_estimated")
# a reopened task (``reopenable``) is open again, with no trace of its closing
REOPEN_VALUES = {"status": TaskStatus.OPEN.value, "closed_at": None, "close_reason": None, "closed_by": None,
                 "joint_outcome": None, "missing_roles": None}


def reopenable(t) -> sa.ColumnElement[bool]:
    """A stored task (``t``: ``visit_task`` or an alias) cancelled for one of ``REOPENED_REASONS``:
    when the plan owes its key again it is reopened, not left cancelled (rules.md §5)."""
    return sa.and_(t.c.status == TaskStatus.CANCELLED.value, t.c.close_reason.in_(REOPENED_REASONS))


def _write_plan(conn: Connection, select: sa.Select) -> int:
    """PostgreSQL: store the planned rows (``plan_select(existing=True)``) in one statement —
    the plan materialised once, changed open tasks updated by id, new tasks by a plain ``INSERT``
    in key order; returns the number of tasks created.

    No ``ON CONFLICT`` is needed: runs hold the advisory lock and only runs insert tasks, so no
    task can appear between the plan's key probe and the insert (the unique key would still
    refuse a duplicate). The speculative insertion of ``ON CONFLICT`` nearly doubled the cost of
    writing a first run's 1.5 M rows (9.7 s against 5.2 s, docs/scheduler.md "Fourth round").
    """
    t = VisitTask.__table__
    plan = select.cte("plan").prefix_with("MATERIALIZED")
    updated = (
        sa.update(t)
        # status re-checked on the row's latest version: a task closed meanwhile (web) stays as it is;
        # a task cancelled for a reason that no longer holds is reopened (rules.md §5, ``reopenable``)
        .where(t.c.id == plan.c.existing_id, sa.or_(t.c.status == TaskStatus.OPEN.value, reopenable(t)))
        .values({**{c: plan.c[c] for c in UPDATABLE}, **REOPEN_VALUES})
        .returning(t.c.id)
        .cte("updated")
    )
    cols = [c.name for c in select.selected_columns if c.name != "existing_id"]
    new = sa.select(*[plan.c[c] for c in cols]).where(plan.c.existing_id.is_(None))
    stmt = postgresql.insert(t).from_select(cols, new).add_cte(updated).returning(t.c.id)
    # count the created rows without shipping their ids: wrap in a counting statement
    counted = sa.select(sa.func.count()).select_from(stmt.cte("created"))
    return conn.execute(counted).scalar_one()


def _write(conn: Connection, select: sa.Select, stamp: datetime, only: sa.ColumnElement) -> int:
    """SQLite: store the planned rows with ``INSERT … SELECT … ON CONFLICT (patient_id, kind,
    basis) DO UPDATE … WHERE open AND changed``; returns the number of tasks created (those of
    the run's patients, ``only``, that carry its stamp)."""
    t = VisitTask.__table__
    cols = [c.name for c in select.selected_columns]
    ins = sqlite.insert(t).from_select(cols, select)
    differs = sa.or_(*[t.c[c].is_distinct_from(ins.excluded[c]) for c in UPDATABLE])
    stmt = ins.on_conflict_do_update(
        index_elements=list(KEY),
        set_={**{c: ins.excluded[c] for c in UPDATABLE}, **REOPEN_VALUES},
        # an open task that changed, or a cancelled one owed again: reopened (rules.md §5, ``reopenable``)
        where=sa.or_(sa.and_(t.c.status == TaskStatus.OPEN.value, differs), reopenable(t)),
    )
    conn.execute(stmt)
    return conn.execute(sa.select(sa.func.count()).select_from(t).where(only, t.c.created_at == stamp)).scalar_one()


def _close_tasks(conn: Connection, where, status: str, reason, now: datetime) -> int:
    t = VisitTask.__table__
    result = conn.execute(
        sa.update(t).where(t.c.status == TaskStatus.OPEN.value, where).values(status=status, closed_at=now, close_reason=reason)
    )
    return result.rowcount or 0


def close_and_cancel(conn: Connection, as_of: date, stamp: datetime, *,
                     patient_ids: list[str] | None = None, earlier_open: bool | None = None,
                     patient_range: tuple[str | None, str | None] | None = None) -> dict:
    """Cancel tasks of patients who left management; close tasks their events completed (rules.md §5).
    With ``patient_ids`` (or ``patient_range``, one shard), only those patients' tasks are touched."""
    t = VisitTask.__table__
    p = Patient.__table__
    only = in_range(t.c.patient_id, patient_range)
    if patient_ids is not None:
        only = sa.and_(only, t.c.patient_id.in_(patient_ids))

    def _close(conn_, where, status, reason, now):
        return _close_tasks(conn_, sa.and_(only, where), status, reason, now)

    hc = HealthCheck.__table__
    counts = {"cancelled": 0, "closed": 0}
    # Every step below (but the post-emergency one, ``_close_post_emergencies``) can only match a
    # task of an earlier run: a task this run created is owed
    # by the same conditions each step negates (eligible patient; no check dated this year; this
    # year's check; the current injection plan; and "older" excludes it explicitly). With no open
    # task of an earlier run (a first run) there is nothing to close: skip the six scans.
    # (``earlier_open``: the caller probed before its write, on the (status, due_on) index)
    if earlier_open is None:
        earlier = sa.select(t.c.id).where(only, t.c.status == TaskStatus.OPEN.value, t.c.created_at != stamp).limit(1)
        earlier_open = conn.execute(earlier).first() is not None
    if not earlier_open:
        # the one exception: a post-emergency task this run created for an emergency whose closing
        # home visit was recorded first is closed at once (rules.md §9; probed on the emergencies)
        if _any_ended_emergency(conn, patient_ids, patient_range):
            counts["closed"] += _close_post_emergencies(conn, as_of, stamp, only)
        return counts
    # dead / moved out / refused consent: cancelled with the reason (rules.md §5 last row, registry.register);
    # in the same statement (one scan), a visit task whose basis no longer belongs to the patient's
    # registration — a transfer in or re-registration set a later date, or the date was corrected —
    # is cancelled ``re_registered``: no follow-up closed it (``register.basis_stands_sql``; until
    # session 13 the newer first visit closed it as done ``follow_up``)
    left, refused = left_sql(p, as_of), consent_refused_sql(p)
    stale = sa.and_(t.c.kind.in_(VISIT_KIND_VALUES), sa.not_(basis_stands_sql(t, p)))
    reason = sa.func.coalesce(cancel_reason_sql(p, as_of), RE_REGISTERED)
    result = conn.execute(
        sa.update(t).where(only, t.c.patient_id == p.c.patient_id, t.c.status == TaskStatus.OPEN.value,
                           sa.or_(left, refused, stale))
        .values(status=TaskStatus.CANCELLED.value, closed_at=stamp, close_reason=reason)
    )
    counts["cancelled"] += result.rowcount or 0
    # rules.md §5: the health check needs consent whatever the report type: a type-1 patient's open one
    # is cancelled when consent is 0 (registry.register.health_check_cancel_reason: consent_refused)
    result = conn.execute(
        sa.update(t).where(only, t.c.patient_id == p.c.patient_id, t.c.status == TaskStatus.OPEN.value,
                           t.c.kind == TaskKind.HEALTH_CHECK.value, sa.not_(consents_sql(p)))
        .values(status=TaskStatus.CANCELLED.value, closed_at=stamp, close_reason=health_check_cancel_reason_sql(p, as_of))
    )
    counts["cancelled"] += result.rowcount or 0
    # rules.md §5: a later attempt closes older visit tasks. The patient's newest visit task (by
    # basis date, then id) stands for the latest attempt (or the registration); any other open visit
    # task of an earlier run is closed, whichever run created it — also one that a run for an
    # earlier as-of date created after the later attempts were known. A cancelled task stands for
    # nothing (one cancelled ``re_registered`` may carry a later basis date than the task owed now).
    newer = t.alias("newer")
    superseded = (
        sa.select(newer.c.id)
        .where(
            newer.c.patient_id == t.c.patient_id,
            in_range(newer.c.patient_id, patient_range),  # the same patients: a shard hashes its own range only
            newer.c.kind.in_(VISIT_KIND_VALUES),
            newer.c.id != t.c.id,
            newer.c.status != TaskStatus.CANCELLED.value,
            sa.or_(newer.c.basis_on > t.c.basis_on, sa.and_(newer.c.basis_on == t.c.basis_on, newer.c.id > t.c.id)),
        )
        .exists()
    )
    older = sa.and_(t.c.kind.in_(VISIT_KIND_VALUES), t.c.created_at != stamp)  # tasks of earlier runs only
    closed_ids = conn.execute(
        sa.update(t).where(only, t.c.status == TaskStatus.OPEN.value, older, superseded)
        .values(status=TaskStatus.DONE.value, closed_at=stamp, close_reason=CloseReason.FOLLOW_UP.value).returning(t.c.id)
    ).scalars().all()
    counts["closed"] += len(closed_ids)
    # rules.md §6.2: which follow-up closed each, and a joint task's 到位 / 联合未到位 (one home:
    # registry.joint_visits); the same statements on the full and the incremental path
    for i in range(0, len(closed_ids), 5000):
        refresh_outcomes(conn, t.c.id.in_(closed_ids[i:i + 5000]), set_closed_by=True)
    # health check done by any check dated in the task's year; past years' open tasks expire
    year_start = date(as_of.year, 1, 1)
    done_check = (
        sa.select(hc.c.patient_id)
        .where(hc.c.patient_id == t.c.patient_id, hc.c.checked_on >= t.c.basis_on,
               hc.c.checked_on < add_period(t.c.basis_on, 12, 0), hc.c.checked_on <= as_of)
        .exists()
    )
    counts["closed"] += _close(conn, sa.and_(t.c.kind == TaskKind.HEALTH_CHECK.value, done_check), TaskStatus.DONE.value, CloseReason.HEALTH_CHECK.value, stamp)
    counts["cancelled"] += _close(conn, sa.and_(t.c.kind == TaskKind.HEALTH_CHECK.value, t.c.basis_on < year_start), TaskStatus.CANCELLED.value, CloseReason.YEAR_ENDED.value, stamp)
    # LAI: a newer injection closes the older task; a stopped plan cancels it
    newer_lai = sa.select(p.c.patient_id).where(
        p.c.patient_id == t.c.patient_id, p.c.lai_last_on > t.c.basis_on, p.c.lai_last_on <= as_of
    ).exists()
    counts["closed"] += _close(conn, sa.and_(t.c.kind == TaskKind.INJECTION.value, newer_lai), TaskStatus.DONE.value, CloseReason.INJECTION.value, stamp)
    stopped = sa.select(p.c.patient_id).where(
        p.c.patient_id == t.c.patient_id,
        sa.or_(p.c.lai_drug.is_(None), p.c.lai_drug == "", p.c.lai_interval_weeks.is_(None), p.c.lai_last_on.is_(None)),
    ).exists()
    counts["cancelled"] += _close(conn, sa.and_(t.c.kind == TaskKind.INJECTION.value, stopped), TaskStatus.CANCELLED.value, LAI_STOPPED, stamp)
    counts["closed"] += _close_post_emergencies(conn, as_of, stamp, only)
    return counts


def restate_re_registered(conn: Connection) -> int:
    """The reason of today's rules for the visit tasks runs before session 13 closed done
    ``follow_up`` when a transfer in or re-registration replaced them: closed by no follow-up
    (``closed_by`` NULL) and with a basis that no longer belongs to the registration
    (``register.basis_stands_sql``) — cancelled ``re_registered``, ``closed_at`` kept. Run by the first
    whole-register run under new rules before it restates the closed joint tasks (``refresh_outcomes``
    would otherwise give each the first follow-up after the transfer as closing visit, counted a
    second time in joint_visit_complete_rate). Returns the number of tasks changed."""
    t, p = VisitTask.__table__, Patient.__table__
    result = conn.execute(
        sa.update(t).where(t.c.patient_id == p.c.patient_id, t.c.status == TaskStatus.DONE.value,
                           t.c.close_reason == CloseReason.FOLLOW_UP.value, t.c.kind.in_(VISIT_KIND_VALUES),
                           t.c.closed_by.is_(None), sa.not_(basis_stands_sql(t, p)))
        .values(status=TaskStatus.CANCELLED.value, close_reason=RE_REGISTERED)
    )
    return result.rowcount or 0


def _any_ended_emergency(conn: Connection, patient_ids: list[str] | None,
                         patient_range: tuple[str | None, str | None] | None) -> bool:
    """Whether any emergency of the run's patients has an end time (a post-emergency task can exist)."""
    e = Emergency.__table__
    scope = in_range(e.c.patient_id, patient_range)
    if patient_ids is not None:
        scope = sa.and_(scope, e.c.patient_id.in_(patient_ids))
    return conn.execute(sa.select(e.c.id).where(scope, e.c.ended_at.is_not(None)).limit(1)).first() is not None


def _close_post_emergencies(conn: Connection, as_of: date, stamp: datetime, only: sa.ColumnElement) -> int:
    """rules.md §9: the first complete home visit on or after the emergency's end closes its
    post-emergency visit (``home_visit``) — also one this run has just created, when the visit was
    recorded before any run planned the task. Returns the number closed."""
    t = VisitTask.__table__
    f = FollowUp.__table__.alias("pe_f")
    visited = sa.select(f.c.id).where(f.c.patient_id == t.c.patient_id, f.c.visit_on <= as_of,
                                      closes_post_emergency_sql(f, t.c.basis_on)).exists()
    closed_ids = conn.execute(
        sa.update(t).where(only, t.c.status == TaskStatus.OPEN.value, t.c.kind == TaskKind.POST_EMERGENCY.value, visited)
        .values(status=TaskStatus.DONE.value, closed_at=stamp, close_reason=CloseReason.HOME_VISIT.value).returning(t.c.id)
    ).scalars().all()
    # rules.md §6, §6.2: a joint task too: that visit as ``closed_by``, and its 到位 / 联合未到位
    # (registry.joint_visits; the closing visit by the same rule, registry.emergencies)
    for i in range(0, len(closed_ids), 5000):
        refresh_outcomes(conn, t.c.id.in_(closed_ids[i:i + 5000]), set_closed_by=True)
    return len(closed_ids)


FINGERPRINT_TABLES = ("follow_up", "patient", "health_check", "emergency", "calendar_day", "visit_task")


def fingerprint(conn: Connection, as_of: date, profile: Profile) -> str | None:
    """输入指纹 Row versions of every table the generation reads or writes (PostgreSQL only).

    Per table the row count and the sum of the rows' ``xmin`` (the transaction that wrote each row
    version): any insert, update or delete changes it, without converting any column. Generation is
    a pure function of these tables, the as-of date, the profile and the holiday package, so an
    unchanged fingerprint means a run would change nothing, and the no-change run costs one scan
    per table instead of the whole pass. None on SQLite (no row versions): always a full pass.
    ``visit_task`` is the last part (``with_tasks_mark`` replaces it after the run's writes).
    """
    if conn.dialect.name != "postgresql":
        return None
    from schedules.calendar import PACKAGE_YEARS

    parts = [f"(SELECT {_MARK} FROM {table})" for table in FINGERPRINT_TABLES]
    values = conn.exec_driver_sql("SELECT " + ", ".join(parts)).one()
    rules = _profile_hash(profile)  # an edited profile file counts too
    return f"{as_of.isoformat()}|{profile.tag}|{rules}|{max(PACKAGE_YEARS)}|" + "|".join(values)


def _profile_hash(profile: Profile) -> str:
    """The profile's content and the rules' version (``registry.rules.rules_version``): either changed
    makes the next whole-register run a full one, never skipped."""
    return hashlib.sha256(f"{rules_version()}|{profile!r}".encode()).hexdigest()[:16]


def _rules_changed(conn: Connection, profile: Profile) -> bool:
    """Whether the last whole-register run went under other rules or another profile (its basis
    key differs): the run then restates the stored outcomes of every closed joint task."""
    from schedules.models import GenerationBasis

    b = GenerationBasis.__table__
    stored = conn.execute(sa.select(b.c.profile).where(b.c.id == BASIS_ID)).scalar()
    return stored is not None and stored != _profile_key(profile)


_MARK = "count(*) || ':' || coalesce(sum((xmin::text)::bigint), 0)"
assert FINGERPRINT_TABLES[-1] == "visit_task"


def with_tasks_mark(before: str, tasks_mark: str) -> str:
    """The fingerprint to record after a run: the input tables' marks as read *before* the pass
    (a change committed while the run worked then makes the next run's fingerprint differ, so it
    runs the pass — never the reverse), and ``visit_task`` as the run left it."""
    return before.rsplit("|", 1)[0] + "|" + tasks_mark


def _previous_fingerprint(conn: Connection) -> str | None:
    from schedules.models import ScheduleRun

    r = ScheduleRun.__table__
    raw = conn.execute(
        sa.select(r.c.counts).where(r.c.job == "generate", r.c.status == "ok").order_by(r.c.id.desc()).limit(1)
    ).scalar()
    if not raw:
        return None
    try:
        return json.loads(raw).get("fingerprint")
    except ValueError:
        return None


def generate(engine: Engine, *, as_of: date, profile: Profile | None = None,
             patient_ids: list[str] | None = None, timings: dict[str, float] | None = None,
             shards: int | None = None, incremental: bool = False) -> dict:
    """生成任务 Generate every task owed as of ``as_of``; idempotent and safe when runs overlap.

    Returns counts: created, closed, cancelled, open (by kind; of the replanned patients only in
    an incremental run), calendar_estimated, warnings (years with no holiday table), shards (1: one transaction; 0: skipped), mode
    (``full``, ``incremental`` or ``partial``), full_reason and replanned (patients an
    incremental run replanned). ``patient_ids`` limits the run to those patients
    (a web write refreshes its own patient, not the county); such a run records no fingerprint
    and no basis, so it never stands for the day's run. ``timings``, when given, receives the
    wall-clock seconds of each phase (the benchmark prints them).

    ``incremental`` (the daily job and ``jingfang schedule`` without ``--full``): replan only the
    patients whose inputs changed since the last whole-register run and those whose
    date-dependent conditions change between its date and ``as_of`` (``changed_patients``), with
    the same scoped statement as a web write's run; a full run when there is no such run, the
    profile or holiday package differs, the date goes back or into a new year, or more than
    ``INCREMENTAL_MAX_PATIENTS`` patients changed (docs/scheduler.md, "Incremental daily runs").
    Every whole-register run (full or incremental) records its basis in the same transaction.

    On PostgreSQL a full run over many patients is sharded (``shard_count``; ``shards`` caps it):
    the patients are cut into ranges of patient_id and each range is planned, written and closed
    in its own connection and transaction, in parallel (docs/scheduler.md, "Sharded runs"). The
    run's own transaction holds the advisory lock throughout, so runs stay serialised; a run
    killed midway leaves each shard either complete or untouched, and the next run (the
    scheduler catches up on start) completes the rest.
    """
    profile = profile or load_profile()
    stamp = now_utc().replace(microsecond=0)
    t = VisitTask.__table__
    clock = _PhaseClock(timings)
    with engine.begin() as conn:
        _lock(conn)
        whole = patient_ids is None  # a run that stands for the register (full or incremental)
        # the instant up to which this run reads every change: taken before anything it reads
        mark = _change_mark(conn) if whole else None
        mode, full_reason, scoped = ("full" if whole else "partial"), None, patient_ids
        restate = whole and _rules_changed(conn, profile)
        calendar = None
        if whole and incremental:
            calendar = WorkCalendar.load(conn)
            scoped, full_reason = _incremental_scope(conn, as_of, profile, calendar)
            mode = "incremental" if scoped is not None else "full"
            clock.lap("changed patients")
        # the run's own stamp must be unique among the tasks it can touch (those of ``scoped``:
        # an index probe, not a scan, for a web write): bump by a second if an earlier run used it
        only = sa.true() if scoped is None else t.c.patient_id.in_(scoped)
        while conn.execute(sa.select(t.c.id).where(only, t.c.created_at == stamp).limit(1)).first() is not None:
            stamp += timedelta(seconds=1)
        clock.lap("start (lock, stamp)")
        # the fingerprint first: every input the run reads (calendar included) is read after it
        before = fingerprint(conn, as_of, profile) if mode == "full" else None
        clock.lap("input fingerprint")
        if calendar is None or before is not None:
            calendar = WorkCalendar.load(conn)
        extra = {"mode": mode, "full_reason": full_reason, "replanned": len(scoped) if mode == "incremental" else None}
        if (before is not None and before == _previous_fingerprint(conn)) or scoped == []:
            result = _summary(conn, as_of, profile, calendar, created=0, closed=0, cancelled=0, before=before,
                              skipped=True, patient_ids=scoped)
            if whole:
                _write_basis(conn, as_of, profile, calendar, mark, full=mode == "full")
            clock.lap("summary")
            return {**result, **extra, "shards": 0}
        days = work_day_rows(conn, as_of, profile, calendar, scoped)
        # open tasks stored before this run (the closing steps can only match those)
        earlier_open = conn.execute(sa.select(t.c.id).where(only, t.c.status == TaskStatus.OPEN.value).limit(1)).first() is not None
        ranges = _shard_ranges(conn, shards) if scoped is None and conn.dialect.name == "postgresql" else []
        if len(ranges) > 1:
            clock.lap("shard bounds")
            created, counts, spans = _run_shards(engine, ranges, profile, as_of, stamp, days, earlier_open)
            clock.lap("plan + write + closing steps (shards in parallel)")
            if timings is not None:
                for i, span in enumerate(spans, 1):
                    for name, seconds in span.items():
                        timings[f"  shard {i}/{len(spans)}: {name}"] = seconds
        else:
            _fill_work_days(conn, days)
            clock.lap("work-day table")
            # the scoped statement of a web write's run, for the changed patients (pinned SQL)
            if conn.dialect.name == "postgresql":
                created = _write_plan(conn, plan_select(profile, as_of, stamp, "postgresql", scoped, existing=True))
            else:
                created = _write(conn, plan_select(profile, as_of, stamp, "sqlite", scoped), stamp, only)
            clock.lap("plan + write (one statement)")
            counts = close_and_cancel(conn, as_of, stamp, patient_ids=scoped,
                                      earlier_open=earlier_open)
            work_day.drop(conn)
            clock.lap("closing steps")
        if restate:  # rules or profile changed: every closed joint task's 到位 by today's rule (rules.md §6.2)
            restate_re_registered(conn)
            refresh_outcomes(conn, sa.true(), set_closed_by=True)
            clock.lap("restated outcomes")
        if conn.dialect.name == "postgresql" and created > 10_000:
            conn.exec_driver_sql("ANALYZE visit_task")  # fresh statistics for the next run's plan
        clock.lap("analyze")
        # an incremental run counts the open tasks of the patients it replanned (an index probe),
        # not the register's (a scan of every task: ≈ 0.4–1.4 s at a million patients)
        result = _summary(conn, as_of, profile, calendar, created=created, closed=counts["closed"],
                          cancelled=counts["cancelled"], before=before, skipped=False, patient_ids=scoped)
        result.update(extra)
        result["shards"] = max(1, len(ranges))
        if whole:
            _write_basis(conn, as_of, profile, calendar, mark, full=mode == "full")
        clock.lap("summary + task fingerprint")
    clock.lap("commit")
    return result


INCREMENTAL_MAX_PATIENTS = 50_000  # more changed patients than this: a full run (one IN list per statement)
# Changes stamped up to this long before a run's start (or before the oldest transaction then open,
# PostgreSQL) are read again by the next run: a writer computes its stamp before it commits.
CHANGE_MARGIN = timedelta(minutes=10)
BASIS_ID = 1


def _change_mark(conn: Connection) -> datetime:
    """The instant from which the *next* run must look for changes: every change stamped earlier
    is visible to this run. A writer stamps ``updated_at`` in its transaction before it commits,
    so the mark is this run's start, or the start of the oldest transaction then open on the
    database (PostgreSQL: a long import), less ``CHANGE_MARGIN`` (a stamp taken just before
    the transaction began; SQLite: a writer waiting for the write lock)."""
    mark = now_utc()
    if conn.dialect.name == "postgresql":
        oldest = conn.execute(sa.text(
            "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        )).scalar()
        if oldest is not None:
            mark = min(mark, oldest)
    return mark - CHANGE_MARGIN


def _profile_key(profile: Profile) -> str:
    return f"{profile.tag}#{_profile_hash(profile)}"


def _calendar_key(calendar: WorkCalendar) -> dict[str, str]:
    """Per year, a hash of the operator rows of that year (a year without rows is absent)."""
    years: dict[int, list] = {}
    for day, working in sorted(calendar.overrides.items()):
        years.setdefault(day.year, []).append(f"{day.isoformat()}={int(working)}")
    return {str(y): hashlib.sha256(";".join(rows).encode()).hexdigest()[:12] for y, rows in years.items()}


def _write_basis(conn: Connection, as_of: date, profile: Profile, calendar: WorkCalendar, mark: datetime,
                 *, full: bool) -> None:
    """Record what this whole-register run covered (in its own transaction: a run that fails or is
    killed leaves the previous basis, and the next run covers the same changes again)."""
    from schedules.calendar import PACKAGE_YEARS
    from schedules.models import GenerationBasis

    b = GenerationBasis.__table__
    conn.execute(sa.delete(b).where(b.c.id == BASIS_ID))
    conn.execute(sa.insert(b).values(
        id=BASIS_ID, as_of=as_of, changes_since=mark, profile=_profile_key(profile), holidays=max(PACKAGE_YEARS),
        calendar=json.dumps(_calendar_key(calendar), sort_keys=True), full=full, run_at=now_utc(),
    ))


def _incremental_scope(conn: Connection, as_of: date, profile: Profile,
                       calendar: WorkCalendar) -> tuple[list[str] | None, str | None]:
    """The patients an incremental run replans, or (None, why) when it must be a full run."""
    from schedules.calendar import PACKAGE_YEARS
    from schedules.models import GenerationBasis

    b = GenerationBasis.__table__
    basis = conn.execute(sa.select(b).where(b.c.id == BASIS_ID)).first()
    if basis is None:
        return None, "first_run"
    if basis.profile != _profile_key(profile):
        return None, "profile_changed"
    if basis.holidays != max(PACKAGE_YEARS):
        return None, "holiday_package_changed"
    if as_of < basis.as_of:
        return None, "earlier_date"
    if as_of.year != basis.as_of.year:
        return None, "new_year"  # every patient's health check of the new year (and the old one's end)
    try:
        stored = json.loads(basis.calendar)
    except ValueError:
        return None, "calendar_changed"
    now = _calendar_key(calendar)
    years = sorted(int(y) for y in set(stored) | set(now) if stored.get(y) != now.get(y))
    ids = changed_patients(conn, since=basis.changes_since, previous=basis.as_of, as_of=as_of, profile=profile,
                           calendar_years=years, limit=INCREMENTAL_MAX_PATIENTS + 1)
    if len(ids) > INCREMENTAL_MAX_PATIENTS:
        return None, "many_changes"
    return ids, None


def changed_patients(conn: Connection, *, since: datetime, previous: date, as_of: date, profile: Profile,
                     calendar_years: list[int] = (), limit: int | None = None) -> list[str]:
    """变更患者 The patients whose tasks may differ as of ``as_of`` from those a run as of
    ``previous`` (≤ ``as_of``, same year) left, given every change stamped before ``since`` was
    read by it — one set-based statement (a union of index range scans):

    * inputs changed: ``patient``, ``follow_up``, ``health_check``, ``emergency`` rows with ``updated_at >= since``;
    * every place ``as_of`` enters the plan (``plan_select``, ``close_and_cancel``), for dates in
      ``(previous, as_of]``: registration (``eligible_sql``: ``registered_on <= as_of``), leaving
      (``left_sql``: ``status_on <= as_of``), follow-ups becoming usable (``usable_sql``:
      ``visit_on <= as_of``), health checks counting (``checked_on <= as_of``), an injection
      becoming the plan's basis (``lai_last_on <= as_of``), an emergency's end becoming known to the
      plan (``post_emergency``: end date ``<= as_of``), and the 12-month incident window
      (``incident_cutoff``: a 肇事/肇祸 dated in ``[cutoff(previous), cutoff(as_of))`` drops out);
      the health-check year and ``year_ended`` change only on a new year (a full run);
    * operator calendar years changed: patients with an open task whose nominal due date lies in
      that year or early enough in the next that its shift reaches back into it (until March 1).
    """
    p, f, hc, t = Patient.__table__, FollowUp.__table__, HealthCheck.__table__, VisitTask.__table__
    e = Emergency.__table__
    parts = [
        sa.select(p.c.patient_id).where(p.c.updated_at >= since),
        sa.select(f.c.patient_id).where(f.c.updated_at >= since),
        sa.select(hc.c.patient_id).where(hc.c.updated_at >= since),
        sa.select(e.c.patient_id).where(e.c.updated_at >= since),
    ]
    if as_of > previous:
        def window(column) -> sa.ColumnElement[bool]:
            return sa.and_(column > previous, column <= as_of)

        parts += [
            sa.select(p.c.patient_id).where(window(p.c.registered_on)),
            sa.select(p.c.patient_id).where(window(p.c.status_on)),
            sa.select(p.c.patient_id).where(window(p.c.lai_last_on)),
            sa.select(f.c.patient_id).where(window(f.c.visit_on)),
            sa.select(hc.c.patient_id).where(window(hc.c.checked_on)),
            sa.select(e.c.patient_id).where(window(local_day(e.c.ended_at))),
        ]
        lo, hi = incident_cutoff(profile.roles, previous), incident_cutoff(profile.roles, as_of)
        if hi > lo:  # the same incidents as the plan's ``incident`` (registry.teams)
            parts.append(sa.select(f.c.patient_id).where(
                f.c.visit_on >= lo, f.c.visit_on < hi, incident_sql(f)))
    for year in calendar_years:
        parts.append(sa.select(t.c.patient_id).where(
            t.c.status == TaskStatus.OPEN.value, t.c.nominal_due_on.between(date(year, 1, 1), date(year + 1, 3, 1))))
    if limit is not None:
        # first count each part's rows up to ``limit`` (index range scans stopped early): after a
        # large import one part holds millions of rows, and de-duplicating them all would cost
        # seconds only to learn that a full run is due. A part over the limit returns ``limit``
        # patients: more rows than that of one kind make it a full run (the caller's cap).
        counts = [sa.select(sa.func.count()).select_from(part.limit(limit).subquery()).scalar_subquery()
                  for part in parts]
        sizes = conn.execute(sa.select(*counts)).one()
        if max(sizes) >= limit:
            return conn.execute(parts[sizes.index(max(sizes))].limit(limit)).scalars().all()
    union = sa.union(*parts).subquery("changed")
    stmt = sa.select(union.c.patient_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt).scalars())


def _shard_ranges(conn: Connection, shards: int | None) -> list[tuple[str | None, str | None]]:
    """The patient_id ranges of a sharded run: cut at evenly spaced patients of the primary-key
    index (its order need not be byte order: any cuts partition the byte-ordered key space)."""
    p = Patient.__table__
    patients = conn.execute(sa.select(sa.func.count()).select_from(p)).scalar_one()
    n = shard_count(patients, shards)
    if n <= 1:
        return []
    cut = sa.select(p.c.patient_id).order_by(p.c.patient_id).offset(sa.bindparam("o")).limit(1)
    cuts = sorted({conn.execute(cut, {"o": patients * k // n}).scalar_one() for k in range(1, n)},
                  key=lambda pid: pid.encode())
    bounds = [None, *cuts, None]
    return list(zip(bounds[:-1], bounds[1:]))


def _run_shards(engine: Engine, ranges, profile: Profile, as_of: date, stamp: datetime, days: list[dict],
                earlier_open: bool) -> tuple[int, dict, list[dict[str, float]]]:
    """Plan, write and close every shard in its own connection and transaction, in parallel threads
    (the database does the work; the driver releases the GIL while it waits). Returns the
    created count, the closing counts, summed, and each shard's phases (seconds). The first
    failure is raised after every shard has ended (a shard that committed stays: its patients
    are complete)."""
    from concurrent.futures import ThreadPoolExecutor

    def shard(patient_range) -> tuple[int, dict, dict[str, float]]:
        span: dict[str, float] = {}
        clock = _PhaseClock(span)
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": SHARD_LOCK_KEY})
            _batch_settings(conn)
            _fill_work_days(conn, days)
            clock.lap("work-day table")
            select = plan_select(profile, as_of, stamp, "postgresql", existing=True, patient_range=patient_range)
            created = _write_plan(conn, select)
            clock.lap("plan + write")
            counts = close_and_cancel(conn, as_of, stamp, earlier_open=earlier_open,
                                      patient_range=patient_range)
            work_day.drop(conn)
            clock.lap("closing steps")
        clock.lap("commit")
        return created, counts, span

    with ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="generate-shard") as pool:
        futures = [pool.submit(shard, r) for r in ranges]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    results = [f.result() for f in futures]
    return (sum(c for c, _, _ in results),
            {k: sum(r[k] for _, r, _ in results) for k in ("cancelled", "closed")},
            [span for _, _, span in results])


class _PhaseClock:
    """Wall-clock seconds per phase into ``timings`` (a no-op without it)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now


def _summary(conn: Connection, as_of: date, profile: Profile, calendar: WorkCalendar, *, created: int, closed: int,
             cancelled: int, before: str | None, skipped: bool, patient_ids: list[str] | None = None) -> dict:
    """Counts of the stored tasks, in one scan of ``visit_task`` that also yields its fingerprint
    mark; with ``patient_ids`` (a web write's run), of those patients' tasks only (an index probe:
    a web write must not scan the province's tasks)."""
    t = VisitTask.__table__
    is_open = t.c.status == TaskStatus.OPEN.value
    est_year = sa.case((sa.and_(is_open, t.c.calendar_estimated == sa.true()), sa.extract("year", t.c.nominal_due_on)))
    pg = conn.dialect.name == "postgresql"
    xmin_sum = sa.func.sum(sa.cast(sa.cast(sa.literal_column("xmin"), sa.Text), sa.BigInteger)) if pg else sa.literal(0)
    groups = conn.execute(
        sa.select(t.c.kind, is_open.label("is_open"), est_year.label("est_year"), sa.func.count(), xmin_sum)
        .where(sa.true() if patient_ids is None else t.c.patient_id.in_(patient_ids))
        .group_by(t.c.kind, is_open, est_year)
    ).all()
    by_kind: dict[str, int] = {}
    estimated_years: dict[int, int] = {}
    for kind, open_, year, n, _ in groups:
        if open_:
            by_kind[kind] = by_kind.get(kind, 0) + n
            if year is not None:
                estimated_years[int(year)] = estimated_years.get(int(year), 0) + n
    by_kind = dict(sorted(by_kind.items()))
    tasks_mark = f"{sum(g[3] for g in groups)}:{sum(int(g[4] or 0) for g in groups)}"
    if before is None or skipped:
        fp = before
    else:
        fp = with_tasks_mark(before, tasks_mark)
    years = unknown_years(calendar, set(estimated_years))
    warnings = [
        f"{y}年节假日表未知：该年到期日只按周末顺延（估计日历），导入该年节假日表后将重算"
        for y in years
    ]
    return {
        "as_of": as_of.isoformat(),
        "profile": profile.tag,
        "created": created,
        "closed": closed,
        "cancelled": cancelled,
        "open": sum(by_kind.values()),
        "open_by_kind": by_kind,
        "calendar_estimated": sum(estimated_years.values()),
        "warnings": warnings,
        "skipped": skipped,
        "fingerprint": fp,
    }
