"""易肇事肇祸台账 The ledger of a region as rows for people, and per township as PDF and XLSX (rules.md §10).

The entries come from the one rule, ``registry.ledger.ledger_select`` (set-based); this module adds
what police and 综治 need to find the patient — name, sex, masked ID (first 6 and last 4, rules.md
§8), village, address, guardian — and never diagnosis or medication (their column set simply does
not include them; the tests read the rendered PDF). Every XLSX cell is written as text, so a value
beginning with = + - @ stays text and never becomes a formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.codes import LedgerExit, LedgerReason, RegionLevel, Sex
from registry.errors import InvalidInput, NotFound
from registry.ids import mask
from registry.pdf import paper_templates
from registry.ledger import ledger_select
from registry.spreadsheet import text_cell  # the one formula-safe cell (also the 五单 and the export)
from registry.models import Patient, Region
from registry.regions import villages_under
from registry.resources import template_dir

TEMPLATES = template_dir("lists")


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int  # XLSX characters


# the people-facing columns, in order: no diagnosis, no medication (rules.md §8)
COLUMNS = (
    Column("patient_id", "患者编号", 12),
    Column("name", "姓名", 10),
    Column("sex", "性别", 6),
    Column("id_masked", "身份证号", 30),
    Column("village", "村(社区)", 14),
    Column("address", "现住址", 20),
    Column("guardian", "监护人及电话", 18),
    Column("entered_on", "入账日期", 12),
    Column("reason", "入账原因", 16),
    Column("left_on", "出账日期", 12),
    Column("left_reason", "出账原因", 16),
)


def region_row(engine: Engine, code: str, *, township: bool = False) -> tuple[str, str, str]:
    """The region ``code`` (code, name, level), or NotFound; ``township``: it must be a township."""
    r = Region.__table__
    with engine.connect() as conn:
        row = conn.execute(sa.select(r.c.code, r.c.name, r.c.level).where(r.c.code == code)).first()
    if row is None:
        raise NotFound(message=f"地区“{code[:32]}”不存在", code="REGION_NOT_FOUND")
    if township and row.level != RegionLevel.TOWNSHIP.value:
        raise InvalidInput.single("NOT_A_TOWNSHIP", f"“{code[:32]}”不是乡镇(街道)，台账按乡镇导出",
                                  column="township", value=code[:32])
    return row.code, row.name, row.level


def ledger_rows(engine: Engine, *, as_of: date, region_code: str | None = None, level: str | None = None) -> list[dict]:
    """台账行 The ledger as of ``as_of`` (every entry that began on or before it) of the patients
    in ``region_code`` (and below; None: everyone), with the fields
    people read, sorted by patient and entry date."""
    p, v = Patient.__table__, Region.__table__.alias("village")
    among = None
    if region_code is not None:
        among = sa.select(p.c.patient_id).where(p.c.village_code.in_(villages_under(region_code, level)))
    led = ledger_select(as_of, among=among).subquery("ledger")
    stmt = (
        sa.select(led, p.c.name, p.c.sex, p.c.id_number, p.c.address, p.c.guardian_name, p.c.guardian_phone,
                  v.c.name.label("village"), v.c.code.label("village_code"))
        .select_from(led.join(p, p.c.patient_id == led.c.patient_id).join(v, v.c.code == p.c.village_code))
        .order_by(led.c.patient_id, led.c.entered_on)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out = []
    for r in rows:
        out.append({
            "patient_id": r.patient_id, "name": r.name, "sex": Sex(r.sex).label if r.sex in (1, 2) else "",
            "id_masked": mask(r.id_number), "village": r.village, "village_code": r.village_code,
            "address": r.address or "",
            "guardian": " ".join(x for x in (r.guardian_name, r.guardian_phone) if x),
            "guardian_name": r.guardian_name or "", "guardian_phone": r.guardian_phone or "",  # the page: tap to call
            "entered_on": r.entered_on.isoformat(), "reason_code": r.reason, "reason": LedgerReason(r.reason).label,
            "left_on": r.left_on.isoformat() if r.left_on else "",
            "left_reason_code": r.left_reason,
            "left_reason": LedgerExit(r.left_reason).label if r.left_reason else "",
            "on_ledger": r.left_on is None,
        })
    return out


def township_ledger(engine: Engine, *, township_code: str, as_of: date) -> dict:
    """One township's ledger as of ``as_of``: rows and counts (InvalidInput unless a township)."""
    code, name, level = region_row(engine, township_code, township=True)
    rows = ledger_rows(engine, as_of=as_of, region_code=code, level=level)
    return {"township_code": code, "township_name": name, "as_of": as_of, "rows": rows,
            "on_ledger": sum(1 for r in rows if r["on_ledger"]), "columns": COLUMNS}


def file_stem(data: dict) -> str:
    """易肇事肇祸台账-<township>-<date>"""
    return f"易肇事肇祸台账-{data['township_code']}-{data['as_of'].isoformat()}"


def render_html(data: dict, generated: str) -> str:
    return paper_templates().get_template("ledger.html").render(data=data, generated=generated)


def write_pdf(data: dict, out_dir: Path, generated: str) -> Path:
    """The township's ledger as a PDF (WeasyPrint, Noto Sans CJK SC as the 五单)."""
    from weasyprint import HTML

    path = Path(out_dir) / f"{file_stem(data)}.pdf"
    HTML(string=render_html(data, generated), base_url=str(TEMPLATES)).write_pdf(path)
    return path


def write_xlsx(data: dict, out_dir: Path) -> Path:
    """The township's ledger as an XLSX sheet, every cell text."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    book = Workbook()
    sheet = book.active
    sheet.title = "易肇事肇祸台账"
    title = (f"{data['township_name']} 易肇事肇祸台账（截至 {data['as_of'].isoformat()}，在账 {data['on_ledger']} 人）"
             "  阅读对象：民警、综治")
    text_cell(sheet.cell(row=1, column=1), title)
    sheet.cell(row=1, column=1).font = Font(bold=True, size=13)
    for i, col in enumerate(COLUMNS, start=1):
        cell = sheet.cell(row=2, column=i)
        text_cell(cell, col.title)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE6F0")
        sheet.column_dimensions[cell.column_letter].width = col.width
    for n, row in enumerate(data["rows"], start=3):
        for i, col in enumerate(COLUMNS, start=1):
            text_cell(sheet.cell(row=n, column=i), row.get(col.key, ""))
    sheet.freeze_panes = "A3"
    sheet.print_options.gridLines = True
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    path = Path(out_dir) / f"{file_stem(data)}.xlsx"
    book.save(path)
    return path


def _generated() -> str:
    from registry.clock import now_utc
    from registry.config import LOCAL_TZ

    return now_utc().astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def write_township_ledger(engine: Engine, *, township_code: str, as_of: date, out_dir: Path, actor: str) -> dict:
    """写台账 The township's ledger as PDF and XLSX in ``out_dir``; the export is audited."""
    from registry import audit

    data = township_ledger(engine, township_code=township_code, as_of=as_of)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [write_pdf(data, out_dir, _generated()), write_xlsx(data, out_dir)]
    audit.record(engine, actor=actor, action="export", object_type="ledger",
                 object_id=f"{data['township_code']}:{as_of.isoformat()}", region_code=data["township_code"],
                 detail=f"{len(data['rows'])} 条，在账 {data['on_ledger']} 人", source="cli")
    return {"files": files, "rows": len(data["rows"]), "on_ledger": data["on_ledger"]}
