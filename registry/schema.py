"""数据库结构 Imports every module that defines tables, so the metadata is complete.

Add a module here when it defines SQLModel tables; Alembic's env and the schema tests use
``metadata()``.
"""

from __future__ import annotations

import importlib

from sqlmodel import SQLModel

MODEL_MODULES = [
    "registry.models",
    "registry.accounts",
    "schedules.models",
    "registry.rates.snapshots",
    "registry.rates.month_state",
]


def metadata():
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return SQLModel.metadata
