"""Catalog ⇄ Excel (.xlsx) in the table layout county offices actually use.

`export_catalog` (xlsx_write) writes one worksheet per domain that has level-1 items:

    row 1   title merged across the table: "社会救助领域基层政务公开标准目录"
    row 2-3 two-row header; grouped columns merged over their sub-columns:
            A 序号 | B-C 公开事项 (一级事项, 二级事项) | D 公开内容（要素） | E 公开依据 | F 公开时限 |
            G 公开主体 | H 公开渠道和载体 | I-J 公开对象 (全社会, 特定群体) |
            K-L 公开方式 (主动, 依申请) | M-N 公开层级 (县级, 乡级) | O 备注 | P 事项编码
    row 4…  one row per level-2 item; 序号 and 一级事项 merged vertically over the level-1 item's
            rows. A level-1 item without level-2 items gets one row with only 序号/一级事项/事项编码.
            Channels joined with "、"; ticks are "√"; 备注 says "未核实" for unverified items;
            事项编码 holds the level-2 id (the level-1 id on an item-less level-1 row).

A domain holding a value the tick sub-columns cannot carry (公开层级 "村级" or "州级、乡级" in
the standard catalog's unverified supplement) gets that group as one text column instead
("县级、乡级"), so that export → import is exact for every catalog.

`import_catalog` (xlsx_read) reads that layout and the variants real files contain (see its
docstring), and either returns a whole new catalog or raises `CatalogImportError` listing every
problem found. Both are pure functions: no database, no I/O beyond the bytes given.

This module holds what both directions share: the layout's vocabulary, the problems an import
reports, and how a cell's text is normalised.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from openpyxl.utils import get_column_letter

TICK = "√"
CHANNEL_JOIN = "、"
UNVERIFIED = "未核实"
AUDIENCES = ("全社会", "特定群体")
METHODS = ("主动", "依申请")
LEVELS = ("县级", "乡级")
TITLE_SUFFIX = "领域基层政务公开标准目录"
SHEET_TITLE_MAX = 31


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an imported workbook, located like Excel does (`社会救助!C7`)."""

    sheet: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.column or ''}{self.row if self.row is not None else ''}"
        if self.sheet and where:
            return f"{self.sheet}!{where}: {self.message}"
        if self.sheet:
            return f"{self.sheet}: {self.message}"
        if where:
            return f"{where}: {self.message}"
        return self.message


class CatalogImportError(Exception):
    """The workbook was refused; `problems` lists everything wrong with it at once."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"catalog workbook refused, {count} problem{'s' if count != 1 else ''}:\n{lines}")

    def __reduce__(self):  # it comes back from the worker process that parsed the workbook
        return (CatalogImportError, (self.problems,))


class Collector:
    def __init__(self) -> None:
        self._items: list[tuple[int, int, int, int, Problem]] = []
        self._sheets: dict[str, int] = {}

    def add(self, sheet: str, row: int | None, column: int | None, message: str) -> None:
        order = self._sheets.setdefault(sheet, len(self._sheets))
        letter = get_column_letter(column) if column else None
        self._items.append((order, row or 0, column or 0, len(self._items), Problem(sheet, row, letter, message)))

    def __bool__(self) -> bool:
        return bool(self._items)

    def problems(self) -> list[Problem]:
        return [item[-1] for item in sorted(self._items, key=lambda item: item[:4])]


ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000\u202f\u205f\ufeff]+")
_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)) for c in range(r[0], r[1] + 1)}
_DASHES = re.compile(r"[\u2010-\u2015\u2212\uff0d\u30fc]")
_CHANNEL_SPLIT = re.compile(r"[、，,；;\n]+")


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "date") and hasattr(value, "isoformat"):  # datetime
        return value.date().isoformat() if hasattr(value, "hour") else value.isoformat()
    return str(value)


def one_line(text: str) -> str:
    """One line: stripped, runs of spaces (incl. full-width "　") collapsed to one."""
    return _SPACES.sub(" ", text.translate(_FULLWIDTH_ALNUM)).strip()


def free_text(raw: str) -> str:
    """Free text: each line normalised, blank lines dropped, line breaks kept."""
    lines = (one_line(part) for part in ILLEGAL.sub("", raw).replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(part for part in lines if part)


def item_name(raw: str) -> str:
    """An item name: a single line."""
    return one_line(ILLEGAL.sub("", raw).replace("\r", " ").replace("\n", " "))


def item_code(raw: str) -> str:
    """An item code: half-width, no spaces, upper case ("Ｄ１４－０２ " → "D14-02")."""
    return re.sub(r"\s+", "", _DASHES.sub("-", unicodedata.normalize("NFKC", raw))).upper()


def label_text(raw: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw))


def tokens(value: str | None) -> tuple[str, ...]:
    return tuple(t for t in (one_line(p) for p in _CHANNEL_SPLIT.split(value or "")) if t)


_TICKS = {"√", "✓", "✔", "☑", "✅", "●", "是", "Y", "YES", "1", "TRUE", "V", "对"}
_NO_TICKS = {"", "否", "×", "✗", "✘", "X", "N", "NO", "0", "FALSE", "-", "/", "无"}


def tick(raw: str) -> bool | None:
    value = item_code(raw)
    if value in _TICKS:
        return True
    if value in _NO_TICKS:
        return False
    return None
