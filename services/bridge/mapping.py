"""Where a service item is filed in the catalog: rules by 基本编码 + item type + region, explicit
overrides per 实施编码, and an area-code table for units the statistical codes do not cover.

All of it is data (the bridge store keeps it; offices edit it as an Excel workbook). An item no
rule or override places is *unmapped*: it is reported, never silently dropped.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill

from contracts.catalog import Catalog, Region
from contracts.events import PlacementRef
from contracts.service_items import ITEM_TYPES, ServiceItem
from services.common.spreadsheets import xlsx_row

DEFAULTS = Path(__file__).parent / "mapping_defaults.json"

RULES_SHEET, OVERRIDES_SHEET, AREAS_SHEET = "映射规则", "指定映射", "区划对照"
RULE_HEADER = ("基本编码", "事项类型", "地区", "领域", "一级事项", "二级事项", "说明")
OVERRIDE_HEADER = ("实施编码", "地区", "领域", "一级事项", "二级事项", "不公开", "说明")
AREA_HEADER = ("平台区划代码", "本系统地区代码", "说明")
_TICKS = {"是", "✓", "√", "y", "yes", "true", "1", "x"}


@dataclass(frozen=True)
class Target:
    level2_id: str

    @property
    def domain_code(self) -> str:
        return self.level2_id[:3]

    @property
    def level1_id(self) -> str:
        return self.level2_id[:6]


@dataclass(frozen=True)
class Rule:
    """Items matching every given condition are filed under `target`. `basic_code` ending in `*`
    is a prefix; `region` matches that region and every region below it (by code prefix)."""

    target: Target
    basic_code: str | None = None
    item_type: str | None = None
    region: str | None = None
    note: str = ""

    @property
    def condition(self) -> tuple:
        return (self.basic_code, self.item_type, self.region)

    def matches(self, item: ServiceItem, region: str) -> bool:
        if self.basic_code:
            if self.basic_code.endswith("*"):
                if not item.basic_code.startswith(self.basic_code[:-1]):
                    return False
            elif item.basic_code != self.basic_code:
                return False
        if self.item_type and item.item_type != self.item_type:
            return False
        return not (self.region and not region.startswith(self.region))

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Exact basic code beats a longer prefix beats none; then the narrower region; then a type."""
        code = self.basic_code or ""
        basic = 0 if not code else (1000 if not code.endswith("*") else len(code))
        return (basic, len(self.region or ""), 1 if self.item_type else 0)


@dataclass(frozen=True)
class Override:
    """An explicit decision for one 实施编码: these placements, or `exclude` (not published)."""

    implementation_code: str
    target: Target | None = None
    region: str | None = None  # default: the item's own region
    exclude: bool = False
    note: str = ""


@dataclass(frozen=True)
class MappingTable:
    rules: tuple[Rule, ...] = ()
    overrides: tuple[Override, ...] = ()
    areas: dict[str, str] = field(default_factory=dict)  # platform 12-digit area code → region code

    @classmethod
    def defaults(cls) -> "MappingTable":
        return table_from_dict(json.loads(DEFAULTS.read_text("utf-8")))


@dataclass(frozen=True)
class MappingResult:
    placements: tuple[PlacementRef, ...] = ()
    region: str | None = None
    excluded: bool = False
    reason: str | None = None  # why nothing was placed
    rule: str = ""  # which rule or override decided, for the reports

    @property
    def mapped(self) -> bool:
        return bool(self.placements)


def region_of(area_code: str, regions: dict[str, Region], areas: dict[str, str]) -> str | None:
    """Our region code for a platform area code: the alias table first, then the statistical code
    trimmed to county (6 digits) or township (9 digits) length."""
    if area_code in areas:
        return areas[area_code]
    if area_code.endswith("000000"):
        code = area_code[:6]
    elif area_code.endswith("000"):
        code = area_code[:9]
    else:
        code = area_code
    return code if code in regions else None


def map_item(item: ServiceItem, table: MappingTable, regions: dict[str, Region]) -> MappingResult:
    region = region_of(item.area_code, regions, table.areas)
    overrides = [o for o in table.overrides if o.implementation_code == item.implementation_code]
    if overrides:
        if any(o.exclude for o in overrides):
            return MappingResult(region=region, excluded=True, reason="指定不公开", rule="override")
        placements = _placements(((o.region or region, o.target) for o in overrides if o.target), regions)
        if placements:
            return MappingResult(placements=placements, region=region, rule="override")
        return MappingResult(region=region, reason="指定映射的地区不存在", rule="override")
    if region is None:
        return MappingResult(reason=f"区划代码 {item.area_code} 不对应任何地区（可在“{AREAS_SHEET}”中补充）")
    matching = [r for r in table.rules if r.matches(item, region)]
    if not matching:
        return MappingResult(region=region, reason=f"没有适用于基本编码 {item.basic_code}（{ITEM_TYPES[item.item_type]}）的映射规则")
    best = max(r.specificity for r in matching)
    winners = [r for r in matching if r.specificity == best]
    condition = winners[0].condition
    winners = [r for r in winners if r.condition == condition]
    return MappingResult(placements=_placements(((region, r.target) for r in winners), regions), region=region, rule=_describe(condition))


def _placements(pairs: Iterable[tuple[str | None, Target]], regions: dict[str, Region]) -> tuple[PlacementRef, ...]:
    seen, out = set(), []
    for region, target in pairs:
        if region is None or region not in regions or (region, target.level2_id) in seen:
            continue
        seen.add((region, target.level2_id))
        out.append(PlacementRef(region_code=region, domain_code=target.domain_code, level1_id=target.level1_id, level2_id=target.level2_id))
    return tuple(out)


def _describe(condition: tuple) -> str:
    basic, item_type, region = condition
    parts = [f"基本编码={basic}" if basic else "", f"类型={item_type}" if item_type else "", f"地区={region}" if region else ""]
    return " ".join(p for p in parts if p) or "通用规则"


# --- as data (JSON for the defaults and the store) -------------------------------------------
def table_to_dict(table: MappingTable) -> dict:
    return {
        "rules": [dict(basic_code=r.basic_code, item_type=r.item_type, region=r.region, level2_id=r.target.level2_id, note=r.note) for r in table.rules],
        "overrides": [
            dict(implementation_code=o.implementation_code, region=o.region, level2_id=o.target.level2_id if o.target else None, exclude=o.exclude, note=o.note)
            for o in table.overrides
        ],
        "areas": dict(sorted(table.areas.items())),
    }


def table_from_dict(data: dict) -> MappingTable:
    return MappingTable(
        rules=tuple(
            Rule(target=Target(r["level2_id"]), basic_code=r.get("basic_code"), item_type=r.get("item_type"), region=r.get("region"), note=r.get("note") or "")
            for r in data.get("rules", ())
        ),
        overrides=tuple(
            Override(
                implementation_code=o["implementation_code"],
                target=Target(o["level2_id"]) if o.get("level2_id") else None,
                region=o.get("region"),
                exclude=bool(o.get("exclude")),
                note=o.get("note") or "",
            )
            for o in data.get("overrides", ())
        ),
        areas=dict(data.get("areas", {})),
    )


# --- Excel --------------------------------------------------------------------------------
class MappingImportError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems

    def __reduce__(self):  # it comes back from the worker process that parsed the workbook
        return (MappingImportError, (self.problems,))


def to_xlsx(table: MappingTable, catalog: Catalog | None = None) -> bytes:
    """Three sheets (rules, overrides, area codes), a header row each; catalog names beside ids
    when a catalog is given, so offices can read the file without looking codes up."""
    workbook = Workbook()

    def name(level2_id: str | None) -> list[str]:
        if not catalog or not level2_id:
            return []
        item = catalog.level2(level2_id)
        return [item.name if item else "（目录中无此事项）"]

    rules = ((r.basic_code or "", r.item_type or "", r.region or "", *_target_cells(r.target), r.note, *name(r.target.level2_id)) for r in table.rules)
    overrides = (
        (o.implementation_code, o.region or "", *_target_cells(o.target), "是" if o.exclude else "", o.note, *name(o.target.level2_id if o.target else None))
        for o in table.overrides
    )
    named = catalog is not None
    _sheet(workbook.active, RULES_SHEET, RULE_HEADER, rules, named=named)
    _sheet(workbook.create_sheet(), OVERRIDES_SHEET, OVERRIDE_HEADER, overrides, named=named)
    _sheet(workbook.create_sheet(), AREAS_SHEET, AREA_HEADER, ((area, region, "") for area, region in sorted(table.areas.items())), named=False)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _target_cells(target: Target | None) -> tuple[str, str, str]:
    return (target.domain_code, target.level1_id, target.level2_id) if target else ("", "", "")


def _sheet(ws, title: str, header: tuple[str, ...], rows: Iterable[tuple], *, named: bool) -> None:
    """One sheet: a bold header (with the reference-name column when `named`), the rows, widths."""
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="DDEBF7")
    ws.title = title
    ws.append(list(header) + (["事项名称（参考）"] if named else []))
    for cell in ws[1]:
        cell.font, cell.fill = bold, fill
    for row in rows:
        ws.append(xlsx_row(ws, row))
    for column, width in zip("ABCDEFGH", (26, 10, 12, 8, 10, 12, 30, 40), strict=True):
        ws.column_dimensions[column].width = width
    ws.freeze_panes = "A2"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace("\u3000", " ").strip()


def _rows(ws, header: tuple[str, ...], problems: list[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows as {header name: text}, located by the header row (columns may be in any order)."""
    rows = list(ws.iter_rows(values_only=True))
    if not rows:
        problems.append(f"{ws.title}: 工作表为空")
        return []
    names = [_text(v) for v in rows[0]]
    missing = [h for h in header if h != "说明" and h not in names]
    if missing:
        problems.append(f"{ws.title}!1: 缺少列 {'、'.join(missing)}")
        return []
    columns = {h: names.index(h) for h in header if h in names}
    out = []
    for number, values in enumerate(rows[1:], start=2):
        row = {h: _text(values[i]) if i < len(values) else "" for h, i in columns.items()}
        if any(row.values()):
            out.append((number, row))
    return out


def _target(ws_title: str, number: int, row: dict[str, str], catalog: Catalog | None, problems: list[str], letter: str) -> Target | None:
    level2 = row.get("二级事项", "")
    if not level2:
        problems.append(f"{ws_title}!{letter}{number}: 缺少二级事项编码")
        return None
    target = Target(level2)
    if row.get("领域") and row["领域"] != target.domain_code:
        problems.append(f"{ws_title}!{number}: 领域 {row['领域']} 与二级事项 {level2} 不符")
    if row.get("一级事项") and row["一级事项"] != target.level1_id:
        problems.append(f"{ws_title}!{number}: 一级事项 {row['一级事项']} 与二级事项 {level2} 不符")
    if catalog is not None and catalog.level2(level2) is None:
        problems.append(f"{ws_title}!{letter}{number}: 目录中没有二级事项 {level2}")
    return target


def from_xlsx(data: bytes, *, catalog: Catalog | None = None, regions: dict[str, Region] | None = None) -> MappingTable:
    """The whole workbook or nothing: every problem is reported as `sheet!cell: message`."""
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several kinds for a file that is not a workbook
        raise MappingImportError([f"不是有效的 Excel 文件: {exc}"]) from None
    problems: list[str] = []
    for title in (RULES_SHEET, OVERRIDES_SHEET, AREAS_SHEET):
        if title not in workbook.sheetnames:
            problems.append(f"缺少工作表“{title}”")
    if problems:
        raise MappingImportError(problems)

    def known_region(code: str, where: str) -> None:
        if code and regions is not None and code not in regions and not any(r.startswith(code) for r in regions):
            problems.append(f"{where}: 未知地区代码 {code}")

    rules = []
    for number, row in _rows(workbook[RULES_SHEET], RULE_HEADER, problems):
        item_type = row["事项类型"].zfill(2) if row["事项类型"] else None
        if item_type and item_type not in ITEM_TYPES:
            problems.append(f"{RULES_SHEET}!B{number}: 事项类型应为 {'、'.join(ITEM_TYPES)} 之一")
        known_region(row["地区"], f"{RULES_SHEET}!C{number}")
        target = _target(RULES_SHEET, number, row, catalog, problems, "F")
        if target:
            rules.append(Rule(target=target, basic_code=row["基本编码"] or None, item_type=item_type, region=row["地区"] or None, note=row.get("说明", "")))
    overrides = []
    for number, row in _rows(workbook[OVERRIDES_SHEET], OVERRIDE_HEADER, problems):
        if not row["实施编码"]:
            problems.append(f"{OVERRIDES_SHEET}!A{number}: 缺少实施编码")
            continue
        exclude = row["不公开"].lower() in _TICKS
        known_region(row["地区"], f"{OVERRIDES_SHEET}!B{number}")
        target = None if exclude and not row["二级事项"] else _target(OVERRIDES_SHEET, number, row, catalog, problems, "E")
        overrides.append(Override(implementation_code=row["实施编码"], target=target, region=row["地区"] or None, exclude=exclude, note=row.get("说明", "")))
    areas = {}
    for number, row in _rows(workbook[AREAS_SHEET], AREA_HEADER, problems):
        area, region = row["平台区划代码"], row["本系统地区代码"]
        if not (area.isdigit() and len(area) == 12):
            problems.append(f"{AREAS_SHEET}!A{number}: 平台区划代码应为12位数字")
        if regions is not None and region not in regions:
            problems.append(f"{AREAS_SHEET}!B{number}: 未知地区代码 {region}")
        areas[area] = region
    if problems:
        raise MappingImportError(problems)
    return MappingTable(rules=tuple(rules), overrides=tuple(overrides), areas=areas)
