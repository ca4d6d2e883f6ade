"""文本表格 Plain-text tables for the terminal, aligned for CJK (the demo and ``jingfang rates``)."""

from __future__ import annotations


def display_width(text: str) -> int:
    """Terminal columns of a string: CJK characters take two."""
    return sum(2 if ord(ch) >= 0x2E80 else 1 for ch in text)


def pad(text, width: int, right: bool = False) -> str:
    text = str(text)
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def table_lines(header: list[str], rows: list[list], widths: list[int]) -> list[str]:
    """A plain-text table aligned for CJK; the first column left, the rest right."""
    lines = []
    for row in [header, *rows]:
        lines.append("".join(pad(v, w, right=i > 0) for i, (v, w) in enumerate(zip(row, widths))))
    return lines
