"""Build tests/data/catalog-real-layout.xlsx: a county office's catalog workbook as it really looks.

    .venv/bin/python tests/data/make_catalog_fixture.py

Not our export: no 事项编码 column, a title and a "编制单位" line above a two-row header,
"公开内容\\n（要素）" and "乡（镇）级" header spellings, 序号/一级事项 merged per level-1 item
(except the last group, where the name only sits on its first row), "✓"/"√" ticks, channels
separated by "，" and line breaks, stray and full-width spaces, a blank row inside a merged group
and one between groups, a 公开时限 merged over two items, a "注：" line merged across the table, blank trailing rows, and empty
Sheet2/Sheet3. Compared with the standard catalog's 社会救助 (D14):

- D14-01-02 监督检查 is renamed 监督检查及投诉举报 (no 事项编码, so it imports as a new item),
- 低保资金发放 is added under D14-02 最低生活保障,
- D14-03-04 特困人员救助供养/审批信息 is dropped.

A second sheet, "环境保护" (an alias of 生态环境, D09), uses a one-row header with 一级事项 and
二级事项 columns directly, 公开渠道 instead of 公开渠道和载体, and 公开对象/方式/层级 as text cells;
it carries D09 unchanged.
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, Side

from contracts.catalog import Level2Item, standard_catalog

OUT = Path(__file__).with_name("catalog-real-layout.xlsx")
RENAMED = ("D14-01-02", "监督检查及投诉举报")
DROPPED = "D14-03-04"
NEW_ITEM = dict(
    level1="D14-02",
    name="低保资金发放",
    content="低保资金发放对象、标准、金额",
    basis="《社会救助暂行办法》",
    time_limit="每季度结束后10个工作日内",
    subject="县级政府民政部门",
    channels=("政府网站", "社区/企事业单位/村公示栏（电子屏）"),
)

THIN = Side(style="thin")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
WRAP = Alignment(wrap_text=True, vertical="center")
CENTER = Alignment(wrap_text=True, vertical="center", horizontal="center")


def _county_sheet(wb: Workbook) -> None:
    ws = wb.active
    ws.title = "社会救助"
    domain = standard_catalog().domain("D14")
    ncols = 15  # A 序号 … N 乡级, O 备注; no 事项编码
    ws["A1"] = "长沙县社会救助领域基层政务公开标准目录"
    ws["A1"].font = Font(name="方正小标宋简体", size=16)
    ws["A1"].alignment = CENTER
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncols)
    ws["A2"] = "编制单位：长沙县民政局　　　　　　　　更新日期：2023年6月"
    headers = {
        "A3": "序号", "B3": "公开事项", "D3": "公开内容\n（要素）", "E3": "公开依据", "F3": "公开时限",
        "G3": "公开主体", "H3": "公开渠道和载体", "I3": "公开对象", "K3": "公开方式", "M3": "公开层级", "O3": "备注",
        "B4": "一级事项", "C4": "二级事项", "I4": "全社会", "J4": "特定群体", "K4": "主动", "L4": "依申请",
        "M4": "县级", "N4": "乡（镇）级",
    }  # fmt: skip
    for ref, text in headers.items():
        ws[ref] = text
        ws[ref].font = Font(name="黑体", bold=True)
        ws[ref].alignment = CENTER
    for ref in ("A3:A4", "B3:C3", "D3:D4", "E3:E4", "F3:F4", "G3:G4", "H3:H4", "I3:J3", "K3:L3", "M3:N3", "O3:O4"):
        ws.merge_cells(ref)

    def write(row: int, item: Level2Item, *, name: str | None = None, tick: str = "✓", channels: str | None = None) -> None:
        values = {
            3: name if name is not None else item.name,
            4: item.content,
            5: item.basis,
            6: item.time_limit,
            7: item.subject,
            8: channels if channels is not None else "，".join(item.channels),
            9: tick if item.audience == "全社会" else None,
            10: tick if item.audience == "特定群体" else None,
            11: tick if item.method == "主动" else None,
            12: tick if item.method == "依申请" else None,
            13: tick if "县级" in item.levels else None,
            14: tick if "乡级" in item.levels else None,
        }
        for column, value in values.items():
            ws.cell(row=row, column=column, value=value).alignment = CENTER if column >= 9 else WRAP

    l1 = {item.id: item for item in domain.level1}
    row = 5
    # 1 综合业务: 01-02 renamed.
    first = row
    write(row, l1["D14-01"].items[0], name="　政策法规文件 ")
    write(row + 1, l1["D14-01"].items[1], name=RENAMED[1])
    row += 2
    ws.cell(row=first, column=1, value=1)
    ws.cell(row=first, column=2, value="综合业务 ")
    ws.merge_cells(start_row=first, start_column=1, end_row=row - 1, end_column=1)
    ws.merge_cells(start_row=first, start_column=2, end_row=row - 1, end_column=2)
    # 2 最低生活保障: stray spaces, channels with "，" and a line break, one new item.
    first = row
    low = l1["D14-02"].items
    write(row, low[0])
    write(row + 1, low[1], name=" 办事指南　", channels="政府网站，公开查阅点\n政务服务中心")
    ws.cell(row=row + 1, column=7, value=f"　{low[1].subject}  ")
    write(row + 2, low[2], channels=f"{low[2].channels[0]}\n")
    write(row + 3, low[3])
    new = Level2Item(id="", audience="全社会", method="主动", levels=("县级", "乡级"), **{k: v for k, v in NEW_ITEM.items() if k != "level1"})
    write(row + 4, new, channels="政府网站，\n社区/企事业单位/村公示栏（电子屏）")
    row += 5
    ws.cell(row=first, column=1, value=2)
    ws.cell(row=first, column=2, value="最低生活保障")
    ws.merge_cells(start_row=first, start_column=1, end_row=row - 1, end_column=1)
    ws.merge_cells(start_row=first, start_column=2, end_row=row - 1, end_column=2)
    row += 1  # a blank row between level-1 items
    # 3 特困人员救助供养: a blank row inside the merged group, 03-04 dropped.
    first = row
    poor = l1["D14-03"].items
    write(row, poor[0])
    write(row + 2, poor[1])
    write(row + 3, poor[2])
    assert poor[1].time_limit == poor[2].time_limit
    ws.cell(row=row + 3, column=6).value = None  # 公开时限 merged over the two rows that share it
    ws.merge_cells(start_row=row + 2, start_column=6, end_row=row + 3, end_column=6)
    row += 4
    ws.cell(row=first, column=1, value="3")
    ws.cell(row=first, column=2, value="特困人员救助供养")
    ws.merge_cells(start_row=first, start_column=1, end_row=row - 1, end_column=1)
    ws.merge_cells(start_row=first, start_column=2, end_row=row - 1, end_column=2)
    # 4 临时救助: not merged, the name only on the first row; "√" ticks.
    ws.cell(row=row, column=1, value=4)
    ws.cell(row=row, column=2, value="临时救助")
    for item in l1["D14-04"].items:
        write(row, item, tick="√")
        row += 1
    last = row - 1
    for r in range(3, last + 1):
        for c in range(1, ncols + 1):
            ws.cell(row=r, column=c).border = BOX
    ws.cell(row=row, column=1, value="注：本目录根据民政部《社会救助和养老服务领域基层政务公开标准指引》编制，由县民政局负责解释。")
    ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)
    # Blank trailing rows: bordered, one with a full-width space, one with a plain space.
    for r in range(row + 1, row + 6):
        for c in range(1, ncols + 1):
            ws.cell(row=r, column=c).border = BOX
    ws.cell(row=row + 2, column=3, value="　")
    ws.cell(row=row + 3, column=7, value=" ")
    for letter, width in zip("ABCDEFGHIJKLMNO", (5, 12, 14, 36, 30, 20, 20, 22, 5, 5, 5, 5, 5, 5, 8), strict=True):
        ws.column_dimensions[letter].width = width
    ws.freeze_panes = "A5"


def _alias_sheet(wb: Workbook) -> None:
    ws = wb.create_sheet("环境保护")
    domain = standard_catalog().domain("D09")
    ws["A1"] = "长沙县环境保护领域基层政务公开标准目录"
    ws.merge_cells("A1:K1")
    heads = ("序号", "一级事项", "二级事项", "公开内容", "公开依据", "公开时限", "公开主体", "公开渠道", "公开对象", "公开方式", "公开层级")
    for column, text in enumerate(heads, start=1):
        ws.cell(row=2, column=column, value=text).font = Font(bold=True)
    row = 3
    numerals = "一二三四五六七八九十"
    for n, level1 in enumerate(domain.level1):
        ws.cell(row=row, column=1, value=numerals[n])
        ws.cell(row=row, column=2, value=level1.name)
        for item in level1.items:
            values = (item.name, item.content, item.basis, item.time_limit, item.subject, "；".join(item.channels),
                      item.audience, item.method, "、".join(item.levels))  # fmt: skip
            for column, value in enumerate(values, start=3):
                ws.cell(row=row, column=column, value=value)
            row += 1


def build(path: Path = OUT) -> Path:
    wb = Workbook()
    _county_sheet(wb)
    _alias_sheet(wb)
    wb.create_sheet("Sheet2")
    wb.create_sheet("Sheet3")
    wb.save(path)
    return path


if __name__ == "__main__":
    print(build())
