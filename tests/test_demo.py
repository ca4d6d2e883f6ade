"""演示 `jingfang demo` runs end to end on a SQLite file and is safe to run twice."""

import subprocess
from datetime import date
from pathlib import Path

import sqlalchemy as sa
import time_machine
from typer.testing import CliRunner

from jingfang.cli import app
from registry.db import make_engine
from registry.models import AuditLog, Region
from schedules.lists import write_townships


def pdftext(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@time_machine.travel("2026-11-23 09:00 +0800", tick=False)
def test_demo_runs_twice_on_sqlite(tmp_path: Path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--patients", "150", "--seed", "5", "--out", str(out), "--db", db])
    assert first.exit_code == 0, first.output + str(first.exception)
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
    write_townships(engine, codes=[townships[-1]], week=date(2026, 11, 23), out_root=serial, actor="test")
    for pdf in sorted((out / "lists" / townships[-1]).glob("*.pdf")):
        assert pdftext(pdf) == pdftext(serial / townships[-1] / pdf.name)
    second = runner.invoke(app, ["demo", "--patients", "150", "--seed", "5", "--out", str(out), "--db", db])
    assert second.exit_code == 0, second.output
    assert "患者 150 行（新增或更新 0，未变 150）" in second.output


def test_demo_rejects_bad_patient_count(tmp_path: Path):
    result = CliRunner().invoke(app, ["demo", "--patients", "0", "--out", str(tmp_path), "--db", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1
    assert "--patients" in result.stderr
