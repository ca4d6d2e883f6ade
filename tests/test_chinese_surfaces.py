"""中文界面 No internal code on a surface a person reads (issue 16).

A grep test: the CLI's human output (the demo on a small county, schedule, tasks, rates, runs,
report, lists, every ``--help``, the errors), every web page for each role, and the text of every
PDF and workbook the demo, the CLI and the web write. None may show the internal codes of
``tests/surface_codes.py`` (task kinds, roles, statuses, variants, field identifiers,
``rules.md``/``§``). JSON (``--json``, ``/api/``) keeps its codes (contract.md).

Runs alone: ``PYTHONPATH=$PWD .venv/bin/python -m pytest -q tests/test_chinese_surfaces.py``.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from jingfang.cli import app
from surface_codes import file_text, find_codes, forbidden_codes, pdf_text, visible_text
from web_support import TODAY, USERS, seed, seed_tasks, session_token

WORDS = forbidden_codes()


def clean(surfaces: dict[str, str]) -> str:
    """'' when no surface shows a code, else one line per code found: surface, then context."""
    return "\n".join(f"{name}: …{hit}…" for name, text in surfaces.items() for hit in find_codes(text, WORDS))


def test_the_grep_finds_what_it_looks_for():
    """The detector itself: each kind of leak is found, Chinese text and URLs pass."""
    for leak in ("待办 first_visit 3", "规范管理口径 quarterly", "危险性(risk_level)无效", "见 rules.md §5",
                 "角色 township_doctor", "周次（week）"):
        assert find_codes(leak, WORDS), leak
    for fine in ("首次面访 3，随访 12", "规范管理口径 按季度", "http://127.0.0.1:8000/patients/P1/follow-ups/new",
                 "out/lists/449901101/2026-06-08_随访任务单.pdf", "F20 精神分裂症"):
        assert not find_codes(fine, WORDS), fine
    assert {"first_visit", "quarterly", "risk_level", "township_doctor", "moved_out"} <= WORDS


# --------------------------------------------------------------------------- CLI

BAD_FOLLOWUPS = "patient_id,visit_on,mode,risk_level\nP0001,2026-05-01,2,7\n"


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_cli_human_output_shows_no_internal_code(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    out = tmp_path / "out"
    runner = CliRunner()
    surfaces: dict[str, str] = {}

    def run(name: str, *args: str, code: int = 0) -> str:
        result = runner.invoke(app, [*args])
        assert result.exit_code == code, (name, result.exit_code, result.output, result.exception)
        surfaces[name] = result.output
        return result.output

    run("demo", "demo", "--patients", "40", "--seed", "3", "--out", str(out), "--db", db)
    towns = sorted(p.name for p in (out / "lists").iterdir() if p.is_dir())
    town = towns[0]
    run("schedule", "schedule", "--as-of", "2026-06-10", "--db", db)
    run("tasks", "tasks", "--as-of", "2026-06-10", "--db", db)
    run("rates", "rates", "--month", "2026-05", "--db", db)
    run("runs", "runs", "--db", db)
    run("report", "report", "--month", "2026-05", "--out", str(tmp_path / "report.pdf"), "--db", db)
    run("lists", "lists", "--week", "2026-06-10", "--township", town, "--out", str(tmp_path / "lists"), "--db", db)
    run("webhook list", "webhook", "list", "--db", db)
    # errors, each naming what is wrong in Chinese
    run("bad date", "schedule", "--as-of", "2026-13-01", "--db", db, code=1)
    run("bad month", "rates", "--month", "2026-13", "--db", db, code=1)
    run("bad region", "rates", "--month", "2026-05", "--region", "999", "--db", db, code=1)
    run("bad tasks region", "tasks", "--region", "999", "--db", db, code=1)
    run("bad variant", "rates", "--month", "2026-05", "--variant", "weekly", "--db", db, code=1)
    run("bad township", "lists", "--week", "2026-06-10", "--township", "999", "--out", str(tmp_path / "x"), "--db", db,
        code=1)
    run("bad role", "user", "add", "u1", "--role", "nurse", "--region", town, "--password", "long-enough-1", "--db", db,
        code=1)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "followups.csv").write_text(BAD_FOLLOWUPS, encoding="utf-8")
    run("bad import", "import", str(bad), "--db", db, code=1)
    # every --help
    run("help", "--help")
    for command in ("demo", "import", "schedule", "tasks", "rates", "report", "lists", "scheduler", "runs", "calendar",
                    "notify", "serve", "user", "webhook", "ledger", "export", "reward"):
        result = runner.invoke(app, [command, "--help"])
        if result.exit_code == 2 and "No such command" in result.output:
            continue  # a command another issue adds
        surfaces[f"{command} --help"] = result.output
    for sub in (("user", "add"), ("webhook", "add"), ("webhook", "remove"), ("webhook", "list")):
        surfaces[" ".join(sub) + " --help"] = runner.invoke(app, [*sub, "--help"]).output
    # every file written: the demo's report and 五单, the CLI's report and lists
    for path in sorted([*out.rglob("*.pdf"), *out.rglob("*.xlsx"), *tmp_path.glob("*.pdf"),
                        *(tmp_path / "lists").rglob("*.pdf"), *(tmp_path / "lists").rglob("*.xlsx")]):
        surfaces[str(path.relative_to(tmp_path))] = file_text(path)
    assert any(name.endswith(".pdf") for name in surfaces) and any(name.endswith(".xlsx") for name in surfaces)
    leaks = clean(surfaces)
    assert not leaks, leaks


# --------------------------------------------------------------------------- web

MORE_TASKS = [  # one open task of every other kind, so the pages show every kind's label
    ("P1", "first_visit", date(2026, 6, 11), "doctor,police", True, 3),
    ("P2", "health_check", date(2026, 6, 20), "doctor", False, 0),
    ("P2", "injection", date(2026, 6, 12), "doctor", False, 0),
    ("P3", "retry", date(2026, 6, 9), "doctor,civil_affairs", True, 0),
    ("P3", "locate", date(2026, 6, 8), "doctor,civil_affairs", True, 0),
    ("P1", "discharge_check", date(2026, 6, 13), "doctor,police,village", True, 3),
]


def _seed_more_tasks(engine) -> None:
    from registry.models import VisitTask

    with Session(engine) as s:
        for pid, kind, due, roles, joint, risk in MORE_TASKS:
            s.add(VisitTask(patient_id=pid, kind=kind, basis=f"test:{pid}:{kind}", basis_on=date(2026, 5, 20), due_on=due,
                            nominal_due_on=due, roles=roles, joint=joint, rule="national-2018@1:§5 test", risk_level=risk))
        s.commit()


def _csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def _download_texts(response, folder: Path, name: str, surfaces: dict[str, str]) -> int:
    """The text of a downloaded PDF, workbook or zip of them into ``surfaces``; returns the PDFs read."""
    if response.status_code != 200:
        return 0
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/zip"):
        files = {}
        with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
    elif kind.startswith("application/pdf"):
        files = {"download.pdf": response.content}
    elif "spreadsheet" in kind:
        files = {"download.xlsx": response.content}
    else:
        return 0
    for file_name, content in files.items():
        target = folder / Path(file_name).name
        target.write_bytes(content)
        surfaces[f"{name} {file_name}"] = file_text(target)
    return sum(n.endswith(".pdf") for n in files)


PAGES = ["/", "/worklist", "/mylist", "/patients/new", "/patients/P1", "/patients/P2", "/patients/P3", "/patients/P4",
         "/patients/P5", "/patients/P1/follow-ups/new", "/patients/P2/status", "/search?q=陈", "/search?q=P",
         "/dashboard", "/dashboard?month=2026-05", "/audit", "/no/such/page", "/worklist?kind=nonsense",
         "/dashboard?month=2026-13", "/lists/week?week=bad", "/export",
         "/patients/P1/edit", "/patients/P1/history", "/patients/P2/transfer", "/transfers",  # issue 13
         "/reward", "/reward?year=2025", "/reward?year=bad",
         "/lists/archive", "/lists/archive/1/joint", "/lists/archive?township=nope",  # 五单存档 (issue 15)
         "/my/attendance", "/notices?event=lists.weekly&township=T1&week=2026-06-08", "/notices?event=emergency.overdue",
         "/notices?event=lists.failed&township=T2", "/notices?week=bad"]  # issue 14


def _display_names(engine) -> None:
    """A person's name in the header, not the login name ("police")."""
    from registry.accounts import User

    with Session(engine) as s:
        for user in s.exec(sa.select(User)).scalars():
            user.display_name = f"测试{user.username.__len__()}号"
            s.add(user)
        s.commit()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_every_page_for_every_role_shows_no_internal_code(database):
    from registry.web.app import create_app

    seed(database.engine)
    seed_tasks(database.engine)
    _seed_more_tasks(database.engine)
    _display_names(database.engine)
    # audit rows the command line leaves: an import and the 五单 export with its counts as JSON
    from registry.audit import record_cli
    from schedules.lists import write_township_lists

    from schedules.notify import add_webhook, set_webhook_enabled

    add_webhook(database.engine, name="县群", url="http://127.0.0.1:9/robot", fmt="wecom", secret=None, region_code=None,
                actor="cli:test", source="cli")
    set_webhook_enabled(database.engine, "县群", False, actor="cli:test", source="cli")
    record_cli(database.engine, action="import", object_type="import", object_id="/data/2026-06/", detail="患者 5 行")
    write_township_lists(database.engine, township_code="T1", week=date(2026, 6, 8),
                         out_dir=Path(database.engine.url.database).parent / "cli-lists", actor="cli")
    web = create_app(database.engine, today=lambda: TODAY)
    surfaces: dict[str, str] = {}
    anonymous = TestClient(web, follow_redirects=False)
    surfaces["anonymous /login"] = visible_text(anonymous.get("/login").text)
    bad_login = anonymous.post("/login", data={"username": "doc", "password": "wrong", "csrf_token": _csrf(anonymous.get("/login").text)})
    surfaces["anonymous bad login"] = visible_text(bad_login.text)
    pdfs = 0
    for username in USERS:
        client = TestClient(web, follow_redirects=True)
        client.cookies.set("jf_session", session_token(database.engine, username))
        for page in PAGES:
            r = client.get(page)
            assert r.status_code < 500, (username, page, r.status_code)
            if r.headers.get("content-type", "").startswith("text/html"):
                surfaces[f"{username} {page}"] = visible_text(r.text)
        if USERS[username][0] == "township_doctor":
            # a follow-up form sent back with errors names the fields by their Chinese labels
            form = client.get("/patients/P1/follow-ups/new")
            if form.status_code == 200:
                r = client.post("/patients/P1/follow-ups/new",
                                data={"csrf_token": _csrf(form.text), "visit_on": "2026-13-40", "mode": "9", "risk_level": "7"})
                surfaces[f"{username} follow-up errors"] = visible_text(r.text)
            edit = client.get("/patients/P2/edit")  # issue 13: an edit sent back with errors, then its history
            if edit.status_code == 200:
                r = client.post("/patients/P2/edit", data={"csrf_token": _csrf(edit.text), "name": "", "consent": "0",
                                                           "village_code": "V3", "birth_date": "2030-01-01"})
                surfaces[f"{username} edit errors"] = visible_text(r.text)
                client.post("/patients/P2/edit", data={"csrf_token": _csrf(edit.text), "consent": "0", "economic_status": "1",
                                                       "village_code": "V2", "reason": "核对"})
                client.post("/patients/P2/transfer", data={"csrf_token": _csrf(edit.text), "to_township": "T2"})
                surfaces[f"{username} edit history"] = visible_text(client.get("/patients/P2/history").text)
                surfaces[f"{username} transfers"] = visible_text(client.get("/transfers").text)
            status = client.get("/patients/P2/status")
            if status.status_code == 200:
                r = client.post("/patients/P2/status", data={"csrf_token": _csrf(status.text), "status": "dead",
                                                             "status_on": "2030-01-01"})
                surfaces[f"{username} status errors"] = visible_text(r.text)
        week = client.get("/lists/week")  # the page of the week's 五单 this reader may download, one file per list
        if week.status_code == 200:
            surfaces[f"{username} 五单页"] = visible_text(week.text)
            for n, href in enumerate(re.findall(r'href="(/lists/week/[^"]+)"', week.text)):
                pdfs += _download_texts(client.get(href.replace("&amp;", "&")), Path(database.engine.url.database).parent,
                                        f"{username} 五单 {n}", surfaces)
        if USERS[username][0] == "county_admin":
            r = client.get("/reports/monthly.pdf?month=2026-05")
            assert r.status_code == 200
            target = Path(database.engine.url.database).parent / "monthly.pdf"
            target.write_bytes(r.content)
            surfaces[f"{username} monthly.pdf"] = pdf_text(target)
            pdfs += 1
    assert pdfs >= 2 and len(surfaces) > 60
    if os.environ.get("SURFACES_DUMP"):
        Path(os.environ["SURFACES_DUMP"]).write_text("\n\n=====".join(f"{k}\n{v}" for k, v in surfaces.items()))
    leaks = clean(surfaces)
    assert not leaks, leaks


# --------------------------------------------------------------------------- messages naming a field

SOURCE_DIRS = [Path(__file__).resolve().parent.parent / d for d in ("registry", "schedules", "jingfang")]
# "标签(identifier)" in a message: a lowercase identifier (or a placeholder that holds one) in brackets after
# Chinese text or after a placeholder (the label) — "成员编号(member_id): …", "{spec.label}({spec.name}): …"
_BRACKETED = re.compile(r"(?:[^\x00-\x7f]|\})\s*[(（]((?:[A-Za-z_@]|\{[^{}]*\})(?:[A-Za-z0-9_@\-]|\{[^{}]*\})*)[)）]")
_FIELD_NAME_EXPR = re.compile(r"(?:^|\.)(?:column|field|col|key)$|(?:^|\.)spec\.name$|^NAMED_")
# the one bracket that quotes a value the person wrote: a target file's own indicator entry (rates --targets)
_QUOTES_THE_FILE = {("registry/rates/targets.py", "key")}


def _string_texts(path: Path):
    """(line, text) of every string literal and f-string of a module but its docstrings; a placeholder
    is kept as ``{expression}``."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                                       for v in node.values)


def test_no_message_names_a_field_by_its_identifier():
    """README "a field by its Chinese label, never its identifier": no message in the code is built as
    ``标签(identifier)`` — the leak of a rare error ("成员编号(member_id): 第2个字符 U+000B …" on the
    import's output) that no page walk reaches. The identifier stays in the issue's ``column`` (JSON)."""
    found = []
    for root in SOURCE_DIRS:
        for path in sorted(root.rglob("*.py")):
            where = str(path.relative_to(root.parent))
            for line, text in _string_texts(path):
                for m in _BRACKETED.finditer(text):
                    literal = re.sub(r"\{[^{}]*\}", "", m.group(1))
                    exprs = re.findall(r"\{([^{}]*)\}", m.group(1))
                    if re.search(r"[a-z_@]", literal) or any(_FIELD_NAME_EXPR.search(e) and (where, e) not in _QUOTES_THE_FILE
                                                             for e in exprs):
                        found.append(f"{where}:{line}: {text[max(0, m.start() - 12): m.end() + 12]}")
    assert not found, "\n".join(found)


def _field_lists():
    from registry import validation

    return {name: value for name, value in vars(validation).items()
            if name.endswith("_FIELDS") and isinstance(value, list) and value
            and all(isinstance(s, validation.FieldSpec) for s in value)}


def test_every_field_refused_is_named_by_its_label():
    """Each field of every entity (patients … participants, team rows) refused on the form/API path
    (``parse_fields``) and the import's (``parse_columns``): a control character, a value too long or
    bad, a blank required field. Every message shows the Chinese label, never the field's identifier."""
    from registry.validation import parse_columns, parse_fields

    lists = _field_lists()
    assert {"PATIENT_FIELDS", "PARTICIPANT_FIELDS", "TEAM_MEMBER_FIELDS", "CARE_TEAM_FIELDS"} <= set(lists)
    # the field identifiers (an accepted code such as "active 在册" is what a file may write: it stays)
    words = {s.name for specs in lists.values() for s in specs}
    leaks = []
    for list_name, specs in lists.items():
        for spec in specs:
            for cell in ("赵\x0b", "\u202e", "x" * 3000, "不是有效值", ""):
                _values, issues = parse_fields({spec.name: cell}, [spec])
                _cols, by_row = parse_columns({spec.name: [cell]}, 1, [spec])
                for issue in [*issues, *(i for row in by_row.values() for i in row)]:
                    assert spec.label in issue.message, (list_name, spec.name, issue.message)
                    named = issue.message.split("应为", 1)[0]  # "应为 medication 药物 / …": the codes a file may write
                    leaks += [f"{list_name}.{spec.name}: {hit}" for hit in find_codes(named, words)]
    assert not leaks, "\n".join(leaks)


def test_the_import_output_names_team_and_participant_fields_in_chinese(tmp_path: Path):
    """The rare one: a member id holding a control character in team_members.csv and participants.csv
    (and a patient's fields) — the import's output a person reads names 成员编号, not member_id."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "team_members.csv").write_text("member_id,name,role,phone,region_code\nM\x0b1,刘\u202e警官,police,0750\x7f,T1\n",
                                             encoding="utf-8")
    (folder / "participants.csv").write_text("patient_id,visit_on,role,member_id,present,reason\n"
                                             "P1,2026-05-01,police,M\x0b2,1,值\x1b班\n", encoding="utf-8")
    (folder / "patients.csv").write_text("patient_id,name,sex,birth_date,village_code,address,diagnosis,registered_on\n"
                                         "P\u200e1,赵\x0b,1,1970-02-02,V1,幸福路\x851号,F20,2026-02-01\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import", str(folder), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1, result.output
    assert "成员编号" in result.output and "BAD_TEXT" in result.output
    leaks = clean({"import": result.output})
    assert not leaks, leaks


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_rare_form_errors_name_fields_in_chinese(database):
    """The follow-up form's rare refusals (a spoiled submission key, a named member's attendance that is
    neither 1 nor 0, reasons too long) and an attendee's own reason too long: Chinese labels only."""
    from registry.web.app import create_app

    ids = seed(database.engine)
    _display_names(database.engine)
    web = create_app(database.engine, today=lambda: TODAY)
    surfaces: dict[str, str] = {}
    doc = TestClient(web, follow_redirects=True)
    doc.cookies.set("jf_session", session_token(database.engine, "doc"))
    form = doc.get("/patients/P1/follow-ups/new")
    assert form.status_code == 200 and 'name="attended@M-POL"' in form.text
    base = {"csrf_token": _csrf(form.text), "visit_on": "2026-06-09", "mode": "2", "risk_level": "0", "insight": "1"}
    long_reason = "值班" * 101
    for name, extra in {"bad key": {"idempotency_key": "坏"},
                        "named flag": {"attended@M-POL": "9"},
                        "named reason": {"attended@M-POL": "0", "reason@M-POL": long_reason},
                        "role reason": {"attended_police": "0", "reason_police": long_reason},
                        "role flag": {"attended_police": "9"},
                        "bad text": {"lab_tests": "血常规\x00", "address": "幸福路\x0b"}}.items():
        r = doc.post("/patients/P1/follow-ups/new", data={**base, **extra})
        assert r.status_code in (400, 422), (name, r.status_code)
        surfaces[f"follow-up {name}"] = visible_text(r.text)
    police = TestClient(web, follow_redirects=True)
    police.cookies.set("jf_session", session_token(database.engine, "police"))
    page = police.get("/patients/P1")
    r = police.post(f"/follow-ups/{ids['f1']}/attendance",
                    data={"csrf_token": _csrf(page.text), "attended": "0", "reason": long_reason, "back": "/patients/P1"})
    assert r.status_code == 422, r.status_code
    surfaces["attendance reason"] = visible_text(r.text)
    assert "未到场原因" in surfaces["attendance reason"] and "刘警官" in surfaces["follow-up named flag"]
    leaks = clean(surfaces)
    assert not leaks, leaks
