"""五单存档 (rules.md §7 "Every issued week is kept as issued", issue 15; issue 17 "the web download served
from the issued archive"), on SQLite and PostgreSQL: a past week's lists byte-identical to the issued
files after the register changed, the SHA-256 recorded, downloads recorded, paper sign-in recorded,
a re-run of an issued week never recomputing, ``--reissue`` keeping the old version.

One small township (the small county's T); the 五单 rendering is the slow part.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from jingfang.cli import app
from registry.models import AuditLog, Patient
from schedules import lists as lists_module
from schedules.archive import sign_in_values
from schedules.lists import build_lists, write_township_lists, write_townships
from schedules.models import ListDownload, ListIssue, ListIssueFile, ListIssueRow, ListSignIn
from registry.errors import InvalidInput
from test_schedule_lists import prepare

D = date.fromisoformat
runner = CliRunner()
WEEK = "2026-06-08"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _refuse_recompute(monkeypatch) -> None:
    def refused(*args, **kwargs):
        raise AssertionError("an issued week was recomputed")

    monkeypatch.setattr(lists_module, "build_lists", refused)
    monkeypatch.setattr(lists_module, "render_files", refused)


def test_an_issued_week_is_served_byte_identical_after_the_register_changed(database, small_county, tmp_path, monkeypatch):
    prepare(database, small_county)
    engine = database.engine
    first = runner.invoke(app, ["lists", "--week", "2026-06-10", "--township", "T", "--out", str(tmp_path / "a"),
                                "--db", database.url])
    assert first.exit_code == 0, first.output
    assert "已签发并存档（第 1 版）" in first.stderr
    issued = _files(tmp_path / "a")
    assert len(issued) == 10
    with engine.connect() as conn:
        issue = conn.execute(sa.select(ListIssue)).one()
        stored = conn.execute(sa.select(ListIssueFile.file_name, ListIssueFile.sha256, ListIssueFile.size,
                                        ListIssueFile.content)).all()
        rows = conn.execute(sa.select(ListIssueRow.slug, ListIssueRow.patient_id, ListIssueRow.data)).all()
    assert (issue.township_code, issue.week, issue.version) == ("T", D(WEEK), 1) and issue.issued_by.startswith("cli:")
    # the SHA-256 recorded is the SHA-256 of the bytes issued, file by file
    assert {f.file_name: (f.sha256, f.size, bytes(f.content)) for f in stored} == {
        name: (hashlib.sha256(content).hexdigest(), len(content), content) for name, content in issued.items()}
    # the rows as issued: every row of every list
    data = build_lists(engine, township_code="T", week=D(WEEK))
    assert sorted((r.slug, r.patient_id) for r in rows) == sorted(
        (wl.slug, row["patient_id"]) for wl in data["lists"] for row in wl.rows + wl.checks)
    assert any('"name": "' in r.data for r in rows)

    # the register changes: a new name, another address
    with engine.begin() as conn:
        conn.execute(sa.update(Patient).where(Patient.patient_id == "C1").values(name="改名后", address="新址9号"))
    now = build_lists(engine, township_code="T", week=D(WEEK))
    assert "改名后" in [r["name"] for wl in now["lists"] for r in wl.rows]  # today's data differs

    # the command line: the archive, byte for byte, never a recomputation
    _refuse_recompute(monkeypatch)
    again = runner.invoke(app, ["lists", "--week", WEEK, "--township", "T", "--out", str(tmp_path / "b"), "--db", database.url])
    assert again.exit_code == 0, again.output
    assert "按存档原样写出" in again.stderr and "第 1 版" in again.stderr
    assert _files(tmp_path / "b") == issued
    # the weekly job's re-run of the week: the archive too
    results = write_townships(engine, codes=["T"], week=D(WEEK), out_root=tmp_path / "job", actor="scheduler")
    assert [r["archived"]["served"] for r in results] == [True]
    assert _files(tmp_path / "job" / "T") == issued
    with engine.connect() as conn:
        downloads = conn.execute(sa.select(ListDownload.channel, ListDownload.actor, ListDownload.sha256,
                                           ListDownload.file_id)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(ListIssue)).scalar() == 1
    # each file written again from the archive is a recorded download with the SHA-256 served
    assert sorted(d.channel for d in downloads) == ["cli"] * 10 + ["job"] * 10
    assert {d.sha256 for d in downloads} == {f.sha256 for f in stored} and all(d.file_id for d in downloads)

    # an explicit re-issue recomputes as version 2 and keeps version 1
    monkeypatch.undo()
    reissued = runner.invoke(app, ["lists", "--week", WEEK, "--township", "T", "--out", str(tmp_path / "c"), "--reissue",
                                   "--reason", "更正患者姓名", "--db", database.url])
    assert reissued.exit_code == 0, reissued.output
    assert "第 2 版" in reissued.stderr
    with engine.connect() as conn:
        versions = conn.execute(sa.select(ListIssue.version, ListIssue.reason).order_by(ListIssue.version)).all()
        v1 = {f.file_name: bytes(f.content) for f in conn.execute(
            sa.select(ListIssueFile.file_name, ListIssueFile.content).where(ListIssueFile.issue_id == issue.id))}
        names = conn.execute(sa.select(ListIssueRow.data).join(ListIssue, ListIssue.id == ListIssueRow.issue_id)
                             .where(ListIssue.version == 2)).scalars().all()
    assert [tuple(v) for v in versions] == [(1, None), (2, "更正患者姓名")]
    assert v1 == issued  # the old version is kept as issued
    assert any("改名后" in n for n in names)
    # from now on the week is served as version 2
    latest = runner.invoke(app, ["lists", "--week", WEEK, "--township", "T", "--out", str(tmp_path / "d"), "--db", database.url])
    assert "第 2 版" in latest.stderr and _files(tmp_path / "d") == _files(tmp_path / "c")
    bad = runner.invoke(app, ["lists", "--week", WEEK, "--township", "T", "--out", str(tmp_path / "e"), "--reason", "x",
                              "--db", database.url])
    assert bad.exit_code == 1 and "REASON_WITHOUT_REISSUE" in bad.stderr


def test_a_week_not_begun_is_a_preview_not_archived(database, small_county, tmp_path):
    prepare(database, small_county)
    result = write_township_lists(database.engine, township_code="T", week=D(WEEK), out_dir=tmp_path, actor="test",
                                  today=D("2026-06-07"))  # the Sunday before: a preview
    assert result["archived"] is None and len(result["files"]) == 10
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ListIssue)).scalar() == 0


def test_sign_in_values_refuse_bad_input():
    good = sign_in_values(signed_by=" 李警官 ", visited="1", signed_on="2026-06-09", note="", week=D(WEEK), today=D("2026-06-10"))
    assert good == {"signed_by": "李警官", "visited": True, "signed_on": D("2026-06-09"), "note": None}
    for kwargs, code in (
        ({"signed_by": ""}, "REQUIRED"),
        ({"visited": "maybe"}, "BAD_CODE"),
        ({"signed_on": "2026-06-11"}, "FUTURE_DATE"),
        ({"signed_on": "2026-06-07"}, "BEFORE_WEEK"),
        ({"signed_on": "09/06/2026"}, "BAD_DATE"),
        ({"note": "x" * 501}, "TOO_LONG"),
    ):
        args = {"signed_by": "李警官", "visited": True, "signed_on": "2026-06-09", "note": None, **kwargs}
        with pytest.raises(InvalidInput) as refused:
            sign_in_values(week=D(WEEK), today=D("2026-06-10"), **args)
        assert refused.value.code == code


# ---------------------------------------------------------------- the web: download, archive page, sign-in


@pytest.fixture
def issued_web(database, tmp_path):
    """The web test county, its T1 week of 2026-06-08 issued (the tasks from the real scheduler)."""
    from registry.web.app import create_app
    from schedules.generation import generate
    from web_support import TODAY, seed

    seed(database.engine)
    generate(database.engine, as_of=TODAY)
    result = write_township_lists(database.engine, township_code="T1", week=TODAY, out_dir=tmp_path / "issued",
                                  actor="scheduler")
    assert result["archived"] == {**result["archived"], "version": 1, "served": False}
    web = create_app(database.engine, today=lambda: TODAY)
    return web, _files(tmp_path / "issued")


def _as(web, engine, username: str) -> TestClient:
    from web_support import session_token

    client = TestClient(web, follow_redirects=False)
    client.cookies.set("jf_session", session_token(engine, username))
    return client


def _csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def test_the_web_serves_the_archive_and_records_downloads_and_sign_ins(database, issued_web, monkeypatch):
    web, issued = issued_web
    engine = database.engine
    with engine.begin() as conn:  # the register changes after the issue
        conn.execute(sa.update(Patient).where(Patient.patient_id == "P1").values(name="改名后"))
    _refuse_recompute(monkeypatch)
    monkeypatch.setattr("registry.web.reports.build_lists", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    doc = _as(web, engine, "doc")
    week_page = doc.get("/lists/week")
    assert week_page.status_code == 200 and "已于" in week_page.text and "存档原件" in week_page.text
    r = doc.get("/lists/week/followup.pdf")
    assert r.status_code == 200 and r.content == issued["2026-06-08_T1_1_随访任务单.pdf"]
    police = _as(web, engine, "police")
    x = police.get("/lists/week/risk.xlsx")
    assert x.status_code == 200 and x.content == issued["2026-06-08_T1_3_风险预警单.xlsx"]
    with engine.connect() as conn:
        downloads = conn.execute(sa.select(ListDownload.actor, ListDownload.role, ListDownload.slug, ListDownload.fmt,
                                           ListDownload.channel, ListDownload.sha256, ListDownload.file_id)
                                 .order_by(ListDownload.id)).all()
        exports = conn.execute(sa.select(AuditLog.actor, AuditLog.object_id).where(
            AuditLog.action == "export", AuditLog.object_type == "list")).all()
    assert [(d.actor, d.role, d.slug, d.fmt, d.channel) for d in downloads] == [
        ("doc", "township_doctor", "followup", "pdf", "web"), ("police", "police", "risk", "xlsx", "web")]
    assert [d.sha256 for d in downloads] == [hashlib.sha256(issued["2026-06-08_T1_1_随访任务单.pdf"]).hexdigest(),
                                            hashlib.sha256(issued["2026-06-08_T1_3_风险预警单.xlsx"]).hexdigest()]
    assert all(d.file_id for d in downloads)
    assert [tuple(e) for e in exports] == [("doc", "T1/2026-06-08/followup"), ("police", "T1/2026-06-08/risk")]

    # the archive page: weeks, files, SHA-256, downloads
    page = doc.get("/lists/archive")
    assert page.status_code == 200
    for content in issued.values():
        assert hashlib.sha256(content).hexdigest() in page.text
    assert "第 1 版" in page.text and "最近下载" in page.text
    # police: only the files of their own lists, no download log
    seen = police.get("/lists/archive")
    assert seen.status_code == 200
    shown = {name for name, content in issued.items() if hashlib.sha256(content).hexdigest() in seen.text}
    assert shown == {n for n in issued if "_2_联合入户单." in n or "_3_风险预警单." in n}
    assert "最近下载" not in seen.text
    file_ids = dict(re.findall(r'href="/lists/archive/files/(\d+)" data-download="([^"]+)"', seen.text))
    risk_pdf = next(i for i, label in file_ids.items() if label == "风险预警单 PDF")
    got = police.get(f"/lists/archive/files/{risk_pdf}")
    assert got.status_code == 200 and got.content == issued["2026-06-08_T1_3_风险预警单.pdf"]
    assert got.headers["x-content-sha256"] == hashlib.sha256(got.content).hexdigest()
    with engine.connect() as conn:
        followup_file = conn.execute(sa.select(ListIssueFile.id).where(ListIssueFile.slug == "followup",
                                                                      ListIssueFile.fmt == "pdf")).scalar_one()
    assert police.get(f"/lists/archive/files/{followup_file}").status_code == 404  # not their list
    assert _as(web, engine, "doc2").get("/lists/archive?township=T1").status_code == 403  # another township
    assert _as(web, engine, "admin").get("/lists/archive?township=T1").status_code == 200

    # paper sign-in against an archived row of the 联合入户单, through the page
    with engine.connect() as conn:
        issue_id, row_id = conn.execute(sa.select(ListIssueRow.issue_id, ListIssueRow.id).where(
            ListIssueRow.slug == "joint").order_by(ListIssueRow.position)).first()
    rows_page = doc.get(f"/lists/archive/{issue_id}/joint")
    assert rows_page.status_code == 200 and f'id="row-{row_id}"' in rows_page.text
    assert "陈一" in rows_page.text and "改名后" not in rows_page.text  # the row as issued
    token = _csrf(rows_page.text)
    refused = doc.post(f"/lists/archive/rows/{row_id}/sign-in", data={
        "csrf_token": token, "signed_by": "刘警官", "visited": "1", "signed_on": "2026-06-11", "note": ""})
    assert refused.status_code == 422 and "签到日期" in refused.text  # after today (2026-06-10): nothing written
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ListSignIn)).scalar() == 0
    saved = doc.post(f"/lists/archive/rows/{row_id}/sign-in", data={
        "csrf_token": token, "signed_by": "刘警官", "visited": "1", "signed_on": "2026-06-09", "note": "已入户"})
    assert saved.status_code == 303 and saved.headers["location"].startswith(f"/lists/archive/{issue_id}/joint?saved=1")
    assert "刘警官" in doc.get(f"/lists/archive/{issue_id}/joint").text
    # and through the API (bearer token)
    from web_support import session_token

    api = TestClient(web)
    bearer = {"Authorization": f"Bearer {session_token(engine, 'admin')}"}
    r = api.post(f"/api/lists/rows/{row_id}/sign-ins", headers=bearer,
                 json={"signed_by": "孙专干", "visited": False, "signed_on": "2026-06-10", "note": "家中无人"})
    assert r.status_code == 200, r.text
    assert r.json()["visited"] is False and r.json()["signed_on"] == "2026-06-10"
    assert api.post(f"/api/lists/rows/{row_id}/sign-ins", headers=bearer,
                    json={"signed_by": "", "visited": True, "signed_on": "2026-06-10"}).json()["error"] == "REQUIRED"
    police_api = {"Authorization": f"Bearer {session_token(engine, 'police')}"}
    assert api.post(f"/api/lists/rows/{row_id}/sign-ins", headers=police_api,
                    json={"signed_by": "x", "visited": True, "signed_on": "2026-06-10"}).status_code == 403
    doc2_api = {"Authorization": f"Bearer {session_token(engine, 'doc2')}"}
    assert api.post(f"/api/lists/rows/{row_id}/sign-ins", headers=doc2_api,
                    json={"signed_by": "x", "visited": True, "signed_on": "2026-06-10"}).status_code == 404
    with engine.connect() as conn:
        signs = conn.execute(sa.select(ListSignIn.signed_by, ListSignIn.visited, ListSignIn.signed_on, ListSignIn.note,
                                       ListSignIn.recorded_by).order_by(ListSignIn.id)).all()
        audited = conn.execute(sa.select(AuditLog.actor).where(AuditLog.action == "sign_in")).scalars().all()
    assert [tuple(s) for s in signs] == [("刘警官", True, D("2026-06-09"), "已入户", "doc"),
                                         ("孙专干", False, D("2026-06-10"), "家中无人", "admin")]
    assert audited == ["doc", "admin"]
    overview = api.get("/api/lists/archive", headers=bearer, params={"township": "T1"}).json()
    assert overview["issues"][0]["sign_ins"]["joint"]["sign_ins"] == 2
    files = {f["file_name"]: f for f in overview["issues"][0]["files"]}
    assert {n: f["sha256"] for n, f in files.items()} == {n: hashlib.sha256(c).hexdigest() for n, c in issued.items()}
    assert files["2026-06-08_T1_3_风险预警单.pdf"]["downloads"] == 1


def test_a_week_not_issued_is_rendered_and_its_download_recorded(database, tmp_path):
    """Before the Monday job, the web renders the week on the spot; the download is still recorded."""
    from registry.web.app import create_app
    from schedules.generation import generate
    from web_support import TODAY, seed

    seed(database.engine)
    generate(database.engine, as_of=TODAY)
    web = create_app(database.engine, today=lambda: TODAY)
    doc = _as(web, database.engine, "doc")
    assert "尚未签发" in doc.get("/lists/week").text
    r = doc.get("/lists/week/medication.xlsx")
    assert r.status_code == 200
    with database.engine.connect() as conn:
        d = conn.execute(sa.select(ListDownload)).one()
        assert conn.execute(sa.select(sa.func.count()).select_from(ListIssue)).scalar() == 0
    assert d.file_id is None and d.sha256 == hashlib.sha256(r.content).hexdigest() and d.actor == "doc"
    assert "还没有签发" in doc.get("/lists/archive").text
