"""设置 Every ``JINGFANG_*`` variable is read by registry/config.py alone, as a typed, checked field."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.config import Settings, child_environment, get_settings, parallelism

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("registry", "schedules", "jingfang", "benchmarks")


def environment_reads(source: str) -> list[str]:
    """The expressions in ``source`` that touch the environment (``environ``/``getenv``) with a
    ``JINGFANG_`` name: ``os.environ.get("JINGFANG_X")``, ``os.environ["JINGFANG_X"]``,
    ``dict(os.environ, JINGFANG_X=…)``, ``os.getenv("JINGFANG_X")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Call, ast.Subscript)):
            segment = ast.get_source_segment(source, node) or ""
            inner = [ast.get_source_segment(source, child) or "" for child in ast.iter_child_nodes(node)]
            if ("environ" in segment or "getenv" in segment) and "JINGFANG_" in segment:
                if not any(("environ" in s or "getenv" in s) and "JINGFANG_" in s for s in inner):
                    found.append(segment)  # the innermost expression only
    return found


def test_the_detector_finds_every_form():
    source = '''
import os
from os import getenv
a = os.environ.get("JINGFANG_A", "1")
b = os.environ["JINGFANG_B"]
c = getenv(
    "JINGFANG_C")
d = dict(os.environ, JINGFANG_D="x")
e = os.environ.get("HOME")
f = "JINGFANG_F"
'''
    assert len(environment_reads(source)) == 4


def test_only_the_settings_module_reads_jingfang_variables():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "registry" / "config.py":
                continue
            for expression in environment_reads(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}: {expression}")
    assert offenders == [], "read JINGFANG_ variables through registry.config.get_settings():\n" + "\n".join(offenders)


def test_values_are_typed_and_checked(monkeypatch):
    monkeypatch.setenv("JINGFANG_GENERATION_WORK_MEM", "512MB")
    monkeypatch.setenv("JINGFANG_GENERATION_SHARDS", "3")
    monkeypatch.setenv("JINGFANG_REPORT_DIR", "/srv/reports")
    settings = Settings()
    assert (settings.generation_work_mem, settings.generation_shards) == ("512MB", 3)
    assert settings.report_dir == Path("/srv/reports")
    for bad in ("1GB'; DROP TABLE patient; --", "1 GB", "lots", "1TB"):  # interpolated into SET LOCAL
        monkeypatch.setenv("JINGFANG_GENERATION_WORK_MEM", bad)
        with pytest.raises(ValidationError):
            Settings()


@pytest.mark.parametrize("value, expected", [("4", 4), ("0", None), ("-2", None), ("lots", None), ("", None)])
def test_a_count_that_is_not_a_positive_number_means_the_default(monkeypatch, value, expected):
    monkeypatch.setenv("JINGFANG_RENDER_WORKERS", value)
    assert Settings().render_workers == expected


def test_settings_are_read_once_until_cleared(monkeypatch):
    monkeypatch.setenv("JINGFANG_GENERATION_SHARDS", "2")
    assert parallelism("JINGFANG_GENERATION_SHARDS", 8) == 2
    monkeypatch.setenv("JINGFANG_GENERATION_SHARDS", "5")
    assert get_settings().generation_shards == 2  # cached for the process
    get_settings.cache_clear()
    assert parallelism("JINGFANG_GENERATION_SHARDS", 8) == 5


def test_child_environment_names_known_settings_only():
    env = child_environment(database_url="sqlite:///x.db")
    assert env["JINGFANG_DATABASE_URL"] == "sqlite:///x.db"
    with pytest.raises(KeyError):
        child_environment(databse_url="typo")
