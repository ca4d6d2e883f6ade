"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL: one scratch database per pytest process (``jf_test_<pid>``) on the server at
``JINGFANG_TEST_PG`` (default 127.0.0.1:5432, trust auth), migrated once and truncated
before each test. SQLite: a migrated template file copied per test. No database mocks.
Set ``JINGFANG_TEST_SKIP_PG=1`` only to work without a server; CI never sets it.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from registry import db as dbmod
from registry.config import get_settings
from registry.db import make_engine, upgrade

FIXTURES = Path(__file__).parent / "fixtures"
PG_SERVER = os.environ.get("JINGFANG_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
SKIP_PG = os.environ.get("JINGFANG_TEST_SKIP_PG") == "1"
BACKENDS = ["sqlite"] if SKIP_PG else ["sqlite", "postgresql"]


class Database:
    """A migrated, empty test database: its URL, an engine, and its backend name."""

    def __init__(self, backend: str, url: str, engine: sa.Engine):
        self.backend = backend
        self.url = url
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_url():
    if SKIP_PG:
        pytest.skip("JINGFANG_TEST_SKIP_PG=1")
    name = f"jf_test_{os.getpid()}"
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
    url = f"{PG_SERVER}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    dbmod.dispose_all()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def _truncate_pg(engine: sa.Engine) -> None:
    names = [t for t in sa.inspect(engine).get_table_names() if t != "alembic_version"]
    if names:
        with engine.begin() as conn:
            # a connection an earlier test left in a transaction would block this forever: fail instead
            conn.exec_driver_sql("SET LOCAL lock_timeout = '60s'")
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE")


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Settings are read once per process (registry.config): each test reads its own environment
    (a test that changes a JINGFANG_ variable halfway calls get_settings.cache_clear())."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path) -> Database:
    """An empty migrated database, once per backend (the test runs twice)."""
    backend = request.param
    if backend == "sqlite":
        path = tmp_path / "jingfang.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("_pg_url")
    engine = make_engine(url)
    if backend == "postgresql":
        _truncate_pg(engine)
    dbmod._engines[dbmod.normalise_url(url)] = engine  # get_engine(url) reuses it
    yield Database(backend, url, engine)
    dbmod._engines.pop(dbmod.normalise_url(url), None)
    engine.dispose()


@pytest.fixture
def session(database) -> Session:
    with database.session() as s:
        yield s


@pytest.fixture
def small_county() -> Path:
    """The spec's worked example (copied from shared/spec/examples/small-county)."""
    return FIXTURES / "small-county"


def d(text: str) -> date:
    return date.fromisoformat(text)


def pytest_collection_modifyitems(config, items):
    """PostgreSQL-only variants are not collected for SQLite: tests marked ``postgresql_only`` and
    the sharded half of tests taking the ``sharding`` fixture (tests/test_schedule_generation.py)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        pg_only = item.get_closest_marker("postgresql_only") is not None or params.get("sharding") is True
        (drop if pg_only and params.get("database") == "sqlite" else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

