"""日期运算 Portable SQL date arithmetic (PostgreSQL and SQLite) for set-based generation.

``add_period(expr, months, days)``: months first, clamped to the month end (rules.md §5:
Jan 31 + 1 month = Feb 28/29), then days — the same as ``planning.add_interval``.
``add_days(expr, n_expr)``: a per-row number of days.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class add_period(FunctionElement):
    """Date + literal months (clamped) + literal days."""

    type = sa.Date()
    name = "add_period"
    inherit_cache = True

    def __init__(self, expr, months: int, days: int):
        super().__init__(expr, sa.literal_column(str(int(months))), sa.literal_column(str(int(days))))


class add_days(FunctionElement):
    """Date + a per-row integer number of days."""

    type = sa.Date()
    name = "add_days"
    inherit_cache = True


def _args(element, compiler, **kw):
    return [compiler.process(c, **kw) for c in element.clauses.clauses]


@compiles(add_period, "postgresql")
def _pg_add_period(element, compiler, **kw):
    expr, months, days = _args(element, compiler, **kw)
    return f"CAST(({expr}) + make_interval(months => {months}, days => {days}) AS DATE)"


@compiles(add_period, "sqlite")
def _sqlite_add_period(element, compiler, **kw):
    expr, months, days = _args(element, compiler, **kw)
    m, m1 = int(months), int(months) + 1
    day_of_month = f"CAST(strftime('%d', {expr}) AS INTEGER)"
    last_day = f"CAST(strftime('%d', date({expr}, 'start of month', '+{m1} months', '-1 day')) AS INTEGER)"
    return (
        f"date({expr}, 'start of month', '+{m} months', "
        f"'+' || (min({day_of_month}, {last_day}) - 1 + {days}) || ' days')"
    )


@compiles(add_days, "postgresql")
def _pg_add_days(element, compiler, **kw):
    expr, n = _args(element, compiler, **kw)
    return f"CAST(({expr}) + ({n}) AS DATE)"


@compiles(add_days, "sqlite")
def _sqlite_add_days(element, compiler, **kw):
    expr, n = _args(element, compiler, **kw)
    return f"date({expr}, printf('%+d days', {n}))"
