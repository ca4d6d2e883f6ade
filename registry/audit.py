"""审计 Writing the audit log (rules.md §8): every read, search, export and write of patient data."""

from __future__ import annotations

import getpass
import re

from sqlalchemy.engine import Connection, Engine

from registry.ids import mask
from registry.models import AuditLog, utcnow

# a run of digits (an 18-character ID may end in X) long enough to be an ID number or part of one
_LONG_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{10,17}[0-9Xx]?(?![0-9A-Za-z])")


def _mask_number(match: re.Match) -> str:
    text = match.group(0)
    if len(text) >= 15:
        return mask(text)  # rules.md §8: first 6 and last 4
    return text[:3] + "*" * (len(text) - 5) + text[-2:]


def redact(text: str | None) -> str | None:
    """脱敏 Mask ID numbers (and any long digit run) in audit text (rules.md §8, issue 18): a search by
    ID number must not store the full number in a log that county admins read."""
    return None if text is None else _LONG_NUMBER.sub(_mask_number, text)


def _storable(text: str) -> str:
    """Text any database stores: no NUL or other control characters, no lone surrogates (a probe's path)."""
    if text.isprintable():
        return text
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(c if c.isprintable() else "?" for c in text)


def audit_row(*, actor: str, action: str, object_type: str, object_id: str | None = None,
              region_code: str | None = None, detail: str | None = None, source: str | None = None) -> dict:
    return {
        "at": utcnow(), "actor": _storable(actor[:100]), "action": action, "object_type": object_type,
        "object_id": None if object_id is None else _storable(str(object_id)[:200]), "region_code": region_code,
        "detail": None if detail is None else _storable(redact(detail)[:1000]), "source": source,
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
