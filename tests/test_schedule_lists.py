"""一历五单: PDFs (text via pdftotext, CJK font embedded via pdffonts), XLSX sheets, privacy of
police and civil-affairs lists, masked ID numbers."""

from __future__ import annotations

import os
import subprocess
from datetime import date

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from typer.testing import CliRunner

from jingfang.cli import app
from registry.models import AuditLog, FollowUp, GuardianYear, Patient, TeamMember
from schedules.generation import generate
from schedules.lists import CLINICAL_KEYS, LIST_COLUMNS, build_lists

D = date.fromisoformat
runner = CliRunner()
DIAGNOSIS_WORDS = ("精神分裂症", "双相", "分裂情感", "偏执性", "癫痫", "精神发育迟滞", "F20", "F31", "诊断")
MEDICATION_WORDS = ("利培酮", "帕利哌酮", "药物", "服药", "mg")


def pdftext(path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def prepare(database, small_county):
    result = runner.invoke(app, ["import", str(small_county), "--db", database.url])
    assert result.exit_code == 0, result.output
    with database.engine.begin() as conn:
        conn.execute(sa.update(Patient).where(Patient.patient_id == "C1").values(
            id_number="440781198001011234", address="幸福路8号", lai_drug="棕榈酸帕利哌酮", lai_interval_weeks=4,
            lai_last_on=D("2026-05-14"), guardian_reward=True))
        # rules.md §11: the guardian-year record puts C1 on the 帮扶救助单 (the old flag alone does not)
        conn.execute(sa.insert(GuardianYear), [{"patient_id": "C1", "year": 2026, "enrolled_from": D("2026-01-01"),
                                                "enrolled_to": D("2026-12-31"), "status": "provisional"}])
        conn.execute(sa.update(FollowUp).where(FollowUp.patient_id == "A").values(medication='[{"drug": "利培酮", "dose": "2mg"}]'))
        conn.execute(sa.insert(TeamMember), [
            {"member_id": "M1", "name": "王医生", "role": "doctor", "phone": "13800000001", "region_code": "T", "primary": True},
            {"member_id": "M2", "name": "李警官", "role": "police", "phone": "13800000002", "region_code": "T", "primary": True},
            {"member_id": "M3", "name": "张网格", "role": "village", "phone": "13800000003", "region_code": "V", "primary": True},
            # a second officer of the township: not primary, not on any list (rules.md §6.1, never every officer)
            {"member_id": "M4", "name": "赵警官", "role": "police", "phone": "13800000004", "region_code": "T", "primary": False},
        ])
    generate(database.engine, as_of=D("2026-06-08"))


def test_lists_as_data(database, small_county):
    prepare(database, small_county)
    data = build_lists(database.engine, township_code="T", week=D("2026-06-10"))
    assert data["week"] == D("2026-06-08") and data["week_end"] == D("2026-06-14")
    lists = {wl.slug: wl for wl in data["lists"]}
    assert [(r["patient_id"], r["task"]) for r in lists["followup"].rows] == [
        ("C1", "失访查找"), ("A", "随访"), ("B", "首次面访")]
    joint = {r["patient_id"]: r for r in lists["joint"].rows}
    assert set(joint) == {"C1", "B"}
    assert "民警：李警官 13800000002" in joint["C1"]["team"] and "村(社区)两委成员/网格员：张网格 13800000003" in joint["C1"]["team"]
    assert "民政专干：未指定" in joint["B"]["team"]
    assert not any("赵警官" in r["team"] for r in joint.values())
    risk = {r["patient_id"]: r for r in lists["risk"].rows}
    assert set(risk) == {"C1"} and risk["C1"]["reasons"] == "最近危险性3级；失访；不稳定且随访逾期"
    assert risk["C1"]["id_number"] == "440781********1234"
    med = sorted((r["patient_id"], r["item"]) for r in lists["medication"].rows)
    assert med == [("A", "服药依从性差"), ("C1", "服药依从性差"), ("C1", "长效针剂注射")]
    help_ = {r["patient_id"]: r["reasons"] for r in lists["assistance"].rows}
    assert help_ == {"B": "贫困、无监护人", "C1": "以奖代补"}
    status = {r["patient_id"]: r["reward"] for r in lists["assistance"].rows}
    assert status == {"B": "未纳入", "C1": "年内暂评"}  # rules.md §11: the status shows on list 5
    for slug in ("joint", "risk", "assistance"):
        assert not {c.key for c in LIST_COLUMNS[slug]} & CLINICAL_KEYS


def test_lists_pdf_and_xlsx(database, small_county, tmp_path):
    prepare(database, small_county)
    result = runner.invoke(app, ["lists", "--week", "2026-06-10", "--township", "T", "--out", str(tmp_path), "--db", database.url])
    assert result.exit_code == 0, result.output
    pdfs = sorted(tmp_path.glob("*.pdf"))
    assert [p.name for p in pdfs] == [
        "2026-06-08_T_1_随访任务单.pdf", "2026-06-08_T_2_联合入户单.pdf", "2026-06-08_T_3_风险预警单.pdf",
        "2026-06-08_T_4_服药与针剂单.pdf", "2026-06-08_T_5_帮扶救助单.pdf"]
    texts = {p.name.split("_")[2]: pdftext(p) for p in pdfs}
    for pdf in pdfs:
        fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
        assert "CJK" in fonts and " yes " in fonts.split("CJK", 1)[1].splitlines()[0]
    assert "随访任务单" in texts["1"] and "精神分裂症" in texts["1"] and "失访查找" in texts["1"]
    assert "联合入户单" in texts["2"] and "李警官" in texts["2"] and "到场签到" in texts["2"] and "签名" in texts["2"]
    assert "风险预警单" in texts["3"] and "440781********1234" in texts["3"] and "440781198001011234" not in texts["3"]
    assert "长效针剂注射" in texts["4"] and "利培酮" in texts["4"]
    # police and civil-affairs lists: no diagnosis, no medication, no full ID number
    for n in ("2", "3", "5"):
        for word in DIAGNOSIS_WORDS + MEDICATION_WORDS:
            assert word not in texts[n], (n, word)
        assert "440781198001011234" not in texts[n]
    # one workbook per list (rules.md §7), never one mixing the doctor's lists with the others
    books = sorted(tmp_path.glob("*.xlsx"))
    assert [p.name for p in books] == [p.name[:-3] + "xlsx" for p in pdfs]
    sheets = {p.name.split("_")[2]: load_workbook(p) for p in books}
    assert {n: b.sheetnames for n, b in sheets.items()} == {
        "1": ["1随访任务单"], "2": ["2联合入户单"], "3": ["3风险预警单"], "4": ["4服药与针剂单"], "5": ["5帮扶救助单"]}
    risk_cells = [c.value for row in sheets["3"]["3风险预警单"].iter_rows() for c in row if c.value]
    assert "440781********1234" in risk_cells and not any("精神分裂" in str(v) for v in risk_cells)
    assert [c.value for c in sheets["2"]["2联合入户单"][2]][-3:] == ["签到", "签名", "备注"]
    for n in ("2", "3", "5"):
        cells = " ".join(str(c.value) for sheet in sheets[n] for row in sheet.iter_rows() for c in row if c.value)
        for word in DIAGNOSIS_WORDS + MEDICATION_WORDS:
            assert word not in cells, (n, word)
    with database.engine.connect() as conn:
        audit = conn.execute(sa.select(AuditLog.action, AuditLog.object_type, AuditLog.object_id)).all()
    assert ("export", "lists", "T:2026-06-08") in [tuple(a) for a in audit]


@pytest.mark.parametrize("args, code", [
    (["--week", "2026-06-10", "--township", "V"], 1),
    (["--week", "2026-06-10", "--township", "NOPE"], 1),
    (["--week", "10/06/2026", "--township", "T"], 1),  # invalid input exits 1 everywhere (issue 16)
])
def test_lists_bad_input(database, small_county, tmp_path, args, code):
    prepare(database, small_county)
    result = runner.invoke(app, ["lists", *args, "--out", str(tmp_path), "--db", database.url])
    assert result.exit_code == code and "错误" in result.output


def test_render_workers(monkeypatch):
    from registry.config import get_settings
    from schedules.lists import MAX_RENDER_WORKERS, render_workers

    monkeypatch.setenv("JINGFANG_RENDER_WORKERS", "3")
    assert [render_workers(n) for n in (1, 2, 12)] == [1, 2, 3]  # never more than one per township
    monkeypatch.setenv("JINGFANG_RENDER_WORKERS", "1")
    get_settings.cache_clear()
    assert render_workers(12) == 1
    monkeypatch.setenv("JINGFANG_RENDER_WORKERS", "lots")  # not a number: the CPUs this process may use
    get_settings.cache_clear()
    assert 1 <= render_workers(100) <= MAX_RENDER_WORKERS
    monkeypatch.delenv("JINGFANG_RENDER_WORKERS")
    get_settings.cache_clear()
    assert render_workers(100) == min(len(os.sched_getaffinity(0)), MAX_RENDER_WORKERS)


def test_the_weeks_visits_come_first_when_the_june_wave_is_owed(database, small_county, tmp_path):
    """rules.md §7: 120 health checks owed at once (the June 30 wave) form their own section with
    counts after the week's visits; page 1 of the 随访任务单 holds the visits (issue 16)."""
    import csv
    import shutil

    folder = tmp_path / "county"
    shutil.copytree(small_county, folder)
    with open(folder / "patients.csv", newline="", encoding="utf-8") as f:
        patients = list(csv.DictReader(f))
    with open(folder / "followups.csv", newline="", encoding="utf-8") as f:
        followups = list(csv.DictReader(f))
    stable = next(r for r in followups if r["patient_id"] == "A")  # a complete follow-up, risk 0
    template = next(r for r in patients if r["patient_id"] == "A")
    for i in range(120):
        pid = f"H{i:03d}"
        patients.append(template | {"patient_id": pid, "name": f"体检{i}", "registered_on": "2025-06-01"})
        followups.append(stable | {"patient_id": pid, "visit_on": "2026-06-26"})  # next visit months away
    for name, rows in (("patients.csv", patients), ("followups.csv", followups)):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    result = runner.invoke(app, ["import", str(folder), "--db", database.url])
    assert result.exit_code == 0, result.output
    generate(database.engine, as_of=D("2026-06-29"))
    data = build_lists(database.engine, township_code="T", week=D("2026-06-29"))
    followup = data["lists"][0]
    visits = [r["patient_id"] for r in followup.rows]
    assert visits and not any(p.startswith("H") for p in visits)
    assert sum(1 for r in followup.checks if r["patient_id"].startswith("H")) == 120
    assert data["counts"]["followup"] == len(followup.rows) + len(followup.checks)

    out = tmp_path / "out"
    result = runner.invoke(app, ["lists", "--week", "2026-06-29", "--township", "T", "--out", str(out), "--db", database.url])
    assert result.exit_code == 0, result.output
    pdf = out / "2026-06-29_T_1_随访任务单.pdf"
    first = subprocess.run(["pdftotext", "-layout", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout
    assert "本周随访（7日内到期及逾期）" in first
    for pid in visits:
        assert pid in first, pid
    whole = pdftext(pdf)
    assert whole.index("本周随访") < whole.index(f"年度健康体检（{len(followup.checks)}人）") < whole.index("H119")
    assert "应体检" in whole and "其中逾期" in whole
    book = load_workbook(out / "2026-06-29_T_1_随访任务单.xlsx")
    assert book.sheetnames == ["1随访任务单", "年度健康体检"]
    assert sum(1 for row in book["年度健康体检"].iter_rows(min_row=3) if str(row[1].value).startswith("H")) == 120


def _county_with(small_county, folder, patients_extra: list[dict], followups_extra: list[dict]):
    """The worked example copied to ``folder`` with extra patients and follow-ups (CSV rows over
    patient A's and A's first follow-up's columns)."""
    import csv
    import shutil

    shutil.copytree(small_county, folder)
    with open(folder / "patients.csv", newline="", encoding="utf-8") as f:
        patients = list(csv.DictReader(f))
    with open(folder / "followups.csv", newline="", encoding="utf-8") as f:
        followups = list(csv.DictReader(f))
    template, visit = patients[0], followups[0]
    patients += [template | row for row in patients_extra]
    followups += [visit | row for row in followups_extra]
    for name, rows in (("patients.csv", patients), ("followups.csv", followups)):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return folder


def test_a_refusing_patient_stays_on_the_lists_of_facts(database, small_county, tmp_path):
    """rules.md §1, §7 (audit gap 1): a refusing type-2 patient stays 在册 and on every list their
    facts put them on; they have no tasks (rules.md §5), so no task-based row. R2: type 2, consent 0,
    贫困, no guardian, risk 4 with one 肇事 and 不服药 on 2026-11-25 → 风险预警单, 帮扶救助单 and the
    服药与针剂单's 依从性差, never the 随访任务单 or the 联合入户单. OK (consenting, the same visit) for
    comparison. The issued week (the archive the web serves) carries the same rows."""
    from schedules import archive
    from schedules.models import ListIssueRow

    folder = _county_with(small_county, tmp_path / "county", [
        {"patient_id": "R2", "name": "拒管", "registered_on": "2026-01-10", "report_type": "2", "consent": "0",
         "guardian_name": "", "guardian_phone": "", "economic_status": "1"},
        {"patient_id": "OK", "name": "同意", "registered_on": "2026-01-10", "report_type": "2", "consent": "1"},
    ], [
        {"patient_id": pid, "visit_on": "2026-11-25", "risk_level": "4", "incidents_disturbance": "1", "adherence": "3"}
        for pid in ("R2", "OK")
    ])
    result = runner.invoke(app, ["import", str(folder), "--db", database.url])
    assert result.exit_code == 0, result.output
    generate(database.engine, as_of=D("2026-11-30"))
    data = build_lists(database.engine, township_code="T", week=D("2026-11-30"))
    lists = {wl.slug: wl for wl in data["lists"]}

    def on(slug):
        return {r["patient_id"]: r for r in lists[slug].rows + lists[slug].checks}

    risk, help_ = on("risk"), on("assistance")
    assert risk["R2"]["reasons"] == "最近危险性4级；上周新发肇事/肇祸" and risk["R2"]["risk"] == 4
    assert risk["OK"]["reasons"] == risk["R2"]["reasons"]
    assert help_["R2"]["reasons"] == "贫困、无监护人" and help_["R2"]["guardian"] == "无监护人"
    assert [r["item"] for r in lists["medication"].rows if r["patient_id"] == "R2"] == ["服药依从性差"]
    # no tasks, so no task-based row (OK owes this year's health check; its visit is due 12-09)
    assert "R2" not in on("followup") and "R2" not in on("joint")
    assert on("followup")["OK"]["task"] == "健康体检"
    # D (type 2, consent 0, no follow-up, guardian, not poor) is on no list: nothing puts them there
    assert not any("D" in on(slug) for slug in ("followup", "joint", "risk", "medication", "assistance"))

    # the issued week: the CLI issues it (its Monday has come) and the archive keeps R2's rows
    out = tmp_path / "out"
    result = runner.invoke(app, ["lists", "--week", "2026-11-30", "--township", "T", "--out", str(out), "--db", database.url])
    assert result.exit_code == 0, result.output
    with database.engine.connect() as conn:
        issue = archive.latest_issue(conn, "T", D("2026-11-30"))
        assert issue is not None
        rows = conn.execute(sa.select(ListIssueRow.__table__.c.slug, ListIssueRow.__table__.c.patient_id)
                            .where(ListIssueRow.__table__.c.issue_id == issue.id)).all()
    assert {slug for slug, pid in rows if pid == "R2"} == {"risk", "medication", "assistance"}


def test_a_patient_refusing_after_their_tasks_were_made_keeps_only_the_facts(database, small_county):
    """A patient whose consent was withdrawn since the last scheduler run: their still-open tasks
    stay off the task-based lists (the scheduler cancels them; rules.md §5), their facts stay on
    (rules.md §1: still 在册). C1: 失访 with a locate task, risk 3 → on the 风险预警单 for risk only."""
    prepare(database, small_county)
    with database.engine.begin() as conn:
        conn.execute(sa.update(Patient).where(Patient.patient_id == "C1").values(consent=0))
    data = build_lists(database.engine, township_code="T", week=D("2026-06-10"))
    lists = {wl.slug: wl for wl in data["lists"]}
    assert "C1" not in {r["patient_id"] for r in lists["followup"].rows + lists["joint"].rows}
    risk = {r["patient_id"]: r for r in lists["risk"].rows}
    assert risk["C1"]["reasons"] == "最近危险性3级"
    med = sorted((r["patient_id"], r["item"]) for r in lists["medication"].rows)
    assert med == [("A", "服药依从性差"), ("C1", "服药依从性差")]  # the LAI task: cancelled by the next run
    assert {r["patient_id"] for r in lists["assistance"].rows} == {"B", "C1"}
