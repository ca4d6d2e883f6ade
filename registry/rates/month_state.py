"""患者月状态 Patient-month state: per patient, the year-to-date follow-up aggregates as of a closed month's end.

Issue 3: "A patient-month state table (one row per patient per closed month, as of month end)
is welcome where it makes closed months cheap". The indicators of month M (indicators.md: as-of
date D = last day of M, window W = [Jan 1 of Y, D], only follow-ups on/after registration) need
per patient just three aggregates of their follow-ups in W (``registry.rates.indicators``): ``mask``
(bit OR), ``latest_key`` (MAX) and ``n_complete`` (SUM of complete ones, ``count`` variant).
All three are associative, so

    state(M) = merge(state(M−1), aggregates of the follow-ups dated in month M)

and January starts from scratch (W restarts each year). Stored here only for **closed** months
(D < today, Asia/Shanghai, ``today`` passed in), one row per patient **在册 at D**
(``patient_month_state``), together with the register fields the indicators need (village,
registration date, diagnosis) and a ``HEALTH_CHECKED`` bit: the indicator query of a closed
month is then one scan of that month's rows grouped by village, with no join at all
(docs/indicators.md "Patient-month state"). The register fields cannot go stale unnoticed:
every register change stamps ``patient.updated_at`` (see Freshness).

Differences to the live per-row expressions: a complete follow-up sets the bit of *its*
quarter even when that quarter has not ended by D (the live query only sets bits of ended
quarters); ``standard_condition`` looks only at ended quarters, so the counts are the same.

Freshness (never stale numbers): every writer sets ``follow_up.updated_at`` (web insert: the
model default; importer: the default on insert, ``updated_at = now`` in ``ON CONFLICT DO
UPDATE`` when a row changed) and ``patient.updated_at`` (registration, status, village changes).
Health checks have no timestamp and are only ever inserted: the highest id in the build is
the mark. ``patient_month_state_build`` keeps per month the stamp and mark of its build. Before
a month's state is used, ``ensure`` recomputes — set-based, from scratch over W — the rows of
every patient with a follow-up in W or a patient row updated at/after that stamp, or a health
check in W above the mark (or the whole month when there are many), then moves stamp and mark. The stamp is taken conservatively: the
earlier of this transaction's start and the start of any other open transaction on the
database (a writer stamps ``updated_at`` inside its transaction but commits later), minus
``STAMP_MARGIN``. Nothing in the application deletes follow-ups, health checks or patients
(checked for issue 3); a future deletion must call ``invalidate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from registry import models, rules
from registry.rates.indicators import HEALTH_CHECKED, MASK_BITS, bit_or_agg, flags_expression, follow_up_aggregates
from registry.models import UTCDateTime, utcnow
from registry.attempts import on_or_after_registration_sql
from registry.register import in_register_sql

# Clock granularity / skew between the writers' clock (Python) and the database's.
STAMP_MARGIN = timedelta(seconds=2)
# Above this many changed patients a month is rebuilt instead of patched patient by patient.
PATCH_LIMIT = 20_000
_LOCK_KEY = 0x4A46_5354  # "JFST": one state writer at a time (PostgreSQL advisory lock)


class PatientMonthState(SQLModel, table=True):
    """患者月状态 One 在册 patient at the end of a closed month: register fields and year-to-date aggregates."""

    __tablename__ = "patient_month_state"
    __table_args__ = (sa.Index("ix_patient_month_state_counts", "year_month", "village_code", "flags"),)

    year_month: int = Field(primary_key=True)  # Y·100 + M, e.g. 202610
    patient_id: str = Field(primary_key=True, max_length=64)
    # the register as of the build (kept current through patient.updated_at)
    village_code: str = Field(max_length=32)
    registered_on: date
    diagnosis: str = Field(max_length=40)
    # registry.rates.indicators ANY_* bits, the bit of every quarter with a complete follow-up, HEALTH_CHECKED
    mask: int
    latest_key: int | None = Field(default=None, sa_type=sa.BigInteger)  # MAX key of the complete follow-ups
    n_complete: int = 0  # complete follow-ups in W (规范管理 ``count`` variant)
    # the bit of every count the patient is in at D (registry.rates.indicators.flags_expression):
    # the month is counted by one index-only scan of (year_month, village_code, flags)
    flags: int = 0


class PatientMonthStateBuild(SQLModel, table=True):
    """月状态生成记录 When a month's state was last brought up to date (its freshness marks)."""

    __tablename__ = "patient_month_state_build"

    year_month: int = Field(primary_key=True)
    built_at: datetime = Field(sa_type=UTCDateTime)  # follow-up / patient changes at/after this are not in it
    health_check_id: int = Field(default=0, sa_type=sa.BigInteger)  # health checks with a higher id are not in it
    rows: int = 0
    # the rules the rows were computed by (registry.rules.rules_version): another version is not used
    rules_version: str = Field(default="", max_length=80)


@dataclass(frozen=True)
class Refresh:
    """What ``ensure`` did: ``fresh`` / ``patched`` (n patients recomputed) / ``scratch`` / ``incremental``."""

    year_month: int
    action: str
    patients: int = 0


def year_month(period) -> int:
    return period.year * 100 + period.month


def is_closed(period, today: date) -> bool:
    """A month is closed once its last day is before today (Asia/Shanghai ``today``, passed in)."""
    return period.as_of < today


# --------------------------------------------------------------------------- SQL

STATE_COLUMNS = ["year_month", "patient_id", "village_code", "registered_on", "diagnosis", "mask", "latest_key",
                 "n_complete"]
# the stored format of a row beyond the rules (``state_version``): 2 = with ``flags``
STATE_FORMAT = 2


def _follow_up_aggregate(period, first: date, patient_ids: list[str] | None = None):
    """Per patient: the aggregates of their follow-ups dated in [first, D] and on/after their registration."""
    p = models.Patient.__table__
    f, mask, latest = follow_up_aggregates(period, all_quarters=True)
    where = [f.c.visit_on >= first, f.c.visit_on <= period.as_of, on_or_after_registration_sql(f, p)]  # registry.attempts
    if patient_ids is not None:
        where.append(f.c.patient_id.in_(patient_ids))
    return (
        sa.select(f.c.patient_id.label("patient_id"), bit_or_agg(mask, MASK_BITS).label("mask"),
                  sa.func.max(latest).label("latest_key"), sa.func.count(latest).label("n_complete"))
        .select_from(f.join(p, p.c.patient_id == f.c.patient_id))
        .where(*where)
        .group_by(f.c.patient_id)
        .subquery("fa")
    )


def _health_checked(period, first: date, patient_ids: list[str] | None = None):
    """Patients with a health check dated in [first, D] (indicators.md 体检率: "dated in W")."""
    h = models.HealthCheck.__table__
    where = [h.c.checked_on >= first, h.c.checked_on <= period.as_of]
    if patient_ids is not None:
        where.append(h.c.patient_id.in_(patient_ids))
    return sa.select(h.c.patient_id).where(*where).group_by(h.c.patient_id).subquery("hc")


def _register(period, villages: list[str] | None, patient_ids: list[str] | None):

    p = models.Patient.__table__
    where = [in_register_sql(p, period.as_of)]
    if villages is not None:
        where.append(p.c.village_code.in_(villages))
    if patient_ids is not None:
        where.append(p.c.patient_id.in_(patient_ids))
    return p, where


def scratch_query(period, villages: list[str] | None = None, patient_ids: list[str] | None = None):
    """State rows of month M from scratch: every 在册 patient at D with the aggregates of W."""
    p, where = _register(period, villages, patient_ids)
    fa = _follow_up_aggregate(period, period.start, patient_ids)
    hc = _health_checked(period, period.start, patient_ids)
    return (
        sa.select(p.c.patient_id, p.c.village_code, p.c.registered_on, p.c.diagnosis,
                  (sa.func.coalesce(fa.c.mask, 0) + sa.case((hc.c.patient_id.is_not(None), HEALTH_CHECKED), else_=0))
                  .label("mask"),
                  fa.c.latest_key.label("latest_key"),
                  sa.func.coalesce(fa.c.n_complete, 0).label("n_complete"))
        .select_from(p.outerjoin(fa, fa.c.patient_id == p.c.patient_id).outerjoin(hc, hc.c.patient_id == p.c.patient_id))
        .where(*where)
    )


def merged_query(period, villages: list[str] | None = None):
    """State rows of month M from state(M−1) and month M's own follow-ups and health checks.

    Every 在册 patient at D (live register) LEFT JOIN their state(M−1) row (absent: registered
    in M, no follow-up before M counts) LEFT JOIN the aggregates of the follow-ups dated in M:
    mask OR mask, the larger latest key, the sum of complete follow-ups; the health-check bit
    from all of W. No grouping of old rows.
    """
    s = PatientMonthState.__table__
    p, where = _register(period, villages, None)
    first = date(period.year, period.month, 1)
    old = s.alias("old")
    fa = _follow_up_aggregate(period, first)
    # health checks count from Jan 1 even before registration (indicators.md "dated in W"), so a
    # patient registered in M (no state(M−1) row) may have one dated before M: take all of W
    hc = _health_checked(period, period.start)
    old_key, new_key = old.c.latest_key, fa.c.latest_key
    latest = sa.case((new_key.is_(None), old_key), (sa.or_(old_key.is_(None), new_key > old_key), new_key),
                     else_=old_key)
    mask = (sa.func.coalesce(old.c.mask, 0).op("|")(sa.func.coalesce(fa.c.mask, 0))
            .op("|")(sa.case((hc.c.patient_id.is_not(None), HEALTH_CHECKED), else_=0)))
    return (
        sa.select(p.c.patient_id, p.c.village_code, p.c.registered_on, p.c.diagnosis, mask.label("mask"),
                  latest.label("latest_key"),
                  (sa.func.coalesce(old.c.n_complete, 0) + sa.func.coalesce(fa.c.n_complete, 0)).label("n_complete"))
        .select_from(
            p.outerjoin(old, sa.and_(old.c.year_month == year_month(period.previous()), old.c.patient_id == p.c.patient_id))
            .outerjoin(fa, fa.c.patient_id == p.c.patient_id)
            .outerjoin(hc, hc.c.patient_id == p.c.patient_id))
        .where(*where)
    )


def _insert_from(conn: sa.Connection, period, select) -> int:
    """Write month ``period``'s rows computed by ``select`` (the columns of ``STATE_COLUMNS[1:]``),
    with their ``flags`` as of the month's end."""
    sub = select.subquery("src")
    stmt = sa.insert(PatientMonthState.__table__).from_select(
        [*STATE_COLUMNS, "flags"],
        sa.select(sa.literal(year_month(period), sa.Integer), *[sub.c[c] for c in STATE_COLUMNS[1:]],
                  flags_expression(sub, period)))
    return conn.execute(stmt).rowcount


def _stamp(conn: sa.Connection) -> datetime:
    """The follow-up / patient freshness stamp of a build starting now: no change stamped before it
    can be missing (other open transactions may commit changes stamped earlier, hence their start)."""
    if conn.dialect.name == "postgresql":
        started = conn.exec_driver_sql(
            "SELECT least(now(), coalesce((SELECT min(xact_start) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL), now()))"
        ).scalar_one()
        return min(started, utcnow()) - STAMP_MARGIN
    return utcnow() - STAMP_MARGIN


def _health_mark(conn: sa.Connection) -> int:
    """The highest health-check id included in a build starting now.

    ``health_check`` has no ``updated_at`` (rows are only ever inserted: the importer does
    nothing on a duplicate, the web form inserts). On PostgreSQL a SHARE lock (held until the
    build commits, blocking health-check inserts for those seconds) waits for open inserting
    transactions, so no row below the mark can commit later; SQLite has a single writer.
    """
    h = models.HealthCheck.__table__
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE health_check IN SHARE MODE")
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(h.c.id), 0))).scalar_one())


def _lock(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")


def state_version() -> str:
    """规则版本 The rule version the state rows depend on: the rule homes' (registry.rules,
    registry.register, registry.attempts). The rule profile does not enter the rows (its
    standard-management variant and targets are applied when counting; both variants' bits are in
    ``flags``), nor does a new stored format (``STATE_FORMAT``) pass for the old one."""
    return f"{rules.rules_version()}/state-{STATE_FORMAT}"


def _build_row(conn: sa.Connection, ym: int):
    """The month's build (stamp, mark), or None when missing or built by other rules (a rule
    change rebuilds the month instead of serving rows computed by the old rules)."""
    b = PatientMonthStateBuild.__table__
    row = conn.execute(sa.select(b.c.built_at, b.c.health_check_id, b.c.rules_version).where(b.c.year_month == ym)).first()
    return None if row is None or row.rules_version != state_version() else row


def _set_build(conn: sa.Connection, ym: int, stamp: datetime, mark: int, analyze: bool = False) -> None:
    b, s = PatientMonthStateBuild.__table__, PatientMonthState.__table__
    rows = conn.execute(sa.select(sa.func.count()).select_from(s).where(s.c.year_month == ym)).scalar_one()
    if analyze and conn.dialect.name == "postgresql":
        # a month's worth of new rows: without fresh statistics the planner expects a handful
        conn.exec_driver_sql("ANALYZE patient_month_state")
    conn.execute(sa.delete(b).where(b.c.year_month == ym))
    conn.execute(sa.insert(b).values(year_month=ym, built_at=stamp, health_check_id=mark, rows=rows,
                                     rules_version=state_version()))


def changed_patients(conn: sa.Connection, period, built) -> list[str]:
    """Patients changed since a build (``built``: its row): a follow-up in W or the patient row
    updated at/after its stamp, or a health check in W above its mark (index lookups only)."""
    f, p, h = models.FollowUp.__table__, models.Patient.__table__, models.HealthCheck.__table__
    since, mark = built[0], built[1]
    stmt = sa.union(
        sa.select(f.c.patient_id).where(f.c.updated_at >= since, f.c.visit_on >= period.start,
                                        f.c.visit_on <= period.as_of),
        sa.select(p.c.patient_id).where(p.c.updated_at >= since),
        sa.select(h.c.patient_id).where(h.c.id > mark, h.c.checked_on >= period.start, h.c.checked_on <= period.as_of),
    )
    return [r[0] for r in conn.execute(stmt)]


def _build_scratch(conn: sa.Connection, period, stamp: datetime, mark: int) -> None:
    ym = year_month(period)
    conn.execute(sa.delete(PatientMonthState.__table__).where(PatientMonthState.__table__.c.year_month == ym))
    _insert_from(conn, period, scratch_query(period))
    _set_build(conn, ym, stamp, mark, analyze=True)


def _patch(conn: sa.Connection, period, ids: list[str], stamp: datetime, mark: int) -> int:
    """Recompute the rows of the patients ``ids`` from scratch; returns how many (−1: month rebuilt)."""
    ym = year_month(period)
    if len(ids) > PATCH_LIMIT:
        _build_scratch(conn, period, stamp, mark)
        return -1
    s = PatientMonthState.__table__
    for i in range(0, len(ids), 5000):
        chunk = ids[i:i + 5000]
        conn.execute(sa.delete(s).where(s.c.year_month == ym, s.c.patient_id.in_(chunk)))
        _insert_from(conn, period, scratch_query(period, patient_ids=chunk))
    _set_build(conn, ym, stamp, mark)
    return len(ids)


def ensure(engine: Engine, period, today: date, *, incremental: bool = True) -> Refresh:
    """月状态更新 Bring the state of the closed month ``period`` up to date; build it when missing.

    Missing: merged from state(M−1) when that exists and ``incremental`` (brought up to date
    first), else from scratch over W (always for January). Present: the patients changed since
    its build are recomputed (or the month rebuilt when there are more than ``PATCH_LIMIT``).
    The freshness check alone is three index lookups.
    """
    from registry.errors import InvalidInput  # noqa: PLC0415

    if not is_closed(period, today):
        raise InvalidInput.single("MONTH_NOT_CLOSED", f"{period.label} 尚未结束，不生成月状态（截至 {today.isoformat()}）",
                                  column="month", value=period.label)
    ym = year_month(period)
    with engine.connect() as conn:  # the common case: fresh, read-only, no lock
        built = _build_row(conn, ym)
        if built is not None and not changed_patients(conn, period, built):
            return Refresh(ym, "fresh")
    with engine.begin() as conn:
        _lock(conn)
        stamp, mark = _stamp(conn), _health_mark(conn)
        built = _build_row(conn, ym)
        if built is not None:
            ids = changed_patients(conn, period, built)
            if not ids:
                return Refresh(ym, "fresh")
            n = _patch(conn, period, ids, stamp, mark)
            return Refresh(ym, "scratch" if n < 0 else "patched", max(n, 0))
        previous = period.previous()
        prev_built = _build_row(conn, year_month(previous)) if incremental and period.month > 1 else None
        if prev_built is None:
            _build_scratch(conn, period, stamp, mark)
            return Refresh(ym, "scratch")
        ids = changed_patients(conn, previous, prev_built)
        if ids:
            _patch(conn, previous, ids, stamp, mark)
        conn.execute(sa.delete(PatientMonthState.__table__).where(PatientMonthState.__table__.c.year_month == ym))
        _insert_from(conn, period, merged_query(period))
        _set_build(conn, ym, stamp, mark, analyze=True)
        return Refresh(ym, "incremental")


def is_fresh(conn: sa.Connection, period) -> bool:
    """The month's state exists and nothing changed since its build (the freshness check alone)."""
    built = _build_row(conn, year_month(period))
    return built is not None and not changed_patients(conn, period, built)


def invalidate(engine: Engine, *, from_year_month: int | None = None) -> int:
    """Drop the state of every month (or of ``from_year_month`` on); the next use rebuilds it.

    For changes the freshness marks cannot show: deleting follow-ups, health checks or patients
    (nothing in the application does), bulk SQL fixes that bypass the writers, a changed rule."""
    s, b = PatientMonthState.__table__, PatientMonthStateBuild.__table__
    with engine.begin() as conn:
        _lock(conn)
        cond_s = sa.true() if from_year_month is None else s.c.year_month >= from_year_month
        cond_b = sa.true() if from_year_month is None else b.c.year_month >= from_year_month
        conn.execute(sa.delete(b).where(cond_b))
        return conn.execute(sa.delete(s).where(cond_s)).rowcount


def prune(engine: Engine, *, before_year_month: int) -> int:
    """月状态清理 Drop the state of every month before ``before_year_month`` (retention).

    One month of state holds a row per 在册 patient (about 6M nationally), so it is not kept
    forever. ``registry.rates.reporting.publish_month`` calls this once month M is frozen, keeping
    M itself: the open month M+1 merges onto it and closed month M+1 is built from it
    incrementally. Older months are frozen (their counts live in ``indicator_snapshot``); an
    older month asked for live (another 规范管理 variant, an unfrozen month) is rebuilt from
    scratch by ``ensure`` on demand. Returns the state rows removed."""
    s, b = PatientMonthState.__table__, PatientMonthStateBuild.__table__
    with engine.begin() as conn:
        _lock(conn)
        conn.execute(sa.delete(b).where(b.c.year_month < before_year_month))
        return conn.execute(sa.delete(s).where(s.c.year_month < before_year_month)).rowcount


def per_patient_from_state(period, villages: list[str] | None, *, merge_month: bool = False):
    """患者汇总（月状态） The columns of ``indicators.per_patient_query`` (``mask`` also carries
    ``HEALTH_CHECKED``), one row per 在册 patient at D, from the state — no join at all.

    ``merge_month=False``: the closed month's own state. ``merge_month=True`` (an open month M
    after January): state(M−1) merged with month M's follow-ups and health checks, live.
    """
    if merge_month:
        return merged_query(period, villages)
    s = PatientMonthState.__table__
    where = [s.c.year_month == year_month(period)]
    if villages is not None:
        where.append(s.c.village_code.in_(villages))
    return sa.select(*[s.c[c] for c in STATE_COLUMNS[1:]]).where(*where)


def flag_rows(period, villages: list[str] | None):
    """指标标志行 ``village_code, flags`` of the closed month's state rows (of ``villages``, default
    all), for ``indicators.flag_counts_query``."""
    s = PatientMonthState.__table__
    where = [s.c.year_month == year_month(period)]
    if villages is not None:
        where.append(s.c.village_code.in_(villages))
    return sa.select(s.c.village_code, s.c.flags).where(*where)


def state_rows_digest(engine: Engine, period) -> tuple[int, int, int, int]:
    """(rows, Σ mask, Σ latest_key mod 10⁹, Σ n_complete) of a month's state: compares two builds cheaply."""
    s = PatientMonthState.__table__
    with engine.connect() as conn:
        row = conn.execute(sa.select(sa.func.count(), sa.func.sum(s.c.mask), sa.func.sum(s.c.latest_key % 1_000_000_007),
                                     sa.func.sum(s.c.n_complete)).where(s.c.year_month == year_month(period))).one()
    return tuple(int(v or 0) for v in row)


__all__ = ["PatientMonthState", "PatientMonthStateBuild", "Refresh", "ensure", "invalidate", "prune", "is_fresh",
           "is_closed", "per_patient_from_state", "flag_rows", "changed_patients", "year_month", "scratch_query", "merged_query"]
