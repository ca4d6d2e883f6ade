"""导出 ``jingfang export`` (contract.md [2026-12], issue 13) on SQLite and PostgreSQL: export → import into
an empty database → export is byte-identical (hypothesis over generated registers), the workbook round
trip, a formula-looking name exported as a text cell, the ``--region`` subset, the audit rows, and the
web's ``/export`` (county admin only)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlmodel import SQLModel
from typer.testing import CliRunner

from jingfang.cli import app
from registry.exporting import EXPORTS, export_columns, export_register
from registry.importing import FILE_SPECS, import_path
from registry.synthetic import CountySize, write_county_csv
from registry.web.app import create_app
from web_support import PASSWORD, TODAY, seed

runner = CliRunner()


def empty(engine: sa.Engine) -> None:
    """Every table emptied (an empty database, as migrated)."""
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def export(engine, folder: Path, **kw) -> dict[str, bytes]:
    export_register(engine, directory=folder, actor="test", **kw)
    return files(folder)


def county(folder: Path, seed_: int, patients: int) -> Path:
    write_county_csv(folder, patients=patients, seed=seed_, today=TODAY,
                     size=CountySize(patients=patients, townships=2, villages=4))
    return folder


def test_every_import_file_and_column_exports():
    missing = set(FILE_SPECS) - set(EXPORTS)
    assert not missing, f"add an ExportFile to registry.exporting.EXPORTS for {sorted(missing)}"
    for stem, spec in EXPORTS.items():
        for name in export_columns(stem):
            assert name in spec.columns or name in spec.table.c, f"{stem}.csv column {name}: not a column of " \
                f"{spec.table.name}; name its expression in the ExportFile's columns"


_runs = iter(range(10**6))


def add_participants(folder: Path, draw) -> int:
    """participants.csv for the generated county (rules.md §6.2 [2026-12], attendance per person): on
    some follow-ups, per joint role several people — members of the role (in a random order) and
    perhaps the role's unnamed row — each present or absent, some with a reason. Returns the rows."""
    import csv

    with open(folder / "team_members.csv", encoding="utf-8") as fh:
        members = {}
        for m in csv.DictReader(fh):
            members.setdefault(m["role"], []).append(m["member_id"])
    with open(folder / "followups.csv", encoding="utf-8") as fh:
        visits = [(f["patient_id"], f["visit_on"]) for f in csv.DictReader(fh)]
    lines, seen = [], set()
    for pid, on in visits:
        if (pid, on) in seen or (lines and not draw(st.booleans())):
            continue
        seen.add((pid, on))  # the first follow-up of that date (seq 1)
        for role in ("police", "village", "civil_affairs"):
            pool = members.get(role, [])
            at_least = 2 if role == "police" and not lines and len(pool) >= 2 else 0  # two officers on one visit, always
            people = draw(st.lists(st.sampled_from(pool), unique=True, min_size=at_least, max_size=3)) if pool else []
            if draw(st.booleans()):
                people.append("")  # the role's unnamed row
            for member in people:
                present = draw(st.booleans())
                reason = "" if present else draw(st.sampled_from(["", "值班", "外出,开会"]))
                lines.append(f'{pid},{on},{role},{member},{int(present)},"{reason}"\n')
    (folder / "participants.csv").write_text("patient_id,visit_on,role,member_id,present,reason\n" + "".join(lines),
                                             encoding="utf-8")
    return len(lines)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed_=st.integers(0, 10**6), patients=st.integers(1, 12), data=st.data())
def test_export_import_export_is_byte_identical(database, tmp_path, seed_, patients, data):
    run = tmp_path / f"run{next(_runs)}"
    empty(database.engine)
    source = county(run / "source", seed_, patients)
    people = add_participants(source, data.draw)
    import_path(database.engine, source, today=TODAY)
    first = export(database.engine, run / "first")
    assert set(first) == {f"{stem}.csv" for stem in FILE_SPECS}
    assert first["patients.csv"].startswith(b"\xef\xbb\xbfpatient_id,") and first["patients.csv"].count(b"\n") == patients + 1
    assert first["participants.csv"].count(b"\n") == people + 1  # every person's row
    empty(database.engine)
    import_path(database.engine, run / "first", today=TODAY)
    assert export(database.engine, run / "second") == first


def test_the_workbook_round_trips(database, tmp_path):
    import_path(database.engine, county(tmp_path / "source", 11, 8), today=TODAY)
    csv_first = export(database.engine, tmp_path / "first")
    export_register(database.engine, xlsx=tmp_path / "register.xlsx", actor="test")
    book = load_workbook(tmp_path / "register.xlsx")
    assert book.sheetnames == list(FILE_SPECS)
    assert [c.value for c in book["patients"][1]] == export_columns("patients")
    assert book["patients"].max_row == 9
    empty(database.engine)
    import_path(database.engine, tmp_path / "register.xlsx", today=TODAY)
    assert export(database.engine, tmp_path / "second") == csv_first


FORMULAS = ["=HYPERLINK(\"http://x\",\"点我\")", "+86 138", "-1+1", "@SUM(A1)"]


def test_a_formula_looking_value_is_exported_as_text(database, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "regions.csv").write_text("code,name,level,parent_code\nC,县,county,\nT,镇,township,C\nV,村,village,T\n", encoding="utf-8")
    rows = "".join(f'P{i},"{name.replace(chr(34), chr(34) * 2)}",1,1980-01-01,V,F20,2024-01-01\n' for i, name in enumerate(FORMULAS))
    (folder / "patients.csv").write_text("patient_id,name,sex,birth_date,village_code,diagnosis,registered_on\n" + rows,
                                         encoding="utf-8")
    import_path(database.engine, folder, today=TODAY)
    first = export(database.engine, tmp_path / "first")
    export_register(database.engine, xlsx=tmp_path / "r.xlsx", actor="test")
    sheet = load_workbook(tmp_path / "r.xlsx")["patients"]
    names = [row[1] for row in sheet.iter_rows(min_row=2)]
    assert [c.value for c in names] == FORMULAS
    assert all(c.data_type == "s" and c.quotePrefix for c in names)
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    empty(database.engine)
    import_path(database.engine, tmp_path / "r.xlsx", today=TODAY)
    assert export(database.engine, tmp_path / "second") == first


def test_a_region_exports_its_subtree_and_imports_alone(database, tmp_path):
    import_path(database.engine, county(tmp_path / "source", 5, 30), today=TODAY)
    with database.engine.connect() as conn:
        township = conn.execute(sa.text("SELECT min(code) FROM region WHERE level = 'township'")).scalar_one()
        villages = set(conn.execute(sa.text("SELECT code FROM region WHERE parent_code = :t"), {"t": township}).scalars())
        mine = set(conn.execute(sa.text("SELECT patient_id FROM patient WHERE village_code IN (SELECT code FROM region "
                                        "WHERE parent_code = :t)"), {"t": township}).scalars())
    part = export(database.engine, tmp_path / "part", region=township)
    text = part["patients.csv"].decode("utf-8-sig").splitlines()[1:]
    assert {line.split(",")[0] for line in text} == mine and mine
    follow_ids = {line.split(",")[0] for line in part["followups.csv"].decode("utf-8-sig").splitlines()[1:]}
    assert follow_ids <= mine
    regions = {line.split(",")[0] for line in part["regions.csv"].decode("utf-8-sig").splitlines()[1:]}
    assert regions == villages | {township, "449901"}  # the subtree and its ancestors
    empty(database.engine)
    import_path(database.engine, tmp_path / "part", today=TODAY)
    assert export(database.engine, tmp_path / "again") == part


def _audits(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT actor, object_id, region_code, detail, source FROM audit_log "
                                    "WHERE action = 'export' ORDER BY id")).all()


def test_the_command_exports_and_is_audited(database, tmp_path):
    import_path(database.engine, county(tmp_path / "source", 3, 5), today=TODAY)
    result = runner.invoke(app, ["export", str(tmp_path / "out"), "--xlsx", str(tmp_path / "r.xlsx"), "--db", database.url])
    assert result.exit_code == 0, result.output
    assert "患者 5 行" in result.output
    assert (tmp_path / "out" / "followups.csv").exists() and (tmp_path / "r.xlsx").exists()
    [row] = _audits(database.engine)
    assert row.actor.startswith("cli:") and row.object_id == "全部" and row.source == "cli" and "患者 5 行" in row.detail
    bad = runner.invoke(app, ["export", str(tmp_path / "x"), "--region", "NOPE", "--db", database.url])
    assert bad.exit_code == 1 and "REGION_NOT_FOUND" in bad.output
    assert not (tmp_path / "x").exists() and len(_audits(database.engine)) == 1
    none = runner.invoke(app, ["export", "--db", database.url])  # contract.md: exit 2, usage error
    assert none.exit_code == 2 and "OUT_REQUIRED" in none.output


# ---------------------------------------------------------------- the web: /export


@pytest.fixture
def client(database):
    seed(database.engine)
    c = TestClient(create_app(database.engine, today=lambda: TODAY), follow_redirects=False)
    c.database = database
    return c


def _login(client, username: str) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token}).status_code == 303


def test_export_needs_a_login(client):
    for url in ("/export", "/export/register.zip", "/export/register.xlsx"):
        r = client.get(url)
        assert r.status_code == 303 and r.headers["location"] == "/login", url


@pytest.mark.parametrize("username", ["doc", "police", "civil"])
def test_export_is_refused_to_every_role_but_the_county_admin(client, username):
    _login(client, username)
    for url in ("/export", "/export/register.zip", "/export/register.xlsx"):
        assert client.get(url).status_code == 403, url
    assert _audits(client.database.engine) == []


def test_the_county_admin_downloads_the_register(client, tmp_path):
    _login(client, "admin")
    page = client.get("/export")
    assert page.status_code == 200 and "/export/register.zip" in page.text and "数据导出" in page.text
    assert _audits(client.database.engine) == []  # the page itself reads nothing
    zipped = client.get("/export/register.zip")
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        names = sorted(archive.namelist())
        patients = archive.read("patients.csv").decode("utf-8-sig")
    assert names == sorted(f"{stem}.csv" for stem in FILE_SPECS)
    assert [line.split(",")[0] for line in patients.splitlines()[1:]] == ["P1", "P2", "P3", "P4", "P5"]
    book = client.get("/export/register.xlsx")
    assert book.status_code == 200
    assert load_workbook(io.BytesIO(book.content)).sheetnames == list(FILE_SPECS)
    rows = _audits(client.database.engine)
    assert [(r.actor, r.object_id, r.region_code) for r in rows] == [("admin", "C", "C")] * 2
    assert all(r.source for r in rows) and "网页下载 CSV 压缩包" in rows[0].detail and "患者 5 行" in rows[0].detail
    audit_page = client.get("/audit")
    assert audit_page.status_code == 200 and "登记数据" in audit_page.text and "导出" in audit_page.text


def test_line_breaks_commas_and_quotes_are_written_as_copy_writes_them(database):
    """Both writers (PostgreSQL COPY CSV, the SQLite cursor) give the same bytes, which csv reads back."""
    from registry.exporting import _write_csv_pg, _write_csv_rows

    values = ["a\rb", "c\nd", "e\r\nf", "g,h", 'i"j', "k\tl", "中文", None]
    stmt = sa.select(*(sa.type_coerce(sa.literal(v) if v is not None else sa.null(), sa.Text).label(f"c{i}")
                       for i, v in enumerate(values)))
    out = io.BytesIO()
    with database.engine.connect() as conn:
        (_write_csv_pg if database.backend == "postgresql" else _write_csv_rows)(conn, stmt, out)
    data = out.getvalue()
    assert data == '"a\rb","c\nd","e\r\nf","g,h","i""j",k\tl,中文,\n'.encode("utf-8")
    import csv

    assert next(csv.reader(io.StringIO(data.decode("utf-8"), newline=""))) == [v or "" for v in values]


def test_a_file_from_a_join_exports_by_one_entry(database, tmp_path, monkeypatch):
    """The way a new import file joins the export (``ExportFile`` docstring): attendance on follow-ups,
    keyed by the follow-up's patient and date, scoped by its patient's village."""
    from registry import models
    from registry.exporting import ExportFile, by_patient
    from registry.validation import FieldSpec, flag, identifier, iso_date, text

    seed(database.engine)
    fu, p = models.FollowUp.__table__, models.FollowUpParticipant.__table__
    monkeypatch.setitem(FILE_SPECS, "participants", [
        FieldSpec("patient_id", "患者编号", identifier(64)), FieldSpec("visit_on", "随访日期", iso_date),
        FieldSpec("role", "角色", text(20)), FieldSpec("member_id", "成员编号", identifier(64)),
        FieldSpec("present", "到场", flag)])
    monkeypatch.setitem(EXPORTS, "participants", ExportFile(
        p, (fu.c.patient_id, fu.c.visit_on, fu.c.seq, "role"), by_patient(fu.c.patient_id),
        columns={"patient_id": fu.c.patient_id, "visit_on": fu.c.visit_on, "present": p.c.attended},
        source=p.join(fu, fu.c.id == p.c.follow_up_id)))
    whole = export(database.engine, tmp_path / "all")
    assert whole["participants.csv"].decode("utf-8-sig") == "patient_id,visit_on,role,member_id,present\nP1,2026-05-20,police,M-POL,0\n"
    other = export(database.engine, tmp_path / "t2", region="T2")
    assert other["participants.csv"].decode("utf-8-sig") == "patient_id,visit_on,role,member_id,present\n"
