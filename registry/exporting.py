"""导出 The register in the import format (contract.md ``jingfang export`` [2026-12], issue 13).

Every file the importer knows (``registry.importing.FILE_SPECS``) with every column its field specs
declare, so that importing the export into an empty database and exporting again gives
byte-identical files. Built generically from the specs: ``EXPORTS`` holds one ``ExportFile`` per
file (its table, the rows' order, the region scope and the columns whose value is not the table's
column of the same name); the value of a column is formatted by its database type exactly as the
importer parses it:

* text — as stored (blank when NULL or empty);
* dates — ISO ``YYYY-MM-DD``;
* integers and integer codes — decimal digits (``1``, not ``男``: the code is what every version reads);
* flags — ``1`` / ``0``;
* string codes (level, role, status, diagnosis) — the code.

The files: UTF-8 **with** a BOM (Excel on Chinese Windows opens a BOM-less UTF-8 CSV as GBK and
garbles it; the importer accepts both), line feeds (``\\n``) between rows, minimal quoting (a value
with a comma, a quote or a line break is quoted), English column names as the header (contract.md;
the importer accepts them and the Chinese labels alike). Rows are ordered by their ids
(``ORDER BY``, byte order: ``COLLATE "C"`` on PostgreSQL), follow-ups by patient, date and the
n-th of that date, which is the order the importer numbers them in.

The CSV values are the stored values; a CSV file has no cell types, so ``--xlsx`` is the form to
open in a spreadsheet: one workbook, one sheet per file, every text a text cell (openpyxl
``data_type 's'``) and a value that starts with ``= + - @`` carrying the quote prefix — never a
formula (``registry.spreadsheet``).

Streaming: PostgreSQL writes each CSV with ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` straight into
the file (the formatting is in the SELECT); SQLite and the workbook iterate a cursor. No ORM objects,
no file in memory. All files come from one transaction (a snapshot on PostgreSQL).

``--region CODE``: the region's subtree — the regions under it (and the region's ancestors, so
that the files import into an empty database), the team members serving them, their patients and
everything of those patients. Every export is audited (rules.md §8: action ``export``).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from registry import models
from registry.audit import record
from registry.importing import FILE_SPECS
from registry.regions import RegionTree, region_subtree

BOM = "\ufeff"
LINE_END = "\n"

Scope = Callable[[sa.Table, sa.Select, list[str]], sa.ColumnElement]
Column = str | sa.ColumnElement  # a column of the file's table by name, or any column of its FROM


def _column(table: sa.Table, column: Column) -> sa.ColumnElement:
    return table.c[column] if isinstance(column, str) else column


def by_region(column: Column) -> Scope:
    """范围 Rows whose ``column`` is a region of the subtree."""
    return lambda table, subtree, ancestors: _column(table, column).in_(subtree)


def by_patient(column: Column = "patient_id") -> Scope:
    """范围 Rows of a patient whose village is in the subtree."""
    patient = models.Patient.__table__

    def scope(table, subtree, ancestors):
        return _column(table, column).in_(sa.select(patient.c.patient_id).where(patient.c.village_code.in_(subtree)))

    return scope


def _regions_scope(table, subtree, ancestors):
    return sa.or_(table.c.code.in_(subtree), table.c.code.in_(ancestors)) if ancestors else table.c.code.in_(subtree)


@dataclass(frozen=True)
class ExportFile:
    """导出文件 One import file as exported: its table, the order of its rows (by ids: the table's
    columns by name, or columns of ``source``), its region scope, and the columns (spec name → SQL
    expression) that are not the table's column of the same name. Adding a file to the importer means
    adding one of these; a file whose columns come from a join names the join as ``source``, e.g. the
    attendance of a follow-up, ordered by the follow-up's patient, date and n-th of that date::

        fu, p = models.FollowUp.__table__, models.FollowUpParticipant.__table__
        ExportFile(p, (fu.c.patient_id, fu.c.visit_on, fu.c.seq, "role"), by_patient(fu.c.patient_id),
                   columns={"patient_id": fu.c.patient_id, "visit_on": fu.c.visit_on, "present": p.c.attended},
                   source=p.join(fu, fu.c.id == p.c.follow_up_id))
    """

    table: sa.Table
    order: tuple[Column, ...]
    scope: Scope
    columns: dict[str, sa.ColumnElement] = field(default_factory=dict)
    source: sa.FromClause | None = None  # the FROM when columns come from a join


_FU = models.FollowUp.__table__
_FP = models.FollowUpParticipant.__table__
EXPORTS: dict[str, ExportFile] = {
    "regions": ExportFile(models.Region.__table__, ("code",), _regions_scope),
    "team_members": ExportFile(models.TeamMember.__table__, ("member_id",), by_region("region_code")),
    "patients": ExportFile(models.Patient.__table__, ("patient_id",), by_region("village_code")),
    "followups": ExportFile(models.FollowUp.__table__, ("patient_id", "visit_on", "seq"), by_patient()),
    "health_checks": ExportFile(models.HealthCheck.__table__, ("patient_id", "checked_on"), by_patient()),
    "injections": ExportFile(models.Injection.__table__, ("patient_id", "given_on"), by_patient()),
    "care_team": ExportFile(models.CareTeamAssignment.__table__, ("patient_id", "member_id", "role", "from_on"), by_patient()),
    # one row per person (rules.md §6.2): within a role the unnamed row ('' sorts first on both
    # databases, unlike NULL), then the members by id
    "participants": ExportFile(
        _FP,
        (_FU.c.patient_id, _FU.c.visit_on, _FU.c.seq, "role", sa.func.coalesce(_FP.c.member_id, sa.literal(""))),
        by_patient(_FU.c.patient_id),
        columns={"patient_id": _FU.c.patient_id, "visit_on": _FU.c.visit_on, "seq": _FU.c.seq, "present": _FP.c.attended},
        source=_FP.join(_FU, _FU.c.id == _FP.c.follow_up_id)),
}


def export_columns(stem: str) -> list[str]:
    """列 The columns of a file: every field the importer's spec declares, in its order."""
    return [spec.name for spec in FILE_SPECS[stem]]


def _kind(sql_type: sa.types.TypeEngine) -> str:
    if isinstance(sql_type, sa.Boolean):
        return "flag"
    if isinstance(sql_type, sa.Date) and not isinstance(sql_type, sa.DateTime):
        return "date"
    if isinstance(sql_type, sa.Integer):
        return "int"
    return "text"


def _formatted(expr: sa.ColumnElement, kind: str, dialect: str) -> sa.ColumnElement:
    """The SQL text of a value exactly as the importer parses it (NULL when blank)."""
    if kind == "flag":
        out = sa.case((expr.is_(True), "1"), (expr.is_(False), "0"))
    elif kind == "date":
        out = sa.func.to_char(expr, "YYYY-MM-DD") if dialect == "postgresql" else sa.type_coerce(expr, sa.Text)
    elif kind == "int":
        out = sa.cast(expr, sa.Text)
    else:
        out = sa.func.nullif(expr, "")
    return sa.type_coerce(out, sa.Text)


def _kinds(stem: str) -> list[str]:
    spec = EXPORTS[stem]
    out = []
    for name in export_columns(stem):
        expr = spec.columns.get(name)
        out.append(_kind(expr.type if expr is not None else spec.table.c[name].type))
    return out


def export_select(stem: str, dialect: str, region: str | None = None, ancestors: list[str] | None = None) -> sa.Select:
    """导出查询 The SELECT of one file: its columns formatted as text, in its order, in the region."""
    spec = EXPORTS[stem]
    table = spec.table
    cols = []
    for name, kind in zip(export_columns(stem), _kinds(stem)):
        expr = spec.columns.get(name)
        expr = table.c[name] if expr is None else expr
        cols.append(_formatted(expr, kind, dialect).label(name))
    stmt = sa.select(*cols).select_from(spec.source if spec.source is not None else table)
    if region is not None:
        stmt = stmt.where(spec.scope(table, sa.select(region_subtree(region).c.code), ancestors or []))
    order = []
    for name in spec.order:
        col = _column(table, name)
        if _kind(col.type) == "text":
            col = col.collate("C") if dialect == "postgresql" else col.collate("BINARY")
        order.append(col)
    return stmt.order_by(*order)


@dataclass
class ExportResult:
    """导出结果 Rows per file, the files written and the seconds taken."""

    rows: dict[str, int] = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def summary(self) -> str:
        names = {"regions": "地区", "team_members": "团队成员", "patients": "患者", "followups": "随访", "health_checks": "体检",
                 "care_team": "个案管理团队", "participants": "随访参与者", "injections": "注射"}
        parts = [f"{names.get(stem, stem)} {n} 行" for stem, n in self.rows.items()]
        return "导出完成：" + "；".join(parts)


# ---------------------------------------------------------------- writing

def _csv_line(writer_lf, buffer_lf: io.StringIO, writer_crlf, buffer_crlf: io.StringIO, row) -> str:
    """One CSV line as PostgreSQL's COPY CSV writes it: minimal quoting, a field with a line break
    (``\\r`` too) quoted, ``\\n`` at the end."""
    if any(v is not None and "\r" in v for v in row):
        # Python's writer quotes a carriage return only when it is in the line terminator
        buffer_crlf.seek(0)
        buffer_crlf.truncate()
        writer_crlf.writerow(row)
        return buffer_crlf.getvalue()[:-2] + LINE_END
    buffer_lf.seek(0)
    buffer_lf.truncate()
    writer_lf.writerow(row)
    return buffer_lf.getvalue()


def _header(stem: str) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=LINE_END).writerow(export_columns(stem))
    return (BOM + buffer.getvalue()).encode("utf-8")


def _write_csv_pg(conn: Connection, stmt: sa.Select, out) -> int:
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
            for data in copy:
                out.write(data)
        return cur.rowcount


def _write_csv_rows(conn: Connection, stmt: sa.Select, out) -> int:
    lf, crlf = io.StringIO(), io.StringIO()
    writer_lf = csv.writer(lf, lineterminator=LINE_END)
    writer_crlf = csv.writer(crlf, lineterminator="\r\n")
    n = 0
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(stmt)
    for part in result.partitions():
        lf.seek(0)
        lf.truncate()
        writer_lf.writerows(part)
        text = lf.getvalue()
        if "\r" in text:  # a value holds a carriage return: line by line (it must be quoted)
            text = "".join(_csv_line(writer_lf, lf, writer_crlf, crlf, row) for row in part)
        out.write(text.encode("utf-8"))
        n += len(part)
    return n


def _write_sheet(conn: Connection, stmt: sa.Select, book, stem: str) -> int:
    from registry.spreadsheet import text_cells

    sheet = book.create_sheet(stem)
    sheet.append(text_cells(sheet, export_columns(stem)))
    ints = [i for i, kind in enumerate(_kinds(stem)) if kind == "int"]
    n = 0
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(stmt)
    for row in result:
        values = list(row)
        for i in ints:
            if values[i] is not None:
                values[i] = int(values[i])
        sheet.append(text_cells(sheet, values))
        n += 1
    return n


def _ancestors(conn: Connection, region: str) -> list[str]:
    tree = RegionTree.load(conn)
    tree.check(region)
    return [code for code in tree.ancestors_and_self(region) if code != region]


def export_register(
    engine: Engine,
    *,
    directory: Path | str | None = None,
    xlsx: Path | str | None = None,
    region: str | None = None,
    actor: str,
    source: str | None = None,
    target: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> ExportResult:
    """导出 Write every import file of the register (or of ``region``'s subtree) as CSV files into
    ``directory`` and/or as one workbook ``xlsx``; audited (action ``export``) as ``actor``, the audit
    detail naming ``target`` (default: the paths written).

    Raises ``NotFound`` (REGION_NOT_FOUND) for an unknown region."""
    if directory is None and xlsx is None:
        raise ValueError("directory or xlsx")
    started = time.perf_counter()
    result = ExportResult()
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        dialect = conn.dialect.name
        ancestors = _ancestors(conn, region) if region is not None else None
        statements = {stem: export_select(stem, dialect, region, ancestors) for stem in FILE_SPECS}
        if directory is not None:
            folder = Path(directory)
            folder.mkdir(parents=True, exist_ok=True)
            for stem, stmt in statements.items():
                path = folder / f"{stem}.csv"
                with path.open("wb") as out:
                    out.write(_header(stem))
                    writer = _write_csv_pg if dialect == "postgresql" else _write_csv_rows
                    result.rows[stem] = writer(conn, stmt, out)
                result.paths.append(path)
                if progress:
                    progress(stem, result.rows[stem])
        if xlsx is not None:
            from openpyxl import Workbook

            book = Workbook(write_only=True)
            for stem, stmt in statements.items():
                result.rows[stem] = _write_sheet(conn, stmt, book, stem)
                if progress:
                    progress(stem, result.rows[stem])
            path = Path(xlsx)
            path.parent.mkdir(parents=True, exist_ok=True)
            book.save(path)
            result.paths.append(path)
    result.seconds = time.perf_counter() - started
    where = target or "、".join(str(p) for p in result.paths)
    record(engine, actor=actor, action="export", object_type="register", object_id=region or "全部",
           region_code=region, detail=f"{result.summary()}；{where}", source=source)
    return result
