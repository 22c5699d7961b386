"""The registry of township portals: adding and importing (validated, all or nothing), Excel
export, and what the county column and supervision need from it."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from contracts.catalog import Region, regions_of_city
from services.common.spreadsheets import xlsx_row

from .domain import Portal, Problem, RegistryError, validate_portals
from .store import EmbedStore

SHEET = "乡镇门户"
TITLE = "乡镇（街道）门户网站登记表"
HEADERS = ("区划代码", "乡镇（街道）", "所属县（区）", "门户网站地址", "政务公开专栏地址")
# Header spellings offices use, by the column they name.
HEADER_VARIANTS = {
    "code": {"区划代码", "行政区划代码", "统计用区划代码", "代码"},
    "portal": {"门户网站地址", "门户网站", "门户网址", "网站地址"},
    "column": {"政务公开专栏地址", "政务公开专栏", "专栏地址", "政务公开专栏网址"},
}
LABELS = {"code": HEADERS[0], "portal": HEADERS[3], "column": HEADERS[4]}
HEADER_SEARCH_ROWS = 10


def known_regions(extra_codes: Iterable[str] = (), cities: Iterable[str] = ("4301",)) -> dict[str, Region | None]:
    """Regions a portal may be registered for: the cities' regions (Changsha by default) plus
    codes the caller vouches for (known by code only)."""
    known: dict[str, Region | None] = {code.strip().upper(): None for code in extra_codes}
    for city in cities:
        known.update({r.code: r for r in regions_of_city(city)})
    return known


def add_portal(store: EmbedStore, region_code: str, portal_url: str, column_url: str, *, known: Mapping[str, Region | None], replace: bool = False) -> Portal:
    code = region_code.strip().upper()
    [portal] = validate_portals(
        [(f"region {code}", code, portal_url, column_url)], known=known, registered=store.portals(), replacing={code} if replace else ()
    )
    store.save_portals([portal], replace={code} if replace else ())
    return portal


def import_portals(store: EmbedStore, workbook: bytes, *, known: Mapping[str, Region | None], replace_all: bool = False) -> list[Portal]:
    """Rows of the file are added, or update their region's entry; with `replace_all` the
    registry becomes exactly the file. A row whose two addresses are both blank registers
    nothing (an exported template not yet filled in). Raises RegistryError naming cells."""
    rows = read_rows(workbook)
    registered = store.portals()
    replacing = set(registered) if replace_all else {code.strip().upper() for _, code, _, _ in rows}
    portals = validate_portals(rows, known=known, registered=registered, replacing=replacing)
    store.save_portals(portals, replace_all=replace_all)
    return portals


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace("\u3000", " ").strip()


def read_rows(workbook: bytes) -> list[tuple[str, str, str, str]]:
    """(where, region code, portal URL, column URL) per filled-in row of the first sheet with a
    区划代码 header; header spellings and stray (full-width) spaces are tolerated."""
    try:
        book = load_workbook(io.BytesIO(workbook), read_only=True, data_only=True)
    except Exception as exc:
        raise RegistryError([Problem("workbook", f"not a readable .xlsx file ({type(exc).__name__})")]) from None
    for sheet in book.worksheets:
        found = _header(sheet)
        if found is None:
            continue
        header_row, columns = found
        missing = [label for key, label in LABELS.items() if key not in columns]
        if missing:
            raise RegistryError([Problem(f"{sheet.title}!{header_row}", f"no column {', '.join(missing)}")])
        rows = []
        for number, values in enumerate(sheet.iter_rows(min_row=header_row + 1, values_only=True), start=header_row + 1):
            cells = {key: _cell_text(values[index]) if index < len(values) else "" for key, index in columns.items()}
            if not any(cells.values()) or not (cells["portal"] or cells["column"]):
                continue
            letter = get_column_letter(columns["code"] + 1)
            rows.append((f"{sheet.title}!{letter}{number}", cells["code"], cells["portal"], cells["column"]))
        return rows
    raise RegistryError([Problem("workbook", f"no sheet has a header row with {HEADERS[0]}, {HEADERS[3]} and {HEADERS[4]}")])


def _header(sheet) -> tuple[int, dict[str, int]] | None:
    for number, values in enumerate(sheet.iter_rows(max_row=HEADER_SEARCH_ROWS, values_only=True), start=1):
        columns = {}
        for index, value in enumerate(values):
            text = "".join(_cell_text(value).split())
            for key, names in HEADER_VARIANTS.items():
                if text in names and key not in columns:
                    columns[key] = index
        if "code" in columns:
            return number, columns
    return None


def export_portals(store: EmbedStore, known: Mapping[str, Region | None], *, with_missing_under: str | None = None) -> bytes:
    """The registry in the import layout; `with_missing_under` (a county or city code) also lists
    its townships that have no portal yet, with blank addresses to fill in."""
    registered = store.portals()
    codes = set(registered)
    if with_missing_under:
        codes |= {code for code, region in known.items() if region is not None and region.level == "township" and code.startswith(with_missing_under)}
    book = Workbook()
    sheet = book.active
    sheet.title = SHEET
    sheet.append([TITLE])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(HEADERS))
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A1"].alignment = Alignment(horizontal="center")
    sheet.append(list(HEADERS))
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for code in sorted(codes):
        region = known.get(code)
        county = known.get(region.parent_code) if region and region.parent_code else None
        portal = registered.get(code)
        row = [code, region.name if region else "", county.name if county else "", portal.portal_url if portal else "", portal.column_url if portal else ""]
        sheet.append(xlsx_row(sheet, row))
    for letter, width in zip("ABCDE", (14, 18, 16, 44, 52), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A3"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def portal_links(store: EmbedStore) -> dict[str, str]:
    """Township region code → the address of its portal's 政务公开专栏, for the county column's
    township sub-columns (a reference, not a copy). A township missing here keeps its own
    column page (/columns/{code}) as the link."""
    return {code: portal.column_url for code, portal in store.portals().items()}


def townships_lacking_portal(store: EmbedStore, regions: Mapping[str, Region], *, under: str | None = None) -> list[Region]:
    """Townships (under a county or city code, if given) with no registered portal, for supervision."""
    registered = store.portals()
    return sorted(
        (r for r in regions.values() if r.level == "township" and r.code not in registered and (under is None or r.code.startswith(under))),
        key=lambda r: r.code,
    )
