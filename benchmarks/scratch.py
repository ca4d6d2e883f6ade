"""草稿库 The benchmarks' scratch databases: one named PostgreSQL database on the server
(``JINGFANG_BENCH_PG``), a SQLite file, and the synthetic county they load.

- ``scratch_database(name)``: a new empty database for one run, dropped afterwards (import);
- ``recreate_database(name)``: a new empty database kept after the run (web, ``--reuse``);
- ``prepared_database(name, patients, build)``: a database holding ``patients`` patients, reused
  when an earlier run left exactly that many, else recreated and filled by ``build`` (the
  set-based populations of the scheduler and indicator benchmarks);
- ``write_county`` / ``load_county``: the synthetic county as contract.md CSV files
  (``registry.synthetic``), loaded through the real importer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.config import get_settings
from registry.db import make_engine, upgrade

TODAY = date(2026, 11, 23)  # the synthetic county's "today" (import and web benchmarks)


def server() -> str:
    """The PostgreSQL server URL without a database (``JINGFANG_BENCH_PG``)."""
    return get_settings().bench_pg.rstrip("/")


def database_url(name: str) -> str:
    return f"{server()}/{name}"


def sqlite_url(folder: Path | str, name: str = "bench.db") -> str:
    """A SQLite file ``name`` in ``folder`` (a temporary directory of the run)."""
    return f"sqlite:///{Path(folder) / name}"


def _admin(sql: str, **params) -> sa.Row | None:
    admin = sa.create_engine(database_url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            result = conn.execute(sa.text(sql), params)
            return result.first() if result.returns_rows else None
    finally:
        admin.dispose()


def database_exists(name: str) -> bool:
    return _admin("SELECT 1 FROM pg_database WHERE datname = :name", name=name) is not None


def drop_database(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def recreate_database(name: str) -> str:
    """A new, empty (unmigrated) UTF-8 database ``name``, dropping any earlier one; its URL."""
    drop_database(name)
    _admin(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
    return database_url(name)


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A new empty database for the ``with`` block, dropped afterwards (also on failure)."""
    url = recreate_database(name)
    try:
        yield url
    finally:
        drop_database(name)


def migrated(url: str, **engine_options) -> Engine:
    """An engine on ``url`` with the schema brought up to the current migrations."""
    engine = make_engine(url, **engine_options)
    upgrade(engine)
    return engine


def patient_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM patient")).scalar_one()


def prepared_database(name: str, patients: int, build: Callable[[Engine], None], rebuild: bool = False) -> str:
    """A migrated database holding ``patients`` patients; its URL. Reused when it already holds
    exactly that many (and ``rebuild`` is not asked), else recreated and filled by ``build``."""
    if database_exists(name) and not rebuild:
        engine = migrated(database_url(name))
        have = patient_count(engine)
        engine.dispose()
        if have == patients:
            return database_url(name)
    engine = migrated(recreate_database(name))
    started = time.perf_counter()
    build(engine)
    print(f"built {patients:,} patients / {4 * patients:,} follow-ups in {time.perf_counter() - started:.1f} s")
    engine.dispose()
    return database_url(name)


def write_county(folder: Path, patients: int, *, seed: int, followups_per_patient: int) -> dict:
    """The synthetic county (``registry.synthetic``) as contract.md CSV files in ``folder``."""
    from registry.synthetic import write_county_csv  # noqa: PLC0415

    return write_county_csv(folder, patients=patients, seed=seed, today=TODAY,
                            followups_per_patient=followups_per_patient)


def load_county(engine: Engine, folder: Path, patients: int, *, seed: int, followups_per_patient: int) -> dict:
    """Write the synthetic county into ``folder`` and import it all (``registry.importing``)."""
    from registry.importing import import_path  # noqa: PLC0415

    counts = write_county(folder, patients, seed=seed, followups_per_patient=followups_per_patient)
    import_path(engine, folder, today=TODAY)
    return counts
