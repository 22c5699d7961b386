"""Finding the table in a worksheet: its header row(s), the columns they name, its domain."""

from __future__ import annotations

from dataclasses import dataclass, field

from openpyxl.worksheet.worksheet import Worksheet

from contracts.catalog import Catalog, Domain

from .xlsx_layout import AUDIENCES, LEVELS, METHODS, cell_text, item_name, label_text

_SIMPLE = ("seq", "level1", "level2", "content", "basis", "time_limit", "subject", "channels", "note", "code")
_CHOICE = ("audience", "method", "levels")
LABELS = {
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
REQUIRED = ("level1", "level2", "content", "basis", "time_limit", "subject", "channels", "audience", "method", "levels")
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
    text = label_text(label)
    return next((key for prefix, key in _TOP_PREFIXES if text.startswith(prefix)), None)


def _sub_field(label: str) -> tuple[str, str | None] | None:
    """A sub-header: ("level1", None), ("audience", "全社会"), ("levels", "乡级") …"""
    text = label_text(label)
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


class Grid:
    """Cell texts of a worksheet plus where its merged ranges are."""

    def __init__(self, ws: Worksheet) -> None:
        self.title = ws.title
        self.values: dict[tuple[int, int], str] = {}
        for row in ws.iter_rows():
            for cell in row:
                if cell.value is not None:
                    text = cell_text(cell.value)
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
class Layout:
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


def find_header(grid: Grid) -> int | None:
    for r in range(1, min(grid.max_row, 30) + 1):
        found = {_top_field(grid.filled(r, c)) for c in range(1, grid.max_col + 1)} - {None}
        if len(found) >= 4:
            return r
    return None


def layout_of(grid: Grid, header: int) -> Layout:
    below = header + 1

    def sub_text(c: int) -> str:
        box = grid.merges.get((below, c))
        if box and box[0] <= header:  # a header merged down over the sub-header row
            return ""
        return grid.filled(below, c)

    subs = {c: sub_text(c) for c in range(1, grid.max_col + 1)}
    present = [text for text in subs.values() if text]
    two_rows = bool(present) and all(_sub_field(text) or _top_field(text) for text in present) and any(_sub_field(t) for t in present)
    layout = Layout(header_row=header, first_data_row=header + (2 if two_rows else 1))
    for c in range(1, grid.max_col + 1):
        top = _top_field(grid.filled(header, c))
        sub = _sub_field(subs[c]) if two_rows and subs[c] else None
        if sub and sub[1] is None:  # 一级事项 / 二级事项 under 公开事项
            layout.simple.setdefault(sub[0], c)
        elif sub and sub[1] is not None:
            layout.ticks.setdefault(sub[0], {}).setdefault(sub[1], c)
        elif top in _SIMPLE:
            layout.simple.setdefault(top, c)
        elif top in _CHOICE and top not in layout.ticks:
            layout.text_choice.setdefault(top, c)
    return layout


def domain_named(base: Catalog, text: str) -> Domain | None:
    """A domain named by a sheet name or title: exact name/alias first, then the one it contains."""
    key = item_name(text)
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
