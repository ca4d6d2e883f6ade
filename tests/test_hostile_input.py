"""恶意输入 Hostile values and careless files (issue 18), on SQLite and PostgreSQL: formula text in the
五单 workbook, one township's failure never stopping another's lists, the import's silent data losses
(unknown files, duplicate sheets, formula cells, repeated rows, identity changes, ids that differ only
in width or zero-width characters), statistics after a large import, the demo on a live register."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from jingfang.cli import app
from registry.errors import ImportRejected
from registry.importing import import_path
from registry.models import AuditLog, Patient, Region
from schedules.generation import generate
from schedules.jobs import recent_runs, run_weekly_lists
from schedules.lists import build_lists, write_xlsx
from schedules.models import OutboxMessage
from schedules.notify import add_webhook

D = date.fromisoformat
TODAY = D("2026-06-10")
runner = CliRunner()
FORMULA_NAME = '=HYPERLINK("http://x","y")'


def county(tmp_path: Path, small_county: Path) -> Path:
    folder = tmp_path / "county"
    shutil.copytree(small_county, folder)
    return folder


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def table_rows(engine) -> dict[str, list]:
    """Every imported table, whole: the 'database unchanged' check."""
    out = {}
    with engine.connect() as conn:
        for name in ("region", "team_member", "patient", "follow_up", "health_check"):
            out[name] = sorted(map(tuple, conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()), key=repr)
    return out


def rejected(engine, path, **kw) -> list:
    before = table_rows(engine)
    with pytest.raises(ImportRejected) as info:
        import_path(engine, path, today=TODAY, **kw)
    assert table_rows(engine) == before
    return info.value.issues


# ---------------------------------------------------------------- spreadsheets: text cells only

def test_a_formula_as_a_name_is_text_in_the_lists_workbook(database, small_county, tmp_path):
    folder = county(tmp_path, small_county)
    rewrite(folder / "patients.csv", "A,甲,", f'A,"{FORMULA_NAME.replace(chr(34), chr(34) * 2)}",')
    import_path(database.engine, folder, today=TODAY)
    with database.engine.begin() as conn:
        conn.execute(sa.update(Patient).where(Patient.patient_id == "A").values(address="+1-2", phone="@SUM(1)"))
    generate(database.engine, as_of=D("2026-06-08"))
    data = build_lists(database.engine, township_code="T", week=D("2026-06-08"))
    books = [load_workbook(path) for path in write_xlsx(data, tmp_path)]  # one workbook per list (rules.md §7)
    cells = [c for book in books for sheet in book.worksheets for row in sheet.iter_rows() for c in row]
    found = [c for c in cells if c.value == FORMULA_NAME]
    assert found, "the patient's name is in the workbooks"
    assert all(c.data_type == "s" and c.quotePrefix for c in found)
    formulas = [c.coordinate for c in cells if c.data_type == "f"]
    assert formulas == []


def test_a_control_character_stored_before_validation_does_not_stop_the_workbook(database, small_county, tmp_path):
    import_path(database.engine, small_county, today=TODAY)
    with database.engine.begin() as conn:  # stored by an older version, before BAD_TEXT
        conn.execute(sa.update(Patient).where(Patient.patient_id == "A").values(name="甲\x0b\x1b"))
    generate(database.engine, as_of=D("2026-06-08"))
    paths = write_xlsx(build_lists(database.engine, township_code="T", week=D("2026-06-08")), tmp_path)
    values = {c.value for path in paths for sheet in load_workbook(path).worksheets for row in sheet.iter_rows() for c in row}
    assert "甲\ufffd\ufffd" in values


# ---------------------------------------------------------------- one township's failure

def test_one_townships_failure_never_stops_another(database, small_county, tmp_path, monkeypatch):
    monkeypatch.setenv("JINGFANG_RENDER_WORKERS", "1")
    import_path(database.engine, small_county, today=TODAY)
    with database.engine.begin() as conn:
        conn.execute(sa.insert(Region).values(code="T2", name="二镇", level="township", parent_code="C"))
    add_webhook(database.engine, name="county", url="http://127.0.0.1:9/hook", fmt="generic", secret="s" * 32, region_code="C")
    out = tmp_path / "lists"
    out.mkdir()
    (out / "T").write_text("not a directory")  # township T's output cannot be written
    totals = run_weekly_lists(database.url, str(out), "2026-06-08", source="test")
    names = sorted(p.name for p in (out / "T2").iterdir())  # five PDFs and five workbooks, one per list
    assert len(names) == 10 and sum(n.endswith(".xlsx") for n in names) == 5, names
    assert totals["townships"] == 1 and list(totals["failed"]) == ["T"]
    run = recent_runs(database.engine, 1)[0]
    assert run["job"] == "lists" and run["status"] == "error" and "T:" in run["error"] and run["counts"]["townships"] == 1
    with database.engine.connect() as conn:
        messages = {m.dedupe_key: json.loads(m.payload) for m in conn.execute(sa.select(OutboxMessage))}
    assert set(messages) == {"lists:T2:2026-06-08", "lists-failed:T:2026-06-08"}
    alert = messages["lists-failed:T:2026-06-08"]
    assert alert["event"] == "lists.failed" and alert["township"] == "T"
    names = {p for (p,) in database.engine.connect().execute(sa.select(Patient.name))}
    assert not any(name in json.dumps(alert, ensure_ascii=False) for name in names)  # identifier-free
    # the next run, with the cause gone, completes T; nothing is queued twice
    (out / "T").unlink()
    totals = run_weekly_lists(database.url, str(out), "2026-06-08", source="test")
    assert totals["townships"] == 2 and "failed" not in totals and totals["queued"] == 1
    assert recent_runs(database.engine, 1)[0]["status"] == "ok"


# ---------------------------------------------------------------- import: no silent data loss

def test_an_unknown_file_is_an_error(database, small_county, tmp_path):
    folder = county(tmp_path, small_county)
    (folder / "followups.csv").rename(folder / "followup.csv")
    for skip in (False, True):
        issues = rejected(database.engine, folder, skip_invalid=skip)
        assert [(i.code, i.file) for i in issues] == [("UNKNOWN_FILE", "followup.csv")]


def book_with(tmp_path: Path, sheets: dict[str, list[list]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path = tmp_path / "register.xlsx"
    book.save(path)
    return path


REGIONS = [["code", "name", "level", "parent_code"], ["C", "县", "county", None], ["T", "镇", "township", "C"],
           ["V", "村", "village", "T"]]
PATIENTS = [["patient_id", "name", "sex", "birth_date", "village_code", "diagnosis", "registered_on"],
            ["A", "甲", 1, "1980-01-01", "V", "F20", "2026-01-10"]]


def test_two_sheets_for_one_table_are_an_error(database, tmp_path):
    path = book_with(tmp_path, {"regions": REGIONS, "regions.csv": REGIONS[:2]})
    issues = rejected(database.engine, path)
    assert [(i.code, i.file) for i in issues] == [("DUPLICATE_SHEET", "register.xlsx:regions.csv")]


def test_a_formula_cell_is_an_error_naming_workbook_sheet_and_cell(database, tmp_path):
    path = book_with(tmp_path, {"regions": REGIONS[:3] + [["V", "=B2", "village", "T"]]})
    issues = rejected(database.engine, path)
    assert [(i.code, i.file, i.line, i.column) for i in issues] == [("FORMULA_CELL", "register.xlsx:regions", 4, "B4")]


def test_workbook_errors_name_the_workbook_and_sheet(database, tmp_path):
    path = book_with(tmp_path, {"regions": REGIONS, "patients": PATIENTS + [["B", "乙", 7, "1980-01-01", "V", "F20", "2026-01-10"]]})
    issues = rejected(database.engine, path)
    assert [(i.code, i.file, i.line, i.column) for i in issues] == [("BAD_CODE", "register.xlsx:patients", 3, "sex")]


def test_a_repeated_follow_up_row_is_an_error_naming_both_lines(database, small_county, tmp_path):
    folder = county(tmp_path, small_county)
    lines = (folder / "followups.csv").read_text(encoding="utf-8").splitlines()
    (folder / "followups.csv").write_text("\n".join(lines + [lines[2]]) + "\n", encoding="utf-8")
    issues = rejected(database.engine, folder)
    assert [(i.code, i.file, i.line) for i in issues] == [("DUPLICATE_ROW", "followups.csv", len(lines) + 1)]
    assert "第3行" in issues[0].message


def test_ids_are_compared_after_normalising(database, small_county, tmp_path):
    import_path(database.engine, small_county, today=TODAY)
    folder = tmp_path / "again"
    folder.mkdir()
    # full-width letters and a zero-width space: the same patient A, the same village V
    (folder / "followups.csv").write_text("patient_id,visit_on,risk_level\nＡ\u200b,2026-06-01,0\n", encoding="utf-8")
    (folder / "patients.csv").write_text(
        (small_county / "patients.csv").read_text(encoding="utf-8").replace("\nA,甲,1,1980-01-01,,V,", "\nＡ,甲,1,1980-01-01,,Ｖ\u200b,"),
        encoding="utf-8")
    import_path(database.engine, folder, today=TODAY)
    with database.engine.connect() as conn:
        ids = conn.execute(sa.select(Patient.patient_id).order_by(Patient.patient_id)).scalars().all()
        visits = conn.execute(sa.text("SELECT patient_id FROM follow_up WHERE visit_on = :d"), {"d": D("2026-06-01")}).scalars().all()
    assert "Ａ" not in ids and len(ids) == len(set(ids)) and visits == ["A"]


def test_changed_identity_of_a_stored_patient_is_listed(database, small_county, tmp_path):
    folder = county(tmp_path, small_county)
    import_path(database.engine, folder, today=TODAY)
    rewrite(folder / "patients.csv", "A,甲,1,1980-01-01,,V,", "A,甲二,1,1980-01-01,440781198001011233,V,")
    result = import_path(database.engine, folder, today=TODAY)
    assert result.changes == [("A", "id_number", "", "440781********1233"), ("A", "name", "甲", "甲二")]
    summary = result.summary()
    assert "姓名：甲 → 甲二" in summary and "440781********1233" in summary and "440781198001011233" not in summary
    with database.engine.connect() as conn:  # and in the patient's change history (the audit log)
        history = conn.execute(sa.select(AuditLog.object_id, AuditLog.detail).where(AuditLog.action == "import_change")).all()
    assert history == [("A", "身份证号：（空） → 440781********1233；姓名：甲 → 甲二")]


def test_statistics_exist_after_a_large_import(database, small_county):
    engine = database.engine
    with engine.connect() as conn:
        if database.backend == "sqlite":
            had = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").scalar()
            if had:
                conn.exec_driver_sql("DELETE FROM sqlite_stat1")
                conn.commit()
        start = conn.exec_driver_sql("SELECT now()").scalar() if database.backend == "postgresql" else None
    import_path(engine, small_county, today=TODAY, analyze_rows=10)  # a "large" import of 10+ rows
    with engine.connect() as conn:
        if database.backend == "sqlite":
            analysed = set(conn.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1").scalars())
        else:
            analysed = set(conn.exec_driver_sql(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze >= %(s)s", {"s": start}).scalars())
    assert {"patient", "follow_up", "region"} <= analysed


def test_a_small_import_does_not_analyze(database, small_county):
    with database.engine.connect() as conn:
        start = conn.exec_driver_sql("SELECT now()").scalar() if database.backend == "postgresql" else None
    import_path(database.engine, small_county, today=TODAY)  # 20-odd rows, under the threshold
    with database.engine.connect() as conn:
        if database.backend == "sqlite":
            assert not conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").scalar()
        else:  # an explicit ANALYZE sets last_analyze (autovacuum's sets last_autoanalyze)
            analysed = set(conn.exec_driver_sql(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze >= %(s)s", {"s": start}).scalars())
            assert not {"patient", "follow_up", "region"} & analysed, analysed


# ---------------------------------------------------------------- the demo never touches a live register

def test_the_demo_refuses_a_register(database, small_county, tmp_path):
    import_path(database.engine, small_county, today=TODAY)
    before = table_rows(database.engine)
    for extra in ([], ["--force"]):
        result = runner.invoke(app, ["demo", "--patients", "20", "--out", str(tmp_path / "out"), "--db", database.url, *extra])
        assert result.exit_code == 1 and "DEMO_DATABASE_HAS_PATIENTS" in result.stderr, result.output
        assert "演示只能写入空数据库" in result.stderr
    assert table_rows(database.engine) == before and not (tmp_path / "out").exists()
