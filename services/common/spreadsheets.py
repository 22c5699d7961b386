"""Cells of the CSV and xlsx files Tongyuan writes for people to open: text stays text.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return,
which it skips) as a formula, so a title like `=HYPERLINK("http://…","点此")` or a DDE payload
typed into an old site or a catalog would run on a clerk's machine when they open an export
(OWASP "CSV Injection"). Every writer passes its cells through here:

- CSV has no types, so such text gets a leading single quote, which spreadsheets read as "text"
  (`csv_text`); `csv_text_back` undoes it exactly when the file is read back.
- xlsx has types: such text is stored as a string cell (openpyxl would otherwise store a str
  starting with `=` as a formula) carrying Excel's quote-prefix flag, the file-format form of the
  typed apostrophe: shown as typed, and still text when someone edits the cell. The value itself
  is unchanged, so a workbook that is exported, edited and imported again reads the same text.

Numbers and dates are not text and pass unchanged (a negative number stays a number), and so
does text that is nothing but a number ("-5"): a spreadsheet reads that as the number it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from openpyxl.cell import Cell, WriteOnlyCell

FORMULA_STARTS = "=+-@\t\r"
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Text a spreadsheet would run, after any quotes a writer put in front of it.
_AFTER_QUOTES = re.compile(r"'*[=+\-@\t\r]")


def looks_like_formula(text: str) -> bool:
    return bool(text) and text[0] in FORMULA_STARTS and not _PLAIN_NUMBER.fullmatch(text)


def csv_text(text: str) -> str:
    """The text as a CSV cell: a quote in front of anything a spreadsheet would run. Text that
    already starts with quotes before such a character gets one more, so that `csv_text_back`
    restores every text exactly."""
    if _AFTER_QUOTES.match(text) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text_back(text: str) -> str:
    """What `csv_text` was given."""
    if text.startswith("'") and _AFTER_QUOTES.match(text, 1):
        return text[1:]
    return text


def csv_cell(value: object) -> object:
    """A value for csv.writer: text neutralised, anything else (numbers, dates) as it is."""
    return csv_text(value) if isinstance(value, str) else value


def keep_text(cell: Cell) -> Cell:
    """Make an openpyxl cell that holds text a spreadsheet would run a plain, quote-prefixed
    string cell (its value unchanged); other cells are left alone."""
    if isinstance(cell.value, str) and looks_like_formula(cell.value):
        cell.data_type = "s"
        cell.quotePrefix = True
    return cell


def xlsx_cell(sheet, value: object) -> object:
    """A value for `sheet.append` (normal or write-only sheet): text a spreadsheet would run
    becomes a text cell; anything else goes in as it is."""
    if isinstance(value, str) and looks_like_formula(value):
        return keep_text(WriteOnlyCell(sheet, value=value))
    return value


def xlsx_row(sheet, values: Iterable[object]) -> list[object]:
    return [xlsx_cell(sheet, value) for value in values]
