"""以奖代补发放名单 The yearly payout list of a township as rows, PDF and XLSX (rules.md §11, §8).

The duties come from the one rule's set-based twin (``registry.guardian_reward.duties_select``),
one query for the township; this module adds what civil affairs needs to pay the guardian — name,
masked ID (first 6 and last 4), village, guardian and phone, the enrolled part of the year, each
duty met or not, the status, the county's amount (``RewardRules.amount_for``), the payment — and
never diagnosis or medication. The PDF goes through ``registry.pdf`` (WeasyPrint, Noto Sans CJK
SC), the XLSX through the lists' ``text_row`` (every text cell text, never a formula).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry import pdf
from registry.pdf import paper_templates
from registry.codes import RewardDuty
from registry.emergencies import reward_events_select
from registry.guardian_reward import DUTY_COLUMNS, QUARTERS, duties_select, effective_status, is_provisional
from registry.ids import mask
from registry.models import Patient, Region
from registry.profile import RewardRules, current_profile
from registry.regions import villages_under
from registry.resources import template_dir
from schedules.ledger_files import Column, region_row
from schedules.lists import text_row

TEMPLATES = template_dir("lists")

COLUMNS = (  # no diagnosis, no medication (rules.md §8)
    Column("patient_id", "患者编号", 12),
    Column("name", "姓名", 8),
    Column("id_masked", "身份证号", 20),
    Column("village", "村(社区)", 12),
    Column("guardian", "监护人及电话", 18),
    Column("period", "纳入期间", 14),
    Column("quarterly_visits", "每季度随访", 12),
    Column("no_incident", "无肇事肇祸", 9),
    Column("no_lock_up", "无关锁", 7),
    Column("adherence", "规律服药", 10),
    Column("eligible", "符合条件", 7),
    Column("status", "状态", 8),
    Column("amount", "标准(元)", 8),
    Column("paid", "发放", 14),
    Column("reason", "理由", 14),
)


def _quarter_text(r, rules: RewardRules) -> str:
    missing = [f"Q{q}" for q in QUARTERS if r._mapping[f"q{q}_failed"]]
    if missing:
        return "未达标：" + "、".join(missing)
    return "达标" if all(r._mapping[f"q{q}_visits"] is None or r._mapping[f"q{q}_visits"] >= rules.visits_per_quarter
                         for q in QUARTERS) else "达标（部分季度未到期）"


def payout_rows(engine: Engine, *, year: int, today: date, region_code: str, level: str | None = None,
                rules: RewardRules | None = None, emergencies=None) -> list[dict]:
    """发放名单行 Every guardian-year of ``year`` of the patients in ``region_code`` (and below), with the
    duties as of ``today`` (set-based: ``duties_select``), sorted by village then patient."""
    rules = rules or current_profile().reward
    p, v = Patient.__table__, Region.__table__.alias("village")
    among = sa.select(p.c.patient_id).where(p.c.village_code.in_(villages_under(region_code, level)))
    if emergencies is None:  # rules.md §11 duty 2: the record's own emergencies of situation 2
        emergencies = reward_events_select()
    d = duties_select(year, today, rules, among=among, emergencies=emergencies).subquery("duties")
    stmt = (sa.select(d, p.c.name, p.c.id_number, p.c.guardian_name, p.c.guardian_phone, v.c.name.label("village"))
            .select_from(d.join(p, p.c.patient_id == d.c.patient_id).join(v, v.c.code == p.c.village_code))
            .order_by(v.c.name, d.c.patient_id))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out = []
    for r in rows:
        status = effective_status(r.status, year, today)
        adherence = f"{r.adherent or 0}/{r.complete or 0}"
        out.append({
            "patient_id": r.patient_id, "name": r.name, "id_masked": mask(r.id_number), "village": r.village,
            "guardian": " ".join(x for x in (r.guardian_name, r.guardian_phone) if x) or "无监护人",
            "guardian_name": r.guardian_name or "", "guardian_phone": r.guardian_phone or "",  # the page: tap to call
            "period": f"{r.enrolled_from.isoformat()}至{r.enrolled_to.isoformat()}",
            "quarterly_visits": _quarter_text(r, rules),
            "no_incident": "是" if r.no_incident else f"否（{r.first_incident_on or '应急处置'}）",
            "no_lock_up": "是" if r.no_lock_up else f"否（{r.first_locked_on}）",
            "adherence": ("是 " if r.adherence else "否 ") + adherence,
            "eligible": "是" if r.eligible else "否", "eligible_flag": bool(r.eligible),
            "status": status.label, "status_code": status.value,
            "amount": str(rules.amount_for(year)),
            "paid": f"{r.paid_on.isoformat()} {r.paid_amount}元" if r.paid_on else "",
            "paid_amount": r.paid_amount or 0,
            "reason": r.reason or "",
            "duties": {duty.value: bool(getattr(r, column)) for duty, column in DUTY_COLUMNS.items()},
        })
    return out


def township_payout(engine: Engine, *, township_code: str, year: int, today: date,
                    rules: RewardRules | None = None) -> dict:
    """One township's payout list of ``year`` as of ``today`` (InvalidInput unless a township)."""
    rules = rules or current_profile().reward
    code, name, level = region_row(engine, township_code, township=True)
    rows = payout_rows(engine, year=year, today=today, region_code=code, level=level, rules=rules)
    return {
        "township_code": code, "township_name": name, "year": year, "today": today, "rows": rows,
        "columns": COLUMNS, "provisional": is_provisional(year, today), "amount": rules.amount_for(year),
        "eligible": sum(1 for r in rows if r["eligible_flag"]),
        "paid_total": sum(r["paid_amount"] for r in rows),
        "duties": [d.label for d in RewardDuty],
    }


def file_stem(data: dict) -> str:
    """以奖代补发放名单-<township>-<year>"""
    return f"以奖代补发放名单-{data['township_code']}-{data['year']}"


def render_html(data: dict, generated: str) -> str:
    return paper_templates().get_template("reward.html").render(data=data, generated=generated)


def write_pdf(data: dict, out_dir: Path, generated: str) -> Path:
    path = Path(out_dir) / f"{file_stem(data)}.pdf"
    pdf.write_pdf(render_html(data, generated), path, base_url=str(TEMPLATES))
    return path


def heading(data: dict) -> str:
    kind = "年内暂评" if data["provisional"] else "年终评定"
    return (f"{data['township_name']} {data['year']}年以奖代补发放名单（{kind}，截至 {data['today'].isoformat()}；"
            f"标准 {data['amount']} 元/年；符合条件 {data['eligible']} 人）  阅读对象：民政")


def write_xlsx(data: dict, out_dir: Path) -> Path:
    """The payout list as one XLSX sheet, every text cell text (``schedules.lists.text_row``)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = "以奖代补发放名单"
    text_row(sheet, [heading(data)])
    sheet.cell(row=1, column=1).font = Font(bold=True, size=13)
    text_row(sheet, [c.title for c in COLUMNS])
    for i, col in enumerate(COLUMNS, start=1):
        sheet.cell(row=2, column=i).font = Font(bold=True)
        sheet.column_dimensions[sheet.cell(row=2, column=i).column_letter].width = col.width
    for row in data["rows"]:
        text_row(sheet, [row[c.key] for c in COLUMNS])
    sheet.freeze_panes = "A3"
    sheet.page_setup.orientation = "landscape"
    path = Path(out_dir) / f"{file_stem(data)}.xlsx"
    book.save(path)
    return path


def _generated() -> str:
    from registry.clock import now_utc
    from registry.config import LOCAL_TZ

    return now_utc().astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def write_payout(engine: Engine, *, township_code: str, year: int, today: date, out_dir: Path, actor: str,
                 source: str = "cli", formats: tuple[str, ...] = ("pdf", "xlsx")) -> dict:
    """写发放名单 The township's payout list of ``year`` as PDF and XLSX in ``out_dir``; the export is audited."""
    from registry import audit

    data = township_payout(engine, township_code=township_code, year=year, today=today)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    if "pdf" in formats:
        files.append(write_pdf(data, out_dir, _generated()))
    if "xlsx" in formats:
        files.append(write_xlsx(data, out_dir))
    audit.record(engine, actor=actor, action="export", object_type="guardian_reward",
                 object_id=f"{data['township_code']}:{year}", region_code=data["township_code"],
                 detail=f"{len(data['rows'])} 户，符合条件 {data['eligible']} 户", source=source)
    return {"files": files, "rows": len(data["rows"]), "eligible": data["eligible"], "data": data}
