"""可存储文本 Text both databases can store: the one check the web applies before any value
reaches SQL (forms, API bodies, patient ids in URLs, logins)."""

from __future__ import annotations


def bad_text(value: str) -> bool:
    """无效字符 Text PostgreSQL cannot store (NUL, lone surrogates): refused before it reaches SQL."""
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
