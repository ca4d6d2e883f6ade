"""恶意导入文件 A corpus of hostile and careless import files (issue 18), through `jingfang import` on
SQLite and PostgreSQL. Each case is built here (a small script: control characters and broken bytes
are clearer as escapes than as committed files) on top of the worked example already imported, and
states its exit status and the codes the message must name; the register is unchanged afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook
from typer.testing import CliRunner

from jingfang.cli import app

runner = CliRunner()
PATIENT_HEADER = "patient_id,name,sex,birth_date,id_number,village_code,address,phone,diagnosis,registered_on,guardian_name"
FOLLOW_UP_HEADER = "patient_id,visit_on,mode,risk_level"


def patient(**change) -> str:
    row = {"patient_id": "Z", "name": "赵", "sex": "1", "birth_date": "1970-02-02", "id_number": "", "village_code": "V",
           "address": "幸福路1号", "phone": "13800000000", "diagnosis": "F20", "registered_on": "2026-02-01",
           "guardian_name": ""}
    row.update(change)
    cells = []
    for value in row.values():
        cells.append('"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n\r') else value)
    return ",".join(cells)


def csv_case(files: dict[str, str | bytes]):
    def build(folder: Path) -> Path:
        folder.mkdir()
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            (folder / name).write_bytes(data)
        return folder
    return build


def xlsx_case(sheets: dict[str, list[list]]):
    def build(folder: Path) -> Path:
        folder.mkdir()
        book = Workbook()
        book.remove(book.active)
        for title, rows in sheets.items():
            sheet = book.create_sheet(title)
            for row in rows:
                sheet.append(row)
        path = folder / "register.xlsx"
        book.save(path)
        return path
    return build


def broken_xlsx(folder: Path) -> Path:
    folder.mkdir()
    (folder / "register.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    return folder / "register.xlsx"


def patients_file(*rows: str) -> str:
    return "\n".join([PATIENT_HEADER, *rows]) + "\n"


XLSX_PATIENTS = [PATIENT_HEADER.split(","), ["Z", "赵", 1, "1970-02-02", None, "V", "幸福路1号", "13800000000", "F20", "2026-02-01", None]]

# case -> (build, exit status, codes the message names)
CASES = {
    "nul_in_name": (csv_case({"patients.csv": patients_file(patient(name="赵\x00"))}), 1, {"BAD_TEXT"}),
    "vertical_tab_in_name": (csv_case({"patients.csv": patients_file(patient(name="赵\x0b"))}), 1, {"BAD_TEXT"}),
    "escape_sequence_in_address": (csv_case({"patients.csv": patients_file(patient(address="\x1b[2J幸福路"))}), 1, {"BAD_TEXT"}),
    "right_to_left_override_in_name": (csv_case({"patients.csv": patients_file(patient(name="赵\u202e钱"))}), 1, {"BAD_TEXT"}),
    "left_to_right_mark_in_id": (csv_case({"patients.csv": patients_file(patient(patient_id="Z\u200e"))}), 1, {"BAD_TEXT"}),
    "delete_in_phone": (csv_case({"patients.csv": patients_file(patient(phone="1380000\x7f0000"))}), 1, {"BAD_TEXT"}),
    "isolate_in_guardian": (csv_case({"patients.csv": patients_file(patient(guardian_name="\u2067钱\u2069"))}), 1, {"BAD_TEXT"}),
    "line_break_in_name": (csv_case({"patients.csv": patients_file(patient(name="赵\n钱"))}), 1, {"BAD_TEXT"}),
    "c1_control_in_address": (csv_case({"patients.csv": patients_file(patient(address="幸福路\x85"))}), 1, {"BAD_TEXT"}),
    "misnamed_followups": (csv_case({"patients.csv": patients_file(patient()),
                                     "followup.csv": f"{FOLLOW_UP_HEADER}\nZ,2026-03-01,2,0\n"}), 1, {"UNKNOWN_FILE"}),
    "week_date": (csv_case({"patients.csv": patients_file(patient(registered_on="2026-W05-1"))}), 1, {"BAD_DATE"}),
    "ordinal_date": (csv_case({"patients.csv": patients_file(patient(registered_on="2026-032"))}), 1, {"BAD_DATE"}),
    "compact_date": (csv_case({"patients.csv": patients_file(patient(birth_date="19700202"))}), 1, {"BAD_DATE"}),
    "repeated_follow_up": (csv_case({"followups.csv": f"{FOLLOW_UP_HEADER}\nA,2026-05-02,2,0\nA,2026-05-02,2,0\n"}), 1,
                           {"DUPLICATE_ROW"}),
    "full_width_duplicate_id": (csv_case({"patients.csv": patients_file(patient(), patient(patient_id="Ｚ"))}), 1, {"DUPLICATE_ID"}),
    "zero_width_duplicate_id": (csv_case({"patients.csv": patients_file(patient(), patient(patient_id="Z\u200b"))}), 1,
                                {"DUPLICATE_ID"}),
    # a GBK/GB18030 file imports (contract.md [2026-12]; tests/test_full_forms.py); UTF-16 is neither
    "utf16_file": (csv_case({"patients.csv": patients_file(patient()).encode("utf-16")}), 1, {"ENCODING"}),
    "lone_surrogate_bytes": (csv_case({"patients.csv": patients_file(patient()).encode() + b"Y,\xed\xa0\x80\n"}), 1, {"ENCODING"}),
    "unknown_column": (csv_case({"patients.csv": patients_file(patient()).replace("guardian_name", "监护人姓名", 1)}), 1,
                       {"UNKNOWN_COLUMN"}),
    "extra_cells": (csv_case({"patients.csv": patients_file(patient() + ",多余")}), 1, {"EXTRA_CELLS"}),
    "too_long_name": (csv_case({"patients.csv": patients_file(patient(name="赵" * 101))}), 1, {"TOO_LONG"}),
    "follow_up_after_death": (csv_case({
        "patients.csv": "patient_id,name,sex,birth_date,village_code,diagnosis,registered_on,status,status_on\n"
                        "Z,赵,1,1970-02-02,V,F20,2026-02-01,dead,2026-03-01\n",
        "followups.csv": f"{FOLLOW_UP_HEADER}\nZ,2026-04-01,2,0\n"}), 1, {"STATUS_BEFORE_VISIT", "PATIENT_ROW_INVALID"}),
    "formula_cell": (xlsx_case({"patients": XLSX_PATIENTS[:1] + [XLSX_PATIENTS[1][:1] + ['=HYPERLINK("http://x","y")'] + XLSX_PATIENTS[1][2:]]}),
                     1, {"FORMULA_CELL"}),
    "two_sheets_one_table": (xlsx_case({"patients": XLSX_PATIENTS, "patients.csv": XLSX_PATIENTS}), 1, {"DUPLICATE_SHEET"}),
    "unknown_sheet": (xlsx_case({"patients": XLSX_PATIENTS, "followup": [["patient_id", "visit_on"], ["Z", "2026-03-01"]]}), 1,
                      {"UNKNOWN_SHEET"}),
    "control_character_in_sheet": (xlsx_case({"patients": XLSX_PATIENTS[:1] + [XLSX_PATIENTS[1][:6] + ["幸福路\u202e"] + XLSX_PATIENTS[1][7:]]}),
                                   1, {"BAD_TEXT"}),
    "broken_workbook": (broken_xlsx, 1, {"BAD_XLSX"}),
}


def table_rows(engine) -> dict[str, list]:
    out = {}
    with engine.connect() as conn:
        for name in ("region", "team_member", "patient", "follow_up", "health_check", "visit_task"):
            out[name] = sorted(map(tuple, conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()), key=repr)
    return out


@pytest.fixture
def county(database, small_county, tmp_path):
    folder = tmp_path / "county"
    shutil.copytree(small_county, folder)
    result = runner.invoke(app, ["import", str(folder), "--db", database.url])
    assert result.exit_code == 0, result.output
    return database


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_import_file_is_refused_and_changes_nothing(county, tmp_path, case):
    build, exit_status, codes = CASES[case]
    path = build(tmp_path / case)
    before = table_rows(county.engine)
    for extra in ([], ["--skip-invalid"]) if case in ("misnamed_followups", "two_sheets_one_table") else ([],):
        result = runner.invoke(app, ["import", str(path), "--db", county.url, *extra])
        assert result.exit_code == exit_status, (case, result.output)
        for code in codes:
            assert f"[{code}]" in result.stderr, (case, result.stderr)
        assert "Traceback" not in result.output
        assert "\x00" not in result.stderr
    assert table_rows(county.engine) == before
