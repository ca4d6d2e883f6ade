"""内部代码 The internal codes no person should read (issue 16: Chinese on every surface).

Not a test module (no ``test_`` prefix): ``tests/test_chinese_surfaces.py`` greps the CLI's human
output, every page and every PDF / XLSX for these. Internal codes stay in JSON (``--json``,
``/api/``); a person reads the Chinese label.

The list is built from the enums and tables, so a new task kind, role or field is covered the day
it is added.
"""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path


def forbidden_codes() -> set[str]:
    """Every internal code: enum values, profile situations, variants, indicator keys, field
    identifiers, audit object types, the spec's file names."""
    from registry import codes, models
    from registry.accounts import UserRole
    from registry.profile import VISIT_SITUATIONS
    from registry.rates.indicators import COUNT_COLUMNS, INDICATOR_KEYS, VARIANTS

    words: set[str] = set()
    for enum in (codes.TaskKind, codes.TaskStatus, codes.TeamRole, codes.FamilyRole, codes.PatientStatus,
                 codes.RegionLevel, codes.Diagnosis, UserRole, codes.GuardianYearStatus, codes.RewardDuty,
                 codes.OutboxStatus, codes.CloseReason):
        words.update(m.value for m in enum)
    words.update(VISIT_SITUATIONS)
    words.update(VARIANTS)
    words.update(INDICATOR_KEYS)
    words.update(c for c in COUNT_COLUMNS if "_" in c)
    for table in (models.Patient, models.FollowUp, models.HealthCheck, models.TeamMember, models.VisitTask,
                  models.Region, models.FollowUpParticipant, models.CareTeamAssignment, models.AuditLog,
                  models.GuardianYear):
        words.update(c.name for c in table.__table__.columns if "_" in c.name)
    # audit object types and the lists' count keys
    words.update({"five_lists", "monthly_report", "worklist", "calendar_estimated", "followup",
                  "previous_working_day", "national-2018"})
    words.update({"rules.md", "indicators.md", "contract.md", "house.md"})
    return words


def _pattern(words: set[str]) -> re.Pattern:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    # a whole identifier (not part of a longer one, not a file name or URL piece like /follow-ups)
    return re.compile(rf"(?<![A-Za-z0-9_./-])(?:{alternatives})(?![A-Za-z0-9_-])")


# a lowercase identifier in brackets after a label: "危险性(risk_level)", "周次(week)"
BRACKETED_IDENTIFIER = re.compile(r"[(（][a-z][a-z0-9]*(?:_[a-z0-9]+)*[)）]")


def find_codes(text: str, words: set[str] | None = None) -> list[str]:
    """The internal codes in ``text`` (each with a little context), empty when clean."""
    found = []
    text = re.sub(r"用户名 \S+", "用户名 …", text)  # a login name is what a person types, not a code
    pattern = _pattern(words or forbidden_codes())
    for m in pattern.finditer(text):
        found.append(text[max(0, m.start() - 30): m.end() + 30].replace("\n", " "))
    for m in BRACKETED_IDENTIFIER.finditer(text):
        found.append(text[max(0, m.start() - 30): m.end() + 30].replace("\n", " "))
    if "§" in text:
        i = text.index("§")
        found.append(text[max(0, i - 30): i + 30].replace("\n", " "))
    return found


class _Visible(HTMLParser):
    """The text a person sees on a page: text nodes outside script/style, and the attributes that
    are read (title, placeholder, aria-label, alt, a button's value)."""

    READ_ATTRS = ("title", "placeholder", "aria-label", "alt")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "template"):
            self._hidden += 1
        a = dict(attrs)
        for name in self.READ_ATTRS:
            if a.get(name):
                self.parts.append(a[name])
        if tag == "input" and a.get("type") in ("submit", "button") and a.get("value"):
            self.parts.append(a["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "template") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return "\n".join(p for p in parser.parts if p.strip())


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def xlsx_text(path: Path) -> str:
    """Every cell and every sheet title of a workbook."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    parts = []
    for ws in wb.worksheets:
        parts.append(ws.title)
        for row in ws.iter_rows(values_only=True):
            parts.extend(str(v) for v in row if isinstance(v, str))
    wb.close()
    return "\n".join(parts)


def file_text(path: Path) -> str:
    if path.suffix == ".pdf":
        return pdf_text(path)
    if path.suffix == ".xlsx":
        return xlsx_text(path)
    return path.read_text(encoding="utf-8")
