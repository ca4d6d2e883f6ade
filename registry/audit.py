"""审计 Writing the audit log (rules.md §8): every read, search, export and write of patient data."""

from __future__ import annotations

import getpass

from sqlalchemy.engine import Connection, Engine

from registry.models import AuditLog, utcnow


def audit_row(*, actor: str, action: str, object_type: str, object_id: str | None = None,
              region_code: str | None = None, detail: str | None = None, source: str | None = None) -> dict:
    return {
        "at": utcnow(), "actor": actor[:100], "action": action, "object_type": object_type,
        "object_id": None if object_id is None else str(object_id)[:200], "region_code": region_code,
        "detail": None if detail is None else detail[:1000], "source": source,
    }


def record(conn: Connection | Engine, **fields) -> None:
    """Append one audit row (in the caller's transaction when given a connection)."""
    stmt = AuditLog.__table__.insert().values(**audit_row(**fields))
    if isinstance(conn, Engine):
        with conn.begin() as c:
            c.execute(stmt)
    else:
        conn.execute(stmt)


def cli_actor() -> str:
    """The actor of a command-line action: ``cli:<operating-system user>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}"


def record_cli(engine: Engine, **fields) -> None:
    """Audit a command-line action; the actor is the operating-system user."""
    record(engine, actor=cli_actor(), source="cli", **fields)
