"""易肇事肇祸台账 surfaces (rules.md §10, §8; contract.md ``ledger``): ``jingfang ledger --json`` on
the small county and on hand-built histories, the text table, invalid input, the township's PDF
(pdftotext, pdffonts) and XLSX (every cell text), and the web page / JSON read scoped by region
and audited — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from datetime import date

import pytest
import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from jingfang.cli import app
from registry.models import FollowUp, Patient, Region
from registry.web.app import create_app
from web_support import ID_P1, TODAY, USERS, seed, session_token

KEYS = ["patient_id", "entered_on", "reason", "left_on", "left_reason"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def run(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return result.stdout


def ledger_json(db, *args: str) -> list[dict]:
    out = json.loads(run("ledger", *args, "--json", "--db", db))
    assert all(list(e) == KEYS for e in out)
    return out


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_small_county(database, small_county):
    db = database.url
    run("import", str(small_county), "--db", db)
    # C1: 2026-03-01 risk 3 and one 肇事 on the same follow-up → incident; nobody else
    on = [{"patient_id": "C1", "entered_on": "2026-03-01", "reason": "incident", "left_on": None, "left_reason": None}]
    assert ledger_json(db, "--as-of", "2026-06-10") == on
    assert ledger_json(db, "--as-of", "2026-06-10", "--township", "T") == on
    assert ledger_json(db) == on  # default: today
    assert ledger_json(db, "--as-of", "2026-02-28") == []
    text = run("ledger", "--as-of", "2026-06-10", "--db", db)
    assert "易肇事肇祸台账" in text and "C1" in text and "肇事肇祸" in text and "在账 1 人" in text
    with database.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, object_type FROM audit_log WHERE object_type = 'ledger'")).all()
    assert len(rows) == 5


def _hand_built(engine) -> None:
    """Two townships: T1 (V1) with a re-entry, a death on the ledger, one before registration;
    T2 (V2) with one entry by risk."""
    with Session(engine) as s:
        s.add_all([Region(code="C", name="县", level="county"),
                   Region(code="T1", name="一镇", level="township", parent_code="C"),
                   Region(code="T2", name="二镇", level="township", parent_code="C"),
                   Region(code="V1", name="一村", level="village", parent_code="T1"),
                   Region(code="V2", name="二村", level="village", parent_code="T2")])
        s.flush()
        common = dict(sex=1, birth_date=date(1980, 1, 1), diagnosis="schizophrenia", registered_on=date(2024, 1, 1))
        s.add_all([
            Patient(patient_id="A", name="甲", village_code="V1", **common),
            Patient(patient_id="B", name="乙", village_code="V1", status="dead", status_on=date(2025, 9, 1), **common),
            Patient(patient_id="C", name="丙", village_code="V2", **common),
            Patient(patient_id="D", name="丁", village_code="V1", **{**common, "registered_on": date(2025, 6, 1)}),
        ])
        s.flush()
        fu = lambda pid, on, risk=0, **kw: FollowUp(patient_id=pid, visit_on=date.fromisoformat(on), mode=2,  # noqa: E731
                                                    risk_level=risk, **kw)
        s.add_all([
            fu("A", "2024-03-01", 4), fu("A", "2024-09-01"), fu("A", "2025-01-10"),
            fu("A", "2025-05-01", 0, incidents_crime=1), fu("A", "2025-08-01"),
            fu("B", "2025-02-01", 5), fu("B", "2025-06-01"),
            fu("C", "2025-10-01", 3), fu("C", "2025-10-01", 0, seq=2, incidents_disturbance=1),
            fu("D", "2025-05-01", 5),  # before registration: ignored
        ])
        s.commit()


def test_hand_built_histories(database):
    _hand_built(database.engine)
    db = database.url
    got = ledger_json(db, "--as-of", "2025-12-31")
    assert got == [
        {"patient_id": "A", "entered_on": "2024-03-01", "reason": "risk", "left_on": "2025-03-02", "left_reason": "stable_12_months"},
        {"patient_id": "A", "entered_on": "2025-05-01", "reason": "incident", "left_on": None, "left_reason": None},
        {"patient_id": "B", "entered_on": "2025-02-01", "reason": "risk", "left_on": "2025-09-01", "left_reason": "dead"},
        {"patient_id": "C", "entered_on": "2025-10-01", "reason": "incident", "left_on": None, "left_reason": None},
    ]
    assert [e["patient_id"] for e in ledger_json(db, "--as-of", "2025-12-31", "--township", "T2")] == ["C"]
    assert [e["patient_id"] for e in ledger_json(db, "--as-of", "2025-12-31", "--township", "T1")] == ["A", "A", "B"]
    # as of an earlier date: the first entry of A not yet left, B alive and on, C not yet entered
    assert ledger_json(db, "--as-of", "2025-03-01") == [
        {"patient_id": "A", "entered_on": "2024-03-01", "reason": "risk", "left_on": None, "left_reason": None},
        {"patient_id": "B", "entered_on": "2025-02-01", "reason": "risk", "left_on": None, "left_reason": None},
    ]
    # A leaves again 12 months after the incident once a complete follow-up is in the window
    assert ledger_json(db, "--as-of", "2026-06-01", "--township", "T1")[1] == {
        "patient_id": "A", "entered_on": "2025-05-01", "reason": "incident", "left_on": "2026-05-02",
        "left_reason": "stable_12_months"}


@pytest.mark.parametrize("args, code", [
    (["--as-of", "2026-13-01"], "BAD_DATE"),
    (["--as-of", "昨天"], "BAD_DATE"),
    (["--township", "V1"], "NOT_A_TOWNSHIP"),
    (["--township", "NOPE"], "REGION_NOT_FOUND"),
    (["--out", "x"], "TOWNSHIP_REQUIRED"),
])
def test_invalid_input_exits_1_in_chinese(database, args, code):
    _hand_built(database.engine)
    result = invoke("ledger", *args, "--json", "--db", database.url)
    assert result.exit_code == 1, result.output
    assert code in result.stderr and any("\u4e00" <= ch <= "\u9fff" for ch in result.stderr)
    assert result.stdout == ""


def test_township_pdf_and_xlsx(database, tmp_path):
    from openpyxl import load_workbook

    _hand_built(database.engine)
    with Session(database.engine) as s:  # a value that a spreadsheet would take for a formula
        s.get(Patient, "A").address = "=HYPERLINK(\"http://x\",\"点\")"
        s.get(Patient, "A").id_number = ID_P1
        s.commit()
    out = run("ledger", "--as-of", "2025-12-31", "--township", "T1", "--out", str(tmp_path), "--db", database.url)
    pdf = tmp_path / "易肇事肇祸台账-T1-2025-12-31.pdf"
    xlsx = tmp_path / "易肇事肇祸台账-T1-2025-12-31.xlsx"
    assert out.split() == [str(pdf), str(xlsx)]
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "一镇 易肇事肇祸台账" in text and "甲" in text and "乙" in text and "丙" not in text
    assert "440781********0018" in text and ID_P1 not in text
    assert "精神分裂症" not in text and "schizophrenia" not in text  # no diagnosis
    assert "连续12个月稳定" in text and "死亡" in text and "在账 1 人" in text
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    cjk = [line for line in fonts.splitlines() if "CJK" in line]
    assert cjk and all(line.split()[-5] == "yes" for line in cjk)  # emb column
    sheet = load_workbook(xlsx).active
    cells = [c for row in sheet.iter_rows() for c in row if c.value not in (None, "")]
    assert cells and all(c.data_type == "s" for c in cells)
    values = [c.value for c in cells]
    assert "=HYPERLINK(\"http://x\",\"点\")" in values and "2025-03-02" in values and "丙" not in values
    with database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'export' AND object_type = 'ledger'"
                                    " AND object_id = 'T1:2025-12-31'")).scalar_one() == 1


# ----------------------------------------------------------------------------- web


@pytest.fixture
def web(database):
    seed(database.engine)
    with Session(database.engine) as s:  # P4 (township T2) on the ledger by risk; P2 had an incident before
        s.add(FollowUp(patient_id="P4", visit_on=date(2026, 5, 30), mode=2, risk_level=4, classification=1))
        s.commit()
    client = TestClient(create_app(database.engine, today=lambda: TODAY))
    tokens = {u: session_token(database.engine, u) for u in USERS}
    return client, tokens, database


def _get(client, tokens, user, url):
    return client.get(url, headers={"Authorization": f"Bearer {tokens[user]}"})


def test_api_scoped_by_region(web):
    client, tokens, database = web
    p1 = {"patient_id": "P1", "entered_on": "2026-05-20", "reason": "incident", "left_on": None, "left_reason": None}
    p4 = {"patient_id": "P4", "entered_on": "2026-05-30", "reason": "risk", "left_on": None, "left_reason": None}
    assert _get(client, tokens, "police", "/api/ledger").json() == [p1]
    assert _get(client, tokens, "doc", "/api/ledger").json() == [p1]
    assert _get(client, tokens, "doc2", "/api/ledger").json() == [p4]
    assert _get(client, tokens, "admin", "/api/ledger").json() == [p1, p4]
    assert _get(client, tokens, "admin", "/api/ledger?as_of=2026-05-25").json() == [p1]
    assert _get(client, tokens, "civil", "/api/ledger").status_code == 403
    assert client.get("/api/ledger").status_code == 401
    bad = _get(client, tokens, "police", "/api/ledger?as_of=2026-02-30")
    assert bad.status_code == 422 and bad.json()["error"] == "BAD_DATE"
    with database.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT actor, region_code FROM audit_log WHERE object_type = 'ledger'"
                                    " AND action = 'read' ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("police", "T1"), ("doc", "T1"), ("doc2", "T2"), ("admin", "C"), ("admin", "C")]


def test_page_for_police_no_diagnosis_masked_id(web):
    client, tokens, _database = web
    page = _get(client, tokens, "police", "/ledger")
    assert page.status_code == 200
    html = page.text
    assert "易肇事肇祸台账" in html and "陈一" in html and "黄四" not in html
    assert "440781********0018" in html and ID_P1 not in html
    assert "精神分裂症" not in html and "利培酮" not in html and "schizophrenia" not in html
    assert 'class="list" id="ledger"' in html and 'data-label="入账原因"' in html
    assert _get(client, tokens, "civil", "/ledger").status_code == 403
    early = _get(client, tokens, "police", "/ledger?as_of=2026-01-01")
    assert early.status_code == 200 and "陈一" not in early.text and "无入账记录" in early.text
