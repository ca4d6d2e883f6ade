"""导入 Import of regions, team members, patients, follow-ups, health checks and injections (contract.md).

Files: a directory of ``regions.csv``, ``team_members.csv``, ``patients.csv``,
``followups.csv``, ``health_checks.csv``, ``injections.csv``, ``care_team.csv`` (个案管理团队指派,
rules.md §6.1; [2026-12]), ``participants.csv`` (attendance per person on a follow-up, rules.md §6.2)
(any subset; UTF-8 with or without BOM, or GB18030/GBK — detected), or one
``.xlsx`` workbook with a sheet per file name. Headers are the English names or the Chinese labels of
contract.md. ``followups.csv`` takes every field of the 随访服务记录表 (rules.md §3) and ``patients.csv``
the 个人信息补充表 as optional columns; a column of those a file does not carry leaves the stored values
alone (``KEPT_WHEN_ABSENT``).

All-or-nothing by default: every bad row is reported (file, line, column, reason in
Chinese, stable code) and nothing is written. With ``skip_invalid`` the valid rows are
written and the bad ones reported. Rows are keyed by their ids — follow-ups by
(patient, date, n-th of that date in the file) — and written with upserts that change
nothing when the values are the same, so re-importing the same files changes nothing.
Writes are one transaction; on PostgreSQL rows go through COPY into a temporary table
and one INSERT … SELECT … ON CONFLICT per table (set-based, no statement per row).
"""

from __future__ import annotations

import csv
import functools
import gc
import io
from itertools import repeat
from operator import attrgetter, itemgetter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from registry import codes, models
from registry.audit import audit_row, cli_actor
from registry.care_team import check_member_serves, members_outside_townships_select
from registry.ids import mask
from registry.injections import record_last_injection, sync_last_injection
from registry.joint_visits import refresh_for_follow_ups, unnamed_kept_out
from registry.errors import ImportRejected, InvalidInput, Issue
from registry.guardian_years import enrol_for_import
from registry.models import utcnow
from registry.validation import (
    FOLLOW_UP_EXTRA_FIELDS,
    CARE_TEAM_FIELDS,
    FOLLOW_UP_FIELDS,
    HEALTH_CHECK_FIELDS,
    INJECTION_FIELDS,
    PARTICIPANT_FIELDS,
    PATIENT_FIELDS,
    PATIENT_SUPPLEMENT_FIELDS,
    REGION_FIELDS,
    TEAM_MEMBER_FIELDS,
    PrimaryMark,
    duplicate_primaries,
    Channel,
    FieldSpec,
    PatientFacts,
    check_assignment,
    check_follow_up,
    check_participant,
    check_health_check,
    check_injection,
    check_patient,
    check_member_region,
    check_village,
    flag,
    is_reached_visit,
    latest_reached_visits_sql,
    parse_columns,
    reached_visits_sql,
    unknown_patient,
)

Progress = Callable[[str, int, int], None]

# file stem -> field specs, in the order files are processed (parents before children)
# contract.md [2026-12] ``guardian_reward`` (以奖代补 enrolled 1/0): not a stored patient column here but the
# enrolment of the import's year (rules.md §11, registry.guardian_years.enrol_for_import); blank = unchanged
REWARD_IMPORT_FIELD = FieldSpec("guardian_reward", "以奖代补", flag, default=None)
FILE_SPECS: dict[str, list[FieldSpec]] = {
    "regions": REGION_FIELDS,
    "team_members": TEAM_MEMBER_FIELDS,
    # guardian_reward: the importer's own spec (blank = unchanged; 1 enrols a guardian-year, rules.md §11)
    "patients": PATIENT_FIELDS + [s for s in PATIENT_SUPPLEMENT_FIELDS if s.name != "guardian_reward"] + [REWARD_IMPORT_FIELD],
    "followups": FOLLOW_UP_FIELDS + FOLLOW_UP_EXTRA_FIELDS,
    "health_checks": HEALTH_CHECK_FIELDS,
    "injections": INJECTION_FIELDS,
    "care_team": CARE_TEAM_FIELDS,  # contract.md [2026-12] (rules.md §6.1)
    "participants": PARTICIPANT_FIELDS,  # contract.md [2026-12], rules.md §6.2 (after their follow-ups)
}
# contract.md [2026-12]: optional columns that a file without them does not overwrite (the web
# forms record them too; a re-import of an older, shorter file must not blank them).
KEPT_WHEN_ABSENT: dict[str, frozenset[str]] = {
    "patients": frozenset(s.name for s in PATIENT_SUPPLEMENT_FIELDS),
    "followups": frozenset(s.name for s in FOLLOW_UP_EXTRA_FIELDS),
}
# Chinese headers beyond each field's label (contract.md names some fields only in English).
HEADER_ALIASES = {
    "followups": {"患者编号": "patient_id", "患者心理疏导": "psych_support_patient", "家属心理疏导": "psych_support_family",
                  "心理疏导(患者)": "psych_support_patient", "心理疏导(家属)": "psych_support_family",
                  "危险性评估": "risk_level", "社会功能-个人生活料理": "sf_self_care", "社会功能-家务劳动": "sf_housework",
                  "社会功能-生产劳动及工作": "sf_work", "社会功能-学习能力": "sf_study", "社会功能-社会人际交往": "sf_social"},
    "health_checks": {"患者编号": "patient_id"},
    "injections": {"患者编号": "patient_id", "长效针剂": "drug", "针剂剂量": "dose"},
    "patients": {"监护人与患者关系": "guardian_relation", "监护人地址": "guardian_address",
                 "村(居)委会联系人联系电话": "village_contact_phone", "辖区村(居)委会联系人": "village_contact",
                 "既往治疗情况(门诊)": "outpatient_treatment", "曾住院次数": "admissions",
                 "住院次数": "admissions"},
    "team_members": {"编号": "member_id", "地区编码": "region_code", "联系电话": "phone", "主责": "primary"},
    "care_team": {"团队成员编号": "member_id"},
    "participants": {"到场情况": "present", "是否到场": "present", "原因": "reason", "序号": "seq"},
}
LEVEL_PARENT = {"township": "county", "village": "township"}


@dataclass
class TableResult:
    """One table's outcome: rows read, rows written (new or changed), rows unchanged."""

    read: int = 0
    written: int = 0
    unchanged: int = 0
    skipped: int = 0


@dataclass
class ImportResult:
    """导入结果 What an import did, per file, plus the issues of skipped rows."""

    tables: dict[str, TableResult] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    # 身份信息变更 (patient_id, field, old, new) of stored patients this import changed (ID numbers masked)
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)
    guardian_years: int = 0  # 以奖代补 guardian-years this import created (rules.md §11)
    # 注意 things stored that the import does not refuse but the county should fix (``_member_warnings``)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        names = {"regions": "地区", "team_members": "团队成员", "patients": "患者", "followups": "随访", "health_checks": "体检",
                 "injections": "长效针剂注射", "care_team": "团队指派", "participants": "随访参加人员"}
        parts = []
        for stem, res in self.tables.items():
            text = f"{names[stem]} {res.read} 行（新增或更新 {res.written}，未变 {res.unchanged}"
            text += f"，跳过 {res.skipped}）" if res.skipped else "）"
            parts.append(text)
        text = "导入完成：" + "；".join(parts) if parts else "没有可导入的文件"
        if self.changes:
            lines = [f"  患者 {pid} {_IDENTITY_LABELS[f]}：{old or '（空）'} → {new or '（空）'}" for pid, f, old, new in self.changes[:200]]
            more = f"\n  ……另有 {len(self.changes) - 200} 处" if len(self.changes) > 200 else ""
            text += f"\n已有患者的身份信息被更改 {len(self.changes)} 处（请核对）：\n" + "\n".join(lines) + more
        if self.warnings:
            text += "\n注意：\n" + "\n".join(self.warnings)
        return text


class _Row:
    """One data row: its file line, parsed values and issues (light: there are millions)."""

    __slots__ = ("line", "values", "issues", "file")

    def __init__(self, line: int, values: dict[str, Any], file: str = ""):
        self.line = line
        self.values = values
        self.issues: list[Issue] = []
        self.file = file  # the CSV file, or "workbook.xlsx:sheet"


# ---------------------------------------------------------------- reading

def _normalise_header(text: str) -> str:
    return text.strip().replace("（", "(").replace("）", ")").replace(" ", "").lstrip("\ufeff")


def _header_map(stem: str, header: list[str], file: str) -> tuple[list[str | None], list[Issue]]:
    """Map each header cell to a field name; unknown and duplicate columns are issues."""
    lookup: dict[str, str] = {}
    for spec in FILE_SPECS[stem]:
        lookup[spec.name] = spec.name
        lookup[_normalise_header(spec.label)] = spec.name
    for alias, name in HEADER_ALIASES.get(stem, {}).items():
        lookup[_normalise_header(alias)] = name
    mapping: list[str | None] = []
    issues: list[Issue] = []
    seen: set[str] = set()
    for cell in header:
        key = _normalise_header(cell or "")
        name = lookup.get(key) or lookup.get(key.lower())
        if name is None:
            if key == "":
                mapping.append(None)
                continue
            known = "、".join(s.name for s in FILE_SPECS[stem])
            issues.append(Issue("UNKNOWN_COLUMN", f"未知的列“{cell}”；{stem} 可用的列为：{known}（或对应中文名）", file=file, line=1, column=cell))
        elif name in seen:
            issues.append(Issue("DUPLICATE_COLUMN", f"列“{cell}”重复出现", file=file, line=1, column=cell))
            name = None
        else:
            seen.add(name)
        mapping.append(name)
    for spec in FILE_SPECS[stem]:
        if spec.required and spec.name not in seen:
            issues.append(Issue("MISSING_COLUMN", f"缺少必需的列 {spec.name}（{spec.label}）", file=file, line=1, column=spec.name))
    return mapping, issues


@dataclass
class _Table:
    """One file's cells by column, with the file line of every row."""

    lines: list[int]
    columns: dict[str, list[str]]
    file: str = ""


def _rows_from_table(stem: str, file: str, table: Iterable[tuple[int, list[str]]]) -> tuple[_Table | None, list[Issue]]:
    it = iter(table)
    try:
        _, header = next(it)
    except StopIteration:
        return None, [Issue("EMPTY_FILE", "文件为空（没有表头）", file=file, line=1)]
    mapping, issues = _header_map(stem, header, file)
    if issues:
        return None, issues
    width = len(mapping)
    lines: list[int] = []
    kept: list[list[str]] = []
    for line, cells in it:
        if len(cells) != width:
            if not any(c.strip() for c in cells):
                continue  # blank line
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                issues.append(Issue("EXTRA_CELLS", f"该行有 {len(cells)} 个单元格，多于表头的 {width} 列", file=file, line=line))
                continue
            cells = (cells + [""] * width)[:width]
        elif not any(cells):
            continue
        lines.append(line)
        kept.append(cells)
    by_column = list(zip(*kept)) if kept else [()] * width
    columns = {name: list(by_column[i]) for i, name in enumerate(mapping) if name}
    return _Table(lines, columns, file), issues


def decode_text(data: bytes) -> tuple[str | None, int]:
    """文件编码 The text of a file: UTF-8 (with or without BOM) first, else GB18030 (a superset of GBK,
    what Excel saves on Chinese Windows; contract.md). Returns (text, 0), or (None, line of the first
    byte that is neither)."""
    try:
        return data.decode("utf-8-sig"), 0
    except UnicodeDecodeError as err:
        utf8_at = err.start
    try:
        return data.decode("gb18030"), 0
    except UnicodeDecodeError as err:
        # a file with UTF-8 text before its bad byte is UTF-8 gone wrong there; else name GB18030's failure
        at = utf8_at if not data[:utf8_at].isascii() else max(utf8_at, err.start)
        return None, data[:at].count(b"\n") + 1


def _read_csv(path: Path) -> tuple[_Table | None, list[Issue]]:
    content, line = decode_text(path.read_bytes())
    if content is None:
        return None, [Issue("ENCODING", f"文件既不是 UTF-8 也不是 GB18030/GBK 编码（第{line}行有无法识别的字节），请另存为 UTF-8 后重新导入", file=path.name, line=line)]
    reader = csv.reader(io.StringIO(content, newline=""))

    def numbered():
        for cells in reader:
            yield reader.line_num, cells

    try:
        return _rows_from_table(path.stem, path.name, numbered())
    except csv.Error as err:
        return None, [Issue("BAD_CSV", f"CSV 格式错误：{err}", file=path.name, line=reader.line_num)]


def _cell_text(value) -> str:
    if value is None:
        return ""
    if hasattr(value, "date") and hasattr(value, "hour"):  # datetime
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _sheet_cells(row, where: str, formulas: list[Issue]) -> list[str]:
    """A sheet row's cells as text; a formula cell is an issue naming the cell (its value would be
    read as blank or as the formula's text: silent data loss)."""
    cells = []
    for cell in row:
        if getattr(cell, "data_type", None) == "f":
            coordinate = getattr(cell, "coordinate", "?")
            formulas.append(Issue("FORMULA_CELL", f"单元格 {coordinate} 是公式，请改为数值或文本后再导入",
                                  file=where, line=getattr(cell, "row", None), column=coordinate))
            cells.append("")
        else:
            cells.append(_cell_text(getattr(cell, "value", None)))
    return cells


def _read_xlsx(path: Path) -> dict[str, tuple[_Table | None, list[Issue]]]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=False)
    except Exception as err:  # openpyxl raises many types for a broken file
        raise InvalidInput.single("BAD_XLSX", f"无法读取 Excel 文件 {path.name}：{err}") from None
    out = {}
    try:
        for sheet in wb.worksheets:
            stem = sheet.title.strip().removesuffix(".csv")
            where = f"{path.name}:{sheet.title}"
            if stem not in FILE_SPECS:
                out[sheet.title] = (None, [Issue("UNKNOWN_SHEET", f"未知的工作表“{sheet.title}”；应为 {'、'.join(FILE_SPECS)}", file=where)])
                continue
            if stem in out:
                first = out[stem][0].file if out[stem][0] is not None else stem
                out[f"{sheet.title}#duplicate"] = (None, [Issue("DUPLICATE_SHEET", f"工作表“{sheet.title}”与“{first.split(':', 1)[-1]}”都对应 {stem}，只能有一个", file=where)])
                continue
            formulas: list[Issue] = []
            rows = ((i, _sheet_cells(r, where, formulas)) for i, r in enumerate(sheet.iter_rows(), start=1))
            table, issues = _rows_from_table(stem, where, rows)
            out[stem] = (None, formulas + issues) if formulas else (table, issues)
    finally:
        wb.close()
    return out


def read_sources(path: Path) -> dict[str, tuple[_Table | None, list[Issue]]]:
    """Rows per file stem, with the issues found while reading (encoding, headers)."""
    path = Path(path)
    if path.is_dir():
        found = {}
        for stem in FILE_SPECS:
            file = path / f"{stem}.csv"
            if file.exists():
                found[stem] = _read_csv(file)
        known = {f"{stem}.csv" for stem in FILE_SPECS}
        # a data file by its suffix (README.md and the like may sit beside the files)
        unknown = sorted(p.name for p in path.iterdir() if p.name not in known and not p.name.startswith(".")
                         and p.suffix.lower() in DATA_SUFFIXES)
        for name in unknown:  # e.g. followup.csv: ignoring it would lose its rows silently
            found[f"{name}#unknown"] = (None, [Issue("UNKNOWN_FILE", f"未知的文件“{name}”；可导入的文件为 {'、'.join(sorted(known))}，请改名或移出该目录", file=name)])
        if not found:
            raise InvalidInput.single("NO_FILES", f"目录 {path} 中没有可导入的文件（{'、'.join(s + '.csv' for s in FILE_SPECS)}）")
        return found
    if path.suffix.lower() == ".xlsx":
        return _read_xlsx(path)
    if path.suffix.lower() == ".csv" and path.stem in FILE_SPECS:
        return {path.stem: _read_csv(path)}
    if not path.exists():
        raise InvalidInput.single("NO_FILES", f"找不到 {path}")
    raise InvalidInput.single("NO_FILES", f"无法导入 {path.name}：应为目录、.xlsx 工作簿或 {'/'.join(FILE_SPECS)}.csv")


# ---------------------------------------------------------------- validation across rows and the database

class _Context:
    """What the database already holds, fetched set-based once per import: the region levels and
    parents, and the facts (``PatientFacts``) and village of the patients the follow-ups, health
    checks, assignments and attendance rows reference."""

    def __init__(self, conn: Connection, patient_ids: set[str]):
        self.regions: dict[str, str] = {}
        self.parents: dict[str, str | None] = {}
        for code, level, parent in conn.execute(sa.select(models.Region.code, models.Region.level, models.Region.parent_code)):
            self.regions[code], self.parents[code] = level, parent
        self.patients: dict[str, PatientFacts] = {}
        self.villages: dict[str, str] = {}
        if patient_ids:
            t = models.Patient.__table__
            cols = sa.select(t.c.patient_id, t.c.birth_date, t.c.registered_on, t.c.status, t.c.status_on, t.c.village_code)
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import ARRAY

                batches = [cols.where(t.c.patient_id == sa.any_(sa.literal(sorted(patient_ids), ARRAY(sa.String))))]
            else:
                batches = [cols.where(t.c.patient_id.in_(chunk)) for chunk in _chunks(sorted(patient_ids), 900)]
            for stmt in batches:
                for pid, birth, reg, status, status_on, village in conn.execute(stmt).all():
                    self.patients[pid] = PatientFacts(birth, reg, status, status_on)
                    self.villages[pid] = village


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


FILE_NAMES = {stem: f"{stem}.csv" for stem in FILE_SPECS}
# Issues about the files themselves: the import stops even with skip_invalid (nothing can be skipped).
DATA_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".xls"})
FATAL = frozenset({"UNKNOWN_FILE", "DUPLICATE_SHEET", "UNKNOWN_SHEET"})

# 统计信息 After this many rows written, the tables' planner statistics are refreshed: a schedule
# right after a large import otherwise plans on empty-table statistics (issue 18: 40× slower).
ANALYZE_ROWS = 1000


def _tag(row: _Row, stem: str, issues: list[Issue]) -> None:
    """Attach issues to a row with its file (CSV file or workbook:sheet) and line."""
    for i in issues:
        row.issues.append(Issue(i.code, i.message, file=row.file or FILE_NAMES[stem], line=row.line, column=i.column, value=i.value))


def _parse_sources(sources: dict[str, tuple[_Table | None, list[Issue]]]) -> tuple[dict[str, list[_Row]], list[Issue]]:
    """Parse every file column-wise (``validation.parse_columns``) into rows carrying their field issues."""
    file_issues: list[Issue] = []
    rows: dict[str, list[_Row]] = {}
    for stem, (table, sissues) in sources.items():
        file_issues += sissues
        if stem not in FILE_SPECS or table is None:
            continue
        kept = KEPT_WHEN_ABSENT.get(stem, frozenset())
        specs = [s for s in FILE_SPECS[stem] if s.name in table.columns or s.name not in kept]
        n = len(table.lines)
        values, issues = parse_columns(table.columns, n, specs)
        names_ = [s.name for s in specs]
        srows = list(map(_Row, table.lines, map(dict, map(zip, repeat(names_), zip(*(values[k] for k in names_)))),
                         repeat(table.file or FILE_NAMES[stem])))
        for i, row_issues in issues.items():
            _tag(srows[i], stem, row_issues)
        rows[stem] = srows
    return rows, file_issues


def _first_lines(rows: list[_Row], stem: str, key: Callable[[_Row], Any], issue: Callable[[Any, int], Issue]) -> dict[Any, int]:
    """Keys unique within a file: a repeat is an issue naming the first line (DUPLICATE_ID)."""
    first: dict[Any, int] = {}
    for row in rows:
        k = key(row)
        if k in first:
            _tag(row, stem, [issue(k, first[k])])
        elif k:
            first[k] = row.line
    return first


def _check_regions(region_rows: list[_Row], known: dict[str, str], conn: Connection) -> dict[str, str]:
    """地区 Unique codes; a county has no parent, a township's parent is a county and a village's a
    township (rules.md §1), judged on the levels as they will be once the import applies — so the
    region tree has no cycle (a county under itself hung ``--region`` and crashed the rates). A row
    whose parent's row in the file is refused is refused too (``PARENT_ROW_INVALID``; with
    ``--skip-invalid`` it would name a region never written). A stored region keeps its level while
    stored regions or patients lie under it (``REGION_LEVEL_CHANGE``: they would hang under a region
    of the wrong level). Returns the level of every valid region, stored or in the file."""
    first = _first_lines(region_rows, "regions", lambda r: r.values.get("code"),
                         lambda code, line: Issue("DUPLICATE_ID", f"编码 {code} 与第{line}行重复", column="code", value=code))
    by_code = {r.values["code"]: r for r in region_rows if r.values.get("code") and first.get(r.values["code"]) == r.line}
    under = _under_changed([r for r in by_code.values() if not r.issues], known, conn)
    while True:  # a refused row may refuse its children in turn
        valid = {r.values["code"]: r for r in region_rows if not r.issues}
        levels = dict(known)
        levels.update({code: r.values["level"] for code, r in valid.items()})
        refused = False
        for row in region_rows:
            if row.issues:
                continue
            code, level = row.values["code"], row.values["level"]
            issue = None
            if code in under:  # a stored child re-imported under another parent no longer lies under it
                children, patients = under[code]
                staying = [c for c in children if c not in valid or valid[c].issues or valid[c].values.get("parent_code") == code]
                what = [f"{n} 个下级地区" for n in [len(staying)] if n] + [f"{n} 名患者" for n in [patients] if n]
                if what:
                    issue = Issue("REGION_LEVEL_CHANGE", f"地区 {code} 已入库为{codes.RegionLevel.label_of(known[code])}，其下有 {'、'.join(what)}，"
                                  f"不能改为{codes.RegionLevel.label_of(level)}（请先迁移其下级地区和患者）", column="level", value=level)
            issue = issue or _parent_issue(row, levels, by_code)
            if issue is not None:
                _tag(row, "regions", [issue])
                refused = True
        if not refused:
            return levels


def _parent_issue(row: _Row, levels: dict[str, str], by_code: dict[str, _Row]) -> Issue | None:
    """A region row's parent against the levels once the import applies (rules.md §1), or None."""
    code, level, parent = row.values["code"], row.values["level"], row.values.get("parent_code")
    if parent and level == codes.RegionLevel.COUNTY.value:
        return Issue("BAD_PARENT_LEVEL", f"{code} 为县(市、区)，是最上级地区，上级编码应为空，实为 {parent}",
                     column="parent_code", value=parent)
    if parent and parent not in levels:
        prow = by_code.get(parent)
        if prow is not None and prow is not row:
            return Issue("PARENT_ROW_INVALID", f"上级编码 {parent} 在 {prow.file} 第{prow.line}行有错误，本行不能导入",
                         column="parent_code", value=parent)
        return Issue("UNKNOWN_PARENT", f"上级编码 {parent} 不存在", column="parent_code", value=parent)
    if parent and level in LEVEL_PARENT and levels[parent] != LEVEL_PARENT[level]:
        return Issue("BAD_PARENT_LEVEL", f"{code} 为{codes.RegionLevel.label_of(level)}，其上级编码 {parent} 应为"
                     f"{codes.RegionLevel.label_of(LEVEL_PARENT[level])}，实为{codes.RegionLevel.label_of(levels[parent])}", column="parent_code", value=parent)
    if not parent and level in LEVEL_PARENT:
        return Issue("REQUIRED", f"{codes.RegionLevel.label_of(level)}必须填写上级编码", column="parent_code")
    return None


def _under_changed(rows: list[_Row], known: dict[str, str], conn: Connection) -> dict[str, tuple[list[str], int]]:
    """级别变更 For each row changing a stored region's level: its stored child regions and its stored
    patient count (one grouped query each); ``_check_regions`` refuses the change while any of them
    stays under it (``REGION_LEVEL_CHANGE``)."""
    changed = sorted(r.values["code"] for r in rows if r.values["code"] in known and known[r.values["code"]] != r.values["level"])
    out: dict[str, tuple[list[str], int]] = {code: ([], 0) for code in changed}
    region, patient = models.Region.__table__, models.Patient.__table__
    for chunk in _chunks(changed, 900):
        for parent, code in conn.execute(sa.select(region.c.parent_code, region.c.code).where(region.c.parent_code.in_(chunk))):
            out[parent][0].append(code)
        for village, n in conn.execute(sa.select(patient.c.village_code, sa.func.count())
                                       .where(patient.c.village_code.in_(chunk)).group_by(patient.c.village_code)):
            out[village] = (out[village][0], n)
    return out


def _check_team_members(member_rows: list[_Row], levels: dict[str, str], conn: Connection) -> None:
    """团队成员 Unique ids; the region served exists and is a township or a village
    (``validation.check_member_region``, contract.md); one primary per region and role once the file
    applies, counting the stored members (``validation.duplicate_primaries``, rules.md §6.1)."""
    _first_lines(member_rows, "team_members", lambda r: r.values.get("member_id"),
                 lambda mid, line: Issue("DUPLICATE_ID", f"成员编号 {mid} 与第{line}行重复", column="member_id", value=mid))
    for row in member_rows:
        issues = check_member_region(row.values.get("region_code"), levels)
        if issues:
            _tag(row, "team_members", issues)
    marks = [PrimaryMark(i, row.file or FILE_NAMES["team_members"], row.line, row.values["member_id"],
                         row.values["region_code"], row.values["role"], bool(row.values.get("primary")))
             for i, row in enumerate(member_rows) if not row.issues]
    if not any(m.primary for m in marks):  # nothing marked: the file adds no primary (a row may only unmark one)
        return
    m = models.TeamMember.__table__
    stored = {member: (region, role) for member, region, role in
              conn.execute(sa.select(m.c.member_id, m.c.region_code, m.c.role).where(m.c.primary.is_(True)))}
    for i, issue in duplicate_primaries(marks, stored).items():
        _tag(member_rows[i], "team_members", [issue])


class _Reached:
    """最近访到日期（导入后） The latest follow-up that reached each patient whose status or death date
    this import checks, as the follow-ups will stand once the import applies (``_reached_once_applied``),
    and the rows of the file that replace a stored reached follow-up dated after that date (a
    correction the date relies on)."""

    __slots__ = ("latest", "replaced")

    def __init__(self, latest: dict[str, date], replaced: dict[str, list[tuple[date, _Row]]]):
        self.latest = latest
        self.replaced = replaced

    def relied_on(self, pid: str, on: date) -> list[tuple[date, _Row]]:
        """The stored reached visits after ``on`` that the file replaces, with the replacing row."""
        return [(stored, row) for stored, row in self.replaced.get(pid, ()) if stored > on]


def _dates_to_check(rows: dict[str, list[_Row]]) -> dict[str, date]:
    """The earliest status date (``patients.csv``, a death or move-out) or death date (``followups.csv``
    死亡日期) per patient of this import: the dates ``STATUS_BEFORE_VISIT`` checks."""
    active = codes.PatientStatus.ACTIVE.value
    out: dict[str, date] = {}
    for stem, name in (("patients", "status_on"), ("followups", "death_on")):
        for r in rows.get(stem, ()):
            v = r.values
            pid, on = v.get("patient_id"), v.get(name)
            if pid and on is not None and (stem == "followups" or (v.get("status") or active) != active):
                if pid not in out or on < out[pid]:
                    out[pid] = on
    return out


def _reached_once_applied(conn: Connection, dates: dict[str, date], followup_rows: list[_Row]) -> _Reached:
    """最近访到日期（导入后） For each patient of ``dates`` (patient → the earliest status or death date
    to check), the latest follow-up that reached them once the import applies (rules.md §1, §3,
    ``STATUS_BEFORE_VISIT``): the stored follow-ups with each row of the file replacing the stored row
    of its key (patient, date, n-th of that date) — a correction to 未访到 lifts the bound, a newer
    reached visit in the file sets it — plus the file's new rows (``is_reached_visit``). Set-based:
    one grouped query per 900 patients (``validation.latest_reached_visits_sql``); then, only for the
    patients whose stored latest reached visit lies after their date while the file carries a row of
    theirs dated after it too, one query per 900 of them for those stored reached rows
    (``validation.reached_visits_sql``). Past the date the latest is exact; a patient with no reached
    visit after the date gets None or an earlier one (no bound either way)."""
    f = models.FollowUp.__table__
    stored: dict[str, date] = {}
    for chunk in _chunks(sorted(dates), 900):
        stored.update(conn.execute(latest_reached_visits_sql(f).where(f.c.patient_id.in_(chunk))).all())
    in_file: dict[tuple, _Row] = {}
    latest: dict[str, date] = {}
    for r in followup_rows:
        v = r.values
        pid, on = v.get("patient_id"), v.get("visit_on")
        if pid in dates and on is not None:
            in_file[(pid, on, v["seq"])] = r
            if is_reached_visit(v) and (pid not in latest or on > latest[pid]):
                latest[pid] = on
    later_in_file = {pid for pid, on, _seq in in_file if on > dates[pid]}
    recheck = sorted(pid for pid, on in stored.items() if on > dates[pid] and pid in later_in_file)
    for pid, on in stored.items():
        if pid not in later_in_file or on <= dates[pid]:  # no row of the file can replace a reached visit after the date
            if pid not in latest or on > latest[pid]:
                latest[pid] = on
    replaced: dict[str, list[tuple[date, _Row]]] = {}
    for chunk in _chunks(recheck, 900):
        after = min(dates[pid] for pid in chunk)
        for pid, on, seq in conn.execute(reached_visits_sql(f).where(f.c.patient_id.in_(chunk), f.c.visit_on > after)):
            row = in_file.get((pid, on, seq))
            if row is not None:  # the file's row stands instead (its own reach counted above)
                replaced.setdefault(pid, []).append((on, row))
            elif pid not in latest or on > latest[pid]:
                latest[pid] = on
    return _Reached(latest, replaced)


def _refuse_unheld_corrections(rows: dict[str, list[_Row]], reached: _Reached) -> None:
    """更正未生效 A status date (``patients.csv``) or death date (``followups.csv``) that passes
    ``STATUS_BEFORE_VISIT`` only because a row of the file corrects a stored reached follow-up after
    it is refused when that row is refused (``FOLLOW_UP_ROW_INVALID``): with ``--skip-invalid`` the
    stored visit would stay. A refused patient row refuses the patient's other follow-up rows
    (``PATIENT_ROW_INVALID``, as when it is refused for its own fields)."""
    if not reached.replaced:
        return
    refused_patients: dict[str, _Row] = {}
    for stem, name, label in (("patients", "status_on", "状态日期"), ("followups", "death_on", "死亡日期")):
        for row in rows.get(stem, ()):
            v = row.values
            pid, on = v.get("patient_id"), v.get(name)
            if row.issues or on is None or pid not in reached.replaced:
                continue
            bad = next(((stored, r) for stored, r in reached.relied_on(pid, on) if r.issues and r is not row), None)
            if bad is None:
                continue
            stored, r = bad
            _tag(row, stem, [Issue("FOLLOW_UP_ROW_INVALID",
                                   f"{label} {on} 早于已入库的 {stored} 访到患者的随访，须以 {r.file} 第{r.line}行对该次随访的"
                                   "更正为准；该行有错误，本行不能导入", column=name, value=str(on))])
            if stem == "patients":
                refused_patients.setdefault(pid, row)
    for row in rows.get("followups", ()) if refused_patients else ():
        pid = row.values.get("patient_id")
        prow = refused_patients.get(pid)
        if prow is not None and not row.issues:
            _tag(row, "followups", [Issue("PATIENT_ROW_INVALID", f"患者编号 {pid} 在 {prow.file} 第{prow.line}行有错误，本行不能导入",
                                          column="patient_id", value=pid)])


def _number_follow_ups(followup_rows: list[_Row]) -> None:
    """随访序号 The key of each follow-up row: (patient, date, n-th of that date in file order) — ``seq``."""
    ordinal: dict[tuple, int] = {}
    for row in followup_rows:
        values = row.values
        key = (values.get("patient_id"), values.get("visit_on"))
        values["seq"] = ordinal[key] = ordinal.get(key, 0) + 1


def _check_patients(patient_rows: list[_Row], levels: dict[str, str], today: date, reached: dict[str, date]) -> dict[str, _Row]:
    """患者 Unique ids, a village (``validation.check_village``), the row checks
    (``validation.check_patient``; a death or move-out not before the patient's latest follow-up
    that reached them once the import applies, ``reached`` — ``_reached_once_applied``,
    ``STATUS_BEFORE_VISIT``; the follow-ups of the same import are checked against the row,
    ``PATIENT_NOT_ACTIVE``). Returns the first row of each patient id."""
    first = _first_lines(patient_rows, "patients", lambda r: r.values.get("patient_id"),
                         lambda pid, line: Issue("DUPLICATE_ID", f"患者编号 {pid} 与第{line}行重复", column="patient_id", value=pid))
    file_patients: dict[str, _Row] = {}
    for row in patient_rows:
        v = row.values
        pid = v.get("patient_id")
        if pid and first.get(pid) == row.line and pid not in file_patients:
            file_patients[pid] = row
        _tag(row, "patients", check_village(v.get("village_code"), levels))
        if not any(i.code in ("BAD_DATE", "REQUIRED") and i.column == "birth_date" for i in row.issues):
            _tag(row, "patients", check_patient(v, today=today, latest_reached=reached.get(pid) if reached else None))
    return file_patients


class _Patients:
    """The patient of a follow-up or health check: its row in this import, else the stored one."""

    def __init__(self, file_patients: dict[str, _Row], stored: dict[str, PatientFacts]):
        self.file_patients = file_patients
        self.stored = stored
        self._facts: dict[str, PatientFacts] = {}

    def facts(self, stem: str, row: _Row) -> PatientFacts | None:
        """The patient's facts, or None after tagging the row (unknown patient, invalid patient row)."""
        pid = row.values.get("patient_id")
        if not pid:
            return None
        prow = self.file_patients.get(pid)
        if prow is not None:
            if prow.issues:
                _tag(row, stem, [Issue("PATIENT_ROW_INVALID", f"患者编号 {pid} 在 {prow.file} 第{prow.line}行有错误，本行不能导入", column="patient_id", value=pid)])
                return None
            facts = self._facts.get(pid)
            if facts is None:
                facts = self._facts[pid] = PatientFacts.from_values(prow.values)
            return facts
        facts = self.stored.get(pid)
        if facts is None:
            _tag(row, stem, [unknown_patient(pid)])
        return facts

    def village(self, pid: str, stored: dict[str, str]) -> str | None:
        """The patient's village as the import leaves it: its row in this import, else the stored one."""
        prow = self.file_patients.get(pid)
        return prow.values.get("village_code") if prow is not None else stored.get(pid)


def _exact_duplicates(rows: list[_Row], names: list[str]) -> dict[int, _Row]:
    """完全重复行 The rows (by index) equal in every column to an earlier row, each with that row.

    One hash of the whole row per row (memory: millions of rows), compared in full on a hit; the
    common case (no two hashes alike) is settled column-wise, without a per-row loop. Only the
    columns the file has count (an optional column left out is absent from every row's values)."""
    if not rows:
        return {}
    names = [n for n in names if n in rows[0].values] or list(rows[0].values)
    whole = itemgetter(*names)
    hashes = list(map(hash, map(whole, map(attrgetter("values"), rows))))
    if len(set(hashes)) == len(hashes):
        return {}
    seen: dict[int, _Row] = {}
    repeats: dict[int, _Row] = {}
    for i, (h, row) in enumerate(zip(hashes, rows)):
        earlier = seen.setdefault(h, row)
        if earlier is not row and whole(earlier.values) == whole(row.values):
            repeats[i] = earlier
    return repeats


def _check_followups(followup_rows: list[_Row], patients: _Patients, today: date, reached: dict[str, date]) -> None:
    """随访 ``validation.check_follow_up`` per row (a death date against ``reached``, the patient's
    latest reached follow-up once the import applies, this row's file included:
    ``_reached_once_applied``); keyed by ``_number_follow_ups``."""
    repeats = _exact_duplicates(followup_rows, [s.name for s in FILE_SPECS["followups"]])
    facts_of, channel = patients.facts, Channel.IMPORT
    for i, row in enumerate(followup_rows):
        values = row.values
        issues = check_follow_up(values, today=today, patient=facts_of("followups", row), channel=channel,
                                 latest_reached=reached.get(values.get("patient_id")) if reached else None)
        if issues:
            _tag(row, "followups", issues)
        earlier = repeats.get(i) if repeats else None
        if earlier is not None:
            first = earlier.line  # the same visit typed twice would become two visits
            _tag(row, "followups", [Issue("DUPLICATE_ROW", f"第{row.line}行与第{first}行完全相同（同一次随访重复录入）；"
                                          "同一天确有两次随访时请至少区分一项内容", column="patient_id",
                                          value=str(values.get("patient_id")))])


_NO_FACTS = PatientFacts(None, None)


def _check_health_checks(check_rows: list[_Row], patients: _Patients, today: date) -> None:
    """体检 ``validation.check_health_check`` per row; one per patient and date within the file."""
    seen: dict[tuple, int] = {}
    for row in check_rows:
        facts = patients.facts("health_checks", row)
        _tag(row, "health_checks", check_health_check(row.values, facts or _NO_FACTS, today=today, channel=Channel.IMPORT))
        key = (row.values.get("patient_id"), row.values.get("checked_on"))
        if key in seen:
            _tag(row, "health_checks", [Issue("DUPLICATE_ID", f"体检日期与第{seen[key]}行重复（同一患者同一天的体检）", column="checked_on")])
        else:
            seen[key] = row.line


def _check_injections(injection_rows: list[_Row], patients: _Patients, today: date) -> None:
    """长效针剂注射 ``validation.check_injection`` per row (on the import: the history, whatever the
    current plan — DELIBERATE_DIFFERENCES); one per patient and date within the file."""
    seen: dict[tuple, int] = {}
    for row in injection_rows:
        facts = patients.facts("injections", row)
        _tag(row, "injections", check_injection(row.values, facts or _NO_FACTS, today=today, channel=Channel.IMPORT))
        key = (row.values.get("patient_id"), row.values.get("given_on"))
        if key in seen:
            _tag(row, "injections", [Issue("DUPLICATE_ID", f"注射日期与第{seen[key]}行重复（同一患者同一天的注射）", column="given_on")])
        else:
            seen[key] = row.line


def _check_care_team(rows: list[_Row], member_rows: list[_Row], region_rows: list[_Row], patients: _Patients,
                     ctx: "_Context", conn: Connection) -> None:
    """团队指派 (rules.md §6.1) ``validation.check_assignment`` per row against the members of this
    import (valid rows) and the stored ones; the patient exists; the member serves the patient's
    village or its township (``care_team.check_member_serves``, ``MEMBER_OUT_OF_SCOPE``: the member's
    region, the patient's village and the village's township as the import leaves them — a valid row
    of this import, else the stored one; not for a row re-stating a stored assignment, keyed by
    patient, member, role and start: it may end one made before the rule, or one the patient's move
    left outside, as the patient page may, and an export re-imports); one row per key within the file."""
    if not rows:
        return
    a = models.CareTeamAssignment.__table__
    stored: set[tuple] = set()
    for chunk in _chunks(sorted({r.values.get("patient_id") for r in rows if r.values.get("patient_id")}), 900):
        stored |= {tuple(k) for k in conn.execute(sa.select(a.c.patient_id, a.c.member_id, a.c.role, a.c.from_on)
                                                   .where(a.c.patient_id.in_(chunk)))}
    tm = models.TeamMember.__table__
    members = {mid: (role, region) for mid, role, region in conn.execute(sa.select(tm.c.member_id, tm.c.role, tm.c.region_code))}
    members.update({r.values["member_id"]: (r.values["role"], r.values["region_code"]) for r in member_rows if not r.issues})
    parents = dict(ctx.parents)
    parents.update({r.values["code"]: r.values.get("parent_code") for r in region_rows if not r.issues})
    seen: dict[tuple, int] = {}
    for row in rows:
        facts = patients.facts("care_team", row)
        v = row.values
        role, region = members.get(v.get("member_id"), (None, None))
        _tag(row, "care_team", check_assignment(v, role))
        key = tuple(v.get(k) for k in ("patient_id", "member_id", "role", "from_on"))
        if facts is not None and role is not None and key not in stored:
            village = patients.village(v["patient_id"], ctx.villages)
            _tag(row, "care_team", check_member_serves(v["member_id"], region, village, parents.get(village), v["patient_id"]))
        if key in seen:
            _tag(row, "care_team", [Issue("DUPLICATE_ID", f"与第{seen[key]}行重复（同一患者、成员、角色和开始日期）",
                                          column="from_on")])
        else:
            seen[key] = row.line


def _check_participants(part_rows: list[_Row], rows: dict[str, list[_Row]], patients: _Patients, ctx: "_Context",
                        conn: Connection) -> None:
    """随访参加人员 participants.csv (contract.md [2026-12]): the follow-up (patient, date, ``seq``) is in
    this import or stored; the member exists and the role is the member's (``validation.check_participant``,
    ``ROLE_MISMATCH``); one row per person within the file — per follow-up,
    role and member, and one unnamed row (no ``member_id``) per follow-up and role (rules.md §6.2:
    attendance is recorded per person; two officers of one visit are two rows)."""
    if not part_rows:
        return
    in_file = {(r.values.get("patient_id"), r.values.get("visit_on"), r.values.get("seq")): r
               for r in rows.get("followups", [])}
    pids = sorted({r.values.get("patient_id") for r in part_rows if r.values.get("patient_id")})
    f = models.FollowUp.__table__
    stored_keys: set[tuple] = set()
    for chunk in _chunks(pids, 900):
        stored_keys |= {tuple(k) for k in conn.execute(sa.select(f.c.patient_id, f.c.visit_on, f.c.seq)
                                                        .where(f.c.patient_id.in_(chunk)))}
    roles = {r.values.get("member_id"): r.values.get("role") for r in rows.get("team_members", []) if not r.issues}
    wanted = sorted({r.values.get("member_id") for r in part_rows if r.values.get("member_id")} - set(roles))
    m = models.TeamMember.__table__
    for chunk in _chunks(wanted, 900):
        roles.update(conn.execute(sa.select(m.c.member_id, m.c.role).where(m.c.member_id.in_(chunk))).all())
    seen: dict[tuple, int] = {}
    for row in part_rows:
        if row.issues:
            continue
        v = row.values
        if patients.facts("participants", row) is None:
            continue
        key = (v["patient_id"], v["visit_on"], v["seq"])
        frow = in_file.get(key)
        if frow is not None and frow.issues:
            _tag(row, "participants", [Issue("FOLLOW_UP_ROW_INVALID", f"该随访在 {frow.file} 第{frow.line}行有错误，本行不能导入",
                                             column="visit_on", value=str(v["visit_on"]))])
        elif frow is None and key not in stored_keys:
            _tag(row, "participants", [Issue("UNKNOWN_FOLLOW_UP", f"患者 {v['patient_id']} 在 {v['visit_on']} 没有第{v['seq']}次随访记录",
                                             column="visit_on", value=str(v["visit_on"]))])
        _tag(row, "participants", check_participant(v, roles.get(v.get("member_id"))))
        dup = key + (v["role"], v.get("member_id") or None)
        if dup in seen:
            who = f"同一成员 {v['member_id']}" if v.get("member_id") else "同一角色的未具名人员"
            _tag(row, "participants", [Issue("DUPLICATE_ID", f"同一次随访{who}与第{seen[dup]}行重复",
                                             column="member_id" if v.get("member_id") else "role",
                                             value=v.get("member_id") or v["role"])])
        else:
            seen[dup] = row.line


def _write_participants(conn: Connection, good: list[dict]) -> int:
    """Write attendance rows (source ``doctor``, recorded by the import), one per person (rules.md
    §6.2): keyed by (follow-up, role, member) for a named member, by (follow-up, role) for the role's
    unnamed row. A row the attendee recorded from their own account keeps their word
    (``registry.joint_visits.attendance_replaces``); an unchanged row is left alone; the other rows
    of the follow-up are not touched. The tasks those follow-ups closed get their 到位 / 联合未到位 again."""
    if not good:
        return 0
    f = models.FollowUp.__table__
    ids: dict[tuple, int] = {}
    for chunk in _chunks(sorted({v["patient_id"] for v in good}), 900):
        for pid, on, seq, fid in conn.execute(sa.select(f.c.patient_id, f.c.visit_on, f.c.seq, f.c.id)
                                              .where(f.c.patient_id.in_(chunk))):
            ids[(pid, on, seq)] = fid
    stamp = utcnow()
    records = [{"follow_up_id": ids[(v["patient_id"], v["visit_on"], v["seq"])], "role": v["role"],
                "member_id": v.get("member_id"), "attended": bool(v["present"]), "reason": v.get("reason"),
                "source": codes.AttendanceSource.DOCTOR.value, "recorded_by": "import", "recorded_at": stamp}
               for v in good]
    t = models.FollowUpParticipant.__table__
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    written = 0
    named = [r for r in records if r["member_id"]]
    unnamed = [r for r in records if not r["member_id"]]
    # rules.md §6.2 (session 12, registry.joint_visits.unnamed_kept_out): no unnamed row is created
    # where a named person of the role recorded their own attendance (their record took it over)
    if unnamed:
        own, have = set(), set()
        for chunk in _chunks(sorted({r["follow_up_id"] for r in unnamed}), 900):
            for fid, role, member, source in conn.execute(sa.select(t.c.follow_up_id, t.c.role, t.c.member_id, t.c.source)
                                                          .where(t.c.follow_up_id.in_(chunk))):
                if member is None:
                    have.add((fid, role))
                elif source == codes.AttendanceSource.SELF.value:
                    own.add((fid, role))
        unnamed = [r for r in unnamed if not unnamed_kept_out((r["follow_up_id"], r["role"]) in own,
                                                              (r["follow_up_id"], r["role"]) in have)]
    # the two keys of a person's row (models.FollowUpParticipant): the unique constraint for a named
    # member, the partial unique index for the role's unnamed row
    for group, target, index_where in ((named, ["follow_up_id", "role", "member_id"], None),
                                       (unnamed, ["follow_up_id", "role"], t.c.member_id.is_(None))):
        for chunk in _chunks(group, 1000):  # one multi-row statement per chunk
            ins = insert(t).values(chunk)
            changed = sa.or_(*[t.c[c].is_distinct_from(ins.excluded[c]) for c in ("attended", "reason")])
            stmt = ins.on_conflict_do_update(
                index_elements=target, index_where=index_where,
                set_={c: ins.excluded[c] for c in ("attended", "reason", "source", "recorded_by", "recorded_at")},
                where=sa.and_(t.c.source != codes.AttendanceSource.SELF.value, changed),
            ).returning(t.c.follow_up_id)  # the rows written (psycopg reports no rowcount for a multi-row VALUES)
            written += len(conn.execute(stmt).all())
    for chunk in _chunks(sorted({r["follow_up_id"] for r in records}), 900):
        refresh_for_follow_ups(conn, chunk)
    return written


def _validate(sources: dict[str, tuple[_Table | None, list[Issue]]], conn: Connection, today: date) -> tuple[dict[str, list[_Row]], list[Issue]]:
    """Parse every file, then the checks across rows and against the database, parents first."""
    rows, file_issues = _parse_sources(sources)
    referenced = {r.values.get("patient_id") for s in ("followups", "health_checks", "injections", "care_team", "participants")
                  for r in rows.get(s, [])}
    ctx = _Context(conn, {p for p in referenced if p})
    levels = _check_regions(rows.get("regions", []), ctx.regions, conn)
    _check_team_members(rows.get("team_members", []), levels, conn)
    _number_follow_ups(rows.get("followups", []))
    # STATUS_BEFORE_VISIT against the follow-ups as they will stand once the import applies (rules.md §1, §3)
    reached = _reached_once_applied(conn, _dates_to_check(rows), rows.get("followups", []))
    patients = _Patients(_check_patients(rows.get("patients", []), levels, today, reached.latest), ctx.patients)
    _check_followups(rows.get("followups", []), patients, today, reached.latest)
    _refuse_unheld_corrections(rows, reached)
    _check_health_checks(rows.get("health_checks", []), patients, today)
    _check_injections(rows.get("injections", []), patients, today)
    _check_care_team(rows.get("care_team", []), rows.get("team_members", []), rows.get("regions", []), patients, ctx, conn)
    _check_participants(rows.get("participants", []), rows, patients, ctx, conn)
    issues = list(file_issues)
    for srows in rows.values():
        for row in srows:
            issues += row.issues
    return rows, issues


# ---------------------------------------------------------------- writing

_TABLES = {
    "regions": (models.Region.__table__, ["code"]),
    "team_members": (models.TeamMember.__table__, ["member_id"]),
    "patients": (models.Patient.__table__, ["patient_id"]),
    "followups": (models.FollowUp.__table__, ["patient_id", "visit_on", "seq"]),
    "health_checks": (models.HealthCheck.__table__, ["patient_id", "checked_on"]),
    "injections": (models.Injection.__table__, ["patient_id", "given_on"]),
    "care_team": (models.CareTeamAssignment.__table__, ["patient_id", "member_id", "role", "from_on"]),
    "participants": (models.FollowUpParticipant.__table__, ["follow_up_id", "role", "member_id"]),  # _write_participants
}


def _upsert(conn: Connection, table: sa.Table, keys: list[str], records: list[dict], progress: Progress | None, stem: str) -> int:
    """Insert new rows, update changed ones, leave equal ones alone; returns rows written."""
    if not records:
        return 0
    columns = list(records[0].keys())
    update_cols = [c for c in columns if c not in keys]
    touch = {"updated_at": utcnow()} if "updated_at" in table.c else {}
    # Columns the file does not carry get their model defaults (needed for the COPY path).
    fill = {}
    for col in table.c:
        if col.name not in columns and col.default is not None and not col.primary_key:
            arg = col.default.arg
            fill[col.name] = arg(None) if callable(arg) else arg
    if fill:
        records = [{**rec, **fill} for rec in records]
        columns += list(fill)
    if conn.dialect.name == "postgresql":
        return _upsert_pg_copy(conn, table, keys, columns, update_cols, records, touch, progress, stem)
    from sqlalchemy.dialects.sqlite import insert

    ins = insert(table)
    if update_cols:
        stmt = ins.on_conflict_do_update(
            index_elements=keys,
            set_={**{c: ins.excluded[c] for c in update_cols}, **touch},
            where=sa.or_(*[table.c[c].is_distinct_from(ins.excluded[c]) for c in update_cols]),
        )
    else:
        stmt = ins.on_conflict_do_nothing(index_elements=keys)
    written = 0
    compiled = _driver_statement(conn, stmt, columns)
    for i, chunk in enumerate(_chunks(records, 20000)):
        if compiled is not None:
            written += conn.exec_driver_sql(compiled.string, _bound_rows(compiled, columns, chunk)).rowcount
        else:
            written += conn.execute(stmt, chunk).rowcount
        if progress:
            progress(stem, min((i + 1) * 20000, len(records)), len(records))
    return written


def _driver_statement(conn: Connection, stmt, columns: list[str]):
    """The upsert compiled once by SQLAlchemy for the driver's executemany, or None when a parameter
    is neither a file column nor a constant (then SQLAlchemy binds each row itself)."""
    compiled = stmt.compile(dialect=conn.dialect, column_keys=columns)
    if compiled.positiontup is None:
        return None
    for name in compiled.positiontup:
        if name not in columns:
            bind = compiled.binds.get(name)
            if bind is None or bind.callable is not None or bind.required:
                return None
    return compiled


def _bound_rows(compiled, columns: list[str], records: list[dict]) -> list[tuple]:
    """导入速度 The driver's parameter rows, built column by column with SQLAlchemy's own bind
    processors (dates, timestamps, flags stored exactly as ``conn.execute`` would store them),
    without SQLAlchemy's per-row parameter dictionaries (most of a SQLite import's time)."""
    processors = compiled._bind_processors
    out = []
    for name in compiled.positiontup:
        if name in columns:
            values = list(map(itemgetter(name), records))
        else:  # a constant of the statement (the touched updated_at)
            values = [compiled.binds[name].effective_value] * len(records)
        process = processors.get(name)
        if process is not None and values and values.count(values[0]) == len(values):
            values = [process(values[0])] * len(values)  # a constant (the timestamps): processed once
        elif process is not None:
            values = list(map(process, values))
        out.append(values)
    return list(zip(*out))


def _upsert_pg_copy(conn, table, keys, columns, update_cols, records, touch, progress, stem) -> int:
    raw = conn.connection.driver_connection
    tmp = f"_import_{table.name}"
    col_list = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cur:
        cur.execute(f'CREATE TEMP TABLE "{tmp}" ON COMMIT DROP AS SELECT {col_list} FROM "{table.name}" WITH NO DATA')
        cur.execute(f'ALTER TABLE "{tmp}" ADD COLUMN _row_no integer')
        with cur.copy(f'COPY "{tmp}" ({col_list}, _row_no) FROM STDIN') as copy:
            whole = itemgetter(*columns)
            for n, rec in enumerate(records):
                copy.write_row((*whole(rec), n))
                if progress and n % 20000 == 19999:
                    progress(stem, n + 1, len(records))
        key_list = ", ".join(f'"{k}"' for k in keys)
        if update_cols:
            sets = ", ".join([f'"{c}" = EXCLUDED."{c}"' for c in update_cols] + [f'"{c}" = %({c})s' for c in touch])
            changed = " OR ".join(f't."{c}" IS DISTINCT FROM EXCLUDED."{c}"' for c in update_cols)
            conflict = f"DO UPDATE SET {sets} WHERE {changed}"
        else:
            conflict = "DO NOTHING"
        cur.execute(
            f'INSERT INTO "{table.name}" AS t ({col_list}) SELECT {col_list} FROM "{tmp}" ORDER BY _row_no '
            f"ON CONFLICT ({key_list}) {conflict}",
            touch,
        )
        written = cur.rowcount
        cur.execute(f'DROP TABLE "{tmp}"')
    if progress:
        progress(stem, len(records), len(records))
    return written


def _gc_paused(fn):
    """导入速度 Run ``fn`` with CPython's cyclic garbage collector paused (and resumed after, unless it
    was already off). An import allocates a few objects per cell and keeps them all until it
    writes (none in reference cycles), so the collector would rescan the growing heap again and
    again: about 40 % of reading and checking the files (docs/import.md, Performance)."""

    @functools.wraps(fn)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused


@_gc_paused
def import_path(
    engine: Engine,
    path: Path | str,
    *,
    today: date,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    analyze_rows: int = ANALYZE_ROWS,
    actor: str | None = None,
) -> ImportResult:
    """导入 Validate every row of the files at ``path``, then write them in one transaction.

    Raises ``ImportRejected`` listing every bad row (nothing written) unless
    ``skip_invalid``, in which case the valid rows are written and the result carries
    the issues of the skipped ones.
    """
    sources = read_sources(Path(path))
    with engine.begin() as conn:
        rows, issues = _validate(sources, conn, today)
        if issues and (not skip_invalid or any(i.code in FATAL for i in issues)):
            raise ImportRejected(message=f"导入被拒绝：发现 {len(issues)} 个问题，未写入任何数据", issues=issues)
        result = ImportResult(issues=issues)
        reward = {}  # patient_id → the guardian_reward cell (True/False; None: blank or no column)
        for r in rows.get("patients", ()):
            reward[r.values.get("patient_id")] = r.values.pop("guardian_reward", None)
        if "patients" in rows:
            result.changes = _identity_changes(conn, [r.values for r in rows["patients"] if not r.issues])
            if result.changes:  # the patient's change history: one audit row per changed patient
                _record_changes(conn, result.changes, actor)
            _latest_injections_first(conn, rows)
        for stem in FILE_SPECS:
            if stem not in rows:
                continue
            srows = rows[stem]
            good = [r.values for r in srows if not r.issues]
            if stem == "regions":  # parents first
                order = {"county": 0, "township": 1, "village": 2}
                good.sort(key=lambda v: order[v["level"]])
            if stem == "participants":
                written = _write_participants(conn, good)
            else:
                table, keys = _TABLES[stem]
                written = _upsert(conn, table, keys, good, progress, stem)
            result.tables[stem] = TableResult(read=len(srows), written=written, unchanged=len(good) - written, skipped=len(srows) - len(good))
        if "injections" in rows or "patients" in rows:
            sync_last_injection(conn)
            record_last_injection(conn)
        if "patients" in rows:  # rules.md §11: guardian_reward 1 enrols the patient for the import's year
            good = [r.values for r in rows["patients"] if not r.issues]
            flagged = [(v["patient_id"], v["registered_on"]) for v in good if reward.get(v["patient_id"])]
            result.guardian_years = enrol_for_import(conn, flagged, year=today.year, actor=actor or cli_actor())
            p = models.Patient.__table__
            for flag_value in (True, False):  # the patient's 以奖代补 flag follows the cell (set-based)
                ids = [v["patient_id"] for v in good if reward.get(v["patient_id"]) is flag_value]
                for chunk in _chunks(ids, 5000):
                    conn.execute(sa.update(p).where(p.c.patient_id.in_(chunk), p.c.guardian_reward.is_not(flag_value))
                                 .values(guardian_reward=flag_value, updated_at=utcnow()))
        result.warnings = _member_warnings(conn, today)
    if sum(t.written for t in result.tables.values()) >= analyze_rows:
        analyze(engine, [_TABLES[stem][0].name for stem, t in result.tables.items() if t.written])
    return result


def _member_warnings(conn: Connection, today: date, shown: int = 50) -> list[str]:
    """不属乡镇或村的成员 Every import reports the stored team members whose region served is not a
    township or a village (stored before ``NOT_TOWNSHIP_OR_VILLAGE``; ``care_team.members_outside_townships_select``),
    until a ``team_members.csv`` row moves them: they count in no township's team nor as its primary
    member, and an assignment naming one still makes them a patient's responsible member (rules.md §6.1)."""
    rows = conn.execute(members_outside_townships_select(today)).all()
    if not rows:
        return []
    lines = [f"已入库的团队成员中有 {len(rows)} 名的服务地区不是乡镇(街道)或村(社区)（该规则之前导入）：不计入任何乡镇的团队和主责成员；"
             "请在 team_members.csv 中改为其服务的乡镇或村后重新导入"]
    for member_id, name, role, region, level, assigned in rows[:shown]:
        what = f"为{codes.RegionLevel.label_of(level)}级" if level else "不存在"
        held = f"；仍是 {assigned} 条当前有效指派的责任人" if assigned else ""
        lines.append(f"  团队成员 {member_id} {name}（{_role_label(role)}）：服务地区 {region} {what}{held}")
    if len(rows) > shown:
        lines.append(f"  ……另有 {len(rows) - shown} 名")
    return lines


def _role_label(role: str) -> str:
    try:
        return codes.TeamRole(role).label
    except ValueError:
        return role


def _latest_injections_first(conn: Connection, rows: dict[str, list[_Row]]) -> None:
    """末次注射 A patient row of this import with an LAI plan takes as its last injection the latest of
    its own date, its injections in this import and its stored injections (the plan's last injection
    is the latest row, contract.md), so writing it and then ``sync_last_injection`` change nothing
    on a re-import. Set-based: one grouped query per 900 patients on a plan."""
    planned = {r.values["patient_id"]: r.values for r in rows.get("patients", []) if not r.issues and r.values.get("lai_drug")}
    if not planned:
        return
    latest: dict[str, date] = {}
    for r in rows.get("injections", []):
        pid, on = r.values.get("patient_id"), r.values.get("given_on")
        if not r.issues and pid in planned and on is not None and (pid not in latest or on > latest[pid]):
            latest[pid] = on
    t = models.Injection.__table__
    for chunk in _chunks(sorted(planned), 900):
        for pid, on in conn.execute(sa.select(t.c.patient_id, sa.func.max(t.c.given_on)).where(t.c.patient_id.in_(chunk))
                                    .group_by(t.c.patient_id)):
            if pid not in latest or on > latest[pid]:
                latest[pid] = on
    for pid, on in latest.items():
        values = planned[pid]
        if values.get("lai_last_on") is None or on > values["lai_last_on"]:
            values["lai_last_on"] = on


def analyze(engine: Engine, tables: list[str]) -> None:
    """统计信息 Refresh the planner statistics of ``tables`` (PostgreSQL ANALYZE; SQLite ANALYZE with an
    analysis limit, so a large table costs a sample, not a scan)."""
    if not tables:
        return
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA analysis_limit=2000")
        for name in tables:
            conn.exec_driver_sql(f'ANALYZE "{name}"')


IDENTITY_FIELDS = ("name", "village_code", "id_number")
_IDENTITY_LABELS = {"name": "姓名", "village_code": "村编码", "id_number": "身份证号"}


def _record_changes(conn: Connection, changes: list[tuple[str, str, str, str]], actor: str | None) -> None:
    """身份变更记录 One audit row (action ``import_change``) per patient whose identity the import changed,
    in the import's transaction: field, old → new (ID numbers masked)."""
    who = actor or cli_actor()
    by_patient: dict[str, list[str]] = {}
    for pid, f, old, new in changes:
        by_patient.setdefault(pid, []).append(f"{_IDENTITY_LABELS[f]}：{old or '（空）'} → {new or '（空）'}")
    conn.execute(models.AuditLog.__table__.insert(), [
        audit_row(actor=who, action="import_change", object_type="patient", object_id=pid, detail="；".join(parts), source="import")
        for pid, parts in by_patient.items()])


def _identity_changes(conn: Connection, records: list[dict]) -> list[tuple[str, str, str, str]]:
    """身份信息变更 Name, village or ID number of a stored patient that the file changes (ID numbers masked)."""
    by_id = {r["patient_id"]: r for r in records}
    if not by_id:
        return []
    t = models.Patient.__table__
    changes = []
    cols = sa.select(t.c.patient_id, *(t.c[f] for f in IDENTITY_FIELDS))
    if conn.dialect.name == "postgresql":  # one statement (import speed), as _Context
        from sqlalchemy.dialects.postgresql import ARRAY

        batches = [cols.where(t.c.patient_id == sa.any_(sa.literal(sorted(by_id), ARRAY(sa.String))))]
    else:
        batches = [cols.where(t.c.patient_id.in_(chunk)) for chunk in _chunks(sorted(by_id), 900)]
    for stmt in batches:
        for stored in conn.execute(stmt).all():
            new = by_id[stored.patient_id]
            for f in IDENTITY_FIELDS:
                old_value, new_value = getattr(stored, f), new.get(f)
                if (old_value or None) != (new_value or None):
                    shown = (mask(old_value), mask(new_value)) if f == "id_number" else (old_value, new_value)
                    changes.append((stored.patient_id, f, shown[0] or "", shown[1] or ""))
    changes.sort()
    return changes
