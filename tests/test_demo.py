"""演示 `jingfang demo` runs end to end on a SQLite file and never touches a live register (issue 18):
a database that holds a region, a patient or an account is refused, ``--force`` only where no patient
is held, and an existing account is never changed."""

import stat
import subprocess
from datetime import date
from pathlib import Path

import sqlalchemy as sa
import time_machine
from sqlmodel import Session
from typer.testing import CliRunner

from jingfang.cli import app
from registry.accounts import User, authenticate, hash_password
from registry.db import get_engine, make_engine
from registry.models import AuditLog, Patient, Region
from schedules.lists import write_townships


def pdftext(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@time_machine.travel("2026-11-23 09:00 +0800", tick=False)
def test_demo_runs_once_on_sqlite_and_never_twice(tmp_path: Path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    out = tmp_path / "out"
    runner = CliRunner()
    # an operator's account (and its region) already there: refused without --force, kept with it
    engine = get_engine(db)  # migrated
    with Session(engine) as session:
        session.add(Region(code="449901", name="某县", level="county"))
        session.flush()
        session.add(User(username="admin", password_hash=hash_password("operator-secret-1"), role="county_admin",
                         region_code="449901", display_name="管理员"))
        session.commit()
    refused = runner.invoke(app, ["demo", "--patients", "150", "--seed", "5", "--out", str(out), "--db", db])
    assert refused.exit_code == 1 and "DEMO_DATABASE_IN_USE" in refused.stderr and "--force" in refused.stderr
    assert not out.exists()
    first = runner.invoke(app, ["demo", "--patients", "150", "--seed", "5", "--out", str(out), "--db", db, "--force"])
    assert first.exit_code == 0, first.output + str(first.exception)
    with Session(engine) as session:  # the existing account: same password, same role and region
        admin = authenticate(session, "admin", "operator-secret-1")
        assert (admin.role, admin.region_code) == ("county_admin", "449901")
    assert "用户名 admin 已存在，未更改" in first.output
    # the files hold (synthetic) patients' lists: not world-readable
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(stat.S_IMODE(p.stat().st_mode) & 0o007 == 0 for p in written), [
        (p.name, oct(p.stat().st_mode)) for p in written if p.stat().st_mode & 0o007]
    assert "登记汇总（截至 2026-11-23）" in first.output
    assert "合计" in first.output
    assert (out / "data" / "patients.csv").read_text(encoding="utf-8").count("\n") == 151
    # every township's 五单: five PDFs and five workbooks each, one export audit row each
    engine = make_engine(db)
    with engine.connect() as conn:
        townships = conn.execute(sa.select(Region.code).where(Region.level == "township").order_by(Region.code)).scalars().all()
        exports = conn.execute(sa.select(AuditLog.object_id).where(AuditLog.action == "export", AuditLog.object_type == "lists",
                                                                   AuditLog.actor == "demo")).scalars().all()
    assert len(townships) >= 2
    assert sorted(exports) == [f"{code}:2026-11-23" for code in townships]
    for code in townships:
        files = sorted(p.name for p in (out / "lists" / code).iterdir())
        # one PDF and one XLSX per list (rules.md §7; until issue 16 one workbook held all five)
        assert len(files) == 10 and sum(f.endswith(".xlsx") for f in files) == 5, files
        assert f"2026-11-23_{code}_3_风险预警单.xlsx" in files and f"2026-11-23_{code}_1_随访任务单.pdf" in files
    assert first.output.count("随访任务 ") == len(townships)
    # rendered in parallel processes or here, the PDFs say the same
    serial = tmp_path / "serial"
    monkeypatch.setenv("JINGFANG_RENDER_WORKERS", "1")
    # (archive=False: the week is issued already, and its re-run would only serve the archive)
    write_townships(engine, codes=[townships[-1]], week=date(2026, 11, 23), out_root=serial, actor="test", archive=False)
    for pdf in sorted((out / "lists" / townships[-1]).glob("*.pdf")):
        assert pdftext(pdf) == pdftext(serial / townships[-1] / pdf.name)
    # a second run finds a register: refused, with --force too, and nothing changes
    with engine.connect() as conn:
        before = conn.execute(sa.select(Patient.patient_id, Patient.name, Patient.updated_at).order_by(Patient.patient_id)).all()
    for extra in ([], ["--force"]):
        second = runner.invoke(app, ["demo", "--patients", "150", "--seed", "6", "--out", str(tmp_path / "again"), "--db", db, *extra])
        assert second.exit_code == 1 and "DEMO_DATABASE_HAS_PATIENTS" in second.stderr, second.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(Patient.patient_id, Patient.name, Patient.updated_at).order_by(Patient.patient_id)).all() == before
    assert not (tmp_path / "again").exists()


def test_demo_rejects_bad_patient_count(tmp_path: Path):
    result = CliRunner().invoke(app, ["demo", "--patients", "0", "--out", str(tmp_path), "--db", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1
    assert "--patients" in result.stderr
