"""月度指标 The month's rates of a region: its counts from the right source, against its targets.

The API of the rates layer (``compute_rates``, contract.md ``jingfang rates --json``), above the
definitions it uses: ``indicators`` (the indicator set, the set-based SQL), ``month_state`` (the
patient-month state of closed months), ``snapshots`` (the frozen counts of published months) and
``targets``, all in this package. ``region_counts`` reads a published
month's frozen counts, else the month state (``state_source``), else counts live; ``freeze``
writes the frozen counts of a month when it is published.
"""

from __future__ import annotations

import json
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.rates import month_state, snapshots
from registry.clock import local_today
from registry.errors import InvalidInput
from registry.rates.indicators import (
    INDICATORS,
    rate,
    resolve_variant,
    roll_up,
    village_counts,
)
from registry.models import utcnow
from registry.periods import Period
from registry.profile import profile_document
from registry.regions import RegionTree
from registry.rates.snapshots import IndicatorSnapshot, is_frozen, snapshot_version
from registry.rates.targets import TargetSet, load_target_set, meets


# the rate's scale: ‰ for the reported prevalence (indicators.md: numerator × 1000 / denominator)
PER_UNIT = {"percent": 1, "permille": 1000, "count": 1}


def resolve_target_set(name: str | None = None) -> TargetSet:
    """目标集 The argument, else the profile's ``target_set``, else ``default``."""
    return load_target_set(name or profile_document().get("target_set"))


def indicator_values(counts: dict[str, int], population: int | None, targets: TargetSet, region: str, year: int) -> dict:
    """Every indicator's {numerator, denominator, rate, target, met} for one region."""
    values = dict(counts, population=population)
    out = {}
    for ind in INDICATORS:
        num = values[ind.numerator_column]
        if ind.denominator_column is None:
            out[ind.key] = {"numerator": num, "denominator": None, "rate": None, "target": None, "met": None}
            continue
        den = values[ind.denominator_column]
        target = targets.target_for(ind.key, region, year)
        out[ind.key] = {
            "numerator": num,
            "denominator": den,
            "rate": rate(num * PER_UNIT[ind.unit], den),
            "target": target,
            "met": meets(num * PER_UNIT[ind.unit], den or 0, target),
        }
    return out


def state_source(engine: Engine, period: Period, today: date) -> str:
    """Where month M's per-patient aggregates come from: ``state`` (M closed: its patient-month
    state, brought up to date first), ``merged`` (M open, after January, M−1 closed: state(M−1)
    + month M live) or ``live`` (January of an open year, or a month further ahead)."""
    if month_state.is_closed(period, today):
        month_state.ensure(engine, period, today)
        return "state"
    if period.month > 1 and month_state.is_closed(period.previous(), today):
        month_state.ensure(engine, period.previous(), today)
        return "merged"
    return "live"


def region_counts(engine: Engine, *, period: Period, variant: str, region_code: str, tree: RegionTree | None = None,
                  use_snapshot: bool = True, plain: bool | None = None, today: date | None = None,
                  use_state: bool = True) -> dict[str, dict[str, int]]:
    """Counts for ``region_code`` and every region below it (frozen ones when the month is frozen).

    Not frozen: from the patient-month state (``state_source``; ``today`` default: today in
    Asia/Shanghai) unless ``use_state=False`` or ``plain`` is given (the live computation, kept
    for cross-checks)."""
    with engine.connect() as conn:
        tree = tree or RegionTree.load(conn)
        codes = tree.descendants_and_self(region_code)
        if use_snapshot:
            frozen = snapshots.read(conn, period.label, variant, codes)
            if frozen is not None:
                return frozen
    whole = len(tree.roots()) == 1 and region_code == tree.roots()[0]
    villages = None if whole else codes
    per_patient, flag_rows, source = None, None, "live"
    if use_state and plain is None:
        if today is None:
            today = local_today()
        source = state_source(engine, period, today)
        if source == "state":  # a closed month: its stored flags (month_state.flag_rows)
            flag_rows = month_state.flag_rows(period, villages)
        elif source == "merged":
            per_patient = month_state.per_patient_from_state(period, villages, merge_month=True)
    with engine.connect() as conn:
        per_village = village_counts(conn, period, variant, villages, plain=plain, per_patient=per_patient,
                                     flag_rows=flag_rows)
    return roll_up(tree, per_village, codes)


def compute_rates(engine: Engine, *, month: str, region_code: str | None = None, variant: str | None = None,
                  targets: str | None = None, today: date | None = None) -> dict:
    """月度指标 The contract.md ``rates --json`` object for a month and region (default: the top region).

    ``variant``: 规范管理 variant (default from the rule profile, else ``quarterly``);
    ``targets``: a target set name or JSON path (default from the profile, else ``default``);
    ``today``: decides which months are closed (default: today in Asia/Shanghai); an open month
    (one containing ``today``) is counted as of ``today`` (月中, indicators.md "Open months"):
    ``as_of`` is then today's date.
    """
    return compute_rates_and_counts(engine, month=month, region_code=region_code, variant=variant, targets=targets,
                                    today=today)[0]


def compute_rates_and_counts(engine: Engine, *, month: str, region_code: str | None = None, variant: str | None = None,
                             targets: str | None = None, today: date | None = None,
                             use_state: bool = True) -> tuple[dict, dict[str, dict[str, int]]]:
    """``compute_rates`` plus the raw counts behind it (region → counts), which a caller can hand
    to ``reporting.write_monthly_report(counts=…)`` so the month is computed once."""
    today = today or local_today()
    period = Period.requested(month, today)  # an open month: 月中, D = today (indicators.md "Open months")
    variant = resolve_variant(variant)
    target_set = resolve_target_set(targets)
    with engine.connect() as conn:
        tree = RegionTree.load(conn)
    region_code = tree.check(region_code) if region_code else tree.default_region()
    counts = region_counts(engine, period=period, variant=variant, region_code=region_code, tree=tree, today=today,
                           use_state=use_state)
    doc = rates_document(tree, counts, period=period, variant=variant, region_code=region_code, targets=target_set)
    return doc, counts


def rates_document(tree: RegionTree, counts: dict[str, dict[str, int]], *, period: Period, variant: str,
                   region_code: str, targets: TargetSet) -> dict:
    def values(code: str) -> dict:
        return indicator_values(counts[code], tree.population(code), targets, code, period.year)

    return {
        "month": period.label,
        "as_of": period.as_of.isoformat(),
        "region": region_code,
        "variant": variant,
        "indicators": values(region_code),
        "children": [{"region": c, "indicators": values(c)} for c in tree.children.get(region_code, [])],
    }


def freeze(engine: Engine, *, month: str, variant: str, today: date) -> bool:
    """冻结 Freeze every region's counts for a closed month; False when it was already frozen.

    Counts frozen by other rules (``rules_version``) are stale: they are recomputed and replaced."""
    period = Period.parse(month)
    if period.as_of >= today:
        raise InvalidInput.single("MONTH_NOT_CLOSED", f"{period.label} 尚未结束，不能冻结（截至 {today.isoformat()}）",
                                  column="month", value=period.label)
    with engine.connect() as conn:
        if is_frozen(conn, period.label, variant):
            return False
        tree = RegionTree.load(conn)
    rows = []
    stamp = utcnow()
    for root in tree.roots():
        counts = region_counts(engine, period=period, variant=variant, region_code=root, tree=tree, use_snapshot=False,
                               today=today)  # from the month's patient-month state (built / brought up to date)
        rows += [{"month": period.label, "variant": variant, "region_code": code,
                  "counts": json.dumps(c, sort_keys=True), "frozen_at": stamp, "rules_version": snapshot_version()}
                 for code, c in counts.items()]
    with engine.begin() as conn:
        if is_frozen(conn, period.label, variant):
            return False
        t = IndicatorSnapshot.__table__
        conn.execute(sa.delete(t).where(t.c.month == period.label, t.c.variant == variant))  # stale rows
        if rows:
            conn.execute(sa.insert(IndicatorSnapshot.__table__), rows)
    return True
