"""打包 A wheel (``pip install .``, not editable) carries the templates and renders from them.

The design keeps ``templates/`` at the repository root; the wheel ships it as the package
``jingfang_templates`` (``registry/resources.py``). Built offline (``--no-build-isolation``),
installed with ``--target`` into a scratch directory, and run from another working directory,
so nothing of the checkout is on the path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

CHECK = r"""
import sys
from datetime import date
from pathlib import Path
import jingfang, registry, schedules
from registry.resources import template_dir
target = Path(sys.argv[1]).resolve()
for module in (jingfang, registry, schedules):
    assert Path(module.__file__).resolve().is_relative_to(target), module.__file__
for name in ("lists", "report", "web"):
    assert template_dir(name).resolve().is_relative_to(target), template_dir(name)
# each template set loads and renders from the installed copy
from registry.web.app import _templates
assert _templates().get_template("login.html") is not None
from schedules.lists import render_html, build_lists, WorkList
from registry.rates.reporting import TEMPLATE_DIR
assert (TEMPLATE_DIR / "monthly.html").is_file() and (TEMPLATE_DIR / "report.css").is_file()
wl = WorkList(number=1, slug="followup", title="随访任务单", readers="精防医生", columns=[])
html = render_html({"township_name": "示例镇", "township_code": "T", "week": date(2026, 6, 8),
                    "week_end": date(2026, 6, 14)}, wl, "2026-06-08 09:00")
assert "示例镇 随访任务单" in html
print("ok")
"""


def test_wheel_ships_templates(tmp_path):
    source, dist, target, elsewhere = tmp_path / "src", tmp_path / "dist", tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("jingfang", "registry", "schedules", "templates"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel = next(dist.glob("jingfang-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("lists/list.html", "report/monthly.html", "report/report.css", "web/base.html"):
        assert f"jingfang_templates/{template}" in names, template
    assert "registry/profiles/national-2018.json" in names
    assert not [n for n in names if n.startswith("tests/")]
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-c", CHECK, str(target)], cwd=elsewhere, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
