"""演示 `jingfang demo` runs end to end on a SQLite file and is safe to run twice."""

from pathlib import Path

import time_machine
from typer.testing import CliRunner

from registry.cli import app


@time_machine.travel("2026-11-23 09:00 +0800", tick=False)
def test_demo_runs_twice_on_sqlite(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--patients", "150", "--seed", "5", "--out", str(out), "--db", db])
    assert first.exit_code == 0, first.output + str(first.exception)
    assert "登记汇总（截至 2026-11-23）" in first.output
    assert "合计" in first.output
    assert (out / "data" / "patients.csv").read_text(encoding="utf-8").count("\n") == 151
    second = runner.invoke(app, ["demo", "--patients", "150", "--seed", "5", "--out", str(out), "--db", db])
    assert second.exit_code == 0, second.output
    assert "患者 150 行（新增或更新 0，未变 150）" in second.output


def test_demo_rejects_bad_patient_count(tmp_path: Path):
    result = CliRunner().invoke(app, ["demo", "--patients", "0", "--out", str(tmp_path), "--db", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1
    assert "--patients" in result.stderr
