"""生成SQL固定 The compiled generation SQL is pinned: refactoring ``plan_select`` changes no SQL.

Each case compiles ``plan_select`` for a fixed profile, as-of date and stamp (literal binds) and
compares the text with ``tests/fixtures/generation_sql/<case>.sql``. After a deliberate change of
the generated SQL, regenerate with ``PIN_GENERATION_SQL_WRITE=1 pytest tests/test_generation_sql_pinned.py``
and review the diff.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from schedules.generation import plan_select
from registry.profile import load_profile

FIXTURES = Path(__file__).parent / "fixtures" / "generation_sql"
AS_OF = date(2026, 3, 31)
STAMP = datetime(2026, 3, 31, 6, 0, 0, tzinfo=timezone.utc)
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}
VARIANTS = {
    "all": {},
    "patients": {"patient_ids": ["P0001", "P0002"]},
    "existing": {"existing": True},
    "range": {"existing": True, "patient_range": ("P0100", "P0200")},
    "range_open": {"patient_range": (None, "P0100")},
}


def compiled(dialect: str, variant: str) -> str:
    stmt = plan_select(load_profile("national-2018"), AS_OF, STAMP, dialect, **VARIANTS[variant])
    return str(stmt.compile(dialect=DIALECTS[dialect], compile_kwargs={"literal_binds": True})) + "\n"


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_plan_select_sql_is_pinned(dialect: str, variant: str) -> None:
    path = FIXTURES / f"{dialect}-{variant}.sql"
    text = compiled(dialect, variant)
    if os.environ.get("PIN_GENERATION_SQL_WRITE") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path.name}: regenerate with PIN_GENERATION_SQL_WRITE=1"
    assert text == path.read_text(encoding="utf-8"), f"generation SQL changed ({dialect}, {variant})"
