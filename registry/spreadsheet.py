"""表格单元格 Spreadsheet cells that are text, never formulas (issue 18, issue 13).

The one home of the formula-safe cell: the 五单 workbooks (``schedules.lists``) and the register
export (``registry.exporting``) write every string as a text cell (openpyxl ``data_type 's'``); a
value a spreadsheet would read as a formula (it starts with ``= + - @``, a tab or a carriage return)
also carries the quote prefix, so editing it in Excel keeps it text. The value itself is unchanged
when read back.
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_like(value: object) -> bool:
    """像公式 Whether a spreadsheet would read ``value`` as a formula."""
    return isinstance(value, str) and value.startswith(FORMULA_START)


def _storable(value: object) -> object:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    # a control character stored before validation refused it (issue 18) is shown as U+FFFD: openpyxl
    # refuses it, and one bad value must not stop the whole workbook
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value) if isinstance(value, str) else value


def text_row(sheet, values: list) -> None:
    """文本单元格 Append a row whose text cells are text, never formulas (``data_type 's'``, the
    quote prefix on a formula-looking value). For a normal (not write-only) sheet."""
    sheet.append([_storable(v) for v in values])
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"
            if cell.value.startswith(FORMULA_START):
                cell.quotePrefix = True


def text_cell(cell, value) -> None:
    """文本单元格 Set one cell of a normal sheet to ``value`` as text whatever it holds (blank for None):
    never a formula, the quote prefix on a formula-looking value."""
    text = "" if value is None else str(_storable(str(value)))
    cell.value = None
    cell._value = text  # set directly: assigning "=…" would make it a formula
    cell.data_type = "s"
    if text.startswith(FORMULA_START):
        cell.quotePrefix = True


def text_cells(sheet, values: list) -> list:
    """文本单元格（流式） The cells of one row of a write-only sheet (``Workbook(write_only=True)``):
    strings as text cells, never formulas, with the quote prefix on a formula-looking value."""
    from openpyxl.cell import WriteOnlyCell

    cells = []
    for value in values:
        if isinstance(value, str):
            cell = WriteOnlyCell(sheet, value=None)
            cell._value = _storable(value)  # set directly: assigning "=…" would make it a formula
            cell.data_type = "s"
            if value.startswith(FORMULA_START):
                cell.quotePrefix = True
            cells.append(cell)
        else:
            cells.append(value)
    return cells
