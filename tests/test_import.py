"""导入 Import: every error kind is reported with file, line, column, code and Chinese reason, and
nothing is written; re-import changes nothing; XLSX and Chinese headers; runs on both databases."""

from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from jingfang.cli import app
from registry.errors import ImportRejected
from registry.importing import import_path

TODAY = date(2026, 6, 10)
TABLES = ("region", "patient", "follow_up", "health_check", "team_member")


def counts(database) -> dict[str, int]:
    return {t: database.count(t) for t in TABLES}


@pytest.fixture
def files(small_county, tmp_path) -> Path:
    """A writable copy of the worked example."""
    target = tmp_path / "files"
    shutil.copytree(small_county, target)
    for extra in target.glob("expected-*"):
        extra.unlink()
    return target


def edit(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell (line numbers as the importer reports them: header = 1)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    rows[line - 1][rows[0].index(column)] = value
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def append(path: Path, row: dict) -> None:
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f))
    with path.open("a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow([row.get(c, "") for c in header])


def test_worked_example_imports_and_reimport_changes_nothing(database, files):
    first = import_path(database.engine, files, today=TODAY)
    assert first.tables["patients"].written == 4
    assert first.tables["followups"].written == 7
    assert counts(database) == {"region": 3, "patient": 4, "follow_up": 7, "health_check": 1, "team_member": 0}
    with database.engine.connect() as conn:
        before = conn.execute(sa.text("SELECT patient_id, updated_at FROM patient ORDER BY patient_id")).all()
        fu_before = conn.execute(sa.text("SELECT id, patient_id, visit_on, seq FROM follow_up ORDER BY id")).all()
    again = import_path(database.engine, files, today=TODAY)
    assert all(r.written == 0 for r in again.tables.values())
    assert again.tables["followups"].unchanged == 7
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT patient_id, updated_at FROM patient ORDER BY patient_id")).all() == before
        assert conn.execute(sa.text("SELECT id, patient_id, visit_on, seq FROM follow_up ORDER BY id")).all() == fu_before


def test_changed_value_is_updated_on_reimport(database, files):
    import_path(database.engine, files, today=TODAY)
    edit(files / "patients.csv", 2, "phone", "13800000000")
    result = import_path(database.engine, files, today=TODAY)
    assert result.tables["patients"].written == 1 and result.tables["patients"].unchanged == 3
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT phone FROM patient WHERE patient_id = 'A'")).scalar_one() == "13800000000"


# Each case: a change to the example, then the one issue expected (file, line, column, code, words).
ERROR_CASES = {
    "unknown column": (lambda f: (f / "patients.csv").write_text((f / "patients.csv").read_text(encoding="utf-8").replace("phone", "mobile", 1), encoding="utf-8"),
                       ("patients.csv", 1, "mobile", "UNKNOWN_COLUMN", "未知的列")),
    "bad code": (lambda f: edit(f / "followups.csv", 2, "mode", "4"),
                 ("followups.csv", 2, "mode", "BAD_CODE", "1 门诊 / 2 家庭访视 / 3 电话")),
    "bad risk": (lambda f: edit(f / "followups.csv", 3, "risk_level", "6"),
                 ("followups.csv", 3, "risk_level", "BAD_CODE", "0–5")),
    "bad date": (lambda f: edit(f / "followups.csv", 2, "visit_on", "2026-02-30"),
                 ("followups.csv", 2, "visit_on", "BAD_DATE", "2026-02-30")),
    "future date": (lambda f: edit(f / "followups.csv", 2, "visit_on", "2026-07-01"),
                    ("followups.csv", 2, "visit_on", "FUTURE_DATE", "晚于今天")),
    "before birth": (lambda f: edit(f / "patients.csv", 2, "registered_on", "1979-01-01"),
                     ("patients.csv", 2, "registered_on", "BEFORE_BIRTH", "早于出生日期")),
    "duplicate id": (lambda f: append(f / "patients.csv", {"patient_id": "B", "name": "重", "sex": "1", "birth_date": "1980-01-01",
                                                            "village_code": "V", "diagnosis": "F20", "registered_on": "2026-01-01"}),
                     ("patients.csv", 6, "patient_id", "DUPLICATE_ID", "与第3行重复")),
    "unknown village": (lambda f: edit(f / "patients.csv", 3, "village_code", "NOPE"),
                        ("patients.csv", 3, "village_code", "UNKNOWN_VILLAGE", "NOPE")),
    "bad check digit": (lambda f: edit(f / "patients.csv", 2, "id_number", "110105198001010011"),
                        ("patients.csv", 2, "id_number", "ID_CHECK_DIGIT", "校验位")),
    "classification contradicts risk": (lambda f: edit(f / "followups.csv", 3, "classification", "3"),
                                        ("followups.csv", 3, "classification", "CLASSIFICATION_CONFLICT", "稳定")),
    "unknown diagnosis": (lambda f: edit(f / "patients.csv", 2, "diagnosis", "F32"),
                          ("patients.csv", 2, "diagnosis", "BAD_DIAGNOSIS", "六类")),
    "missing required": (lambda f: edit(f / "patients.csv", 4, "birth_date", ""),
                         ("patients.csv", 4, "birth_date", "REQUIRED", "不能为空")),
    "unknown patient": (lambda f: append(f / "health_checks.csv", {"patient_id": "ZZ", "checked_on": "2026-03-03"}),
                        ("health_checks.csv", 3, "patient_id", "UNKNOWN_PATIENT", "ZZ")),
    "wrong encoding": (lambda f: (f / "regions.csv").write_bytes(b"code,name,level,parent_code,population\nC,\xff\xfe,county,,\n"),
                       ("regions.csv", 2, None, "ENCODING", "GB18030")),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_row_is_reported_and_nothing_is_written(database, files, case):
    mutate, (file, line, column, code, words) = ERROR_CASES[case]
    mutate(files)
    with pytest.raises(ImportRejected) as info:
        import_path(database.engine, files, today=TODAY)
    matching = [i for i in info.value.issues if i.code == code]
    assert matching, [i.render() for i in info.value.issues]
    issue = matching[0]
    assert (issue.file, issue.line, issue.column) == (file, line, column)
    assert words in issue.message
    assert counts(database) == dict.fromkeys(TABLES, 0)


def test_classification_conflict_names_both_values(database, files):
    edit(files / "followups.csv", 5, "classification", "2")  # C1 on 03-01 has risk 3
    with pytest.raises(ImportRejected) as info:
        import_path(database.engine, files, today=TODAY)
    (issue,) = info.value.issues
    assert "基本稳定" in issue.message and "3级" in issue.message


def test_every_bad_row_is_reported_not_just_the_first(database, files):
    edit(files / "followups.csv", 2, "mode", "7")
    edit(files / "followups.csv", 4, "insight", "4")
    edit(files / "patients.csv", 3, "sex", "x")
    with pytest.raises(ImportRejected) as info:
        import_path(database.engine, files, today=TODAY)
    assert sorted((i.file, i.line, i.column) for i in info.value.issues) == [
        ("followups.csv", 2, "mode"), ("followups.csv", 4, "insight"), ("patients.csv", 3, "sex")]


def test_follow_ups_of_an_invalid_patient_row_are_reported_too(database, files):
    edit(files / "patients.csv", 2, "sex", "9")  # patient A
    with pytest.raises(ImportRejected) as info:
        import_path(database.engine, files, today=TODAY)
    codes = [(i.file, i.code) for i in info.value.issues]
    assert ("patients.csv", "BAD_CODE") in codes
    assert codes.count(("followups.csv", "PATIENT_ROW_INVALID")) == 3


def test_skip_invalid_writes_every_valid_row(database, files):
    edit(files / "patients.csv", 3, "village_code", "NOPE")  # patient B
    append(files / "followups.csv", {"patient_id": "A", "visit_on": "2026-05-30", "mode": "9"})
    result = import_path(database.engine, files, today=TODAY, skip_invalid=True)
    assert {i.code for i in result.issues} == {"UNKNOWN_VILLAGE", "BAD_CODE"}
    assert result.tables["patients"].skipped == 1 and result.tables["followups"].skipped == 1
    with database.engine.connect() as conn:
        assert [r[0] for r in conn.execute(sa.text("SELECT patient_id FROM patient ORDER BY 1"))] == ["A", "C1", "D"]
    assert database.count("follow_up") == 7


def test_xlsx_with_chinese_headers(database, files, tmp_path):
    from openpyxl import Workbook

    chinese = {"regions": ["编码", "名称", "级别", "上级编码", "常住人口"]}
    wb = Workbook()
    wb.remove(wb.active)
    for stem in ("regions", "patients", "followups", "health_checks"):
        with (files / f"{stem}.csv").open(encoding="utf-8") as f:
            rows = list(csv.reader(f))
        sheet = wb.create_sheet(stem)
        sheet.append(chinese.get(stem, rows[0]))
        for row in rows[1:]:
            sheet.append([int(c) if c.isdigit() and len(c) < 5 else (date.fromisoformat(c) if len(c) == 10 and c[4] == "-" else c) for c in row])
    book = tmp_path / "county.xlsx"
    wb.save(book)
    result = import_path(database.engine, book, today=TODAY)
    assert result.tables["regions"].written == 3 and result.tables["followups"].written == 7
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT population FROM region WHERE code = 'V'")).scalar_one() == 1000


def test_chinese_csv_headers_and_labels(database, tmp_path):
    d = tmp_path / "zh"
    d.mkdir()
    (d / "regions.csv").write_text("编码,名称,级别,上级编码,常住人口\nC,县,county,,\nT,镇,township,C,\nV,村,village,T,500\n", encoding="utf-8-sig")
    (d / "patients.csv").write_text(
        "患者编号,姓名,性别,出生日期,村编码,诊断,建档日期,经济状况\nX1,某,女,1990-05-05,V,精神分裂症,2020-01-01,贫困\nX2,某,1,1990-05-05,V,F31.1,2020-01-01,\n",
        encoding="utf-8-sig",
    )
    import_path(database.engine, d, today=TODAY)
    with database.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT patient_id, sex, diagnosis, economic_status FROM patient ORDER BY 1")).all()
    assert [tuple(r) for r in rows] == [("X1", 2, "schizophrenia", 1), ("X2", 1, "bipolar", None)]


def test_cli_exit_status_and_message(database, files):
    edit(files / "patients.csv", 2, "id_number", "110105198001010011")
    runner = CliRunner()
    bad = runner.invoke(app, ["import", str(files), "--db", database.url])
    assert bad.exit_code == 1
    assert "IMPORT_REJECTED" in bad.stderr and "patients.csv 第2行: 身份证号" in bad.stderr  # the label, not id_number (issue 16)
    assert database.count("patient") == 0
    ok = runner.invoke(app, ["import", str(files), "--db", database.url, "--skip-invalid"])
    assert ok.exit_code == 0, ok.output
    assert "跳过" in ok.stderr and database.count("patient") == 3
    assert database.count("audit_log") == 1  # the import is audited


def test_cli_usage_error_exits_2():
    result = CliRunner().invoke(app, ["import"])
    assert result.exit_code == 2


def test_corrected_follow_up_gets_a_new_updated_at(database, files):
    import_path(database.engine, files, today=TODAY)
    with database.engine.connect() as conn:
        before = dict(conn.execute(sa.text("SELECT id, updated_at FROM follow_up")).all())
    edit(files / "followups.csv", 2, "adherence", "2")  # A on 2026-01-20
    import_path(database.engine, files, today=TODAY)
    with database.engine.connect() as conn:
        after = dict(conn.execute(sa.text("SELECT id, updated_at FROM follow_up")).all())
        changed_id = conn.execute(sa.text("SELECT id FROM follow_up WHERE patient_id = 'A' AND visit_on = '2026-01-20'")).scalar_one()
    assert [i for i in after if after[i] != before[i]] == [changed_id]
