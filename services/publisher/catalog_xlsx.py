"""Catalog ⇄ Excel (.xlsx) in the table layout county offices actually use.

`export_catalog` writes one worksheet per domain that has level-1 items:

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

`import_catalog` reads that layout and the variants real files contain (see its docstring), and
either returns a whole new catalog or raises `CatalogImportError` listing every problem found.
Both are pure functions: no database, no I/O beyond the bytes given.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Border, Font, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from contracts.catalog import Catalog, Domain, Level1Item, Level2Item
from services.common.spreadsheets import keep_text

__all__ = ["CatalogImportError", "Problem", "export_catalog", "import_catalog"]

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


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Col:
    header: str
    sub: str | None
    width: float
    value: Callable[[Level2Item], str | None]
    centered: bool = False


def _ticked(field_: str, option: str) -> Callable[[Level2Item], str | None]:
    def value(item: Level2Item) -> str | None:
        current = getattr(item, field_)
        chosen = _tokens(current) if field_ == "audience" else (current,) if field_ == "method" else current
        return TICK if option in chosen else None

    return value


_CHOICE_HEADERS = {"audience": ("公开对象", AUDIENCES), "method": ("公开方式", METHODS), "levels": ("公开层级", LEVELS)}


def _as_ticks(field_: str, item: Level2Item) -> bool:
    """Whether the item's value fits the tick sub-columns exactly (else the column is text)."""
    value = getattr(item, field_)
    if field_ == "audience":
        chosen = _tokens(value)
        return all(t in AUDIENCES for t in chosen) and CHANNEL_JOIN.join(chosen) == (value or "")
    if field_ == "method":
        return value is None or value in METHODS
    return tuple(value) == tuple(o for o in LEVELS if o in value)


def _columns(domain: Domain) -> list[_Col]:
    items = [item for level1 in domain.level1 for item in level1.items]
    columns = [
        _Col("序号", None, 6, lambda _: None, True),
        _Col("公开事项", "一级事项", 16, lambda _: None),
        _Col("公开事项", "二级事项", 18, lambda i: i.name),
        _Col("公开内容（要素）", None, 40, lambda i: i.content),
        _Col("公开依据", None, 34, lambda i: i.basis),
        _Col("公开时限", None, 22, lambda i: i.time_limit),
        _Col("公开主体", None, 22, lambda i: i.subject),
        _Col("公开渠道和载体", None, 24, lambda i: CHANNEL_JOIN.join(i.channels)),
    ]
    for field_, (header, options) in _CHOICE_HEADERS.items():
        if all(_as_ticks(field_, item) for item in items):
            columns += [_Col(header, option, 7, _ticked(field_, option), True) for option in options]
        else:  # values the tick sub-columns cannot carry (e.g. 公开层级 "村级"): one text column
            text = (lambda f: lambda i: CHANNEL_JOIN.join(i.levels) if f == "levels" else getattr(i, f))(field_)
            columns.append(_Col(header, None, 12, text, True))
    columns += [
        _Col("备注", None, 10, lambda i: None if i.verified else UNVERIFIED, True),
        _Col("事项编码", None, 13, lambda i: i.id, True),
    ]
    return columns


_HEADER_ROWS = (2, 3)
_FIRST_DATA_ROW = 4
_THIN = Side(style="thin")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_WRAP = Alignment(wrap_text=True, vertical="center")
_CENTER = Alignment(wrap_text=True, vertical="center", horizontal="center")
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def export_catalog(catalog: Catalog) -> bytes:
    """The catalog as an .xlsx workbook, one worksheet per domain with level-1 items."""
    workbook = Workbook()
    default = workbook.active
    sheets = 0
    for domain in catalog.domains:
        if not domain.level1:
            continue
        _export_domain(workbook.create_sheet(domain.name[:SHEET_TITLE_MAX]), domain)
        sheets += 1
    if sheets:
        workbook.remove(default)
    else:  # a workbook needs one sheet; an empty one is skipped on import
        default.title = "目录"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _put(ws: Worksheet, row: int, column: int, value: object, alignment: Alignment = _WRAP) -> None:
    cell = ws.cell(row=row, column=column)
    if isinstance(value, str):
        value = _ILLEGAL.sub("", value)
        cell.value = value or None
        keep_text(cell)  # text, never a formula
    else:
        cell.value = value
    cell.alignment = alignment


def _export_domain(ws: Worksheet, domain: Domain) -> None:
    columns = _columns(domain)
    ncols = len(columns)
    _put(ws, 1, 1, f"{domain.name}{TITLE_SUFFIX}", _CENTER)
    ws.cell(row=1, column=1).font = Font(bold=True, size=14)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncols)
    ws.row_dimensions[1].height = 30

    top, bottom = _HEADER_ROWS
    column = 1
    while column <= ncols:
        spec = columns[column - 1]
        span = 1
        while spec.sub is not None and column + span <= ncols and columns[column + span - 1].header == spec.header:
            span += 1
        _put(ws, top, column, spec.header, _CENTER)
        if spec.sub is None:
            ws.merge_cells(start_row=top, start_column=column, end_row=bottom, end_column=column)
        else:
            for offset in range(span):
                _put(ws, bottom, column + offset, columns[column + offset - 1].sub, _CENTER)
            if span > 1:
                ws.merge_cells(start_row=top, start_column=column, end_row=top, end_column=column + span - 1)
        column += span
    for row in _HEADER_ROWS:
        for column in range(1, ncols + 1):
            ws.cell(row=row, column=column).font = Font(bold=True)

    row = _FIRST_DATA_ROW
    for number, level1 in enumerate(domain.level1, start=1):
        first = row
        _put(ws, row, 1, number, _CENTER)
        _put(ws, row, 2, level1.name)
        if not level1.items:  # a level-1 item without level-2 items: one row, its own code
            _put(ws, row, ncols, level1.id, _CENTER)
            row += 1
        for item in level1.items:
            for c, spec in enumerate(columns[2:], start=3):
                _put(ws, row, c, spec.value(item), _CENTER if spec.centered else _WRAP)
            row += 1
        if row - first > 1:
            ws.merge_cells(start_row=first, start_column=1, end_row=row - 1, end_column=1)
            ws.merge_cells(start_row=first, start_column=2, end_row=row - 1, end_column=2)

    for r in range(top, row):
        for c in range(1, ncols + 1):
            ws.cell(row=r, column=c).border = _BORDER
    for c, spec in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(c)].width = spec.width
    ws.freeze_panes = ws.cell(row=_FIRST_DATA_ROW, column=4)  # below the header, item names kept in view
    ws.print_title_rows = f"{top}:{bottom}"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000\u202f\u205f\ufeff]+")
_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)) for c in range(r[0], r[1] + 1)}
_DASHES = re.compile(r"[\u2010-\u2015\u2212\uff0d\u30fc]")
_CHANNEL_SPLIT = re.compile(r"[、，,；;\n]+")


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "date") and hasattr(value, "isoformat"):  # datetime
        return value.date().isoformat() if hasattr(value, "hour") else value.isoformat()
    return str(value)


def _line(text: str) -> str:
    """One line: stripped, runs of spaces (incl. full-width "　") collapsed to one."""
    return _SPACES.sub(" ", text.translate(_FULLWIDTH_ALNUM)).strip()


def _text(raw: str) -> str:
    """Free text: each line normalised, blank lines dropped, line breaks kept."""
    lines = (_line(part) for part in _ILLEGAL.sub("", raw).replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(part for part in lines if part)


def _name(raw: str) -> str:
    """An item name: a single line."""
    return _line(_ILLEGAL.sub("", raw).replace("\r", " ").replace("\n", " "))


def _code(raw: str) -> str:
    """An item code: half-width, no spaces, upper case ("Ｄ１４－０２ " → "D14-02")."""
    return re.sub(r"\s+", "", _DASHES.sub("-", unicodedata.normalize("NFKC", raw))).upper()


def _label(raw: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw))


def _tokens(value: str | None) -> tuple[str, ...]:
    return tuple(t for t in (_line(p) for p in _CHANNEL_SPLIT.split(value or "")) if t)


_TICKS = {"√", "✓", "✔", "☑", "✅", "●", "是", "Y", "YES", "1", "TRUE", "V", "对"}
_NO_TICKS = {"", "否", "×", "✗", "✘", "X", "N", "NO", "0", "FALSE", "-", "/", "无"}


def _tick(raw: str) -> bool | None:
    value = _code(raw)
    if value in _TICKS:
        return True
    if value in _NO_TICKS:
        return False
    return None


# --------------------------------------------------------------------------------------------
# Header recognition
# --------------------------------------------------------------------------------------------

_SIMPLE = ("seq", "level1", "level2", "content", "basis", "time_limit", "subject", "channels", "note", "code")
_CHOICE = ("audience", "method", "levels")
_LABELS = {
    "seq": "序号",
    "level1": "一级事项",
    "level2": "二级事项",
    "content": "公开内容",
    "basis": "公开依据",
    "time_limit": "公开时限",
    "subject": "公开主体",
    "channels": "公开渠道和载体",
    "audience": "公开对象",
    "method": "公开方式",
    "levels": "公开层级",
    "note": "备注",
    "code": "事项编码",
}
_REQUIRED = ("level1", "level2", "content", "basis", "time_limit", "subject", "channels", "audience", "method", "levels")
# (label prefix, field); longest prefixes first so "公开事项" is not read as something shorter.
_TOP_PREFIXES = sorted(
    [
        ("序号", "seq"),
        ("一级事项", "level1"),
        ("一级目录", "level1"),
        ("二级事项", "level2"),
        ("二级目录", "level2"),
        ("公开事项", "items"),
        ("公开内容", "content"),
        ("公开要素", "content"),
        ("公开依据", "basis"),
        ("公开时限", "time_limit"),
        ("公开时间", "time_limit"),
        ("公开主体", "subject"),
        ("公开渠道", "channels"),
        ("公开载体", "channels"),
        ("公开对象", "audience"),
        ("公开方式", "method"),
        ("公开层级", "levels"),
        ("备注", "note"),
        ("事项编码", "code"),
        ("事项代码", "code"),
        ("编码", "code"),
    ],
    key=lambda pair: -len(pair[0]),
)


def _top_field(label: str) -> str | None:
    text = _label(label)
    return next((key for prefix, key in _TOP_PREFIXES if text.startswith(prefix)), None)


def _sub_field(label: str) -> tuple[str, str | None] | None:
    """A sub-header: ("level1", None), ("audience", "全社会"), ("levels", "乡级") …"""
    text = _label(label)
    if text.startswith("一级"):
        return ("level1", None)
    if text.startswith("二级"):
        return ("level2", None)
    if text.startswith("全社会") or text.startswith("社会公众"):
        return ("audience", AUDIENCES[0])
    if text.startswith("特定"):
        return ("audience", AUDIENCES[1])
    if text.startswith("主动"):
        return ("method", METHODS[0])
    if text.startswith("依申请"):
        return ("method", METHODS[1])
    if text.startswith("县"):
        return ("levels", LEVELS[0])
    if text.startswith("乡") or text.startswith("镇") or text.startswith("街道"):
        return ("levels", LEVELS[1])
    return None


# --------------------------------------------------------------------------------------------
# Reading a sheet
# --------------------------------------------------------------------------------------------


class _Grid:
    """Cell texts of a worksheet plus where its merged ranges are."""

    def __init__(self, ws: Worksheet) -> None:
        self.title = ws.title
        self.values: dict[tuple[int, int], str] = {}
        for row in ws.iter_rows():
            for cell in row:
                if cell.value is not None:
                    text = _cell_text(cell.value)
                    if text.strip():
                        self.values[(cell.row, cell.column)] = text
        self.merges: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        for merged in ws.merged_cells.ranges:
            box = (merged.min_row, merged.min_col, merged.max_row, merged.max_col)
            for r in range(merged.min_row, merged.max_row + 1):
                for c in range(merged.min_col, merged.max_col + 1):
                    self.merges[(r, c)] = box
        self.by_row: dict[int, list[int]] = {}
        for r, c in self.values:
            self.by_row.setdefault(r, []).append(c)
        self.max_row = max([r for r, _ in self.values] + [r for r, _ in self.merges] + [0])
        self.max_col = max([c for _, c in self.values] + [c for _, c in self.merges] + [0])

    def own(self, r: int, c: int) -> str:
        return self.values.get((r, c), "")

    def filled(self, r: int, c: int) -> str:
        """The value shown in a cell, merged ranges included."""
        box = self.merges.get((r, c))
        return self.values.get((box[0], box[1]), "") if box else self.own(r, c)

    def down(self, r: int, c: int) -> str:
        """The value of a cell, filled down a vertical merge (only its first column)."""
        box = self.merges.get((r, c))
        if box and box[1] == c:
            return self.values.get((box[0], box[1]), "")
        return self.own(r, c)


@dataclass
class _Layout:
    header_row: int
    first_data_row: int
    simple: dict[str, int] = field(default_factory=dict)
    text_choice: dict[str, int] = field(default_factory=dict)
    ticks: dict[str, dict[str, int]] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.simple or key in self.text_choice or bool(self.ticks.get(key))

    def column(self, key: str) -> int | None:
        if key in self.simple:
            return self.simple[key]
        if key in self.text_choice:
            return self.text_choice[key]
        ticks = self.ticks.get(key)
        return min(ticks.values()) if ticks else None


def _find_header(grid: _Grid) -> int | None:
    for r in range(1, min(grid.max_row, 30) + 1):
        found = {_top_field(grid.filled(r, c)) for c in range(1, grid.max_col + 1)} - {None}
        if len(found) >= 4:
            return r
    return None


def _layout(grid: _Grid, header: int) -> _Layout:
    below = header + 1

    def sub_text(c: int) -> str:
        box = grid.merges.get((below, c))
        if box and box[0] <= header:  # a header merged down over the sub-header row
            return ""
        return grid.filled(below, c)

    subs = {c: sub_text(c) for c in range(1, grid.max_col + 1)}
    present = [text for text in subs.values() if text]
    two_rows = bool(present) and all(_sub_field(text) or _top_field(text) for text in present) and any(_sub_field(t) for t in present)
    layout = _Layout(header_row=header, first_data_row=header + (2 if two_rows else 1))
    for c in range(1, grid.max_col + 1):
        top = _top_field(grid.filled(header, c))
        sub = _sub_field(subs[c]) if two_rows and subs[c] else None
        if sub and sub[1] is None:  # 一级事项 / 二级事项 under 公开事项
            layout.simple.setdefault(sub[0], c)
        elif sub:
            layout.ticks.setdefault(sub[0], {}).setdefault(sub[1], c)
        elif top in _SIMPLE:
            layout.simple.setdefault(top, c)
        elif top in _CHOICE and top not in layout.ticks:
            layout.text_choice.setdefault(top, c)
    return layout


def _resolve(base: Catalog, text: str) -> Domain | None:
    """A domain named by a sheet name or title: exact name/alias first, then the one it contains."""
    key = _name(text)
    if not key:
        return None
    for candidate in (key, key.removesuffix("领域")):
        found = base.resolve_domain(candidate)
        if found is not None:
            return found
    names = [(name, d) for d in base.domains for name in (d.name, *d.aliases) if name and name in key]
    names = [(n, d) for n, d in names if not any(n != m and n in m for m, _ in names)]
    codes = {d.code for _, d in names}
    return names[0][1] if len(codes) == 1 else None


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


@dataclass
class _Row:
    number: int
    level1: str
    code: str
    placeholder: bool  # a level-1 item row without level-2 data
    name: str = ""
    content: str = ""
    basis: str = ""
    time_limit: str = ""
    subject: str = ""
    channels: tuple[str, ...] = ()
    audience: str | None = None
    method: str | None = None
    levels: tuple[str, ...] = ()
    note: str | None = None
    valid_code: bool = False
    # Required values that are missing: problems unless the item is marked 未核实.
    missing: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Group:
    name: str
    first_row: int
    rows: list[_Row] = field(default_factory=list)
    id: str | None = None


class _Base:
    """Where every id of the base catalog lives."""

    def __init__(self, base: Catalog) -> None:
        self.level2: dict[str, tuple[Domain, Level1Item, Level2Item]] = {}
        self.level1: dict[str, tuple[Domain, Level1Item]] = {}
        for domain in base.domains:
            for level1 in domain.level1:
                self.level1[level1.id] = (domain, level1)
                for item in level1.items:
                    self.level2[item.id] = (domain, level1, item)
        self.ids = set(self.level1) | set(self.level2)


class _Collector:
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


def import_catalog(data: bytes, *, base: Catalog) -> Catalog:
    """A new catalog: `base` with the domains found in the workbook replaced (all or nothing).

    - Sheets map to domains by sheet name, else by title row, via `base.resolve_domain` (aliases
      work; a name containing exactly one domain name, such as "社会救助领域", also does).
      Completely empty sheets are skipped; any other unmapped sheet is a problem.
    - The header is found by its text: a one- or two-row header, 公开事项 over 一级事项/二级事项 or
      those two directly, 公开对象/公开方式/公开层级 as tick sub-columns or as one text column.
      序号, 备注 and 事项编码 are optional.
    - Merged cells are read from their top-left cell; an empty 一级事项 continues the item above;
      blank rows and one-cell note rows merged across the table ("注：…") are ignored.
    - Text is normalised: stripped, runs of spaces (incl. "　") collapsed to one, full-width
      letters/digits made half-width; Chinese punctuation is kept, and so are line breaks inside
      公开内容/依据/时限/主体 (blank lines dropped); names are single lines. 事项编码 is made
      half-width without spaces ("Ｄ１４－０２－０３" → "D14-02-03"). Ticks: √ ✓ ✔ ● 是 …;
      channels split on 、，,；; and line breaks; a text 公开层级 keeps unknown levels ("村级").
    - Every problem is collected with its sheet/row/column before anything is refused: empty
      二级事项; empty 公开时限, 公开主体 or 公开方式 (allowed only on items marked 未核实, the
      standard catalog's incomplete supplement); both 主动 and 依申请; a name twice under one
      level-1 item; a 事项编码 used twice, unknown, or of another domain or level-1 item;
      unrecognised tick marks or choice texts; missing header columns; unmapped sheets.
    - Ids: a 事项编码 found in `base` is kept (renames survive). Without one, a row matches the base
      item with the same level-2 name under the same level-1 item; a renamed row without a code is
      therefore a new item, and the old item is dropped with the rest of what the sheet omits.
      New level-1 items get the next free "Dxx-NN", new level-2 items "<level-1>-101", "-102", ….
    - A domain whose sheet is present is replaced entirely; other domains stay as in `base`.
      `base`'s catalog-level fields are carried over unchanged.
    - 备注 "未核实" marks an item unverified; without a 备注 column a known item keeps its flag.
    """
    problems = _Collector()
    workbook = _open(data, problems)
    if workbook is None:
        raise CatalogImportError(problems.problems())
    index = _Base(base)
    replaced: dict[str, tuple[Level1Item, ...]] = {}
    sheet_of_domain: dict[str, str] = {}
    codes_seen: dict[str, tuple[str, int]] = {}
    for ws in workbook.worksheets:
        grid = _Grid(ws)
        if not grid.values:
            continue
        header = _find_header(grid)
        title_text = next((grid.own(r, c) for r in range(1, (header or 4)) for c in range(1, grid.max_col + 1) if grid.own(r, c)), "")
        domain = _resolve(base, ws.title) or (_resolve(base, title_text) if title_text else None)
        if domain is None:
            names = f"sheet name {ws.title!r}" + (f" and title {_name(title_text)!r}" if title_text else "")
            problems.add(ws.title, None, None, f"{names} name no domain of the catalog")
            continue
        if domain.code in sheet_of_domain:
            problems.add(ws.title, None, None, f"domain {domain.name} ({domain.code}) is already imported from sheet {sheet_of_domain[domain.code]!r}")
            continue
        sheet_of_domain[domain.code] = ws.title
        if header is None:
            expected = ", ".join(_LABELS[k] for k in _REQUIRED)
            problems.add(ws.title, None, None, f"unknown header layout: no header row found (expected columns {expected})")
            continue
        layout = _layout(grid, header)
        missing = [_LABELS[k] for k in _REQUIRED if not layout.has(k)]
        if missing:
            problems.add(ws.title, header, None, f"unknown header layout: missing columns {', '.join(missing)}")
            continue
        level1 = _import_sheet(grid, layout, domain, index, problems, codes_seen)
        replaced[domain.code] = level1
    if problems:
        raise CatalogImportError(problems.problems())
    domains = tuple(d.model_copy(update={"level1": replaced[d.code]}) if d.code in replaced else d for d in base.domains)
    return base.model_copy(update={"domains": domains})


def _open(data: bytes, problems: _Collector):
    if data[:4] == b"\xd0\xcf\x11\xe0":
        problems.add("", None, None, "this is an old Excel 97-2003 (.xls) file; save it as .xlsx and import again")
        return None
    try:
        return load_workbook(io.BytesIO(data), data_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable input is one clear problem
        problems.add("", None, None, f"the file is not an Excel .xlsx workbook ({type(error).__name__})")
        return None


def _read_rows(grid: _Grid, layout: _Layout, problems: _Collector) -> list[_Row]:
    sheet = grid.title
    simple, ticks, text_choice = layout.simple, layout.ticks, layout.text_choice
    l1_col = simple["level1"]
    item_cols = {c for key, c in simple.items() if key not in ("seq", "level1", "code")}
    item_cols |= set(text_choice.values()) | {c for options in ticks.values() for c in options.values()}
    rows: list[_Row] = []
    current = ""
    for r in range(layout.first_data_row, grid.max_row + 1):
        own = grid.by_row.get(r, [])
        if len(own) == 1:
            box = grid.merges.get((r, own[0]))
            if box and box[3] - box[1] >= 2 and box[2] == box[0]:
                continue  # "注：…" merged across the table
        value = {key: grid.down(r, c) for key, c in simple.items()}
        has_item = any(grid.down(r, c).strip() for c in item_cols)
        own_level1 = _name(grid.own(r, l1_col)) if (r, l1_col) not in grid.merges or grid.merges[(r, l1_col)][0] == r else ""
        level1 = _name(value["level1"]) or current
        code = _code(value.get("code", ""))
        if not has_item and not own_level1 and not code:
            continue  # blank row
        current = level1
        row = _Row(number=r, level1=level1, code=code, placeholder=not has_item)
        if not level1:
            problems.add(sheet, r, l1_col, f"{_LABELS['level1']} is empty")
        if row.placeholder:
            rows.append(row)
            continue
        row.name = _name(value["level2"])
        row.content = _text(value["content"])
        row.basis = _text(value["basis"])
        row.time_limit = _text(value["time_limit"])
        row.subject = _text(value["subject"])
        row.channels = tuple(dict.fromkeys(_tokens(value["channels"])))
        row.note = _text(value["note"]) if "note" in simple else None
        row.audience = _choice(grid, r, layout, "audience", problems, row.missing)
        row.method = _choice(grid, r, layout, "method", problems, row.missing)
        row.levels = _choice(grid, r, layout, "levels", problems, row.missing)
        if not row.name:
            problems.add(sheet, r, simple["level2"], f"{_LABELS['level2']} is empty")
        for key in ("time_limit", "subject"):
            if not getattr(row, key):
                row.missing.append((simple[key], f"{_LABELS[key]} is empty"))
        rows.append(row)
    return rows


def _choice(grid: _Grid, r: int, layout: _Layout, key: str, problems: _Collector, missing: list[tuple[int, str]]):
    sheet, label = grid.title, _LABELS[key]
    options = {"audience": AUDIENCES, "method": METHODS, "levels": LEVELS}[key]
    chosen: list[str] = []
    column = layout.column(key)
    if key in layout.text_choice:
        raw = _line(grid.down(r, column))
        if raw and key == "levels":  # 县级、乡级 / 县乡两级 / 村级: known levels normalised, others kept
            return tuple(dict.fromkeys(level for token in _tokens(raw) for level in _levels(token)))
        if raw:
            chosen = [o for o in options if _choice_in(key, o, raw)]
            if not chosen:
                problems.add(sheet, r, column, f"{label} {raw!r} is none of {'/'.join(options)}")
                return None if key != "levels" else ()
    else:
        for option, c in layout.ticks[key].items():
            raw = grid.down(r, c)
            ticked = _tick(raw)
            if ticked is None:
                problems.add(sheet, r, c, f"{label}/{option}: unrecognised tick mark {_line(raw)!r} (use √ or leave empty)")
            elif ticked:
                chosen.append(option)
        chosen = [o for o in options if o in chosen]
    if key == "method":
        if not chosen:
            missing.append((column, f"{label}: neither 主动 nor 依申请 is given"))
            return None
        if len(chosen) > 1:
            problems.add(sheet, r, column, f"{label}: both 主动 and 依申请 are given; choose one")
            return None
        return chosen[0]
    if key == "levels":
        return tuple(chosen)
    return CHANNEL_JOIN.join(chosen) or None


def _levels(token: str) -> tuple[str, ...]:
    if token in LEVELS:
        return (token,)
    found = tuple(o for o in LEVELS if _choice_in("levels", o, token))
    return found or (token,)


def _choice_in(key: str, option: str, text: str) -> bool:
    if key == "audience":
        return ("全社会" in text or "社会公众" in text) if option == AUDIENCES[0] else "特定" in text
    if key == "method":
        return option in text
    return "县" in text if option == LEVELS[0] else any(m in text for m in ("乡", "镇", "街道"))


def _import_sheet(
    grid: _Grid,
    layout: _Layout,
    domain: Domain,
    index: _Base,
    problems: _Collector,
    codes_seen: dict[str, tuple[str, int]],
) -> tuple[Level1Item, ...]:
    sheet = grid.title
    code_col = layout.simple.get("code")
    l1_col, l2_col = layout.simple["level1"], layout.simple["level2"]
    rows = _read_rows(grid, layout, problems)

    groups: dict[str, _Group] = {}
    for row in rows:
        group = groups.setdefault(row.level1, _Group(name=row.level1, first_row=row.number))
        group.rows.append(row)

    # Codes: known to base, in this domain, used once.
    for row in rows:
        if not row.code:
            continue
        found = index.level2.get(row.code) or index.level1.get(row.code)
        if found is None:
            problems.add(sheet, row.number, code_col, f"{_LABELS['code']} {row.code} is not in the base catalog (leave it empty for a new item)")
            continue
        if found[0].code != domain.code:
            problems.add(sheet, row.number, code_col, f"{_LABELS['code']} {row.code} belongs to domain {found[0].name} ({found[0].code}), not {domain.name}")
            continue
        if row.code in codes_seen:
            where = codes_seen[row.code]
            also = f"row {where[1]}" if where[0] == sheet else f"{where[0]}!{where[1]}"
            problems.add(sheet, row.number, code_col, f"{_LABELS['code']} {row.code} is used twice (also {also})")
            continue
        codes_seen[row.code] = (sheet, row.number)
        if row.placeholder and row.code in index.level2:
            problems.add(sheet, row.number, l2_col, f"{_LABELS['level2']} is empty but {_LABELS['code']} {row.code} is a level-2 item")
        elif not row.placeholder and row.code in index.level1:
            problems.add(sheet, row.number, code_col, f"{_LABELS['code']} {row.code} is a level-1 item code; give the level-2 code or none")
        else:
            row.valid_code = True

    # Level-1 ids: from the rows' codes, else by name, else new.
    by_name = {item.name: item.id for item in domain.level1}
    base_l1 = {item.id: item for item in domain.level1}
    owner: dict[str, _Group] = {}
    for group in groups.values():
        parents = Counter(_parent(row.code, index) for row in group.rows if row.valid_code)
        named = by_name.get(group.name)
        if parents:
            group.id = named if named in parents else parents.most_common(1)[0][0]
        else:
            group.id = named
        for row in group.rows:
            if row.valid_code and _parent(row.code, index) != group.id:
                level1 = index.level1[_parent(row.code, index)][1]
                problems.add(
                    sheet,
                    row.number,
                    code_col,
                    f"{_LABELS['code']} {row.code} belongs to level-1 item {level1.name} ({level1.id}), not {group.name}",
                )
                row.valid_code = False
        if group.id is not None:
            if group.id in owner:
                problems.add(
                    sheet,
                    group.first_row,
                    l1_col,
                    f"{_LABELS['level1']} {group.name} and {owner[group.id].name} are both level-1 item {group.id}",
                )
            owner.setdefault(group.id, group)
    used = set(index.ids)
    for group in groups.values():
        if group.id is None:
            group.id = _next_level1(domain.code, used)
        used.add(group.id)

    # Level-2 ids and items.
    result: list[Level1Item] = []
    for group in groups.values():
        items = [row for row in group.rows if not row.placeholder]
        seen: dict[str, int] = {}
        for row in items:
            if row.name and row.name in seen:
                problems.add(sheet, row.number, l2_col, f"{_LABELS['level2']} {row.name} appears twice under {group.name} (also row {seen[row.name]})")
            seen.setdefault(row.name, row.number)
        ids: dict[int, str] = {row.number: row.code for row in items if row.valid_code}
        claimed = set(ids.values())
        known = base_l1.get(group.id)
        for row in items:
            if row.number in ids:
                continue
            match = next((i.id for i in (known.items if known else ()) if i.name == row.name and i.id not in claimed), None)
            if match is None:
                match = _next_level2(group.id, used | claimed)
            ids[row.number] = match
            claimed.add(match)
        used |= claimed
        level2 = tuple(_item(row, ids[row.number], index) for row in items)
        for row, item in zip(items, level2, strict=True):
            if item.verified:
                for column, message in row.missing:
                    problems.add(sheet, row.number, column, message)
        result.append(Level1Item(id=group.id, name=group.name, items=level2))
    return tuple(result)


def _parent(code: str, index: _Base) -> str:
    if code in index.level2:
        return index.level2[code][1].id
    return index.level1[code][1].id


def _next_level1(domain_code: str, used: set[str]) -> str:
    numbers = [int(m[1]) for u in used if (m := re.fullmatch(rf"{domain_code}-(\d\d)", u))]
    n = max(numbers, default=0) + 1
    while n <= 99 and f"{domain_code}-{n:02d}" in used:
        n += 1
    if n <= 99:
        return f"{domain_code}-{n:02d}"
    n = 100
    while f"{domain_code}-{n}" in used:
        n += 1
    return f"{domain_code}-{n}"


def _next_level2(level1_id: str, used: set[str]) -> str:
    n = 101
    while f"{level1_id}-{n}" in used:
        n += 1
    return f"{level1_id}-{n}"


def _item(row: _Row, item_id: str, index: _Base) -> Level2Item:
    if row.note is not None:
        verified = UNVERIFIED not in row.note
    else:
        known = index.level2.get(item_id)
        verified = known[2].verified if known else True
    return Level2Item(
        id=item_id,
        name=row.name,
        content=row.content or None,
        basis=row.basis or None,
        time_limit=row.time_limit or None,
        subject=row.subject or None,
        channels=row.channels,
        audience=row.audience,
        method=row.method,
        levels=row.levels,
        verified=verified,
    )
