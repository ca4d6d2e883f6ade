"""工作日历 Working days: statutory holidays, 调休 make-up workdays, and the previous working day.

rules.md §5 [decision]: a due date on a statutory holiday or on a weekend that is not a make-up
workday moves to the previous working day. Sources, in order:

1. the operator's table ``calendar_day``: a day listed there is as listed. For a year the package
   knows, the other days stay as the package has them (a local correction of one day must not
   erase 国庆 or 春节); for a year it does not know, the table is that year's table (other
   days Monday–Friday working, and the year counts as known);
2. the ``chinesecalendar`` package (years it knows);
3. otherwise weekends only, and the result is marked *estimated* (never a crash, never a
   silent guess: tasks carry ``calendar_estimated`` and the scheduler warns).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.codes import TaskStatus
from registry.errors import InvalidInput
from registry.models import VisitTask
from schedules.models import CalendarDay

log = logging.getLogger(__name__)

PACKAGE_YEARS = frozenset(d.year for d in chinese_calendar.holidays)


@dataclass
class WorkCalendar:
    """工作日历 A working-day oracle built from the operator table and ``chinesecalendar``."""

    overrides: dict[date, bool] = field(default_factory=dict)  # operator table: day → working
    override_years: frozenset[int] = frozenset()

    @classmethod
    def from_rows(cls, rows) -> "WorkCalendar":
        overrides = {r[0]: bool(r[1]) for r in rows}
        return cls(overrides=overrides, override_years=frozenset(d.year for d in overrides))

    @classmethod
    def load(cls, conn_or_engine) -> "WorkCalendar":
        """Read the operator table (one small query)."""
        stmt = sa.select(CalendarDay.day, CalendarDay.working)
        if isinstance(conn_or_engine, Engine):
            with conn_or_engine.connect() as conn:
                return cls.from_rows(conn.execute(stmt).all())
        return cls.from_rows(conn_or_engine.execute(stmt).all())

    def knows(self, year: int) -> bool:
        """Whether the holiday table of ``year`` is known (else weekends only, estimated)."""
        return year in self.override_years or year in PACKAGE_YEARS

    def is_working(self, day: date) -> bool:
        """工作日 Whether ``day`` is a working day (weekends only for unknown years)."""
        if day in self.overrides:
            return self.overrides[day]
        if day.year in PACKAGE_YEARS:
            return chinese_calendar.is_workday(day)
        return day.weekday() < 5

    def previous_working_day(self, day: date) -> tuple[date, bool]:
        """顺延到前一个工作日 ``day`` itself if working, else the closest earlier working day.

        Returns (shifted day, estimated); estimated when any day consulted lies in a year no
        table knows.
        """
        estimated = not self.knows(day.year)
        current = day
        while not self.is_working(current):
            current -= timedelta(days=1)
            estimated = estimated or not self.knows(current.year)
        return current, estimated

    def shift_map(self, start: date, end: date) -> list[tuple[date, date, bool]]:
        """(day, shifted, estimated) for every day of [start, end] — the table generation joins.

        Kept per process for the same operator table and range (a web write replans one patient
        and must not recompute years of days each time)."""
        return list(_shift_map(tuple(sorted(self.overrides.items())), start, end))

    def _walk(self, start: date, end: date) -> tuple[tuple[date, date, bool], ...]:
        rows = []
        day = start
        # walk forward keeping the last working day seen, so the whole map is O(days)
        last_working, last_est = self.previous_working_day(start - timedelta(days=1))
        while day <= end:
            est_here = not self.knows(day.year)
            if self.is_working(day):
                last_working, last_est = day, est_here
                rows.append((day, day, est_here))
            else:
                last_est = last_est or est_here
                rows.append((day, last_working, last_est or est_here))
            day += timedelta(days=1)
        return tuple(rows)


@functools.lru_cache(maxsize=16)
def _shift_map(overrides: tuple[tuple[date, bool], ...], start: date, end: date) -> tuple[tuple[date, date, bool], ...]:
    return WorkCalendar.from_rows(overrides)._walk(start, end)


def unknown_years(calendar: WorkCalendar, years) -> list[int]:
    return sorted(y for y in set(years) if not calendar.knows(y))


def parse_calendar_csv(text: str, *, file: str = "calendar.csv") -> list[tuple[date, bool, str | None]]:
    """Parse an operator holiday table: columns ``day`` (日期), ``working`` (上班 1/0), ``name`` (名称)."""
    from registry.errors import Issue

    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    aliases = {"日期": "day", "上班": "working", "名称": "name"}
    rows, issues = [], []
    for lineno, raw in enumerate(reader, start=2):
        row = {aliases.get((k or "").strip(), (k or "").strip()): (v or "").strip() for k, v in raw.items()}
        try:
            day = date.fromisoformat(row.get("day", ""))
        except ValueError:
            issues.append(Issue("CALENDAR_DAY_INVALID", "日期应为 YYYY-MM-DD", file, lineno, "day", row.get("day")))
            continue
        working = row.get("working", "")
        if working not in ("0", "1"):
            issues.append(Issue("CALENDAR_WORKING_INVALID", "上班应为 1（调休上班）或 0（放假）", file, lineno, "working", working))
            continue
        rows.append((day, working == "1", row.get("name") or None))
    if issues:
        raise InvalidInput(message=f"节假日表有 {len(issues)} 处错误，未导入", code="CALENDAR_INVALID", issues=issues)
    if not rows:
        raise InvalidInput.single("CALENDAR_EMPTY", "节假日表没有任何日期", column="day")
    return rows


def load_calendar(engine: Engine, rows: list[tuple[date, bool, str | None]]) -> dict:
    """导入节假日表 Store operator rows (replacing those years) and recompute estimated open tasks."""
    years = sorted({d.year for d, _, _ in rows})
    with engine.begin() as conn:
        for year in years:
            conn.execute(sa.delete(CalendarDay).where(CalendarDay.day.between(date(year, 1, 1), date(year, 12, 31))))
        conn.execute(sa.insert(CalendarDay), [{"day": d, "working": w, "name": n} for d, w, n in rows])
        recomputed = recompute_open_tasks(conn, years)
    return {"years": years, "days": len(rows), "recomputed": recomputed}


def recompute_open_tasks(conn, years: list[int] | None = None) -> int:
    """重算 Re-shift open tasks whose nominal due date lies in ``years`` (all estimated ones if None).

    One UPDATE per distinct nominal date (at most a few hundred), never one per task.
    """
    calendar = WorkCalendar.load(conn)
    cond = VisitTask.status == TaskStatus.OPEN.value
    if years is None:
        cond = cond & (VisitTask.calendar_estimated == sa.true())
    else:
        cond = cond & sa.or_(*[VisitTask.nominal_due_on.between(date(y, 1, 1), date(y, 12, 31)) for y in years])
    nominal_days = conn.execute(sa.select(VisitTask.nominal_due_on).where(cond).distinct()).scalars().all()
    changed = 0
    for nominal in nominal_days:
        shifted, estimated = calendar.previous_working_day(nominal)
        result = conn.execute(
            sa.update(VisitTask)
            .where(cond & (VisitTask.nominal_due_on == nominal))
            .where(sa.or_(VisitTask.due_on != shifted, VisitTask.calendar_estimated != estimated))
            .values(due_on=shifted, calendar_estimated=estimated)
        )
        changed += result.rowcount or 0
    return changed


def read_calendar_file(path: Path) -> list[tuple[date, bool, str | None]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput.single("CALENDAR_UNREADABLE", f"无法读取节假日表 {path}：{exc}", column="file") from exc
    return parse_calendar_csv(text, file=path.name)
