"""可存储文本 Text the register accepts: the one character check of every input path (import cells,
forms, API bodies, patient ids in URLs, logins, query parameters), applied by
``registry.validation`` to every field and by the web before any value reaches SQL.

Refused (issue 18): NUL and the other C0 control characters, DEL, the C1 controls, lone
surrogates (PostgreSQL cannot store them; SQLite stores NUL silently) and the bidirectional
formatting characters (U+200E/U+200F, U+202A–U+202E, U+2066–U+2069) that make a name read
differently from what is stored. Tab, line feed and carriage return are allowed only in a
field that holds several lines (``multiline``).
"""

from __future__ import annotations

import re

_ALWAYS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
BAD_CHARS = re.compile(f"[{_ALWAYS}]")
BAD_CHARS_SINGLE_LINE = re.compile(f"[{_ALWAYS}\t\n\r]")


def bad_char(value: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """The first refused character of ``value``: (1-based position, its U+ code), or None."""
    found = (BAD_CHARS if multiline else BAD_CHARS_SINGLE_LINE).search(value)
    if found is None:
        return None
    return found.start() + 1, f"U+{ord(found.group()):04X}"


def bad_text_message(value: str, *, multiline: bool = False) -> str | None:
    """无效字符 The Chinese reason ``value`` is refused, or None when it may be stored."""
    found = bad_char(value, multiline=multiline)
    if found is None:
        return None
    return f"第{found[0]}个字符 {found[1]} 是控制字符或双向文本控制符，不能录入"


def bad_text(value: str, *, multiline: bool = True) -> bool:
    """无效字符 Whether ``value`` holds a refused character (tab and line breaks allowed unless not
    ``multiline``): the web's check before a value reaches SQL."""
    return (BAD_CHARS if multiline else BAD_CHARS_SINGLE_LINE).search(value) is not None
