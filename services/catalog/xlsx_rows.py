"""Reading a worksheet's data rows: each level-2 item's values, normalised, with its problems."""

from __future__ import annotations

from dataclasses import dataclass, field

from .xlsx_header import LABELS, Grid, Layout
from .xlsx_layout import AUDIENCES, CHANNEL_JOIN, LEVELS, METHODS, Collector, free_text, item_code, item_name, one_line, tick, tokens


@dataclass
class Row:
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
    missing: list[tuple[int | None, str]] = field(default_factory=list)


_OPTIONS = {"audience": AUDIENCES, "method": METHODS, "levels": LEVELS}
Choice = str | tuple[str, ...] | None


def read_rows(grid: Grid, layout: Layout, problems: Collector) -> list[Row]:
    """The sheet's item rows (and level-1 rows without items), blank and note rows skipped; an
    empty 一级事项 continues the item above."""
    l1_col = layout.simple["level1"]
    item_cols = {c for key, c in layout.simple.items() if key not in ("seq", "level1", "code")}
    item_cols |= set(layout.text_choice.values()) | {c for options in layout.ticks.values() for c in options.values()}
    rows: list[Row] = []
    current = ""
    for r in range(layout.first_data_row, grid.max_row + 1):
        if _is_note_row(grid, r):
            continue
        value = {key: grid.down(r, c) for key, c in layout.simple.items()}
        has_item = any(grid.down(r, c).strip() for c in item_cols)
        own_level1 = item_name(grid.own(r, l1_col)) if (r, l1_col) not in grid.merges or grid.merges[(r, l1_col)][0] == r else ""
        level1 = item_name(value["level1"]) or current
        code = item_code(value.get("code", ""))
        if not has_item and not own_level1 and not code:
            continue  # blank row
        current = level1
        row = Row(number=r, level1=level1, code=code, placeholder=not has_item)
        if not level1:
            problems.add(grid.title, r, l1_col, f"{LABELS['level1']} is empty")
        if not row.placeholder:
            _read_item(row, value, grid, layout, problems)
        rows.append(row)
    return rows


def _is_note_row(grid: Grid, r: int) -> bool:
    """A row whose one cell is merged across the table ("注：…")."""
    own = grid.by_row.get(r, [])
    if len(own) != 1:
        return False
    box = grid.merges.get((r, own[0]))
    return bool(box and box[3] - box[1] >= 2 and box[2] == box[0])


def _read_item(row: Row, value: dict[str, str], grid: Grid, layout: Layout, problems: Collector) -> None:
    """The level-2 item's values of `row`, normalised; what is missing is noted."""
    row.name = item_name(value["level2"])
    row.content = free_text(value["content"])
    row.basis = free_text(value["basis"])
    row.time_limit = free_text(value["time_limit"])
    row.subject = free_text(value["subject"])
    row.channels = tuple(dict.fromkeys(tokens(value["channels"])))
    row.note = free_text(value["note"]) if "note" in layout.simple else None
    audience = _choice(grid, row.number, layout, "audience", problems, row.missing)
    method = _choice(grid, row.number, layout, "method", problems, row.missing)
    levels = _choice(grid, row.number, layout, "levels", problems, row.missing)
    row.audience = audience if isinstance(audience, str) else None
    row.method = method if isinstance(method, str) else None
    row.levels = levels if isinstance(levels, tuple) else ()
    if not row.name:
        problems.add(grid.title, row.number, layout.simple["level2"], f"{LABELS['level2']} is empty")
    for key in ("time_limit", "subject"):
        if not getattr(row, key):
            row.missing.append((layout.simple[key], f"{LABELS[key]} is empty"))


def _choice(grid: Grid, r: int, layout: Layout, key: str, problems: Collector, missing: list[tuple[int | None, str]]) -> Choice:
    """公开对象 (text), 公开方式 (one option) or 公开层级 (a tuple), from a text column or ticks."""
    column = layout.column(key)
    chosen: list[str] | None
    if key in layout.text_choice:
        raw = one_line(grid.down(r, column)) if column is not None else ""
        if raw and key == "levels":  # 县级、乡级 / 县乡两级 / 村级: known levels normalised, others kept
            return tuple(dict.fromkeys(level for token in tokens(raw) for level in _levels(token)))
        chosen = _named_in_text(grid.title, r, column, key, raw, problems)
        if chosen is None:
            return None if key != "levels" else ()
    else:
        chosen = _ticked(grid, r, key, layout.ticks[key], problems)
    return _choice_value(key, chosen, grid.title, r, column, problems, missing)


def _named_in_text(sheet: str, r: int, column: int | None, key: str, raw: str, problems: Collector) -> list[str] | None:
    """The options a text cell names; None (a problem noted) when it names none."""
    if not raw:
        return []
    chosen = [o for o in _OPTIONS[key] if _choice_in(key, o, raw)]
    if not chosen:
        problems.add(sheet, r, column, f"{LABELS[key]} {raw!r} is none of {'/'.join(_OPTIONS[key])}")
        return None
    return chosen


def _ticked(grid: Grid, r: int, key: str, ticks: dict[str, int], problems: Collector) -> list[str]:
    """The options ticked in their sub-columns, in the options' order."""
    chosen: list[str] = []
    for option, c in ticks.items():
        raw = grid.down(r, c)
        ticked = tick(raw)
        if ticked is None:
            problems.add(grid.title, r, c, f"{LABELS[key]}/{option}: unrecognised tick mark {one_line(raw)!r} (use √ or leave empty)")
        elif ticked:
            chosen.append(option)
    return [o for o in _OPTIONS[key] if o in chosen]


def _choice_value(key: str, chosen: list[str], sheet: str, r: int, column: int | None, problems: Collector, missing: list[tuple[int | None, str]]) -> Choice:
    label = LABELS[key]
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
