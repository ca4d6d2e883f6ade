"""命令行一致性 The ``jingfang`` command behaves the same everywhere (issue 16, contract.md "Commands").

Invalid input (dates, months, regions, township codes, variants) exits 1 with a Chinese message and
a stable code on stderr, printed once; ``--version``; ``report --out`` into a missing directory is
an error naming the directory; long work says what it is doing before it starts.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import time_machine
from typer.testing import CliRunner

from jingfang.cli import app
from registry.importing import import_path

ROOT = Path(__file__).resolve().parents[1]
TODAY_SMALL = "2026-06-10"


@pytest.fixture
def county_db(tmp_path, small_county) -> str:
    """The spec's small county imported into a SQLite file."""
    from datetime import date

    from registry.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'county.db'}"
    engine = make_engine(url)
    upgrade(engine)
    import_path(engine, small_county, today=date(2026, 6, 10))
    engine.dispose()
    return url


def _regions(small_county: Path) -> tuple[str, str, str]:
    """(county, township, village) codes of the small county."""
    import csv

    rows = list(csv.DictReader((small_county / "regions.csv").open(encoding="utf-8-sig")))
    by_level = {}
    for row in rows:
        by_level.setdefault(row["level"], row["code"])
    return by_level["county"], by_level["township"], by_level["village"]


INVALID = [  # (name, args, stable code)
    ("schedule bad date", ["schedule", "--as-of", "2026-02-30"], "BAD_DATE"),
    ("schedule not a date", ["schedule", "--as-of", "tomorrow"], "BAD_DATE"),
    ("schedule date out of range", ["schedule", "--as-of", "1899-01-01"], "BAD_DATE"),
    ("tasks bad date", ["tasks", "--as-of", "2026-6-1x"], "BAD_DATE"),
    ("tasks unknown region", ["tasks", "--as-of", TODAY_SMALL, "--region", "000000"], "REGION_NOT_FOUND"),
    ("tasks json unknown region", ["tasks", "--as-of", TODAY_SMALL, "--region", "000000", "--json"], "REGION_NOT_FOUND"),
    ("rates bad month", ["rates", "--month", "2026-13"], "BAD_MONTH"),
    ("rates month as words", ["rates", "--month", "June"], "BAD_MONTH"),
    ("rates unknown region", ["rates", "--month", "2026-05", "--region", "000000"], "REGION_NOT_FOUND"),
    ("rates bad variant", ["rates", "--month", "2026-05", "--variant", "weekly"], "BAD_VARIANT"),
    ("report bad month", ["report", "--month", "2026-00", "--out", "{tmp}/r.pdf"], "BAD_MONTH"),
    ("report unknown region", ["report", "--month", "2026-05", "--region", "000000", "--out", "{tmp}/r.pdf"],
     "REGION_NOT_FOUND"),
    ("lists bad week", ["lists", "--week", "2026-02-30", "--township", "{township}", "--out", "{tmp}/l"], "BAD_DATE"),
    ("lists unknown township", ["lists", "--week", TODAY_SMALL, "--township", "000000", "--out", "{tmp}/l"],
     "REGION_NOT_FOUND"),
    ("lists a village as township", ["lists", "--week", TODAY_SMALL, "--township", "{village}", "--out", "{tmp}/l"],
     "NOT_A_TOWNSHIP"),
    ("user add unknown region", ["user", "add", "u1", "--role", "乡镇精防医生", "--region", "000000",
                                 "--password", "long-enough-1"], "REGION_NOT_FOUND"),
    ("user add bad role", ["user", "add", "u1", "--role", "nurse", "--region", "{township}",
                           "--password", "long-enough-1"], "ROLE_INVALID"),
]


@pytest.mark.parametrize("name,args,code", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_input_exits_1_with_one_chinese_message(name, args, code, county_db, small_county, tmp_path):
    _county, township, village = _regions(small_county)
    argv = [a.format(tmp=tmp_path, township=township, village=village) for a in args] + ["--db", county_db]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.stdout == ""  # nothing half-done on stdout
    err = result.stderr
    assert f"[{code}]" in err
    assert err.count(f"[{code}]") == 1, err  # printed once, not once by typer and again by the handler
    assert "Traceback" not in err and "Error" not in err
    first = err.splitlines()[0]
    assert first.startswith("错误") and any("\u4e00" <= ch <= "\u9fff" for ch in first.removeprefix("错误"))
    assert not (tmp_path / "r.pdf").exists() and not (tmp_path / "l").exists()


def test_usage_errors_still_exit_2(county_db):
    assert CliRunner().invoke(app, ["report", "--db", county_db]).exit_code == 2  # --out missing (--month defaults to the last closed month)
    assert CliRunner().invoke(app, ["no-such-command"]).exit_code == 2


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"jingfang {version('jingfang')}"
    # and as a process, before any subcommand or database
    proc = subprocess.run([sys.executable, "-m", "jingfang.cli", "--version"], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.strip() == f"jingfang {version('jingfang')}", proc.stderr


@time_machine.travel("2026-06-10 09:00 +0800", tick=False)
def test_report_into_a_missing_directory_is_an_error(county_db, tmp_path):
    missing = tmp_path / "no" / "such"
    result = CliRunner().invoke(app, ["report", "--month", "2026-05", "--out", str(missing / "r.pdf"), "--db", county_db])
    assert result.exit_code == 1, result.output
    assert "[OUT_DIR_MISSING]" in result.stderr and str(missing) in result.stderr
    assert not (tmp_path / "no").exists()  # no silent mkdir
    ok = CliRunner().invoke(app, ["report", "--month", "2026-05", "--out", str(tmp_path / "r.pdf"), "--db", county_db])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    assert ok.stderr.startswith("正在生成 2026-05 月报")  # said before rendering
    assert str(tmp_path / "r.pdf") in ok.stdout


def test_dates_typed_without_dashes_are_accepted(county_db):
    assert CliRunner().invoke(app, ["schedule", "--as-of", "2026-06-10", "--db", county_db]).exit_code == 0
    dashed = CliRunner().invoke(app, ["tasks", "--as-of", "2026-06-10", "--json", "--db", county_db])
    compact = CliRunner().invoke(app, ["tasks", "--as-of", "20260610", "--json", "--db", county_db])
    assert dashed.exit_code == compact.exit_code == 0
    assert dashed.stdout == compact.stdout and dashed.stdout.strip() != "[]"


def test_lists_says_what_it_renders_first(county_db, small_county, tmp_path):
    _county, township, _village = _regions(small_county)
    result = CliRunner().invoke(app, ["lists", "--week", TODAY_SMALL, "--township", township, "--out",
                                      str(tmp_path / "l"), "--db", county_db])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == f"正在生成 {township} 2026-06-08 这一周的五单……"
    files = [Path(line) for line in result.stdout.splitlines()]
    assert files and all(f.exists() for f in files)


def test_demo_says_what_it_does_from_the_first_line(tmp_path):
    """The demo's first line comes before any work; each step is announced, then timed; the steps
    go to stderr, the summary to stdout (contract.md: the summary is the output)."""
    proc = subprocess.Popen([sys.executable, "-m", "jingfang.cli", "demo", "--patients", "20", "--seed", "2",
                             "--out", str(tmp_path / "out"), "--db", f"sqlite:///{tmp_path / 'demo.db'}"],
                            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    assert first.startswith("精防演示：20 名合成患者")
    rest, _ = proc.stderr.read(), proc.wait()
    assert proc.returncode == 0, rest
    steps = [line for line in rest.splitlines() if line.startswith("[")]
    assert [s.split("]")[0] + "]" for s in steps] == [f"[{i}/6]" for i in range(1, 7)], rest
    assert rest.count("完成（") == 6
    summary = proc.stdout.read()
    assert "登记汇总" in summary and "[1/6]" not in summary


def test_the_frameworks_own_words_are_chinese(county_db):
    """Issue 16: help and usage errors read in Chinese, including the words click and typer print
    themselves (usage line, panel titles, the help option, a missing option)."""
    words = ("Usage:", "Options", "Commands", "Show this message", "Missing option", "Try '")
    shown = CliRunner().invoke(app, ["--help"]).output + CliRunner().invoke(app, ["report", "--help"]).output
    assert "用法" in shown and "选项" in shown and "命令" in shown and "显示本帮助并退出" in shown, shown
    assert not [w for w in words if w in shown], shown
    missing = CliRunner().invoke(app, ["report", "--db", county_db])
    assert missing.exit_code == 2 and "缺少选项" in missing.output and "--out" in missing.output, missing.output
    assert not [w for w in words if w in missing.output], missing.output
