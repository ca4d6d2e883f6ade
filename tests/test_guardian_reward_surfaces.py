"""以奖代补 surfaces (rules.md §11, §7.5, §8): the import enrols, the civil-affairs scope is list 5 exactly
(never a diagnosis), the payout list as PDF (pdftotext, CJK font embedded) and XLSX (no formulas) from
``jingfang reward``, and the web page / API: enrol, decide, pay once — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date

import pytest
import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from jingfang.cli import app
from registry import guardian_years
from registry.accounts import User
from registry.models import FollowUp, GuardianYear, Patient
from registry.profile import RewardRules
from registry.regions import LiveRegionTree
from registry.web.app import create_app
from registry.web.scopes import scope_for
from web_support import TODAY, USERS, seed, session_token

DIAGNOSIS_WORDS = ("精神分裂症", "双相", "schizophrenia", "bipolar", "利培酮", "奥氮平", "药物")


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return result.stdout


def pdftext(path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def _visible(engine, username: str, today: date = TODAY) -> set[str]:
    with Session(engine) as s:
        scope = scope_for(s.get(User, username), LiveRegionTree(engine), today)
        return {p.patient_id for p in s.exec(select(Patient).where(scope.patient_clause()))}


def test_import_enrols_for_the_import_year(database, small_county, tmp_path):
    data = tmp_path / "county"
    shutil.copytree(small_county, data)
    lines = (data / "patients.csv").read_text("utf-8").splitlines()
    lines[0] += ",guardian_reward"
    lines[1:] = [line + (",1" if line.startswith(("A,", "C1,")) else ",0") for line in lines[1:]]
    (data / "patients.csv").write_text("\n".join(lines) + "\n", "utf-8")
    with time_machine.travel("2026-06-10 09:00 +0800", tick=False):
        run("import", str(data), "--db", database.url)
        run("import", str(data), "--db", database.url)  # again: nothing new, nothing doubled
    g = GuardianYear.__table__
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(g.c.patient_id, g.c.year, g.c.enrolled_from, g.c.enrolled_to, g.c.status)
                            .order_by(g.c.patient_id)).all()
    assert [tuple(r) for r in rows] == [
        ("A", 2026, date(2026, 1, 10), date(2026, 12, 31), "provisional"),  # registered 2026-01-10: from then
        ("C1", 2026, date(2026, 1, 1), date(2026, 12, 31), "provisional"),
    ]


def test_civil_affairs_sees_list_5_exactly(database):
    """rules.md §7.5 [2026-12]: 贫困, no guardian or a guardian-year of the current year — rehabilitation
    alone, or a guardian-year of another year, puts nobody on the list."""
    engine = database.engine
    seed(engine)
    assert _visible(engine, "civil") == {"P3"}
    with engine.begin() as conn:
        conn.execute(sa.update(FollowUp.__table__).where(FollowUp.__table__.c.patient_id == "P2")
                     .values(rehabilitation=True))
    assert _visible(engine, "civil") == {"P3"}  # rehabilitation is a column, not a reason
    guardian_years.enrol(engine, patient_id="P2", year=TODAY.year - 1, actor="doc")
    guardian_years.enrol(engine, patient_id="P4", year=TODAY.year, actor="doc")  # other township
    assert _visible(engine, "civil") == {"P3"}
    guardian_years.enrol(engine, patient_id="P2", year=TODAY.year, actor="doc")
    assert _visible(engine, "civil") == {"P2", "P3"}
    assert _visible(engine, "civil", date(TODAY.year + 1, 1, 5)) == {"P3"}  # a new year: enrol again


@pytest.fixture
def web(database):
    seed(database.engine)
    days = {"today": TODAY}
    client = TestClient(create_app(database.engine, today=lambda: days["today"]))
    tokens = {u: session_token(database.engine, u) for u in USERS}
    return client, tokens, database, days


def _h(tokens, user):
    return {"Authorization": f"Bearer {tokens[user]}"}


def test_web_enrol_decide_and_pay_once(web, tmp_path):
    client, tokens, database, days = web
    # police cannot enrol; civil affairs cannot enrol a patient outside list 5; the doctor can
    assert client.post("/api/guardian-years", json={"patient_id": "P2", "year": 2026}, headers=_h(tokens, "police")
                       ).status_code == 403
    assert client.post("/api/guardian-years", json={"patient_id": "P2", "year": 2026}, headers=_h(tokens, "civil")
                       ).status_code == 403
    assert client.post("/api/guardian-years", json={"patient_id": "P4", "year": 2026}, headers=_h(tokens, "doc")
                       ).status_code == 403  # another township
    ok = client.post("/api/guardian-years", json={"patient_id": "P2", "year": 2026}, headers=_h(tokens, "doc"))
    assert ok.status_code == 200 and ok.json()["enrolled_from"] == "2026-01-01"
    again = client.post("/api/guardian-years", json={"patient_id": "P2", "year": 2026}, headers=_h(tokens, "doc"))
    assert again.status_code == 409 and again.json()["error"] == "GUARDIAN_YEAR_EXISTS"
    client.post("/api/guardian-years", json={"patient_id": "P1", "year": 2026}, headers=_h(tokens, "doc"))
    # the year's list: P2 now on list 5, duties met or not, never a diagnosis
    listed = client.get("/api/guardian-years?year=2026", headers=_h(tokens, "civil"))
    assert listed.status_code == 200 and {r["patient_id"] for r in listed.json()} == {"P1", "P2"}
    p1 = client.get("/api/guardian-years/P1/2026", headers=_h(tokens, "civil")).json()
    assert p1["provisional"] and p1["status"] == "provisional"
    incident = next(d for d in p1["duties"] if d["duty"] == "no_incident")
    assert not incident["met"] and "2026-05-20" in incident["evidence"]
    quarters = next(d for d in p1["duties"] if d["duty"] == "quarterly_visits")
    assert not quarters["met"] and "第1季度" in quarters["evidence"]  # no visit Jan–Mar 2026
    assert not any(w in json.dumps(listed.json(), ensure_ascii=False) + json.dumps(p1, ensure_ascii=False)
                   for w in DIAGNOSIS_WORDS)
    assert client.get("/api/guardian-years/P1/2026", headers=_h(tokens, "police")).status_code == 403
    assert "P1" in _visible(database.engine, "civil")
    page = client.get("/reward?year=2026", headers=_h(tokens, "civil"))
    assert page.status_code == 200 and "以奖代补" in page.text and "P2" in page.text
    assert not any(w in page.text for w in DIAGNOSIS_WORDS)
    # during the year nothing can be decided
    early = client.post("/api/guardian-years/P2/2026/decision", json={"approve": True}, headers=_h(tokens, "civil"))
    assert early.status_code == 422 and early.json()["error"] == "REWARD_YEAR_NOT_OVER"
    days["today"] = date(2027, 1, 20)
    tokens = {u: session_token(database.engine, u) for u in USERS}
    not_eligible = client.post("/api/guardian-years/P1/2026/decision", json={"approve": True},
                               headers=_h(tokens, "civil"))
    assert not_eligible.status_code == 422 and not_eligible.json()["error"] == "REWARD_NOT_ELIGIBLE"
    no_reason = client.post("/api/guardian-years/P1/2026/decision", json={"approve": False},
                            headers=_h(tokens, "civil"))
    assert no_reason.status_code == 422 and no_reason.json()["error"] == "REWARD_REASON_REQUIRED"
    withheld = client.post("/api/guardian-years/P1/2026/decision", json={"approve": False, "reason": "5月肇事"},
                           headers=_h(tokens, "civil"))
    assert withheld.status_code == 200 and withheld.json()["status"] == "withheld"
    assert client.post("/api/guardian-years/P1/2026/decision", json={"approve": False, "reason": "x"},
                       headers=_h(tokens, "doc")).status_code == 403  # civil affairs decides
    # P2 cannot be approved either (no visit in Q1, Q3, Q4): withhold; pay refused unless approved
    pay = client.post("/api/guardian-years/P2/2026/payment", json={"paid_on": "2027-01-20"}, headers=_h(tokens, "civil"))
    assert pay.status_code == 422 and pay.json()["error"] == "REWARD_NOT_APPROVED"


def test_payment_twice_is_409(web):
    client, tokens, database, days = web
    engine = database.engine
    with engine.begin() as conn:  # P2: a good 2025 (one complete, adherent follow-up per quarter)
        conn.execute(FollowUp.__table__.insert(), [
            {"patient_id": "P2", "visit_on": date(2025, m, 15), "seq": 1, "mode": 2, "risk_level": 0, "adherence": 1}
            for m in (2, 5, 8, 11)])
    guardian_years.enrol(engine, patient_id="P2", year=2025, actor="doc")
    h = _h(tokens, "civil")
    assert client.post("/api/guardian-years/P2/2025/decision", json={"approve": True}, headers=h).status_code == 200
    first = client.post("/api/guardian-years/P2/2025/payment", json={"paid_on": "2026-01-15"}, headers=h)
    assert first.status_code == 200 and first.json()["paid_amount"] == RewardRules().amount_for(2025)
    second = client.post("/api/guardian-years/P2/2025/payment", json={"paid_on": "2026-01-16", "paid_amount": 1500},
                         headers=h)
    assert second.status_code == 409 and second.json()["error"] == "REWARD_ALREADY_PAID"
    with engine.connect() as conn:
        row = conn.execute(sa.select(GuardianYear.__table__).where(GuardianYear.__table__.c.year == 2025)).one()
        audited = conn.execute(sa.text("SELECT actor, action, detail FROM audit_log WHERE object_type = 'guardian_year'"
                                       " AND action = 'write' ORDER BY id")).all()
    assert (row.status, row.paid_on, row.paid_amount) == ("paid", date(2026, 1, 15), RewardRules().amount_for(2025))
    assert [a.actor for a in audited] == ["doc", "civil", "civil"]  # enrol, approve, one payment


@time_machine.travel("2026-01-20 09:00 +0800", tick=False)
def test_payout_pdf_and_xlsx(database, tmp_path):
    from openpyxl import load_workbook

    engine = database.engine
    seed(engine)
    with engine.begin() as conn:
        conn.execute(FollowUp.__table__.insert(), [
            {"patient_id": "P2", "visit_on": date(2025, m, 15), "seq": 1, "mode": 2, "risk_level": 0, "adherence": 1}
            for m in (2, 5, 8, 11)])
        conn.execute(sa.update(Patient.__table__).where(Patient.__table__.c.patient_id == "P2")
                     .values(name="=HYPERLINK(\"x\")"))
    guardian_years.enrol(engine, patient_id="P2", year=2025, actor="doc")
    guardian_years.enrol(engine, patient_id="P1", year=2025, actor="doc", enrolled_from=date(2025, 7, 1))
    out = run("reward", "--year", "2025", "--township", "T1", "--out", str(tmp_path / "out"), "--db", database.url)
    pdf, xlsx = sorted((tmp_path / "out").iterdir())
    assert pdf.name == "以奖代补发放名单-T1-2025.pdf" and xlsx.suffix == ".xlsx" and str(pdf) in out
    text = pdftext(pdf)
    assert "台城街道 2025年以奖代补发放名单" in text and "年终评定" in text
    assert "P1" in text and "P2" in text and "未达标" in text and "Q3" in text  # P1 enrolled from July, no visit since
    assert "440781********0018" in text and "440781198001010018" not in text
    assert not any(w in text for w in DIAGNOSIS_WORDS)
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "CJK" in fonts and " yes " in fonts.split("CJK", 1)[1].splitlines()[0]
    sheet = load_workbook(xlsx).active
    values = [c.value for row in sheet.iter_rows() for c in row if c.value is not None]
    assert '=HYPERLINK("x")' in values and all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    assert not any(w in str(v) for v in values for w in DIAGNOSIS_WORDS)
    data = json.loads(run("reward", "--year", "2025", "--township", "T1", "--json", "--db", database.url))
    assert {r["patient_id"]: r["eligible_flag"] for r in data} == {"P1": False, "P2": True}
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE object_type = 'guardian_reward'")).scalar()
    assert n == 2
    bad = CliRunner().invoke(app, ["reward", "--year", "2025", "--township", "V1", "--db", database.url])
    assert bad.exit_code == 1 and "NOT_A_TOWNSHIP" in bad.stderr


def _form_token(html: str) -> str:
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_page_forms_enrol_and_withhold_with_a_reason(web):
    client, _tokens, database, _days = web
    client.cookies.set("jf_session", session_token(database.engine, "civil"))
    page = client.get("/reward?year=2025")
    assert page.status_code == 200 and "2025 年本辖区无以奖代补纳入记录" in page.text
    token = _form_token(page.text)
    done = client.post("/reward/enrol", data={"csrf_token": token, "patient_id": "P3", "year": "2025"},
                       follow_redirects=False)
    assert done.status_code == 303 and "saved=1" in done.headers["location"]
    refused = client.post("/reward/enrol", data={"csrf_token": token, "patient_id": "P2", "year": "2025"})
    assert "无权查看患者 P2" in refused.text  # not on list 5: civil affairs cannot reach P2
    page = client.get("/reward?year=2025")
    assert "P3" in page.text and "年终评定" in page.text and "未达标" in page.text
    no_reason = client.post("/reward/P3/2025/decision", data={"csrf_token": token, "decision": "withhold", "reason": ""})
    assert "不予发放必须填写理由" in no_reason.text
    client.post("/reward/P3/2025/decision", data={"csrf_token": token, "decision": "withhold", "reason": "全年未随访"})
    page = client.get("/reward?year=2025")
    assert "不予发放（全年未随访）" in page.text
    forged = client.post("/reward/P3/2025/decision", data={"csrf_token": "forged", "decision": "approve"})
    assert forged.status_code == 403
    with database.engine.connect() as conn:
        status = conn.execute(sa.select(GuardianYear.__table__.c.status)).scalar_one()
    assert status == "withheld"
