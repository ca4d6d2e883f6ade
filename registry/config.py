"""配置 Settings, read from the environment (prefix ``JINGFANG_``) — never at import time.

This module is the only reader of ``JINGFANG_*`` variables (tests/test_settings.py greps the
packages for any other): every call site asks ``get_settings()``. The settings are read once per
process and cached; whoever changes the environment afterwards (a test, ``jingfang serve``
handing the database URL to its workers) calls ``get_settings.cache_clear()`` or
``export_for_children``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def _positive_or_none(value: object) -> object:
    """A positive whole number, else None (unset, empty or not a number: the default applies)."""
    if value is None or isinstance(value, int):
        return value if value is None or value > 0 else None
    text = str(value).strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _empty_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


OptionalCount = Annotated[int | None, BeforeValidator(_positive_or_none)]
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]


class Settings(BaseSettings):
    """设置 Deployment settings. Rule parameters live in rule profiles, not here."""

    model_config = SettingsConfigDict(env_prefix="JINGFANG_", extra="ignore")

    database_url: str = "sqlite:///jingfang.db"
    profile: str = "national-2018"
    # a directory searched first for rule-profile JSON files (a county's own profile)
    profile_dir: OptionalPath = None
    base_url: str = "http://127.0.0.1:8000"
    org_name: str = "精防 Jingfang"
    # web sessions end after this many minutes without a request (besides their 12-hour expiry)
    session_idle_minutes: int = Field(30, ge=1, le=24 * 60)
    # the largest request body the web application accepts (bytes); larger: 413
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # where the scheduler publishes the monthly PDFs (default: beside the lists, or ./out/reports)
    report_dir: OptionalPath = None
    # processes rendering the 五单 PDFs (None: the CPUs this process may run on)
    render_workers: OptionalCount = None
    # PostgreSQL: parallel patient ranges of a full generation run (None: the CPUs, at most 8)
    generation_shards: OptionalCount = None
    # the fewest patients per range (None: schedules.generation.SHARD_MIN_PATIENTS)
    generation_shard_patients: OptionalCount = None
    # PostgreSQL work_mem of a generation run's transactions; interpolated into SET LOCAL, so checked
    generation_work_mem: str = Field("1GB", pattern=r"^\d+(kB|MB|GB)$")
    # benchmarks (benchmarks/): the PostgreSQL server their scratch databases live on
    bench_pg: str = "postgresql+psycopg://postgres@127.0.0.1:5432"
    # benchmarks/web.py: the database its server subprocess serves
    bench_url: str | None = None


@lru_cache
def get_settings() -> Settings:
    return Settings()


def child_environment(**values: object) -> dict[str, str]:
    """子进程环境 This process's environment with settings (by field name) set, for a subprocess."""
    env = dict(os.environ)
    for name, value in values.items():
        if name not in Settings.model_fields:
            raise KeyError(name)
        env[f"JINGFANG_{name.upper()}"] = str(value)
    return env


def export_for_children(**values: object) -> None:
    """交给子进程 Put settings (by field name) into the environment that child processes inherit
    (``jingfang serve --workers``), and read them again here."""
    os.environ.update(child_environment(**values))
    get_settings.cache_clear()


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def parallelism(variable: str, cap: int) -> int:
    """并行度 The setting behind ``variable`` (``JINGFANG_RENDER_WORKERS``, ``JINGFANG_GENERATION_SHARDS``)
    when set to a positive integer, else the CPUs this process may run on, at most ``cap``: the 五单
    render processes, the generation shards."""
    configured = getattr(get_settings(), variable.removeprefix("JINGFANG_").lower())
    if configured:
        return configured
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, cap)
