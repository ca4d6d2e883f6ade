"""The whole national forms (issue 13): every field of the 随访服务记录表 and the 个人信息补充表 in the
import, ``injections.csv`` (the LAI history), GB18030/GBK files; the forms and the API show and take
the supplement and the injections. Every database test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from registry.errors import ImportRejected
from registry.importing import FILE_SPECS, KEPT_WHEN_ABSENT, decode_text, import_path
from registry.models import FollowUp, Patient
from registry.web.app import create_app
from schedules import generation
from web_support import TODAY, seed, session_token

TABLES = ("region", "patient", "follow_up", "health_check", "injection")

# one valid raw cell for every followups.csv column (rules.md §3); a column added to the specs
# without a value here fails test_every_follow_up_field_is_an_import_column
FOLLOW_UP_CELLS = {
    "patient_id": "A", "visit_on": "2026-05-01", "mode": "2", "lost_reason": "5", "risk_level": "3",
    "insight": "2", "symptoms_obvious": "1", "sf_self_care": "2", "sf_housework": "3", "sf_work": "9",
    "sf_study": "2", "sf_social": "3", "incidents_mild": "1", "incidents_disturbance": "2", "incidents_crime": "0",
    "self_harm": "1", "suicide_attempt": "0", "hospital_status": "2", "adherence": "2",
    "adverse_reaction_serious": "1", "physical_illness_serious": "0", "classification": "1",
    "psych_support_patient": "1", "psych_support_family": "0", "rehabilitation": "1", "next_visit_on": "2026-05-20",
    "met_with": "家属", "death_on": "2026-04-30", "death_cause": "意外", "symptoms": "5、1", "symptoms_other": "失眠",
    "sleep": "3", "diet": "1", "incidents_other": "3", "lock_status": "3", "last_discharge_on": "2026-03-01",
    "lab_tests": "血常规 正常", "adverse_reaction": "2", "treatment_effect": "2", "referral": "1",
    "referral_reason": "病情波动", "referral_to": "市精神病院 精神科", "specialist_contacted": "1",
    "joint_notified": "1", "notified_police": "刘警官", "notified_community": "赵网格员",
    "medication": "利培酮 2mg 每日2次", "advised_medication": "利培酮 2mg 每日2次", "lai_drug": "棕榈酸帕利哌酮",
    "lai_interval_weeks": "4", "lai_dose": "150mg", "rehabilitation_measures": "职业训练",
    "doctor_signature": "王医生", "family_signature": "甲父",
}
SUPPLEMENT_CELLS = {
    "guardian_relation": "父亲", "guardian_address": "东坑村2号", "village_contact": "赵主任",
    "village_contact_phone": "13700000000", "household_type": "农村", "employment": "3", "first_onset_on": "2010-05-01",
    "past_lockup": "关锁已解除", "outpatient_treatment": "2", "admissions": "3", "diagnosing_hospital": "市第三人民医院",
    "guardian_reward": "1", "lai_dose": "150mg",
}
NOT_IMPORTED = {"id", "seq", "entered_at", "updated_at", "idempotency_key"}


@pytest.fixture
def files(small_county, tmp_path) -> Path:
    target = tmp_path / "files"
    shutil.copytree(small_county, target)
    for extra in target.glob("expected-*"):
        extra.unlink()
    return target


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> None:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def dump(database) -> dict[str, list]:
    """Every table's rows (without the import's timestamps and surrogate ids)."""
    out = {}
    with database.engine.connect() as conn:
        for name in TABLES:
            t = sa.Table(name, sa.MetaData(), autoload_with=conn)
            cols = [c for c in t.c if c.name not in ("id", "created_at", "updated_at", "entered_at")]
            out[name] = sorted(tuple(map(str, r)) for r in conn.execute(sa.select(*cols)))
    return out


def specs(stem: str) -> dict:
    return {s.name: s for s in FILE_SPECS[stem]}


def test_every_follow_up_field_is_an_import_column():
    """rules.md §3 / contract.md [2026-12]: every field of the model is an optional followups.csv column."""
    model_fields = set(FollowUp.model_fields) - NOT_IMPORTED
    assert model_fields == set(specs("followups"))
    assert set(FOLLOW_UP_CELLS) == model_fields
    patient_fields = set(Patient.model_fields) - {"created_at", "updated_at", "status_detail"}
    assert patient_fields == set(specs("patients"))
    assert set(SUPPLEMENT_CELLS) <= KEPT_WHEN_ABSENT["patients"]


@pytest.mark.parametrize("header", ["name", "label"])
def test_a_file_with_every_follow_up_column_imports_each_value(database, files, header):
    """Each value of a row carrying all 随访服务记录表 columns lands in its column (English or Chinese headers)."""
    followups = specs("followups")
    row = {(name if header == "name" else followups[name].label): cell for name, cell in FOLLOW_UP_CELLS.items()}
    write_csv(files / "followups.csv", [row])
    result = import_path(database.engine, files, today=TODAY)
    assert result.tables["followups"].written == 1
    with database.session() as s:
        fu = s.exec(sa.select(FollowUp).where(FollowUp.patient_id == "A")).scalar_one()
    for name, cell in FOLLOW_UP_CELLS.items():
        assert getattr(fu, name) == followups[name].parse(cell), name
    assert fu.symptoms == "1,5" and fu.sf_work == 9 and fu.physical_illness_serious is False


def test_an_older_shorter_file_leaves_the_optional_columns_alone(database, files):
    """KEPT_WHEN_ABSENT: re-importing the core columns only changes nothing (the form's fields stay)."""
    write_csv(files / "followups.csv", [FOLLOW_UP_CELLS])
    rows = read_csv(files / "patients.csv")
    write_csv(files / "patients.csv", [{**r, **SUPPLEMENT_CELLS} for r in rows])
    import_path(database.engine, files, today=TODAY)
    before = dump(database)
    core = {s.name for s in FILE_SPECS["followups"]} - KEPT_WHEN_ABSENT["followups"]
    write_csv(files / "followups.csv", [{k: v for k, v in FOLLOW_UP_CELLS.items() if k in core}])
    write_csv(files / "patients.csv", rows)
    again = import_path(database.engine, files, today=TODAY)
    assert {stem: t.written for stem, t in again.tables.items()} == {stem: 0 for stem in again.tables}
    assert dump(database) == before


def test_the_supplement_imports_with_chinese_headers(database, files):
    rows = read_csv(files / "patients.csv")
    patient_specs = specs("patients")
    labelled = [{**{patient_specs[k].label: v for k, v in r.items()},
                 **{patient_specs[k].label: v for k, v in SUPPLEMENT_CELLS.items()}} for r in rows]
    write_csv(files / "patients.csv", labelled)
    import_path(database.engine, files, today=TODAY)
    with database.session() as s:
        a = s.get(Patient, "A")
    assert (a.guardian_relation, a.household_type, a.employment, a.past_lockup) == ("父亲", 2, 3, 3)
    assert (a.first_onset_on, a.outpatient_treatment, a.admissions, a.guardian_reward) == (date(2010, 5, 1), 2, 3, True)
    assert (a.village_contact, a.village_contact_phone, a.diagnosing_hospital) == ("赵主任", "13700000000", "市第三人民医院")


def test_a_bad_supplement_value_names_file_line_and_column_and_writes_nothing(database, files):
    rows = read_csv(files / "patients.csv")
    rows[1] = {**rows[1], "household_type": "3", "admissions": "-1", "first_onset_on": "2030-01-01"}
    write_csv(files / "patients.csv", [{**r, "household_type": r.get("household_type", ""),
                                       "admissions": r.get("admissions", ""),
                                       "first_onset_on": r.get("first_onset_on", "")} for r in rows])
    with pytest.raises(ImportRejected) as err:
        import_path(database.engine, files, today=TODAY)
    got = {(i.file, i.line, i.column, i.code) for i in err.value.issues}
    assert got == {("patients.csv", 3, "household_type", "BAD_CODE"), ("patients.csv", 3, "admissions", "BAD_NUMBER"),
                   ("patients.csv", 3, "first_onset_on", "FUTURE_DATE")}
    messages = " ".join(i.message for i in err.value.issues)
    assert "户别" in messages and "曾住院次数" in messages and "初次发病时间" in messages
    assert database.count("patient") == 0 and database.count("region") == 0


def _plan(files: Path, last_on: str = "2026-04-01") -> None:
    rows = read_csv(files / "patients.csv")
    rows[0] = {**rows[0], "lai_drug": "棕榈酸帕利哌酮", "lai_interval_weeks": "4", "lai_last_on": last_on}
    write_csv(files / "patients.csv", rows)


def test_injections_are_the_lai_history_and_the_latest_is_the_plans_last(database, files):
    _plan(files)
    write_csv(files / "injections.csv", [
        {"patient_id": "A", "given_on": "2026-03-04", "drug": "棕榈酸帕利哌酮", "dose": "150mg"},
        {"patient_id": "A", "given_on": "2026-04-29", "drug": "棕榈酸帕利哌酮", "dose": "100mg"},
        {"patient_id": "B", "given_on": "2026-05-21", "drug": "氟哌啶醇癸酸酯", "dose": ""},  # no current plan: history
    ])
    result = import_path(database.engine, files, today=TODAY)
    assert result.tables["injections"].written == 3
    with database.engine.connect() as conn:
        got = conn.execute(sa.text("SELECT patient_id, given_on, dose FROM injection ORDER BY patient_id, given_on")).all()
        last = dict(conn.execute(sa.text("SELECT patient_id, lai_last_on FROM patient")).all())
    # the file's history is the history; its latest row is the plan's last injection (not the row's 2026-04-01)
    assert [(p, str(d), dose) for p, d, dose in got] == [
        ("A", "2026-03-04", "150mg"), ("A", "2026-04-29", "100mg"), ("B", "2026-05-21", None)]
    assert str(last["A"]) == "2026-04-29" and last["B"] is None
    before = dump(database)
    again = import_path(database.engine, files, today=TODAY)
    assert {stem: t.written for stem, t in again.tables.items()} == {stem: 0 for stem in again.tables}
    assert dump(database) == before
    # the scheduler keys the injection task off the latest injection (rules.md §5)
    generation.generate(database.engine, as_of=TODAY)
    with database.engine.connect() as conn:
        bases = conn.execute(sa.text("SELECT basis FROM visit_task WHERE kind = 'injection' AND status = 'open'")).scalars().all()
    assert bases == ["lai:2026-04-29"]


def test_a_later_injection_file_alone_moves_the_stored_plan(database, files):
    _plan(files)
    import_path(database.engine, files, today=TODAY)
    only = files.parent / "only"
    only.mkdir()
    write_csv(only / "injections.csv", [{"注射日期": "2026-05-27", "患者编号": "A"}])
    import_path(database.engine, only, today=TODAY)
    with database.engine.connect() as conn:
        assert str(conn.execute(sa.text("SELECT lai_last_on FROM patient WHERE patient_id = 'A'")).scalar()) == "2026-05-27"
        assert conn.execute(sa.text("SELECT count(*) FROM injection")).scalar() == 2


def test_bad_injection_rows_are_refused_whole(database, files):
    _plan(files)
    write_csv(files / "injections.csv", [
        {"patient_id": "A", "given_on": "2026-03-04"},
        {"patient_id": "A", "given_on": "2026-03-04"},
        {"patient_id": "NOPE", "given_on": "2026-03-05"},
        {"patient_id": "A", "given_on": "2026-06-11"},
        {"patient_id": "A", "given_on": "2026-3-4"},
    ])
    with pytest.raises(ImportRejected) as err:
        import_path(database.engine, files, today=TODAY)
    got = {(i.file, i.line, i.column, i.code) for i in err.value.issues}
    assert got == {("injections.csv", 3, "given_on", "DUPLICATE_ID"), ("injections.csv", 4, "patient_id", "UNKNOWN_PATIENT"),
                   ("injections.csv", 5, "given_on", "FUTURE_DATE"), ("injections.csv", 6, "given_on", "BAD_DATE")}
    assert database.count("patient") == 0 and database.count("injection") == 0


def test_a_gb18030_register_imports_equal_to_the_utf8_one(database, files, tmp_path):
    """What Excel saves on Chinese Windows: the same register in GB18030 (Chinese headers too)."""
    _plan(files)
    write_csv(files / "followups.csv", [FOLLOW_UP_CELLS])
    write_csv(files / "injections.csv", [{"patient_id": "A", "given_on": "2026-03-04", "drug": "棕榈酸帕利哌酮", "dose": "150mg"}])
    gb = tmp_path / "gb"
    gb.mkdir()
    for path in files.glob("*.csv"):
        rows = read_csv(path)
        labels = specs(path.stem)
        write_csv(gb / path.name, [{labels[k].label: v for k, v in r.items()} for r in rows], encoding="gb18030")
    assert (gb / "patients.csv").read_bytes() != (files / "patients.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        (gb / "patients.csv").read_bytes().decode("utf-8")
    import_path(database.engine, gb, today=TODAY)
    from_gb = dump(database)
    again = import_path(database.engine, files, today=TODAY)  # the UTF-8 files over it: nothing differs
    assert {stem: t.written for stem, t in again.tables.items()} == {stem: 0 for stem in again.tables}
    assert again.changes == []
    assert dump(database) == from_gb
    assert ("A", "甲") in {(r[0], r[1]) for r in from_gb["patient"]}


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_utf8_and_gb18030_texts_decode_to_themselves(text):
    """UTF-8 first (contract.md), then GB18030: a UTF-8 file is always read as written; a GB18030 file
    too unless its bytes happen to be valid UTF-8 as well (then UTF-8 wins: only possible for a short
    text made of a few particular characters — Excel's GBK files of Chinese names are not)."""
    assert decode_text(text.encode("utf-8")) == (text.removeprefix("\ufeff"), 0)
    gb = text.encode("gb18030")
    try:
        gb.decode("utf-8")
    except UnicodeDecodeError:
        assert decode_text(gb) == (text, 0)


def test_a_file_neither_utf8_nor_gb18030_is_refused_naming_the_line(database, tmp_path):
    (tmp_path / "regions.csv").write_bytes("code,name,level,parent_code,population\nC,县,county,,\n".encode() + b"T,\xff\xfe,township,C,\n")
    with pytest.raises(ImportRejected) as err:
        import_path(database.engine, tmp_path, today=TODAY)
    [issue] = err.value.issues
    assert (issue.file, issue.line, issue.code) == ("regions.csv", 3, "ENCODING")
    assert "GB18030" in issue.message and "UTF-8" in issue.message
    assert database.count("region") == 0


@pytest.fixture
def web(database):
    seed(database.engine)
    with database.engine.begin() as conn:
        conn.execute(sa.text("UPDATE patient SET lai_drug = '棕榈酸帕利哌酮', lai_interval_weeks = 4, lai_last_on = '2026-05-01',"
                             " lai_dose = '150mg' WHERE patient_id = 'P1'"))
    client = TestClient(create_app(database.engine, today=lambda: TODAY))
    return client, {"Authorization": "Bearer " + session_token(database.engine, "doc")}, database


def test_registration_takes_the_supplement_and_the_record_shows_it(web):
    client, h, database = web
    body = {"patient_id": "N1", "name": "新患者", "sex": 1, "birth_date": "1990-02-03", "village_code": "V1",
            "diagnosis": "F20", "registered_on": "2026-06-01", "lai_drug": "阿立哌唑长效", "lai_interval_weeks": 4,
            "lai_last_on": "2026-06-01", **SUPPLEMENT_CELLS}
    r = client.post("/api/patients", json=body, headers=h)
    assert r.status_code == 201, r.text
    record = client.get("/api/patients/N1", headers=h).json()
    s = record["supplement"]
    assert (s["guardian_relation"], s["household_type_label"], s["employment_label"]) == ("父亲", "农村", "农民")
    assert (s["past_lockup_label"], s["outpatient_treatment_label"], s["admissions"]) == ("关锁已解除", "间断门诊治疗", 3)
    assert (s["first_onset_on"], s["diagnosing_hospital"]) == ("2010-05-01", "市第三人民医院")
    assert record["injections"] == [{"given_on": "2026-06-01", "drug": "阿立哌唑长效", "dose": "150mg"}]
    bad = client.post("/api/patients", json={**body, "patient_id": "N2", "employment": "0"}, headers=h)
    assert bad.status_code == 422 and bad.json()["issues"][0]["column"] == "employment"
    assert "就业情况" in bad.json()["issues"][0]["message"]
    assert database.count("patient") == 6


def test_an_injection_recorded_on_the_web_is_a_history_row(web):
    client, h, database = web
    r = client.post("/api/patients/P1/injections", json={"given_on": "2026-05-29"}, headers=h)
    assert r.status_code == 201, r.text
    again = client.post("/api/patients/P1/injections", json={"given_on": "2026-05-29"}, headers=h)
    assert again.status_code == 422 and again.json()["issues"][0]["code"] == "DUPLICATE"
    record = client.get("/api/patients/P1", headers=h).json()
    assert record["injections"][0] == {"given_on": "2026-05-29", "drug": "棕榈酸帕利哌酮", "dose": "150mg"}
    assert record["lai_plan"]["last_on"] == "2026-05-29"
    assert database.count("injection") == 1
    client.cookies.set("jf_session", session_token(database.engine, "doc"))
    page = client.get("/patients/P1").text
    assert "长效针剂注射记录" in page and "2026-05-29 棕榈酸帕利哌酮 150mg" in page and "个人信息补充表" in page
    form = client.get("/patients/new").text
    for name in SUPPLEMENT_CELLS:
        assert f'name="{name}"' in form, name
