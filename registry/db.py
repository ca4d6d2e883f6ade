"""数据库 Engines, sessions and schema upgrades for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from registry.config import get_settings, normalise_url

MIGRATIONS = Path(__file__).with_name("migrations")
_engines: dict[str, Engine] = {}


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """A new engine; SQLite gets foreign keys, WAL and a busy timeout."""
    url = normalise_url(url or get_settings().database_url)
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if ":memory:" not in url and url != "sqlite://":
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


def private_sqlite_file(url: str) -> Path | None:
    """数据库文件权限 The SQLite database file is readable by its owner only (0600, issue 18): created so
    before SQLite opens it, tightened when it exists with wider permissions. SQLite gives its -wal and
    -shm files the database file's permissions. Returns the path (None for an in-memory database)."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.exists():
        if path.parent.is_dir():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.exists() and path.stat().st_mode & 0o077:
        try:
            os.chmod(path, 0o600)
        except PermissionError:  # not ours: leave it to its owner
            pass
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_mode & 0o077:
            try:
                os.chmod(side, 0o600)
            except PermissionError:
                pass
    return path


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for a URL (created once), with its schema upgraded."""
    url = normalise_url(url or get_settings().database_url)
    if url not in _engines:
        engine = make_engine(url)
        upgrade(engine)
        _engines[url] = engine
    return _engines[url]


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to every head (Alembic; each capability has its own branch)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "heads")
