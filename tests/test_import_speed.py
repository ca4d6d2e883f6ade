"""导入速度 The import's speed measures (docs/import.md, Performance) change nothing but speed.

- the SQLite upsert through the driver's ``executemany`` (``importing._bound_rows``) stores exactly
  what SQLAlchemy's own ``conn.execute`` stores, value by value and type by type, and counts the same
  rows written on a first import, an unchanged re-import and a corrected one;
- the cyclic garbage collector, paused during an import, is resumed after it — also after a refused
  import — and left off when the caller had turned it off.
"""

from __future__ import annotations

import csv
import gc
import shutil
from datetime import date

import pytest
import sqlalchemy as sa

from registry import importing
from registry.db import make_engine, upgrade
from registry.errors import ImportRejected
from registry.importing import import_path

TODAY = date(2026, 11, 23)
TABLES = ("region", "team_member", "patient", "follow_up", "health_check")
STAMPS = {"entered_at", "updated_at", "created_at"}


@pytest.fixture
def files(small_county, tmp_path):
    target = tmp_path / "files"
    shutil.copytree(small_county, target)
    for extra in target.glob("expected-*"):
        extra.unlink()
    return target


def _contents(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of the register's tables with each stored value's SQLite type (timestamps left out)."""
    out = {}
    with engine.connect() as conn:
        for table in TABLES:
            cols = [c["name"] for c in sa.inspect(conn).get_columns(table) if c["name"] not in STAMPS | {"id"}]
            select = ", ".join(f'"{c}", typeof("{c}")' for c in cols)
            order = ", ".join(str(2 * i + 1) for i in range(len(cols)))
            out[table] = conn.exec_driver_sql(f'SELECT {select} FROM "{table}" ORDER BY {order}').all()
    return out


def _edit_first_follow_up(folder) -> None:
    path = folder / "followups.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("risk_level")
    rows[1][column] = "0" if rows[1][column] != "0" else "1"
    classification = rows[0].index("classification") if "classification" in rows[0] else None
    if classification is not None:
        rows[1][classification] = ""
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def _run(engine: sa.Engine, files) -> list[tuple]:
    written = []
    for _ in range(2):  # a first import, then an unchanged one
        result = import_path(engine, files, today=TODAY)
        written.append(tuple(sorted((k, t.written, t.unchanged) for k, t in result.tables.items())))
    return written


def test_sqlite_driver_path_stores_what_sqlalchemy_stores(files, tmp_path, monkeypatch):
    fast = make_engine(f"sqlite:///{tmp_path / 'fast.db'}")
    plain = make_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    upgrade(fast)
    upgrade(plain)
    fast_written = _run(fast, files)
    with monkeypatch.context() as m:  # SQLAlchemy binds each row itself (the path before the change)
        m.setattr(importing, "_driver_statement", lambda conn, stmt, columns: None)
        plain_written = _run(plain, files)
    assert fast_written == plain_written
    assert fast_written[1] and all(written == 0 for _, written, _ in fast_written[1])
    assert _contents(fast) == _contents(plain)
    assert _contents(fast)["follow_up"], "the example has follow-ups"

    _edit_first_follow_up(files)
    corrected = import_path(fast, files, today=TODAY).tables["followups"]
    with monkeypatch.context() as m:
        m.setattr(importing, "_driver_statement", lambda conn, stmt, columns: None)
        corrected_plain = import_path(plain, files, today=TODAY).tables["followups"]
    assert (corrected.written, corrected.unchanged) == (corrected_plain.written, corrected_plain.unchanged) == (1, corrected.read - 1)
    assert _contents(fast) == _contents(plain)
    fast.dispose()
    plain.dispose()


def test_garbage_collector_is_resumed_after_an_import(database, files):
    assert gc.isenabled()
    import_path(database.engine, files, today=TODAY)
    assert gc.isenabled()
    (files / "followups.csv").write_text("patient_id,visit_on\nNOBODY,2026-01-05\n", encoding="utf-8")
    with pytest.raises(ImportRejected):
        import_path(database.engine, files, today=TODAY)
    assert gc.isenabled()
    gc.disable()
    try:
        import_path(database.engine, files, today=TODAY, skip_invalid=True)
        assert not gc.isenabled()
    finally:
        gc.enable()
