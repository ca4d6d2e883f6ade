"""迁移检查 Which differences between migrations and models matter (used by the schema test)."""

from __future__ import annotations


def _names(item) -> list[str]:
    """The table and object names a diff entry talks about."""
    names = []
    for part in item[1:] if isinstance(item, tuple) else ():
        for attr in ("name", "fullname"):
            value = getattr(part, attr, None)
            if isinstance(value, str):
                names.append(value)
        table = getattr(part, "table", None)
        if table is not None and isinstance(getattr(table, "name", None), str):
            names.append(table.name)
    return names


def significant(diffs: list) -> list:
    """Drop the APScheduler table and its indexes (owned by APScheduler, not by our migrations)."""
    out = []
    for d in diffs:
        item = d[0] if isinstance(d, list) else d
        if any("apscheduler_" in name for name in _names(item)):
            continue
        out.append(d)
    return out
