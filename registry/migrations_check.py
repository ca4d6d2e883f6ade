"""迁移检查 Which differences between migrations and models matter (used by the schema test)."""

from __future__ import annotations


def significant(diffs: list) -> list:
    """Drop the APScheduler tables (owned by APScheduler, not by our migrations)."""
    out = []
    for d in diffs:
        item = d[0] if isinstance(d, list) else d
        name = getattr(item[1], "name", "") if isinstance(item, tuple) and len(item) > 1 else ""
        if isinstance(name, str) and name.startswith("apscheduler_"):
            continue
        out.append(d)
    return out
