"""考核指标 The national indicator set, as data, computed set-based for every region at once.

Definitions: indicators.md (populations, indicators, 规范管理 variants, targets); JSON shape:
contract.md ``jingfang rates --json``. A report is for a region and a month M of year Y:
as-of date D = last day of M, window W = [Jan 1 of Y, D]; only follow-ups dated inside W and
on or after the patient's registration count (indicators.md, first paragraph).

How it is computed (one grouped statement for every region of the report, never a loop per
patient; docs/indicators.md has the details):

1. ``per_patient_query`` — every 在册 patient LEFT JOIN their follow-ups in W, grouped by
   patient, in ONE pass: ``mask`` ORs per-row bits (在管, 面访, 心理疏导, 康复, 肇事肇祸, one bit
   per quarter for the ``quarterly`` variant) and ``latest_key`` finds the *latest complete
   follow-up* with a single ``MAX`` over a sortable key (day number, entry id, then four flag
   bits of that row) — no window function, no self-join. Same-day ties go to the row entered
   last (highest ``id``), indicators.md "latest".
2. ``village_counts_query`` counts every numerator and denominator with ``SUM(CASE …)`` over
   those rows (LEFT JOIN the health checks in W), grouped by village.
3. villages are rolled up to townships and the county in Python (a few hundred rows).

Closed months can be frozen (``registry.rates.snapshots``): a published report never changes
silently; compute_rates reads the frozen counts when they exist. A closed month that is not
frozen is counted from its patient-month state (``registry.rates.month_state``: the per-patient rows
of step 1 precomputed, brought up to date before use), an open month after January from
state(M−1) plus month M's follow-ups; ``plain=`` / ``use_state=False`` compute live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from registry import models
from registry.codes import Adherence, Diagnosis, HospitalStatus, JointOutcome
from registry.errors import InvalidInput
from registry.periods import Period
from registry.profile import profile_document
from registry.regions import RegionTree
from registry.attempts import ID_FACTOR, on_or_after_registration_sql, order_key_sql
from registry.register import at_home_sql, in_register_sql
from registry.rules import complete_sql, face_to_face_sql, incident_sql, stable_sql

VARIANTS = ("quarterly", "count")
DEFAULT_VARIANT = "quarterly"
VARIANT_NAMES = {"quarterly": "按季度", "count": "按次数"}  # what a person reads and may type
VARIANT_LABELS = {
    "quarterly": "按季度：当年每个已结束且在建档日期之后结束的季度内均有至少1次有效随访，"
                 "且当年内至少有1次有效随访（建档不满14天者除外）",
    "count": "按次数：当年内有效随访次数 ≥ ⌈月份/3⌉（由“每年至少随访4次”按月折算）",
}


@dataclass(frozen=True)
class Indicator:
    """指标 One indicator: key, Chinese name, numerator and denominator in plain Chinese, unit.

    ``numerator_column`` / ``denominator_column`` name the counts of ``RegionCounts``;
    ``unit`` is ``count`` (no rate), ``percent`` or ``permille`` (‰: the rate is numerator × 1000 /
    denominator; the numerator is the count itself, indicators.md [2026-12]).
    """

    key: str
    name: str
    numerator: str
    denominator: str
    unit: str
    numerator_column: str
    denominator_column: str | None


# indicators.md §Indicators, in the order of the table.
INDICATORS: tuple[Indicator, ...] = (
    Indicator("registered", "在册患者数", "截至月末在册的患者数（累计建档 − 死亡 − 迁出）", "—",
              "count", "registered", None),
    # indicators.md [2026-12]: the numerator is the count itself; the rate is numerator × 1000 / denominator (‰)
    Indicator("reported_prevalence", "报告患病率", "在册患者数（率 = 在册患者数 × 1000 ÷ 常住人口，单位‰）",
              "辖区常住人口数", "permille", "registered", "population"),
    Indicator("management_rate", "在册患者管理率", "当年内至少有1次有效随访的在册患者数（在管）", "在册患者数",
              "percent", "managed", "registered"),
    Indicator("standard_management_rate", "在册患者规范管理率", "规范管理的在册患者数（规则见脚注）", "在册患者数",
              "percent", "standard", "registered"),
    Indicator("treatment_rate", "在册患者治疗率（服药率）",
              "最近一次有效随访服药依从性为规律或间断、或正在住院的在册患者数", "在册患者数",
              "percent", "treated", "registered"),
    Indicator("regular_medication_rate", "在册患者规律服药率", "最近一次有效随访服药依从性为规律服药的在册患者数",
              "在册患者数", "percent", "regular", "registered"),
    Indicator("schizophrenia_treatment_rate", "精神分裂症治疗率", "按治疗率口径计算的在册精神分裂症患者治疗人数",
              "在册精神分裂症患者数", "percent", "schizophrenia_treated", "schizophrenia"),
    Indicator("stable_rate", "病情稳定率", "最近一次有效随访分类为“稳定”的居家患者数",
              "居家患者数（在管且最近一次有效随访未住院）", "percent", "stable", "at_home"),
    Indicator("face_to_face_rate", "面访率", "当年内至少有1次有效面访（门诊或家庭访视）的在册患者数", "在册患者数",
              "percent", "face_to_face", "registered"),
    Indicator("health_check_rate", "体检率", "当年内有健康体检记录的在册患者数", "在册患者数",
              "percent", "health_checked", "registered"),
    Indicator("rehabilitation_rate", "居家患者社区康复参与率", "当年内随访记录参加社区康复的居家患者数", "居家患者数",
              "percent", "rehabilitation", "at_home"),
    # indicators.md [2026-12]: over 居家 (台山 plan, "对50%以上居家患者及家属提供心理疏导")
    Indicator("psych_support_rate", "患者及家属心理疏导率", "当年内随访记录对患者或家属进行心理疏导的居家患者数",
              "居家患者数", "percent", "psych_support", "at_home"),
    Indicator("incident_rate", "肇事肇祸率", "当年内随访记录肇事或肇祸次数大于0的在册患者数", "在册患者数",
              "percent", "incident", "registered"),
    # indicators.md [2026-12], rules.md §6.2: counted over closed joint visit tasks, not patients
    Indicator("joint_visit_complete_rate", "联合随访到位率", "当年内由随访结束且联合到位（家庭访视、各所需角色均到场）的联合入户任务数",
              "当年内由随访结束的联合入户任务数", "percent", "joint_complete", "joint_closed"),
)
INDICATOR_KEYS = tuple(i.key for i in INDICATORS)
BY_KEY = {i.key: i for i in INDICATORS}

# Counts summed per village by the grouped query (population comes from the region table).
COUNT_COLUMNS = (
    "registered", "managed", "standard", "treated", "regular", "schizophrenia", "schizophrenia_treated",
    "at_home", "stable", "face_to_face", "health_checked", "rehabilitation", "psych_support", "incident",
    "joint_closed", "joint_complete",  # from ``joint_visit_counts`` (visit tasks, not patients)
)
# the counts of the per-patient statement (``village_counts_query``); the joint-visit ones come from tasks
PATIENT_COUNT_COLUMNS = COUNT_COLUMNS[:-2]


# --------------------------------------------------------------------------- periods

# ``Period`` (the statistical month) lives in registry/periods.py.


# --------------------------------------------------------------------------- profile setting


def resolve_variant(variant: str | None = None) -> str:
    """规范管理口径 The argument, else the profile's ``standard_management_variant``, else quarterly."""
    variant = variant or profile_document().get("standard_management_variant") or DEFAULT_VARIANT
    variant = {name: key for key, name in VARIANT_NAMES.items()}.get(variant, variant)  # 按季度 / 按次数
    if variant not in VARIANTS:
        raise InvalidInput.single("BAD_VARIANT", f"规范管理口径“{variant}”无效，应为 按季度 或 按次数",
                                  column="variant", value=variant)
    return variant


# --------------------------------------------------------------------------- regions


# ``RegionTree`` lives in registry/regions.py.


# --------------------------------------------------------------------------- SQL
# The rules themselves (complete, face-to-face, stable, 在册, 居家, the latest order) live in their
# homes: registry.rules, registry.register, registry.attempts.

# Bits of the latest complete follow-up packed into its sort key (registry.attempts.order_key_sql:
# key = day·10¹² + id·100 + bits).
BIT_TREATED, BIT_REGULAR, BIT_AT_HOME, BIT_STABLE = 1, 2, 4, 8


def _flag(cond, value: int = 1):
    return sa.case((cond, value), else_=0)


class bit_or_agg(FunctionElement):
    """按位或聚合 OR of an integer bit mask over a group: PostgreSQL ``bit_or``; SQLite has none,
    so there it is ``MAX(x & 1) | MAX(x & 2) | …`` over the ``bits`` used."""

    type = sa.Integer()
    inherit_cache = True
    name = "bit_or_agg"

    def __init__(self, expr, bits: int):
        self.bits = bits
        super().__init__(expr)


@compiles(bit_or_agg)
def _bit_or_default(element, compiler, **kw):
    return "bit_or(%s)" % compiler.process(element.clauses, **kw)


@compiles(bit_or_agg, "sqlite")
def _bit_or_sqlite(element, compiler, **kw):
    arg = compiler.process(element.clauses, **kw)
    return "(" + " | ".join(f"max(({arg}) & {1 << b})" for b in range(element.bits)) + ")"


# Bits of the per-patient "any follow-up in W" mask (one bit_or per patient instead of one
# aggregate per population set): 在管, 面访, 心理疏导, 康复, 肇事肇祸, then one bit per quarter.
ANY_COMPLETE, ANY_F2F, ANY_PSYCH, ANY_REHAB, ANY_INCIDENT = 1, 2, 4, 8, 16
QUARTER_BITS = (32, 64, 128, 256)
MASK_BITS = 9
# Only in the patient-month state's mask (registry.rates.month_state): a health check dated in W.
HEALTH_CHECKED = 512


def follow_up_aggregates(period: Period, all_quarters: bool = False):
    """随访汇总 Per-row ``mask`` and ``latest`` expressions over ``follow_up`` (shared by both plans).

    ``all_quarters``: set the quarter bit of every quarter of Y, ended by D or not (the
    patient-month state, ``registry.rates.month_state``: a later month reuses the bits; counts only
    ever look at quarters ended by D)."""
    f = models.FollowUp.__table__
    complete = complete_sql(f)
    latest_bits = (
        _flag(sa.or_(f.c.adherence.in_([Adherence.REGULAR.value, Adherence.INTERMITTENT.value]),
                     f.c.hospital_status == HospitalStatus.IN_HOSPITAL.value), BIT_TREATED)
        + _flag(f.c.adherence == Adherence.REGULAR.value, BIT_REGULAR)
        + _flag(at_home_sql(f), BIT_AT_HOME)
        + _flag(stable_sql(f), BIT_STABLE)
    )
    key = order_key_sql(f, latest_bits)  # MAX(key) = the latest complete follow-up (registry.attempts)
    quarters = Period(period.year, 12).quarters() if all_quarters else period.quarters()
    quarter_whens = [(f.c.visit_on <= last, QUARTER_BITS[i]) for i, (_first, last) in enumerate(quarters)]
    quarter_bit = sa.case(*quarter_whens, else_=0) if quarter_whens else sa.literal(0)
    mask = (
        sa.case((complete, ANY_COMPLETE + _flag(face_to_face_sql(f), ANY_F2F)
                 + quarter_bit), else_=0)
        + _flag(sa.or_(f.c.psych_support_patient.is_(True), f.c.psych_support_family.is_(True)), ANY_PSYCH)
        + _flag(f.c.rehabilitation.is_(True), ANY_REHAB)
        + _flag(incident_sql(f), ANY_INCIDENT)
    )
    latest = sa.case((complete, key), else_=None)
    return f, mask, latest


def per_patient_query(period: Period, villages: list[str] | None, with_count: bool = False,
                      plain: bool | None = None):
    """患者汇总 ONE grouped pass: every 在册 patient with the aggregates of their follow-ups in W, one row each.

    Columns: the patient's village, registration date and diagnosis; ``mask`` = OR over their
    follow-ups of the ANY_* / quarter bits; ``latest_key`` = MAX of the sortable key of their
    complete follow-ups (NULL when none); ``n_complete`` for the ``count`` variant.

    Default plan (docs/indicators.md "Plan"): the follow-ups in W are aggregated per patient
    FIRST (``GROUP BY follow_up.patient_id`` — PostgreSQL runs it as a parallel partial
    aggregate over the follow-up index), rows dated before their patient's registration are
    dropped with an anti-join against only the patients registered inside Y (nobody else can
    have such a row in W), and the ~1 row per patient result is joined to the register.
    ``plain=True`` is the original formulation — register LEFT JOIN follow-ups ON
    visit_on ≥ registered_on, grouped by patient. ``plain=None`` (default) picks by scope:
    the aggregate-first plan for the whole register, the plain join for a subset of villages
    (a township: the planner walks that township's patients and their follow-ups by index,
    1.2 s on the benchmark against 2.2 s for aggregating first). Both give the same rows
    (tests/test_indicators_plan.py).
    """
    p = models.Patient.__table__
    f, mask, latest = follow_up_aggregates(period)
    if plain is None:
        plain = villages is not None
    if plain:
        columns = [
            p.c.patient_id, p.c.village_code, p.c.registered_on, p.c.diagnosis,
            sa.func.coalesce(bit_or_agg(mask, MASK_BITS), 0).label("mask"),
            sa.func.max(latest).label("latest_key"),
        ]
        if with_count:
            columns.append(sa.func.count(latest).label("n_complete"))
        on = sa.and_(
            f.c.patient_id == p.c.patient_id,
            f.c.visit_on >= period.start,
            f.c.visit_on <= period.as_of,
            on_or_after_registration_sql(f, p),
        )
        where = [in_register_sql(p, period.as_of)]
        if villages is not None:
            where.append(p.c.village_code.in_(villages))
        return (
            sa.select(*columns)
            .select_from(p.outerjoin(f, on))
            .where(*where)
            .group_by(p.c.patient_id, p.c.village_code, p.c.registered_on, p.c.diagnosis)
        )
    # indicators.md: only follow-ups on or after the patient's registration count. Only a
    # patient registered after Jan 1 of Y can have a follow-up in W before registration.
    late = p.alias("late")
    before_registration = (
        sa.select(late.c.patient_id)
        .where(late.c.patient_id == f.c.patient_id, late.c.registered_on > period.start,
               late.c.registered_on > f.c.visit_on)
        .exists()
    )
    agg_columns = [
        f.c.patient_id,
        bit_or_agg(mask, MASK_BITS).label("mask"),
        sa.func.max(latest).label("latest_key"),
    ]
    if with_count:
        agg_columns.append(sa.func.count(latest).label("n_complete"))
    agg_where = [f.c.visit_on >= period.start, f.c.visit_on <= period.as_of, ~before_registration]
    if villages is not None:
        agg_where.append(f.c.patient_id.in_(sa.select(p.c.patient_id).where(p.c.village_code.in_(villages))))
    fa = sa.select(*agg_columns).where(*agg_where).group_by(f.c.patient_id).subquery("fa")
    columns = [
        p.c.patient_id, p.c.village_code, p.c.registered_on, p.c.diagnosis,
        sa.func.coalesce(fa.c.mask, 0).label("mask"),
        fa.c.latest_key.label("latest_key"),
    ]
    if with_count:
        columns.append(sa.func.coalesce(fa.c.n_complete, 0).label("n_complete"))
    where = [in_register_sql(p, period.as_of)]
    if villages is not None:
        where.append(p.c.village_code.in_(villages))
    return sa.select(*columns).select_from(p.outerjoin(fa, fa.c.patient_id == p.c.patient_id)).where(*where)


def _bit(latest_key, bit: int):
    """1 when the latest complete follow-up has ``bit`` set (NULL key → 0)."""
    return sa.case((((latest_key % ID_FACTOR) // bit) % 2 == 1, 1), else_=0)


def _has(mask, bit: int):
    return mask.op("&")(bit) != 0


def standard_condition(pp, period: Period, variant: str) -> sa.ColumnElement[bool]:
    """规范管理 at D (indicators.md §规范管理)."""
    if variant == "count":
        return pp.c.n_complete >= math.ceil(period.month / 3)
    parts = [
        sa.or_(pp.c.registered_on > last, _has(pp.c.mask, QUARTER_BITS[i]))
        for i, (_first, last) in enumerate(period.quarters())
    ]
    parts.append(sa.or_(_has(pp.c.mask, ANY_COMPLETE), pp.c.registered_on >= period.as_of - timedelta(days=13)))
    return sa.and_(*parts)


def count_flag_columns(pp, period: Period, variant: str, health_checked) -> dict[str, sa.ColumnElement]:
    """患者指标标志 {count name: 0/1 expression} over a per-patient row ``pp`` (the columns of
    ``per_patient_query``): whether the patient counts in every population and numerator at D.

    The one home of these definitions: the grouped count (``village_counts_query``) sums them, the
    patient-month state stores them as bits (``flags_expression``)."""
    managed = _has(pp.c.mask, ANY_COMPLETE)
    at_home = sa.and_(managed, _bit(pp.c.latest_key, BIT_AT_HOME) == 1)
    treated = _bit(pp.c.latest_key, BIT_TREATED)
    schizophrenia = pp.c.diagnosis == Diagnosis.SCHIZOPHRENIA.value
    return {
        "registered": sa.literal(1),
        "managed": _flag(managed),
        "standard": _flag(standard_condition(pp, period, variant)),
        "treated": treated,
        "regular": _bit(pp.c.latest_key, BIT_REGULAR),
        "schizophrenia": _flag(schizophrenia),
        "schizophrenia_treated": sa.case((schizophrenia, treated), else_=0),
        "at_home": _flag(at_home),
        "stable": _flag(sa.and_(at_home, _bit(pp.c.latest_key, BIT_STABLE) == 1)),
        "face_to_face": _flag(_has(pp.c.mask, ANY_F2F)),
        "health_checked": _flag(health_checked),
        "rehabilitation": _flag(sa.and_(at_home, _has(pp.c.mask, ANY_REHAB))),
        "psych_support": _flag(sa.and_(at_home, _has(pp.c.mask, ANY_PSYCH))),  # 居家 only [2026-12]
        "incident": _flag(_has(pp.c.mask, ANY_INCIDENT)),
    }


def patient_state_query(period: Period, variant: str, villages: list[str] | None, plain: bool | None = None,
                        per_patient=None):
    """患者指标标志 One row per 在册 patient with 0/1 flags for every population and numerator.

    ``per_patient``: a select with the columns of ``per_patient_query`` (e.g. the open month
    merged from the patient-month state, ``registry.rates.month_state.per_patient_from_state``);
    default: live. Returns (from-clause, {count name: 0/1 expression}, the per-patient subquery).
    """
    h = models.HealthCheck.__table__
    from_state = per_patient is not None
    if per_patient is None:
        per_patient = per_patient_query(period, villages, with_count=variant == "count", plain=plain)
    pp = per_patient.subquery("pp")
    hc = (
        sa.select(h.c.patient_id)
        .where(h.c.checked_on >= period.start, h.c.checked_on <= period.as_of)
        .group_by(h.c.patient_id)
        .subquery("hc")
    )
    health_checked = _has(pp.c.mask, HEALTH_CHECKED) if from_state else hc.c.patient_id.is_not(None)
    columns = count_flag_columns(pp, period, variant, health_checked)
    source = pp if from_state else pp.outerjoin(hc, hc.c.patient_id == pp.c.patient_id)
    return source, columns, pp


# --------------------------------------------------------------------------- stored flags
# The patient-month state of a closed month stores, per patient, the bit of every count it is in
# (``flags_expression``, written with the row): counting the month is then a GROUP BY over
# (village, flags) — one index-only scan — instead of evaluating every expression per patient.

def _flag_bits() -> dict[tuple[str, str | None], int]:
    """(count name, variant or None) → its bit in ``flags`` (``registered`` is every row)."""
    names = [(name, None) for name in PATIENT_COUNT_COLUMNS if name not in ("registered", "standard")]
    names += [("standard", v) for v in VARIANTS]
    return {key: 1 << i for i, key in enumerate(names)}


FLAG_BITS = _flag_bits()


def flag_bit(name: str, variant: str) -> int:
    """The bit of count ``name`` in ``flags`` under the 规范管理 ``variant``."""
    return FLAG_BITS[(name, variant if name == "standard" else None)]


def flags_expression(pp, period: Period) -> sa.ColumnElement[int]:
    """指标标志位 The ``flags`` of a state row ``pp`` (columns of ``per_patient_query``, ``mask``
    carrying ``HEALTH_CHECKED``) as of ``period``: the sum of the bits of the counts it is in,
    from ``count_flag_columns`` (both variants of ``standard``)."""
    health_checked = _has(pp.c.mask, HEALTH_CHECKED)
    by_variant = {v: count_flag_columns(pp, period, v, health_checked) for v in VARIANTS}
    terms = [by_variant[variant or DEFAULT_VARIANT][name] * bit for (name, variant), bit in FLAG_BITS.items()]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def flag_counts_query(flag_rows, variant: str) -> sa.Select:
    """每村计数（标志位） Every count per village from state rows (``flag_rows``: a select of
    ``village_code, flags``): grouped by (village, flags) first, then each count sums the groups
    that have its bit. Same columns as ``village_counts_query``."""
    rows = flag_rows.subquery("flag_row")
    groups = (sa.select(rows.c.village_code, rows.c.flags, sa.func.count().label("n"))
              .group_by(rows.c.village_code, rows.c.flags).subquery("flag_group"))
    columns = [sa.func.sum(groups.c.n).label("registered")]
    for name in PATIENT_COUNT_COLUMNS[1:]:
        has = groups.c.flags.op("&")(flag_bit(name, variant)) != 0
        columns.append(sa.func.sum(sa.case((has, groups.c.n), else_=0)).label(name))
    return sa.select(groups.c.village_code, *columns).group_by(groups.c.village_code)


def village_counts_query(period: Period, variant: str, villages: list[str] | None, plain: bool | None = None,
                         per_patient=None):
    """每村计数 Every numerator and denominator, SUM(CASE …) grouped by village, in one statement."""
    source, columns, pp = patient_state_query(period, variant, villages, plain=plain, per_patient=per_patient)
    return (
        sa.select(pp.c.village_code, *[sa.func.sum(expr).label(name) for name, expr in columns.items()])
        .select_from(source)
        .group_by(pp.c.village_code)
    )


# --------------------------------------------------------------------------- counts → JSON


def tune_for_reporting(conn: sa.Connection) -> None:
    """PostgreSQL settings for this transaction only.

    ``jit = off``: the indicator query is one large expression list; LLVM inlining +
    optimisation of it costs several seconds, more than it saves. ``work_mem`` is left at the
    server default on purpose: with 64MB the planner hashed the whole per-patient aggregate in
    every parallel worker (3× the work, 17 s on the benchmark instead of ~5).
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


def village_counts(conn: sa.Connection, period: Period, variant: str, villages: list[str] | None,
                   plain: bool | None = None, per_patient=None, flag_rows=None) -> dict[str, dict[str, int]]:
    """每村计数 village → every count of ``COUNT_COLUMNS``: from the stored flags of a closed month's
    state when ``flag_rows`` is given (``flag_counts_query``), else from per-patient rows
    (``village_counts_query``: live, or ``per_patient``); the joint-visit counts from the tasks."""
    tune_for_reporting(conn)
    if flag_rows is not None:
        stmt = flag_counts_query(flag_rows, variant)
    else:
        stmt = village_counts_query(period, variant, villages, plain=plain, per_patient=per_patient)
    rows = conn.execute(stmt).mappings().all()
    out = {row["village_code"]: {**{c: int(row[c] or 0) for c in PATIENT_COUNT_COLUMNS}, "joint_closed": 0,
                                 "joint_complete": 0} for row in rows}
    for village, (closed, complete) in joint_visit_counts(conn, period, villages).items():
        row = out.setdefault(village, dict.fromkeys(COUNT_COLUMNS, 0))
        row["joint_closed"], row["joint_complete"] = closed, complete
    return out


def joint_visit_counts_query(period: Period, villages: list[str] | None) -> sa.Select:
    """联合随访到位 Per village (the patient's as of D): joint visit tasks closed by a follow-up dated in
    W, and those closed 到位 (indicators.md ``joint_visit_complete_rate``; the outcome is stored where
    tasks close, one home: ``registry.joint_visits``). One grouped statement."""
    t, f, p = models.VisitTask.__table__, models.FollowUp.__table__, models.Patient.__table__
    where = [t.c.joint.is_(True), t.c.joint_outcome.is_not(None), f.c.visit_on >= period.start,
             f.c.visit_on <= period.as_of, on_or_after_registration_sql(f, p)]
    if villages is not None:
        where.append(p.c.village_code.in_(villages))
    return (
        sa.select(p.c.village_code, sa.func.count().label("closed"),
                  sa.func.sum(_flag(t.c.joint_outcome == JointOutcome.COMPLETE.value)).label("complete"))
        .select_from(t.join(f, f.c.id == t.c.closed_by).join(p, p.c.patient_id == t.c.patient_id))
        .where(*where)
        .group_by(p.c.village_code)
    )


def joint_visit_counts(conn: sa.Connection, period: Period, villages: list[str] | None) -> dict[str, tuple[int, int]]:
    """village → (joint tasks closed in W, closed 到位)."""
    return {r.village_code: (int(r.closed), int(r.complete or 0))
            for r in conn.execute(joint_visit_counts_query(period, villages))}


def roll_up(tree: RegionTree, per_village: dict[str, dict[str, int]], codes: list[str]) -> dict[str, dict[str, int]]:
    """汇总 Sum village counts into every ancestor; every region in ``codes`` gets a row."""
    totals = {code: dict.fromkeys(COUNT_COLUMNS, 0) for code in codes}
    for village, counts in per_village.items():
        for code in tree.ancestors_and_self(village):
            if code in totals:
                row = totals[code]
                for c in COUNT_COLUMNS:
                    row[c] += counts[c]
    return totals


def rate(numerator: int, denominator: int | None) -> float | None:
    """率 numerator / denominator rounded to 4 decimals (contract.md); no denominator → None."""
    if not denominator:
        return None
    # exact half-up rounding of the fraction (0.00005 → 0.0001), not binary-float round()
    scaled = Fraction(numerator * 10_000, denominator)
    return float(Fraction(math.floor(scaled + Fraction(1, 2)), 10_000))
