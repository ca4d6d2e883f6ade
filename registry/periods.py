"""统计期与月份 Month arithmetic and the statistical period, in one place.

* ``add_months`` — calendar months added to a date, clamped to the month end (rules.md §5:
  Jan 31 + 1 month = Feb 28/29); a negative count goes back (the 12 months up to today, §6).
* ``Period`` — month M of year Y (indicators.md: as-of date D = last day of M, window
  W = [Jan 1 of Y, D]); ``Period.parse`` is the one reader of a ``YYYY-MM`` argument (CLI, web
  and API alike), ``Period.of`` the month of a date, ``Period.previous`` the month before.
* Open months (indicators.md "Open months" [2026-12]): a month is closed when D is before today.
  Pages, the demo, the ``rates``/``report`` commands and the monthly job default to
  ``Period.last_closed(today)``; an open month is shown only on request, as ``Period.requested``
  gives it: cut at today (月中, D = today, W = [Jan 1, today]).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, replace
from datetime import date

from registry.errors import InvalidInput

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def add_months(day: date, months: int) -> date:
    """月份加法 Add ``months`` calendar months (negative: subtract), clamping to the month end
    (Jan 31 + 1 month = Feb 28/29; rules.md §5)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def bad_month(text) -> InvalidInput:
    """The one refusal of a month argument (BAD_MONTH, naming the field)."""
    return InvalidInput.single("BAD_MONTH", f"月份“{str(text)[:20]}”无效，应为 YYYY-MM（2000-01 至 2100-12）",
                               column="month", value=str(text)[:20])


@dataclass(frozen=True)
class Period:
    """统计期 Month M of year Y: as-of date D (last day of M) and window W = [Jan 1 of Y, D].

    ``cutoff``: an open month shown on request (月中, indicators.md "Open months"): D is that day
    (today), not the month's last day."""

    year: int
    month: int
    cutoff: date | None = None

    @classmethod
    def parse(cls, text: str) -> "Period":
        """月份参数 'YYYY-MM' between 2000-01 and 2100-12, else InvalidInput (BAD_MONTH) naming the field."""
        m = _MONTH.match(str(text or "").strip())
        if not m or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) <= 2100:
            raise bad_month(text)
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> "Period":
        """本月 The month ``day`` lies in."""
        return cls(day.year, day.month)

    @classmethod
    def last_closed(cls, today: date) -> "Period":
        """上一个已结束的月份 The default month of every page, report and job: the last month whose
        last day is before ``today`` (indicators.md "Open months")."""
        return cls.of(today).previous()

    @classmethod
    def requested(cls, text: str, today: date) -> "Period":
        """所请求的月份 ``parse(text)``, cut at ``today`` when the month is open (月中: it contains
        ``today``); a closed or future month as it is."""
        period = cls.parse(text)
        return period.until(today)

    def until(self, today: date) -> "Period":
        """月中 This month cut at ``today`` when it contains ``today`` and is not closed; else itself."""
        end = date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])
        if date(self.year, self.month, 1) <= today <= end:
            return replace(self, cutoff=today)
        return self

    @property
    def is_open(self) -> bool:
        """月中 An open month cut at a day (``until``)."""
        return self.cutoff is not None

    def title(self) -> str:
        """月份标题 ``2026年6月``, or ``2026年12月（月中，截至 2026-12-06）`` for an open month."""
        text = f"{self.year}年{self.month}月"
        return f"{text}（月中，截至 {self.cutoff.isoformat()}）" if self.cutoff is not None else text

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> date:
        return date(self.year, 1, 1)

    @property
    def as_of(self) -> date:
        if self.cutoff is not None:
            return self.cutoff
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def quarters(self) -> list[tuple[date, date]]:
        """Calendar quarters of Y that end on or before D (indicators.md 规范管理 quarterly 1.)."""
        out = []
        for q in range(4):
            first = date(self.year, 3 * q + 1, 1)
            last = date(self.year, 3 * q + 3, calendar.monthrange(self.year, 3 * q + 3)[1])
            if last <= self.as_of:
                out.append((first, last))
        return out

    def previous(self, n: int = 1) -> "Period":
        index = self.year * 12 + self.month - 1 - n
        return Period(index // 12, index % 12 + 1)

    def trailing(self, months: int = 12) -> list["Period"]:
        """The ``months`` months up to and including this one, oldest first."""
        return [self.previous(n) for n in range(months - 1, -1, -1)]


def previous_month(day: date) -> str:
    """上月 The month before ``day``'s, as YYYY-MM (the month a report on the 1st is about)."""
    return Period.of(day).previous().label
