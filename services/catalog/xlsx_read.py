"""Excel → catalog: `import_catalog` replaces the domains a workbook holds (all or nothing)."""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field

from openpyxl import load_workbook

from contracts.catalog import Catalog, Domain, Level1Item, Level2Item

from .xlsx_header import LABELS, REQUIRED, Grid, Layout, domain_named, find_header, layout_of
from .xlsx_layout import UNVERIFIED, CatalogImportError, Collector, Problem, item_name
from .xlsx_rows import Row, read_rows

__all__ = ["CatalogImportError", "Problem", "import_catalog"]


@dataclass
class _Group:
    name: str
    first_row: int
    rows: list[Row] = field(default_factory=list)
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
    problems = Collector()
    workbook = _open(data, problems)
    if workbook is None:
        raise CatalogImportError(problems.problems())
    index = _Base(base)
    replaced: dict[str, tuple[Level1Item, ...]] = {}
    sheet_of_domain: dict[str, str] = {}
    codes_seen: dict[str, tuple[str, int]] = {}
    for ws in workbook.worksheets:
        grid = Grid(ws)
        if not grid.values:
            continue  # a completely empty sheet
        found = _domain_and_layout(grid, base, problems, sheet_of_domain)
        if found is not None:
            domain, layout = found
            replaced[domain.code] = _import_sheet(grid, layout, domain, index, problems, codes_seen)
    if problems:
        raise CatalogImportError(problems.problems())
    domains = tuple(d.model_copy(update={"level1": replaced[d.code]}) if d.code in replaced else d for d in base.domains)
    return base.model_copy(update={"domains": domains})


def _domain_and_layout(grid: Grid, base: Catalog, problems: Collector, sheet_of_domain: dict[str, str]) -> tuple[Domain, Layout] | None:
    """The domain a sheet replaces (by its name, else its title row) and its table's layout;
    None, with the problem noted, when either cannot be told or the domain came already."""
    header = find_header(grid)
    title_text = next((grid.own(r, c) for r in range(1, (header or 4)) for c in range(1, grid.max_col + 1) if grid.own(r, c)), "")
    domain = domain_named(base, grid.title) or (domain_named(base, title_text) if title_text else None)
    if domain is None:
        names = f"sheet name {grid.title!r}" + (f" and title {item_name(title_text)!r}" if title_text else "")
        problems.add(grid.title, None, None, f"{names} name no domain of the catalog")
        return None
    if domain.code in sheet_of_domain:
        problems.add(grid.title, None, None, f"domain {domain.name} ({domain.code}) is already imported from sheet {sheet_of_domain[domain.code]!r}")
        return None
    sheet_of_domain[domain.code] = grid.title
    if header is None:
        expected = ", ".join(LABELS[k] for k in REQUIRED)
        problems.add(grid.title, None, None, f"unknown header layout: no header row found (expected columns {expected})")
        return None
    layout = layout_of(grid, header)
    missing = [LABELS[k] for k in REQUIRED if not layout.has(k)]
    if missing:
        problems.add(grid.title, header, None, f"unknown header layout: missing columns {', '.join(missing)}")
        return None
    return domain, layout


def _open(data: bytes, problems: Collector):
    if data[:4] == b"\xd0\xcf\x11\xe0":
        problems.add("", None, None, "this is an old Excel 97-2003 (.xls) file; save it as .xlsx and import again")
        return None
    try:
        return load_workbook(io.BytesIO(data), data_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable input is one clear problem
        problems.add("", None, None, f"the file is not an Excel .xlsx workbook ({type(error).__name__})")
        return None


@dataclass
class _Sheet:
    """One worksheet being imported as one domain: where its problems are reported."""

    title: str
    domain: Domain
    index: _Base
    problems: Collector
    code_col: int | None
    l1_col: int
    l2_col: int

    def problem(self, row: int | None, column: int | None, message: str) -> None:
        self.problems.add(self.title, row, column, message)


def _import_sheet(
    grid: Grid,
    layout: Layout,
    domain: Domain,
    index: _Base,
    problems: Collector,
    codes_seen: dict[str, tuple[str, int]],
) -> tuple[Level1Item, ...]:
    sheet = _Sheet(grid.title, domain, index, problems, layout.simple.get("code"), layout.simple["level1"], layout.simple["level2"])
    rows = read_rows(grid, layout, problems)
    for row in rows:
        if row.code:
            row.valid_code = _code_is_valid(sheet, row, codes_seen)
    groups: dict[str, _Group] = {}
    for row in rows:
        groups.setdefault(row.level1, _Group(name=row.level1, first_row=row.number)).rows.append(row)
    used = _assign_level1_ids(sheet, groups)
    return tuple(_level1_item(sheet, group, used) for group in groups.values())


def _code_is_valid(sheet: _Sheet, row: Row, codes_seen: dict[str, tuple[str, int]]) -> bool:
    """A row's 事项编码 is known to the base, of this domain, used once, and of the row's kind."""
    code, label = row.code, LABELS["code"]
    found = sheet.index.level2.get(code) or sheet.index.level1.get(code)
    if found is None:
        sheet.problem(row.number, sheet.code_col, f"{label} {code} is not in the base catalog (leave it empty for a new item)")
        return False
    if found[0].code != sheet.domain.code:
        sheet.problem(row.number, sheet.code_col, f"{label} {code} belongs to domain {found[0].name} ({found[0].code}), not {sheet.domain.name}")
        return False
    if code in codes_seen:
        where = codes_seen[code]
        also = f"row {where[1]}" if where[0] == sheet.title else f"{where[0]}!{where[1]}"
        sheet.problem(row.number, sheet.code_col, f"{label} {code} is used twice (also {also})")
        return False
    codes_seen[code] = (sheet.title, row.number)
    if row.placeholder and code in sheet.index.level2:
        sheet.problem(row.number, sheet.l2_col, f"{LABELS['level2']} is empty but {label} {code} is a level-2 item")
        return False
    if not row.placeholder and code in sheet.index.level1:
        sheet.problem(row.number, sheet.code_col, f"{label} {code} is a level-1 item code; give the level-2 code or none")
        return False
    return True


def _assign_level1_ids(sheet: _Sheet, groups: dict[str, _Group]) -> set[str]:
    """Each group's level-1 id: from its rows' codes, else by name, else a new one. Returns
    every id now in use."""
    by_name = {item.name: item.id for item in sheet.domain.level1}
    owner: dict[str, _Group] = {}
    for group in groups.values():
        group.id = _level1_id(sheet, group, by_name.get(group.name))
        if group.id is None:
            continue
        if group.id in owner:
            sheet.problem(group.first_row, sheet.l1_col, f"{LABELS['level1']} {group.name} and {owner[group.id].name} are both level-1 item {group.id}")
        owner.setdefault(group.id, group)
    used = set(sheet.index.ids)
    for group in groups.values():
        if group.id is None:
            group.id = _next_level1(sheet.domain.code, used)
        used.add(group.id)
    return used


def _level1_id(sheet: _Sheet, group: _Group, named: str | None) -> str | None:
    """The level-1 item most of the group's codes belong to (the named one if among them); a
    code of another level-1 item is a problem and no longer the row's."""
    parents = Counter(_parent(row.code, sheet.index) for row in group.rows if row.valid_code)
    level1_id = (named if named in parents else parents.most_common(1)[0][0]) if parents else named
    for row in group.rows:
        if row.valid_code and _parent(row.code, sheet.index) != level1_id:
            level1 = sheet.index.level1[_parent(row.code, sheet.index)][1]
            sheet.problem(row.number, sheet.code_col, f"{LABELS['code']} {row.code} belongs to level-1 item {level1.name} ({level1.id}), not {group.name}")
            row.valid_code = False
    return level1_id


def _level1_item(sheet: _Sheet, group: _Group, used: set[str]) -> Level1Item:
    """The group's level-1 item with its level-2 items; the ids it takes are added to `used`."""
    assert group.id is not None  # _assign_level1_ids gave every group one
    rows = [row for row in group.rows if not row.placeholder]
    seen: dict[str, int] = {}
    for row in rows:
        if row.name and row.name in seen:
            sheet.problem(row.number, sheet.l2_col, f"{LABELS['level2']} {row.name} appears twice under {group.name} (also row {seen[row.name]})")
        seen.setdefault(row.name, row.number)
    known = next((item for item in sheet.domain.level1 if item.id == group.id), None)
    ids = _level2_ids(rows, group.id, known, used)
    items = tuple(_item(row, ids[row.number], sheet.index) for row in rows)
    for row, item in zip(rows, items, strict=True):
        if item.verified:  # an item marked 未核实 may lack required values
            for column, message in row.missing:
                sheet.problem(row.number, column, message)
    return Level1Item(id=group.id, name=group.name, items=items)


def _level2_ids(rows: list[Row], level1_id: str, known: Level1Item | None, used: set[str]) -> dict[int, str]:
    """Row number → level-2 id: its valid code, else the base item of the same name under the
    same level-1 item, else a new one. The ids taken are added to `used`."""
    ids: dict[int, str] = {row.number: row.code for row in rows if row.valid_code}
    claimed = set(ids.values())
    for row in rows:
        if row.number in ids:
            continue
        match = next((i.id for i in (known.items if known else ()) if i.name == row.name and i.id not in claimed), None)
        if match is None:
            match = _next_level2(level1_id, used | claimed)
        ids[row.number] = match
        claimed.add(match)
    used |= claimed
    return ids


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


def _item(row: Row, item_id: str, index: _Base) -> Level2Item:
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
