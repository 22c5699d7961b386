"""The 通报 exports: an xlsx table in the layout offices circulate, and a printable HTML report
(PDF through the browser's print dialogue, so no PDF engine ships with Tongyuan).

Sizes are bounded by units × catalog items, never by the number of publications: the sheets
list items (late, missing, stale), not every late publication — those are in the dashboard's
drill-down. Workbooks are written in openpyxl's write-only mode (streamed rows).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

from services.common.spreadsheets import keep_text, xlsx_row

from .board import Board
from .domain import STATE_NAMES, ItemMeasure, UnitMeasures, domain_measures

TEMPLATES = Path(__file__).parent / "templates"
LEVEL_NAMES = {"county": "县级", "township": "乡级"}
LIST_LIMIT = 20

_THIN = Side(style="thin", color="999999")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_HEAD_FILL = PatternFill("solid", fgColor="F1F1F1")
_WRAP = Alignment(wrap_text=True, vertical="top")
_CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)

# (group, column, width); a group spans its consecutive columns in the header's first row.
_COLUMNS = [
    (None, "排名", 6),
    (None, "单位", 18),
    (None, "层级", 6),
    (None, "所属区县", 12),
    ("目录完整度", "标准事项", 8),
    ("目录完整度", "已有", 7),
    ("目录完整度", "缺少", 7),
    ("目录完整度", "新增", 7),
    ("目录完整度", "完整度", 9),
    ("内容覆盖", "适用事项", 8),
    ("内容覆盖", "已覆盖", 8),
    ("内容覆盖", "覆盖率", 9),
    ("内容覆盖", "未覆盖事项", 40),
    ("公开时效", "按时", 8),
    ("公开时效", "逾期", 8),
    ("公开时效", "按时率", 9),
    ("公开时效", "逾期事项", 40),
    ("长期未更新", "事项数", 8),
    ("长期未更新", "事项", 30),
]


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _scope(board: Board) -> str:
    q = board.query
    chosen = board.standard.domain(q.domain) if q.domain else None
    domain = chosen.name if chosen else "全部领域"
    return (
        f"统计截止：{q.as_of.isoformat()}；按时率统计区间：{q.start.isoformat()} 至 {q.end.isoformat()}；领域：{domain}；"
        f"标准目录：{board.standard.key}；工作日历：{board.calendar}"
    )


def _title(board: Board) -> str:
    q = board.query
    return f"{board.region.name}基层政务公开工作情况通报表（截至{q.as_of.year}年{q.as_of.month}月{q.as_of.day}日）"


def _names(items: Iterable[ItemMeasure], describe=lambda i: "") -> str:
    items = list(items)
    shown = [f"{i.domain_name}/{i.item.name}{describe(i)}" for i in items[:LIST_LIMIT]]
    more = f"等{len(items)}项" if len(items) > LIST_LIMIT else ""
    return "；".join(shown) + more


def xlsx_report(board: Board) -> bytes:
    workbook = Workbook(write_only=True)
    _summary_sheet(workbook, board)
    _detail_sheet(
        workbook,
        "未覆盖事项",
        ["单位", "所属区县", "领域", "一级事项", "二级事项", "事项编码"],
        [(u.region.name, _county(board, u), i.domain_name, i.level1_name, i.item.name, i.item.id) for u in board.units for i in u.missing],
    )
    _detail_sheet(
        workbook,
        "逾期事项",
        ["单位", "所属区县", "领域", "一级事项", "二级事项", "逾期条数", "最多逾期（天）", "公开时限"],
        [
            (u.region.name, _county(board, u), i.domain_name, i.level1_name, i.item.name, i.late, i.max_days_late, i.rule.label)
            for u in board.units
            for i in u.late_items
        ],
    )
    _detail_sheet(
        workbook,
        "长期未更新",
        ["单位", "所属区县", "领域", "一级事项", "二级事项", "最新公开", "距统计日（天）", "更新周期（天）"],
        [
            (
                u.region.name,
                _county(board, u),
                i.domain_name,
                i.level1_name,
                i.item.name,
                i.latest_on.isoformat() if i.latest_on else "",
                i.age_days,
                i.rule.cycle_days,
            )
            for u in board.units
            for i in u.stale
        ],
    )
    names = {item.id: f"{d.name}/{item.name}" for d in board.standard.domains for l1 in d.level1 for item in l1.items}
    _detail_sheet(
        workbook,
        "目录差异",
        ["单位", "现行目录", "缺少的标准事项", "新增事项"],
        [
            (u.region.name, u.catalog_key, "；".join(names.get(i, i) for i in u.completeness.dropped), "；".join(u.completeness.added))
            for u in board.units
            if u.completeness.dropped or u.completeness.added
        ],
    )
    unparsed = {i.item.id: i for u in board.units for i in u.unparsed_limits}
    _detail_sheet(
        workbook,
        "时限无法解析",
        ["事项编码", "领域", "二级事项", "公开时限原文", "原因"],
        [(i.item.id, i.domain_name, i.item.name, i.item.time_limit or "", i.rule.reason or "") for i in unparsed.values()],
    )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _county(board: Board, unit: UnitMeasures) -> str:
    county = board.county_of(unit)
    return county.name if county else ""


def _cell(sheet, value, *, bold=False, fill=None, align=_WRAP, number_format=None, size=None):
    cell = keep_text(WriteOnlyCell(sheet, value=value))
    cell.border = _BORDER
    cell.alignment = align
    if bold or size:
        cell.font = Font(bold=bold, size=size or 11)
    if fill:
        cell.fill = fill
    if number_format:
        cell.number_format = number_format
    return cell


def _summary_sheet(workbook: Workbook, board: Board) -> None:
    sheet = workbook.create_sheet("通报")
    milestones = (board.counties or board.townships)[0].milestones if board.units else []
    columns = _COLUMNS + [("工作节点", f"{m.milestone.name}（{m.due.strftime('%m-%d')}前）", 14) for m in milestones] + [(None, "备注", 24)]
    width = len(columns)
    for index, (_, _, chars) in enumerate(columns, start=1):
        sheet.column_dimensions[_letter(index)].width = chars
    sheet.freeze_panes = "C5"
    sheet.append([_cell(sheet, _title(board), bold=True, size=16, align=_CENTER)] + [_cell(sheet, None) for _ in range(width - 1)])
    sheet.append([_cell(sheet, _scope(board))] + [_cell(sheet, None) for _ in range(width - 1)])
    sheet.merged_cells.add(f"A1:{_letter(width)}1")
    sheet.merged_cells.add(f"A2:{_letter(width)}2")
    # Two header rows: groups over their columns, single columns merged over both rows.
    first, second = [], []
    index = 1
    while index <= width:
        group = columns[index - 1][0]
        span = 1
        while group and index + span <= width and columns[index + span - 1][0] == group:
            span += 1
        if group:
            first += [_cell(sheet, group, bold=True, fill=_HEAD_FILL, align=_CENTER)] + [_cell(sheet, None, fill=_HEAD_FILL) for _ in range(span - 1)]
            second += [_cell(sheet, columns[i][1], bold=True, fill=_HEAD_FILL, align=_CENTER) for i in range(index - 1, index - 1 + span)]
            if span > 1:
                sheet.merged_cells.add(f"{_letter(index)}3:{_letter(index + span - 1)}3")
        else:
            first.append(_cell(sheet, columns[index - 1][1], bold=True, fill=_HEAD_FILL, align=_CENTER))
            second.append(_cell(sheet, None, fill=_HEAD_FILL))
            sheet.merged_cells.add(f"{_letter(index)}3:{_letter(index)}4")
        index += span
    sheet.append(first)
    sheet.append(second)
    row_number = 4
    for heading, units in (("一、区县（开发区）", board.counties), ("二、乡镇（街道）", board.townships)):
        if not units:
            continue
        row_number += 1
        sheet.append([_cell(sheet, heading, bold=True)] + [_cell(sheet, None) for _ in range(width - 1)])
        sheet.merged_cells.add(f"A{row_number}:{_letter(width)}{row_number}")
        for rank, unit in enumerate(units, start=1):
            row_number += 1
            sheet.append([_cell(sheet, value, number_format=fmt) for value, fmt in _unit_row(board, rank, unit)])


def _unit_row(board: Board, rank: int, u: UnitMeasures) -> list[tuple[object, str | None]]:
    c = u.completeness
    notes = []
    if not u.own_catalog:
        notes.append(f"未发布本级目录，沿用{u.catalog_key}")
    if u.timeliness.unparsed:
        notes.append(f"{u.timeliness.unparsed}条信息的事项时限无法解析")
    if u.timeliness.no_calendar:
        notes.append(f"{u.timeliness.no_calendar}条信息因工作日历未覆盖无法判断")
    values: list[tuple[object, str | None]] = [
        (rank, None),
        (u.region.name, None),
        (LEVEL_NAMES.get(u.region.level, u.region.level), None),
        (_county(board, u), None),
        (c.standard_items, None),
        (c.present, None),
        (len(c.dropped), None),
        (len(c.added), None),
        (c.share, "0.0%"),
        (u.applicable_count, None),
        (u.covered, None),
        (u.coverage, "0.0%"),
        (_names(u.missing), None),
        (u.timeliness.on_time, None),
        (u.timeliness.late, None),
        (u.timeliness.share, "0.0%"),
        (_names(u.late_items, lambda i: f"（{i.late}条，最多逾期{i.max_days_late}天）"), None),
        (u.stale_count, None),
        (_names(u.stale, lambda i: f"（{i.age_days}天）"), None),
    ]
    for m in u.milestones:
        text = STATE_NAMES[m.state] + (f"（{m.done_on.isoformat()}）" if m.done_on else "") + (f"；{m.detail}" if m.detail and m.state != "met" else "")
        values.append((text, None))
    values.append(("；".join(notes), None))
    return values


def _detail_sheet(workbook: Workbook, title: str, headers: list[str], rows: Iterable[tuple]) -> None:
    sheet = workbook.create_sheet(title)
    for index, header in enumerate(headers, start=1):
        sheet.column_dimensions[_letter(index)].width = max(10, len(header) * 2 + 4)
    sheet.freeze_panes = "A2"
    sheet.append([_cell(sheet, h, bold=True, fill=_HEAD_FILL, align=_CENTER) for h in headers])
    for row in rows:
        sheet.append(xlsx_row(sheet, row))


def _letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index)


_ENV: Environment | None = None


def html_report(board: Board) -> str:
    """A standalone printable page (A4 landscape), the same figures as the xlsx."""
    global _ENV
    if _ENV is None:
        _ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True))
    template = _ENV.get_template("supervision/report.html")
    return template.render(
        board=board,
        q=board.query,
        title=_title(board),
        scope=_scope(board),
        pct=pct,
        domain_measures=domain_measures,
        state_names=STATE_NAMES,
        county=lambda u: _county(board, u),
    )
