"""Build tests/data/township-portals.xlsx: a county office's registry of township portals.

    .venv/bin/python tests/data/make_township_portals.py

芙蓉区 (430102): every street but the last has a portal and a 政务公开专栏 address, so the
supervision list of townships lacking a portal is not empty. Written as offices keep it, not
as our export: a title row and a "填报单位" line above the header, 区划代码 as numbers, stray
full-width spaces around addresses, a blank row in the middle and notes below the table.
Addresses are placeholders under example.gov.cn, not the townships' real sites.
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

from contracts.catalog import regions_of_city

OUT = Path(__file__).with_name("township-portals.xlsx")
COUNTY = "430102"


def townships() -> list:
    return sorted((r for r in regions_of_city("4301") if r.level == "township" and r.parent_code == COUNTY), key=lambda r: r.code)


def build() -> Workbook:
    book = Workbook()
    sheet = book.active
    sheet.title = "门户网站"
    sheet.append(["芙蓉区乡镇（街道）门户网站登记表"])
    sheet.merge_cells("A1:E1")
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append(["填报单位：芙蓉区政务公开办"])
    sheet.append(["区划代码", "乡镇（街道）", "门户网站", "政务公开专栏", "备注"])
    listed = townships()[:-1]
    for index, region in enumerate(listed):
        if index == 3:
            sheet.append([None, None, None, None, None])
        base = f"https://www.example.gov.cn/furong/{region.code}/"
        sheet.append([int(region.code), region.name, f"\u3000{base} ", f"{base}zwgk/", "已开通" if index % 2 else None])
    sheet.append([])
    sheet.append(["注：地址须为 https。"])
    return book


def main() -> None:
    build().save(OUT)
    print(f"wrote {OUT} ({len(townships()) - 1} portals)")


if __name__ == "__main__":
    main()
