"""月度快照 Frozen indicator counts of closed, published months.

A report sent to the health bureau must not change later (aesthetics.md B8.5): when a month is
published (``registry.rates.reporting.publish_month``, on the 1st of the next month) the numerator
and denominator counts of every region are frozen here (``registry.rates.compute.freeze``), one
row per (month, variant, region). ``registry.rates.compute.compute_rates`` then reads these rows instead of recomputing, so later
corrections of old follow-ups do not silently change a published month; ``unfreeze`` (CLI
``jingfang rates --refreeze``) is the explicit way to republish.
"""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from registry import rules
from registry.rates.indicators import COUNT_COLUMNS
from registry.models import UTCDateTime, utcnow


class IndicatorSnapshot(SQLModel, table=True):
    """指标快照 The frozen counts of one region for one closed month and 规范管理 variant."""

    __tablename__ = "indicator_snapshot"

    month: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    variant: str = Field(primary_key=True, max_length=16)
    region_code: str = Field(primary_key=True, max_length=32)
    counts: str = Field(max_length=4000)  # JSON object: COUNT_COLUMNS → int
    frozen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # the rules the counts were computed by (registry.rules.rules_version); rows of another
    # version are stale: not served, and the next freeze recomputes them
    rules_version: str = Field(default="", max_length=80)


def snapshot_version() -> str:
    """规则版本 The rule version frozen counts depend on (the rule homes'; the variant is in the key)."""
    return rules.rules_version()


def _current(t):
    return t.c.rules_version == snapshot_version()


def is_frozen(conn: sa.Connection, month: str, variant: str) -> bool:
    t = IndicatorSnapshot.__table__
    stmt = sa.select(t.c.month).where(t.c.month == month, t.c.variant == variant, _current(t)).limit(1)
    return conn.execute(stmt).first() is not None


def read(conn: sa.Connection, month: str, variant: str, codes: list[str]) -> dict[str, dict[str, int]] | None:
    """Frozen counts for ``codes`` (regions added after freezing get zeros), or None if not frozen."""
    if not is_frozen(conn, month, variant):
        return None
    t = IndicatorSnapshot.__table__
    out = {code: dict.fromkeys(COUNT_COLUMNS, 0) for code in codes}
    stmt = sa.select(t.c.region_code, t.c.counts).where(t.c.month == month, t.c.variant == variant, _current(t))
    for code, text in conn.execute(stmt):
        if code in out:
            out[code].update({k: int(v) for k, v in json.loads(text).items() if k in out[code]})
    return out


def frozen_months(conn: sa.Connection, region_code: str, variant: str, months: list[str]) -> dict[str, dict[str, int]]:
    """Frozen counts of one region for several months at once (the trend chart): month → counts."""
    t = IndicatorSnapshot.__table__
    stmt = sa.select(t.c.month, t.c.counts).where(
        t.c.region_code == region_code, t.c.variant == variant, t.c.month.in_(months), _current(t))
    return {m: json.loads(text) for m, text in conn.execute(stmt)}


def unfreeze(engine: Engine, *, month: str, variant: str) -> int:
    """解冻 Drop a month's frozen counts (explicit republication); returns the rows removed."""
    t = IndicatorSnapshot.__table__
    with engine.begin() as conn:
        return conn.execute(sa.delete(t).where(t.c.month == month, t.c.variant == variant)).rowcount


__all__ = ["IndicatorSnapshot", "unfreeze", "read", "frozen_months", "is_frozen", "snapshot_version"]
