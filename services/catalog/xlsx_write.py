"""Catalog → Excel: one worksheet per domain in the table layout of xlsx_layout."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from contracts.catalog import Catalog, Domain, Level2Item
from services.common.spreadsheets import keep_text

from .xlsx_layout import AUDIENCES, CHANNEL_JOIN, ILLEGAL, LEVELS, METHODS, SHEET_TITLE_MAX, TICK, TITLE_SUFFIX, UNVERIFIED, tokens


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
        chosen = tokens(current) if field_ == "audience" else (current,) if field_ == "method" else current
        return TICK if option in chosen else None

    return value


_CHOICE_HEADERS = {"audience": ("公开对象", AUDIENCES), "method": ("公开方式", METHODS), "levels": ("公开层级", LEVELS)}


def _as_ticks(field_: str, item: Level2Item) -> bool:
    """Whether the item's value fits the tick sub-columns exactly (else the column is text)."""
    value = getattr(item, field_)
    if field_ == "audience":
        chosen = tokens(value)
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
        value = ILLEGAL.sub("", value)
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
    _export_header(ws, columns)
    end = _export_items(ws, domain, columns)
    top, bottom = _HEADER_ROWS
    for r in range(top, end):
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


def _export_header(ws: Worksheet, columns: list[_Col]) -> None:
    """The two header rows: a grouped column's header merged over its sub-columns, any other
    merged down over both rows."""
    ncols = len(columns)
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


def _export_items(ws: Worksheet, domain: Domain, columns: list[_Col]) -> int:
    """One row per level-2 item, 序号 and 一级事项 merged over a level-1 item's rows; returns
    the row after the last."""
    ncols = len(columns)
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
    return row
