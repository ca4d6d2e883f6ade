"""一历五单 The five weekly lists of a township (rules.md §7) as data, PDF and XLSX.

1. 随访任务单 (doctor): visits due in the next 7 days and overdue, by village, sorted as §5.
2. 联合入户单 (综治, police, civil affairs): joint visits with each required role's named member
   and phone, with signature/attendance columns.
3. 风险预警单 (police, 综治): risk ≥ 3 at the last visit, new 肇事/肇祸 (dated in the 7 days before
   the week [decision]), 失访, overdue 不稳定, emergencies of the week (rules.md §9: dated —
   ``registry.emergencies.occurred_on`` — in the same 7 days [decision]) — no diagnosis, no medication.
4. 服药与针剂单 (doctor): LAI injections due, 不服药/间断 at the last visit.
5. 帮扶救助单 (civil affairs, 残联): 贫困, no guardian, 以奖代补 status, rehabilitation — no diagnosis.

The patients: every patient 在册 on the week's Monday (rules.md §1; ``registry.register.in_register_sql``),
a type-2 patient refusing consent included — on the lists their facts put them on (3, 4's adherence,
5); only the open tasks of patients owed tasks (``registry.register.eligible_sql``) reach the
task-based parts (1, 2, 4's injections, 3's 失访 and overdue reasons).

Resident ID numbers are masked everywhere (rules.md §8). Police and civil-affairs lists never
carry diagnosis or medication: their column sets simply do not include those fields, and the
tests check the rendered PDFs.
"""

from __future__ import annotations

import json
import logging
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.accounts import UserRole
from registry.audit import audit_row
from registry.audiences import assistance_reasons, risk_warning_reasons
from registry.guardian_reward import effective_status
from registry.joint_visits import joint_incomplete_select, missing_roles_text
from registry.teams import has_guardian
from registry.codes import Adherence, Diagnosis, EconomicStatus, Sex, TeamRole
from registry.errors import InvalidInput, NotFound
from registry.ids import mask
from registry.rules import classification_of
from registry.care_team import UNASSIGNED_LABEL
from registry.emergencies import occurred_on_sql
from registry.models import AuditLog, Emergency, FollowUp, GuardianYear, Patient, Region
from registry.profile import RoleRules, current_profile
# 文本单元格: the formula-safe row lives in the core, shared with the register export
from registry.spreadsheet import FORMULA_START, text_row  # noqa: F401
from registry.attempts import rank_sql, usable_sql
from registry.register import eligible_sql, in_register_sql
from registry.rules import complete_sql, incident_sql
from registry.codes import VISIT_KINDS, TaskKind
from schedules import list_renderer
# one list as data and as a page, and the render processes: light modules (a render process started
# by ``jingfang lists`` before its own imports needs nothing else); named here too
from schedules.list_pages import Column, WorkList, render_html  # noqa: F401
from schedules.list_renderer import MAX_RENDER_WORKERS, TEMPLATES, render_pool, render_workers  # noqa: F401
from schedules.worklist import open_tasks

log = logging.getLogger(__name__)

ROLE_LABEL = {r.value: r.label for r in TeamRole}  # the labels are the enums' (registry.codes)
KIND_LABEL = {k.value: k.label for k in TaskKind}
# the kinds on the 随访任务单 (and, when joint, the 联合入户单): the visit kinds (rules.md §5), the
# post-emergency visit (§9) and the annual health check
LISTED_KINDS = tuple(k.value for k in (*VISIT_KINDS, TaskKind.POST_EMERGENCY, TaskKind.HEALTH_CHECK))
SEX_LABEL = {s.value: s.label for s in Sex}


C = Column
LIST_COLUMNS = {
    "followup": [C("patient_id", "患者编号"), C("name", "姓名", 8), C("sex", "性别", 5), C("age", "年龄", 5),
                 C("phone", "联系电话", 13), C("diagnosis", "诊断", 14), C("task", "任务", 10), C("due_on", "到期日", 11),
                 C("overdue", "逾期(天)", 8), C("risk", "危险性", 6), C("roles", "联合入户", 22)],
    "joint": [C("patient_id", "患者编号"), C("name", "姓名", 8), C("address", "住址", 20), C("task", "任务", 10),
              C("due_on", "到期日", 11), C("overdue", "逾期(天)", 8), C("team", "参与人员及电话", 40)],
    "risk": [C("patient_id", "患者编号"), C("name", "姓名", 8), C("sex", "性别", 5), C("age", "年龄", 5),
             C("id_number", "身份证号", 20), C("address", "住址", 20), C("guardian", "监护人及电话", 18),
             C("reasons", "预警原因", 28), C("last_visit", "最近随访", 11), C("risk", "危险性", 6)],
    "medication": [C("patient_id", "患者编号"), C("name", "姓名", 8), C("item", "事项", 10), C("drug", "药物", 24),
                   C("due_on", "到期日", 11), C("window", "注射窗口", 23), C("adherence", "服药依从性", 12),
                   C("last_visit", "最近随访", 11)],
    "assistance": [C("patient_id", "患者编号"), C("name", "姓名", 8), C("sex", "性别", 5), C("age", "年龄", 5),
                   C("id_number", "身份证号", 20), C("economic", "经济状况", 8), C("guardian", "监护人及电话", 18),
                   C("reward", "以奖代补", 10), C("rehabilitation", "社区康复", 8), C("reasons", "帮扶原因", 24)],
}
# Fields that must never reach police or civil-affairs lists (rules.md §7–§8).
CLINICAL_KEYS = {"diagnosis", "drug", "adherence", "medication"}


def _age(birth: date | None, on: date) -> str:
    if birth is None:
        return ""
    return str(on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day)))


def _label(enum_cls, value) -> str:
    if value is None:
        return ""
    try:
        return enum_cls(value).label
    except ValueError:
        return str(value)


def _township(engine: Engine, code: str) -> tuple[str, str]:
    r = Region.__table__
    with engine.connect() as conn:
        row = conn.execute(sa.select(r.c.code, r.c.name, r.c.level).where(r.c.code == code)).first()
    if row is None:
        raise NotFound(message=f"乡镇(街道)“{code}”不存在", code="TOWNSHIP_NOT_FOUND")
    if row.level != "township":
        raise InvalidInput.single("NOT_A_TOWNSHIP", f"“{code}”不是乡镇(街道)，五单按乡镇生成", column="township", value=code)
    return row.code, row.name


def _facts(engine: Engine, township: str, week: date) -> tuple[dict, dict, dict]:
    """Patients of the township, their latest (complete) follow-up, the week's incidents (three queries).

    The patients: every patient 在册 on the week's Monday (rules.md §1, ``registry.register.in_register``),
    a refusing type-2 patient included (they stay 在册: the facts lists keep them, audit gap 1); each
    row's ``owed`` says whether they are owed tasks that day (``registry.register.eligible``): only
    their open tasks reach the task-based parts (``build_lists``)."""
    p, f, v = Patient.__table__, FollowUp.__table__, Region.__table__.alias("v")
    with engine.connect() as conn:
        patients = {
            r.patient_id: r
            for r in conn.execute(
                sa.select(p, v.c.name.label("village_name"), eligible_sql(p, week).label("owed"))
                .select_from(p.join(v, v.c.code == p.c.village_code))
                .where(v.c.parent_code == township, in_register_sql(p, week))
            )
        }
        ranked = (
            sa.select(
                f.c.patient_id, f.c.visit_on, f.c.risk_level, f.c.classification, f.c.adherence, f.c.medication,
                f.c.lai_drug, f.c.rehabilitation, f.c.insight, f.c.symptoms_obvious, f.c.symptoms,
                f.c.adverse_reaction_serious, f.c.physical_illness_serious, f.c.sf_self_care, f.c.sf_housework,
                f.c.sf_work, f.c.sf_study, f.c.sf_social, f.c.hospital_status, f.c.lost_reason,
                rank_sql(f).label("rn"),  # 1 = the latest complete follow-up (registry.attempts)
            )
            .select_from(f.join(p, p.c.patient_id == f.c.patient_id).join(v, v.c.code == p.c.village_code))
            .where(v.c.parent_code == township, complete_sql(f), usable_sql(f, p, week))
            .subquery()
        )
        latest = {r.patient_id: r for r in conn.execute(sa.select(ranked).where(ranked.c.rn == 1))}
        incidents = {
            r.patient_id: r.n
            for r in conn.execute(
                sa.select(f.c.patient_id, sa.func.count().label("n"))  # follow-ups counting 肇事/肇祸 (registry.rules)
                .select_from(f.join(p, p.c.patient_id == f.c.patient_id).join(v, v.c.code == p.c.village_code))
                .where(v.c.parent_code == township, f.c.visit_on >= week - timedelta(days=7), f.c.visit_on < week,
                       incident_sql(f))
                .group_by(f.c.patient_id)
            )
        }
        # rules.md §7.3, §9: emergencies of the week (the same 7 days as the incidents), one query
        e = Emergency.__table__
        day = occurred_on_sql(e)
        emergencies = {
            r.patient_id: r.n
            for r in conn.execute(
                sa.select(e.c.patient_id, sa.func.count().label("n"))
                .select_from(e.join(p, p.c.patient_id == e.c.patient_id).join(v, v.c.code == p.c.village_code))
                .where(v.c.parent_code == township, day >= week - timedelta(days=7), day < week)
                .group_by(e.c.patient_id)
            )
        }
        villages = sa.select(v.c.code).where(v.c.parent_code == township)
        among = sa.select(p.c.patient_id).where(p.c.village_code.in_(villages)).subquery("list_patients")
        g = GuardianYear.__table__  # rules.md §11: the week's year's guardian-years (帮扶救助单)
        guardian_years = {r.patient_id: r.status for r in conn.execute(
            sa.select(g.c.patient_id, g.c.status).where(g.c.year == week.year,
                                                         g.c.patient_id.in_(sa.select(among.c.patient_id))))}
        # rules.md §6.2: the latest joint task closed 联合未到位 (one home: registry.joint_visits)
        joint_missing = {r.patient_id: missing_roles_text(r.missing_roles)
                         for r in conn.execute(joint_incomplete_select(sa.select(among.c.patient_id)))}
    return patients, latest, {"incidents": incidents, "guardian_years": guardian_years, "emergencies": emergencies,
                              "joint_missing": joint_missing}


def _guardian(pat) -> str:
    if not pat.guardian_name:
        return "无监护人"
    return f"{pat.guardian_name} {pat.guardian_phone or ''}".strip()


LISTS = (  # number, slug, title, readers (rules.md §7)
    (1, "followup", "随访任务单", "精防医生"),
    (2, "joint", "联合入户单", "乡镇综治、派出所、民政"),
    (3, "risk", "风险预警单", "派出所、乡镇综治"),
    (4, "medication", "服药与针剂单", "精防医生"),
    (5, "assistance", "帮扶救助单", "民政、残联"),
)
SLUGS = tuple(row[1] for row in LISTS)
# Who may download each list from the web (rules.md §7: each list goes to its readers alone; the
# doctor's lists carry diagnosis and medication). The doctor takes part in joint visits.
LIST_READERS = {
    "followup": (UserRole.TOWNSHIP_DOCTOR.value,),
    "joint": (UserRole.TOWNSHIP_DOCTOR.value, UserRole.POLICE.value, UserRole.CIVIL_AFFAIRS.value,
              UserRole.GOVERNANCE.value, UserRole.VILLAGE.value),
    "risk": (UserRole.POLICE.value, UserRole.GOVERNANCE.value),
    "medication": (UserRole.TOWNSHIP_DOCTOR.value,),
    "assistance": (UserRole.CIVIL_AFFAIRS.value,),
}


def lists_for_role(role: str) -> list[tuple[int, str, str]]:
    """(number, slug, title) of the lists a web user of ``role`` may download."""
    return [(number, slug, title) for number, slug, title, _ in LISTS if role in LIST_READERS[slug]]


@dataclass
class WeekFacts:
    """一周事实 What the five lists of one township and week read (``build_lists`` gathers it once)."""

    week: date
    end: date
    patients: dict
    latest: dict
    incidents: dict
    tasks: list[dict]
    rules: RoleRules
    joint_missing: dict[str, str] = field(default_factory=dict)  # 联合未到位 patients → missing roles (§6.2)
    open_by_patient: dict[str, list[dict]] = field(default_factory=dict)
    guardian_years: dict[str, str] = field(default_factory=dict)  # patient_id → stored status, the week's year
    emergencies: dict = field(default_factory=dict)  # patient_id → emergencies of the week (rules.md §9)

    def __post_init__(self) -> None:
        for t in self.tasks:
            self.open_by_patient.setdefault(t["patient_id"], []).append(t)

    def base(self, pid: str) -> dict:
        pat = self.patients[pid]
        return {"patient_id": pid, "name": pat.name, "village": pat.village_name, "sex": SEX_LABEL.get(pat.sex, ""),
                "age": _age(pat.birth_date, self.week), "id_number": mask(pat.id_number)}

    def visits_due(self) -> list[dict]:
        """Open visit tasks (health check included) due by the week's end, in work-list order (§5)."""
        return [t for t in self.tasks if date.fromisoformat(t["due_on"]) <= self.end and t["kind"] in LISTED_KINDS]


def _work_list(slug: str) -> WorkList:
    number, slug, title, readers = next(row for row in LISTS if row[1] == slug)
    return WorkList(number, slug, title, readers, LIST_COLUMNS[slug], signatures=(slug == "joint"))


def _by_village(wl: WorkList) -> WorkList:
    wl.rows.sort(key=lambda r: (r["village"], r["patient_id"], r.get("item", "")))
    return wl


def followup_list(w: WeekFacts) -> WorkList:
    """1. 随访任务单 (doctor): visits due in the next 7 days and overdue, sorted as §5."""
    wl = _work_list("followup")
    for t in w.visits_due():
        pat = w.patients[t["patient_id"]]
        row = w.base(t["patient_id"]) | {
            "phone": pat.phone or "", "diagnosis": _label(Diagnosis, pat.diagnosis), "task": KIND_LABEL[t["kind"]],
            "due_on": t["due_on"], "overdue": t["days_overdue"] or "", "risk": "" if t["risk_level"] is None else t["risk_level"],
            "roles": "、".join(ROLE_LABEL[r] for r in t["roles"] if r != "doctor"), "late": bool(t["overdue"]),
        }
        # health checks owed (the June 30 wave) form their own section after the week's visits (§7)
        (wl.checks if t["kind"] == TaskKind.HEALTH_CHECK else wl.rows).append(row)
    return wl


def joint_list(w: WeekFacts) -> WorkList:
    """2. 联合入户单 (综治, police, civil affairs): joint visits with each required role's responsible
    member and phone (rules.md §6.1, §7 list 2; "未指定" where nobody is responsible)."""
    wl = _work_list("joint")
    for t in w.visits_due():
        if not t["joint"]:
            continue
        pat = w.patients[t["patient_id"]]
        people = []
        for role in t["roles"]:  # rules.md §6.1: the responsible member, named, never every officer
            m = t["people"].get(role)
            named = f"{m['name']} {m['phone'] or ''}".strip() if m else UNASSIGNED_LABEL
            people.append(f"{ROLE_LABEL[role]}：{named}")
        wl.rows.append(w.base(t["patient_id"]) | {
            "address": pat.address or "", "task": KIND_LABEL[t["kind"]], "due_on": t["due_on"],
            "overdue": t["days_overdue"] or "", "team": "；".join(people), "roles": list(t["roles"]),
        })
    return wl


def risk_warning_list(w: WeekFacts) -> WorkList:
    """3. 风险预警单 (police, 综治): the reasons of registry.audiences.risk_warning_reasons."""
    wl = _work_list("risk")
    for pid, pat in w.patients.items():
        last = w.latest.get(pid)
        own = w.open_by_patient.get(pid, [])
        reasons = risk_warning_reasons(
            w.rules, latest_risk=last.risk_level if last is not None else None,
            latest_class=classification_of(last) if last is not None else None,
            new_incident=bool(w.incidents.get(pid)), locate_task=any(t["kind"] == "locate" for t in own),
            overdue_visit=any(t["overdue"] and t["kind"] in LISTED_KINDS and t["kind"] != TaskKind.HEALTH_CHECK for t in own),
            emergency=bool(w.emergencies.get(pid)),
            joint_missing=w.joint_missing.get(pid),
        )
        if reasons:
            wl.rows.append(w.base(pid) | {
                "address": pat.address or "", "guardian": _guardian(pat), "reasons": "；".join(reasons),
                "last_visit": last.visit_on.isoformat() if last is not None else "",
                "risk": "" if last is None or last.risk_level is None else last.risk_level,
            })
    return _by_village(wl)


def medication_list(w: WeekFacts) -> WorkList:
    """4. 服药与针剂单 (doctor): LAI injections due, 不服药/间断 at the last visit."""
    wl = _work_list("medication")
    for pid, pat in w.patients.items():
        last = w.latest.get(pid)
        for t in w.open_by_patient.get(pid, []):
            if t["kind"] == "injection" and (t["window_start"] or t["due_on"]) <= w.end.isoformat():
                wl.rows.append(w.base(pid) | {
                    "item": "长效针剂注射", "drug": f"{pat.lai_drug or ''} 每{pat.lai_interval_weeks}周",
                    "due_on": t["due_on"], "window": f"{t['window_start']}至{t['window_end']}",
                    "adherence": "", "last_visit": pat.lai_last_on.isoformat() if pat.lai_last_on else "",
                })
        if last is not None and last.adherence in (Adherence.INTERMITTENT, Adherence.NONE):
            wl.rows.append(w.base(pid) | {
                "item": "服药依从性差", "drug": _medication_text(last.medication), "due_on": "", "window": "",
                "adherence": _label(Adherence, last.adherence), "last_visit": last.visit_on.isoformat(),
            })
    return _by_village(wl)


def assistance_list(w: WeekFacts) -> WorkList:
    """5. 帮扶救助单 (civil affairs, 残联; rules.md §7.5 [2026-12: minimum necessary]): 贫困, no guardian, or
    a 以奖代补 guardian-year for the week's year (``registry.audiences.assistance_reasons``, the rule the
    civil-affairs scope follows); the guardian-year's status and rehabilitation are columns, not
    reasons — no diagnosis."""
    wl = _work_list("assistance")
    for pid, pat in w.patients.items():
        last = w.latest.get(pid)
        stored = w.guardian_years.get(pid)
        help_reasons = assistance_reasons(poor=pat.economic_status == EconomicStatus.POOR,
                                          has_guardian=has_guardian(pat.guardian_name), guardian_year=stored is not None)
        if help_reasons:
            rehab = last is not None and bool(last.rehabilitation)
            wl.rows.append(w.base(pid) | {
                "economic": _label(EconomicStatus, pat.economic_status), "guardian": _guardian(pat),
                "reward": effective_status(stored, w.week.year, w.week).label if stored else "未纳入",
                "rehabilitation": "是" if rehab else "否",
                "reasons": "、".join(help_reasons),
            })
    return _by_village(wl)


LIST_BUILDERS = (followup_list, joint_list, risk_warning_list, medication_list, assistance_list)


def build_lists(engine: Engine, *, township_code: str, week: date, rules: RoleRules | None = None) -> dict:
    """五单数据 The five lists of a township for the week starting Monday ``week``, as data (the
    风险预警单 by the rule profile's ``roles``: ``rules``, else the selected profile's)."""
    rules = rules or current_profile().roles
    code, name = _township(engine, township_code)
    week = week - timedelta(days=week.weekday())
    end = week + timedelta(days=6)
    patients, latest, extra = _facts(engine, code, week)
    # rules.md §1, §5: a refusing type-2 patient is on the lists their facts put them on (risk, incidents,
    # adherence, assistance) but has no tasks; an open task not cancelled yet (consent withdrawn since
    # the scheduler's last run) stays off the task-based parts too
    owed = {pid for pid, pat in patients.items() if pat.owed}
    tasks = [t for t in open_tasks(engine, as_of=week, region_code=code) if t["patient_id"] in owed]
    facts = WeekFacts(week=week, end=end, patients=patients, latest=latest,
                      incidents=extra["incidents"], tasks=tasks, rules=rules, guardian_years=extra["guardian_years"],
                      emergencies=extra["emergencies"], joint_missing=extra["joint_missing"])
    lists = [build(facts) for build in LIST_BUILDERS]
    return {
        "township_code": code, "township_name": name, "week": week, "week_end": end,
        "lists": lists,
        "counts": {wl.slug: wl.size for wl in lists},
    }


def _medication_text(raw: str | None) -> str:
    if not raw:
        return ""
    try:
        items = json.loads(raw)
    except (ValueError, TypeError):
        return raw
    if isinstance(items, list):
        return "；".join(" ".join(str(v) for v in item.values()) if isinstance(item, dict) else str(item) for item in items)
    return str(items)




def _file_stem(data: dict) -> str:
    return f"{data['week'].isoformat()}_{data['township_code']}"


def list_file_name(data: dict, wl: WorkList, fmt: str) -> str:
    """``<Monday>_<township>_<n>_<title>.pdf|xlsx``: one file per list and format (rules.md §7)."""
    return f"{_file_stem(data)}_{wl.number}_{wl.title}.{fmt}"


def write_pdf(data: dict, wl: WorkList, out_dir: Path, generated: str) -> Path:
    """One list's PDF (WeasyPrint through ``registry.pdf``: lean user-agent sheet, shared fonts and CSS)."""
    return list_renderer.write_pdf(render_html(data, wl, generated), Path(out_dir) / list_file_name(data, wl, "pdf"))


def write_pdfs(data: dict, out_dir: Path, generated: str) -> list[Path]:
    return [write_pdf(data, wl, out_dir, generated) for wl in data["lists"]]


def _sheet(book, title: str, heading: str, wl: WorkList, groups: list[tuple[str, list[dict]]]) -> None:
    from openpyxl.styles import Alignment, Font, PatternFill

    sheet = book.create_sheet(title)
    text_row(sheet, [heading])
    sheet["A1"].font = Font(bold=True, size=13)
    headers = ["村(社区)"] + [c.title for c in wl.columns] + (["签到", "签名", "备注"] if wl.signatures else [])
    text_row(sheet, headers)
    for cell in sheet[2]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE6F0")
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    for village, rows in groups:
        for row in rows:
            text_row(sheet, [village] + [row.get(c.key, "") for c in wl.columns] + (["", "", ""] if wl.signatures else []))
    widths = [12] + [c.width for c in wl.columns] + ([8, 12, 12] if wl.signatures else [])
    for i, width in enumerate(widths, start=1):
        sheet.column_dimensions[sheet.cell(row=2, column=i).column_letter].width = width
    sheet.freeze_panes = "B3"
    sheet.print_options.gridLines = True
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4


def write_list_xlsx(data: dict, wl: WorkList, out_dir: Path) -> Path:
    """One list's workbook (rules.md §7: never a workbook mixing the doctor's lists with the police
    and civil-affairs lists). The 随访任务单's health checks are a second sheet."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    week = f"{data['week']:%Y-%m-%d}至{data['week_end']:%Y-%m-%d}"
    heading = f"{data['township_name']} {wl.title}（{week}）  阅读对象：{wl.readers}"
    _sheet(book, f"{wl.number}{wl.title}", heading, wl, wl.by_village())
    if wl.checks:
        _sheet(book, wl.checks_heading, f"{data['township_name']} {wl.checks_heading}（截至{data['week_end']:%Y-%m-%d}应完成）  "
               f"阅读对象：{wl.readers}", wl, wl.checks_by_village())
    path = Path(out_dir) / list_file_name(data, wl, "xlsx")
    book.save(path)
    return path


def write_xlsx(data: dict, out_dir: Path) -> list[Path]:
    """The five workbooks, one per list."""
    return [write_list_xlsx(data, wl, out_dir) for wl in data["lists"]]


def the_list(data: dict, slug: str) -> WorkList:
    """The list ``slug`` of a township's 五单 (``NotFound`` for an unknown slug)."""
    for wl in data["lists"]:
        if wl.slug == slug:
            return wl
    raise NotFound(message=f"没有名为“{slug[:20]}”的清单", code="LIST_NOT_FOUND")


def render_list(data: dict, slug: str, fmt: str, out_dir: Path, generated: str) -> Path:
    """One list in one format (the web's per-list download)."""
    wl = the_list(data, slug)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return write_pdf(data, wl, out_dir, generated) if fmt == "pdf" else write_list_xlsx(data, wl, out_dir)


def render_files(data: dict, out_dir: Path, generated: str, workers: int = 1, pool=None) -> list[Path]:
    """The five PDFs and the five XLSX of one township's lists (pure rendering: no database).

    ``pool`` (``render_pool``; or ``workers`` > 1, a pool of that many made here): the PDFs are laid
    out in its processes, longest list first, while this process writes the workbooks. A process
    gets the week's heading and its list (``schedules.list_pages``), never this module's imports.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if pool is None and workers > 1:
        with render_pool(workers) as own:
            return render_files(data, out_dir, generated, pool=own)
    if pool is None:
        return write_pdfs(data, out_dir, generated) + write_xlsx(data, out_dir)
    head = {key: value for key, value in data.items() if key != "lists"}  # each process gets its own list only
    order = sorted(data["lists"], key=lambda wl: -wl.size)
    futures = {wl.slug: pool.submit(list_renderer.write_list_pdf, head, wl, out_dir / list_file_name(data, wl, "pdf"),
                                    generated) for wl in order}
    books = write_xlsx(data, out_dir)
    return [futures[wl.slug].result() for wl in data["lists"]] + books


def _record(engine: Engine, data: dict, actor: str, base_url: str | None, *, files: list[Path] | None = None,
            served=None, reason: str | None = None) -> int:
    """Audit the export and queue the notifications, in one transaction; returns the messages queued.

    ``files`` (a week being issued, rules.md §7): the archive (``schedules.archive.store_issue``) is
    stored in the same transaction. ``served`` (an archived week written again): the archive's issue
    row, named in the audit row; each file written is a download (``list_download``, channel ``cli``
    for a command-line actor, else ``job``)."""
    from schedules import archive
    from schedules.notify import queue_list_notifications

    with engine.begin() as conn:
        if files is not None:
            archive.store_issue(conn, data, files, actor=actor, reason=reason)
        if served is not None:
            for f in archive.issue_files(conn, served.id, content=True):
                archive.record_download(conn, township_code=data["township_code"], week=data["week"], slug=f.slug,
                                        fmt=f.fmt, content=bytes(f.content), actor=actor, file_id=f.id,
                                        channel="cli" if actor.startswith("cli") else "job",
                                        source=actor, detail=f"{f.file_name} 存档第{served.version}版")
        conn.execute(sa.insert(AuditLog).values(**audit_row(
            actor=actor, action="export", object_type="lists", object_id=f"{data['township_code']}:{data['week']}",
            region_code=data["township_code"], detail=json.dumps(data["counts"], ensure_ascii=False), source=actor,
        )))
        return queue_list_notifications(conn, township_code=data["township_code"], township_name=data["township_name"],
                                        week=data["week"], counts=data["counts"], base_url=base_url)


def _generated() -> str:
    from registry.clock import now_utc
    from registry.config import LOCAL_TZ

    return now_utc().astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def _served_data(code: str, name: str, issue) -> dict:
    """What ``_record`` needs of an archived week (its counts as issued)."""
    return {"township_code": code, "township_name": name, "week": issue.week, "counts": json.loads(issue.counts)}


def write_township_lists(engine: Engine, *, township_code: str, week: date, out_dir: Path, actor: str = "scheduler",
                         base_url: str | None = None, reissue: bool = False, reason: str | None = None,
                         today: date | None = None, pool=None) -> dict:
    """写五单 Write the five PDFs and the five XLSX; audit the export and queue notifications in one transaction.

    rules.md §7 "kept as issued" (``schedules.archive``): a week already issued is written from the
    archive, byte for byte, never recomputed; otherwise the lists are computed and, when the week's
    Monday has come (``today``, default the local date), issued: archived with the export. ``reissue``
    (an operator's explicit ``--reissue``) computes the week again as a new version, the old kept.
    The result's ``archived`` names the version served or issued (None: a preview).

    The render processes (``render_pool``) start before the week's data is read and warm up meanwhile;
    ``pool``: the caller's, started earlier still (``jingfang lists``), used and left to the caller."""
    from registry.clock import local_today
    from schedules import archive

    code, name = _township(engine, township_code)
    week = archive.monday_of(week)
    today = today or local_today()
    if not reissue:
        with engine.connect() as conn:
            issue = archive.latest_issue(conn, code, week)
        if issue is not None:
            files = archive.write_issue(engine, issue.id, Path(out_dir))
            queued = _record(engine, _served_data(code, name, issue), actor, base_url, served=issue)
            return {"files": files, "counts": json.loads(issue.counts), "queued": queued,
                    "archived": {"version": issue.version, "issued_at": issue.issued_at, "issued_by": issue.issued_by,
                                 "served": True}}
    workers = render_workers(len(LISTS)) if pool is None else 1
    with render_pool(workers) if workers > 1 else nullcontext(pool) as pool:
        data = build_lists(engine, township_code=code, week=week)
        files = render_files(data, Path(out_dir), _generated(), pool=pool)
    issue_now = archive.issuable(week, today)
    try:
        queued = _record(engine, data, actor, base_url, files=files if issue_now else None, reason=reason)
    except sa.exc.IntegrityError:
        if reissue or not issue_now:
            raise
        # another process issued the same week meanwhile: its archive is the week as issued
        return write_township_lists(engine, township_code=code, week=week, out_dir=out_dir, actor=actor,
                                    base_url=base_url, today=today)
    archived = None
    if issue_now:
        with engine.connect() as conn:
            issue = archive.latest_issue(conn, code, week)
        archived = {"version": issue.version, "issued_at": issue.issued_at, "issued_by": issue.issued_by, "served": False}
    return {"files": files, "counts": data["counts"], "queued": queued, "archived": archived}


def _failed(engine: Engine, code: str, week: date, exc: BaseException, on_failed) -> None:
    """One township's lists failed: logged with the cause, alerted through the outbox (identifier-free:
    the township and the kind of error, never the message, which may quote a patient's data)."""
    from schedules.notify import queue_failure_alert

    log.error("lists of township %s for %s failed: %s", code, week, "".join(traceback.format_exception(exc, limit=5)))
    try:
        with engine.begin() as conn:
            queue_failure_alert(conn, township_code=code, week=week, reason=type(exc).__name__)
    except Exception:  # the alert is best effort: the run record still names the township
        log.exception("could not queue the failure alert of township %s", code)
    if on_failed:
        on_failed(code, exc)


def write_townships(engine: Engine, *, codes: list[str], week: date, out_root: Path, actor: str = "scheduler",
                    base_url: str | None = None, on_written=None, on_failed=None, archive: bool = True,
                    today: date | None = None) -> list[dict]:
    """写多个乡镇的五单 The lists of several townships, ``out_root/<code>/`` each.

    The render processes (``render_workers``, ``render_pool``) start first and warm up; each
    township's data is read here and handed to them at once, so reading the next township overlaps
    rendering the previous ones (the PDFs: about 3 s of WeasyPrint CPU per township of 250
    patients). Each township's export audit row and notifications are written here, in its own
    transaction, as its files are complete, in the order of ``codes``. ``on_written(result)`` is
    called after each.

    Each township is its own unit of work (issue 18): one whose data, rendering or record fails is
    logged, alerted through the outbox (``notify.queue_failure_alert``) and reported to
    ``on_failed(code, exc)``; the others complete.

    rules.md §7 "kept as issued" (``schedules.archive``; ``archive`` False only to compare renderings
    in tests): a township whose week is already issued is written from its archive, byte for byte,
    never recomputed (a re-run of the Monday job); the others are computed and, once the week's
    Monday has come, issued with their export record.
    """
    from registry.clock import local_today
    from schedules import archive as archived_lists

    generated = _generated()
    week = week - timedelta(days=week.weekday())
    issue_now = archive and archived_lists.issuable(week, today or local_today())
    served = {}
    if archive:
        with engine.connect() as conn:
            served = archived_lists.latest_issues(conn, list(codes), week)
    results = []

    def finish(data: dict, render) -> None:
        try:
            files = render()
            result = {"township_code": data["township_code"], "township_name": data["township_name"], "files": files,
                      "counts": data["counts"],
                      "queued": _record(engine, data, actor, base_url, files=files if issue_now else None),
                      "archived": {"served": False} if issue_now else None}
        except Exception as exc:
            _failed(engine, data["township_code"], week, exc, on_failed)
            return
        results.append(result)
        if on_written:
            on_written(result)

    workers = render_workers(sum(1 for code in codes if code not in served))
    built = []  # (a township's data, what returns its files)
    # the render processes start first: they warm up, then render each township as soon as it is read
    with render_pool(workers) if workers > 1 else nullcontext() as pool:
        for code in codes:
            try:
                if code in served:
                    issue = served[code]
                    files = archived_lists.write_issue(engine, issue.id, Path(out_root) / code)
                    name = _township(engine, code)[1]
                    result = {"township_code": code, "township_name": name, "files": files,
                              "counts": json.loads(issue.counts),
                              "queued": _record(engine, _served_data(code, name, issue), actor, base_url, served=issue),
                              "archived": {"version": issue.version, "served": True}}
                    results.append(result)
                    if on_written:
                        on_written(result)
                    continue
                data = build_lists(engine, township_code=code, week=week)
            except Exception as exc:
                _failed(engine, code, week, exc, on_failed)
                continue
            folder = Path(out_root) / code
            if pool is None:
                built.append((data, lambda data=data, folder=folder: render_files(data, folder, generated)))
            else:
                built.append((data, pool.submit(render_files, data, folder, generated).result))
        for data, render in built:
            finish(data, render)
    return results


def write_all_townships(engine: Engine, *, week: date, out_dir: Path) -> dict:
    """Every township's 五单 for the week (the scheduler's Monday job)."""
    r = Region.__table__
    with engine.connect() as conn:
        codes = conn.execute(sa.select(r.c.code).where(r.c.level == "township").order_by(r.c.code)).scalars().all()
    totals: dict = {"townships": 0, "files": 0, "queued": 0}
    failed: dict[str, str] = {}

    def on_failed(code: str, exc: BaseException) -> None:
        failed[code] = f"{type(exc).__name__}: {exc}"[:300]

    for result in write_townships(engine, codes=list(codes), week=week, out_root=Path(out_dir), on_failed=on_failed):
        totals["townships"] += 1
        totals["files"] += len(result["files"])
        totals["queued"] += result["queued"]
        for slug, n in result["counts"].items():
            totals[slug] = totals.get(slug, 0) + n
    if failed:
        totals["failed"] = failed  # schedules.jobs.recorded marks the run an error naming them
    return totals
