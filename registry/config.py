"""配置 Settings, read from the environment (prefix ``JINGFANG_``) — never at import time."""

from __future__ import annotations

import os
from functools import lru_cache
from zoneinfo import ZoneInfo

from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


class Settings(BaseSettings):
    """设置 Deployment settings. Rule parameters live in rule profiles, not here."""

    model_config = SettingsConfigDict(env_prefix="JINGFANG_", extra="ignore")

    database_url: str = "sqlite:///jingfang.db"
    profile: str = "national-2018"
    secret_key: str = "dev-insecure-secret-change-me"
    base_url: str = "http://127.0.0.1:8000"
    org_name: str = "精防 Jingfang"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def parallelism(variable: str, cap: int) -> int:
    """并行度 The positive integer in environment ``variable`` (``JINGFANG_…``), else the CPUs this
    process may run on, at most ``cap``: the 五单 render processes, the generation shards."""
    configured = os.environ.get(variable, "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, cap)

