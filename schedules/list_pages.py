"""一单 One of the five lists as data (``WorkList``: who reads it, its columns, its rows) and as a page
(``render_html``, Jinja2 ``templates/lists/list.html``). A light module — the standard library
and Jinja2 — so a render process started by ``jingfang lists`` before its own imports
(``schedules.list_renderer``) can receive a list and lay it out without importing the database
layers; what goes on each list is ``schedules.lists``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.pdf import paper_templates

TEMPLATE = "list.html"


@dataclass
class Column:
    key: str
    title: str
    width: int = 12  # XLSX column width (characters)


@dataclass
class WorkList:
    """一单 One of the five lists: who reads it, its columns, its rows (grouped by village)."""

    number: int
    slug: str
    title: str
    readers: str
    columns: list[Column]
    rows: list[dict] = field(default_factory=list)
    signatures: bool = False  # signature/attendance columns for joint visits
    # 随访任务单 only: the health checks owed, a section of their own after the week's visits
    # (rules.md §7: the June 30 wave never pushes this week's visits off the first page)
    checks: list[dict] = field(default_factory=list)
    rows_heading: str = "本周随访（7日内到期及逾期）"
    checks_heading: str = "年度健康体检"

    @staticmethod
    def _grouped(rows: list[dict]) -> list[tuple[str, list[dict]]]:
        groups: dict[str, list[dict]] = {}
        for row in rows:
            groups.setdefault(row["village"], []).append(row)
        return sorted(groups.items())

    def by_village(self) -> list[tuple[str, list[dict]]]:
        """The rows by village (villages in name order, rows in the list's order within each)."""
        return self._grouped(self.rows)

    def checks_by_village(self) -> list[tuple[str, list[dict]]]:
        return self._grouped(self.checks)

    def check_counts(self) -> list[tuple[str, int, int]]:
        """(village, health checks owed, of which overdue) for the section's count table."""
        return [(village, len(rows), sum(1 for r in rows if r["late"])) for village, rows in self.checks_by_village()]

    @property
    def checks_overdue(self) -> int:
        return sum(1 for r in self.checks if r["late"])

    @property
    def size(self) -> int:
        """Rows on the list (the week's rows and the health-check section)."""
        return len(self.rows) + len(self.checks)


def render_html(data: dict, wl: WorkList, generated: str) -> str:
    """The list's page: ``data`` the township's week (``township_name``, ``township_code``, ``week``,
    ``week_end``), ``generated`` the time printed on it."""
    return paper_templates().get_template(TEMPLATE).render(data=data, wl=wl, generated=generated)
