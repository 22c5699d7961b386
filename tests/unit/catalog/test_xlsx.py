"""Catalog ⇄ Excel: exact round trips, real county files, and all-or-nothing validation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from contracts.catalog import Catalog, Level1Item, standard_catalog
from services.catalog.xlsx_read import CatalogImportError, Problem, import_catalog
from services.catalog.xlsx_write import export_catalog

FIXTURE = Path(__file__).parents[2] / "data" / "catalog-real-layout.xlsx"
CODE = "P"  # 事项编码 in the standard export layout


def _workbook(catalog: Catalog, *codes: str):
    """The export of `catalog`, or of only the domains `codes` (quicker; import keeps the rest)."""
    if codes:
        catalog = catalog.model_copy(update={"domains": tuple(d for d in catalog.domains if d.code in codes)})
    return load_workbook(io.BytesIO(export_catalog(catalog)))


def _save(wb) -> bytes:
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def _rows_by_code(ws) -> dict[str, int]:
    return {ws[f"{CODE}{r}"].value: r for r in range(4, ws.max_row + 1) if ws[f"{CODE}{r}"].value}


def _replace_level1(catalog: Catalog, domain_code: str, level1: tuple[Level1Item, ...]) -> Catalog:
    domains = tuple(d.model_copy(update={"level1": level1}) if d.code == domain_code else d for d in catalog.domains)
    return catalog.model_copy(update={"domains": domains})


def test_standard_catalog_round_trips_exactly():
    base = standard_catalog()
    assert import_catalog(export_catalog(base), base=base) == base


def test_catalog_level_fields_survive_the_import():
    base = standard_catalog().model_copy(update={"edition": "长沙县2023版"})
    imported = import_catalog(export_catalog(base), base=base)
    assert imported.edition == "长沙县2023版"
    assert imported == base


def test_export_uses_the_real_table_layout():
    base = standard_catalog()
    wb = _workbook(base)
    assert wb.sheetnames == [d.name for d in base.domains if d.level1]
    ws = wb["社会救助"]
    merged = {str(r) for r in ws.merged_cells.ranges}
    # Title, two-row header: grouped columns merged over their sub-columns, single ones downwards.
    assert {"A1:P1", "B2:C2", "I2:J2", "K2:L2", "M2:N2", "A2:A3", "D2:D3", "H2:H3", "P2:P3"} <= merged
    assert ws["A1"].value == "社会救助领域基层政务公开标准目录"
    assert [ws.cell(2, c).value for c in (1, 2, 4, 8, 9, 11, 13, 16)] == [
        "序号", "公开事项", "公开内容（要素）", "公开渠道和载体", "公开对象", "公开方式", "公开层级", "事项编码",
    ]  # fmt: skip
    assert [ws.cell(3, c).value for c in range(2, 4)] + [ws.cell(3, c).value for c in range(9, 15)] == [
        "一级事项", "二级事项", "全社会", "特定群体", "主动", "依申请", "县级", "乡级",
    ]  # fmt: skip
    # 序号 and 一级事项 merged down over each level-1 item's rows.
    rows = _rows_by_code(ws)
    domain = base.domain("D14")
    for number, level1 in enumerate(domain.level1, start=1):
        first, last = rows[level1.items[0].id], rows[level1.items[-1].id]
        assert f"A{first}:A{last}" in merged and f"B{first}:B{last}" in merged
        assert (ws[f"A{first}"].value, ws[f"B{first}"].value) == (number, level1.name)
    item = base.level2("D14-02-02")
    r = rows["D14-02-02"]
    assert ws[f"C{r}"].value == item.name
    assert ws[f"H{r}"].value == "、".join(item.channels) == "政府网站、公开查阅点、政务服务中心"
    assert [ws.cell(r, c).value for c in range(9, 15)] == ["√", None, "√", None, "√", "√"]
    assert ws.freeze_panes == "D4"
    assert ws["D4"].alignment.wrap_text and ws.column_dimensions["D"].width > ws.column_dimensions["A"].width


def test_real_county_workbook_imports_to_the_expected_catalog():
    """The fixture has no 事项编码: rows match the base by (一级事项, 二级事项) names, so the renamed
    监督检查 cannot be told from a new item — it gets a new id and D14-01-02 is dropped."""
    base = standard_catalog()
    imported = import_catalog(FIXTURE.read_bytes(), base=base)

    d14 = {level1.id: level1 for level1 in base.domain("D14").level1}
    renamed = base.level2("D14-01-02").model_copy(update={"id": "D14-01-101", "name": "监督检查及投诉举报"})
    added = base.level2("D14-02-02").model_copy(
        update={
            "id": "D14-02-101",
            "name": "低保资金发放",
            "content": "低保资金发放对象、标准、金额",
            "basis": "《社会救助暂行办法》",
            "time_limit": "每季度结束后10个工作日内",
            "subject": "县级政府民政部门",
            "channels": ("政府网站", "社区/企事业单位/村公示栏（电子屏）"),
        }
    )
    expected_d14 = (
        d14["D14-01"].model_copy(update={"items": (d14["D14-01"].items[0], renamed)}),
        d14["D14-02"].model_copy(update={"items": (*d14["D14-02"].items, added)}),
        d14["D14-03"].model_copy(update={"items": d14["D14-03"].items[:3]}),
        d14["D14-04"],
    )
    assert imported.domain("D14").level1 == expected_d14
    assert imported.level2("D14-01-02") is None and imported.level2("D14-03-04") is None
    # The "环境保护" sheet (alias, one-row header, text cells) reproduces 生态环境 exactly,
    # and the domains the workbook does not carry stay as they were.
    # (model_dump: Catalog.__eq__ also compares its private lookup cache, which the lookups
    # above have rebuilt on `imported` only.)
    assert imported.model_dump() == _replace_level1(base, "D14", expected_d14).model_dump()


def test_several_errors_are_all_reported_with_their_cells():
    base = standard_catalog()
    wb = _workbook(base, "D14", "D15", "D18")
    ws = wb["社会救助"]
    row = _rows_by_code(ws)
    ws[f"F{row['D14-01-01']}"] = None  # 公开时限
    ws[f"G{row['D14-01-02']}"] = "　"  # 公开主体, only a full-width space
    ws[f"K{row['D14-02-01']}"] = None  # no 公开方式
    ws[f"L{row['D14-02-02']}"] = "✓"  # both 主动 and 依申请
    ws[f"C{row['D14-02-03']}"] = "政策法规文件"  # same name as D14-02-01 under 最低生活保障
    ws[f"{CODE}{row['D14-02-04']}"] = "D14-02-01"  # duplicate code
    ws[f"{CODE}{row['D14-03-01']}"] = "D09-01-01"  # a 生态环境 code
    ws[f"{CODE}{row['D14-03-02']}"] = "D14-04-01"  # a 临时救助 code under 特困人员救助供养
    ws[f"{CODE}{row['D14-04-01']}"] = None
    ws[f"C{row['D14-03-03']}"] = None  # no 二级事项
    ws[f"J{row['D14-03-04']}"] = "有"  # not a tick mark
    wb["养老服务"]["F2"] = None  # header lost 公开时限
    wb["就业"].title = "说明"
    wb["说明"]["A1"] = "填表说明"

    with pytest.raises(CatalogImportError) as caught:
        import_catalog(_save(wb), base=base)

    found = [(p.sheet, p.row, p.column) for p in caught.value.problems]
    assert found == [
        ("社会救助", row["D14-01-01"], "F"),
        ("社会救助", row["D14-01-02"], "G"),
        ("社会救助", row["D14-02-01"], "K"),
        ("社会救助", row["D14-02-02"], "K"),
        ("社会救助", row["D14-02-03"], "C"),
        ("社会救助", row["D14-02-04"], "P"),
        ("社会救助", row["D14-03-01"], "P"),
        ("社会救助", row["D14-03-02"], "P"),
        ("社会救助", row["D14-03-03"], "C"),
        ("社会救助", row["D14-03-04"], "J"),
        ("养老服务", 2, None),
        ("说明", None, None),
    ]
    messages = [p.message for p in caught.value.problems]
    assert str(caught.value.problems[0]) == f"社会救助!F{row['D14-01-01']}: 公开时限 is empty"
    assert messages[1] == "公开主体 is empty"
    assert "neither 主动 nor 依申请" in messages[2]
    assert "both 主动 and 依申请" in messages[3]
    assert "政策法规文件 appears twice" in messages[4]
    assert "D14-02-01 is used twice" in messages[5]
    assert "belongs to domain 生态环境 (D09)" in messages[6]
    assert "belongs to level-1 item 临时救助 (D14-04)" in messages[7]
    assert messages[8] == "二级事项 is empty"
    assert "unrecognised tick mark '有'" in messages[9]
    assert messages[10] == "unknown header layout: missing columns 公开时限"
    assert "'说明'" in messages[11] and "no domain" in messages[11]


def test_unverified_items_may_leave_required_cells_empty():
    """未核实 items come from incomplete sources; gaps in them are not import errors."""
    base = standard_catalog()
    wb = _workbook(base, "D14")
    ws = wb["社会救助"]
    r = _rows_by_code(ws)["D14-02-01"]
    ws[f"F{r}"] = None
    with pytest.raises(CatalogImportError):
        import_catalog(_save(wb), base=base)
    ws[f"O{r}"] = "未核实"
    imported = import_catalog(_save(wb), base=base)
    assert imported.level2("D14-02-01").time_limit is None and not imported.level2("D14-02-01").verified


@pytest.mark.parametrize("data", [b"", b"just some text", b"PK\x03\x04 not really a zip", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1old xls"])
def test_a_file_that_is_not_xlsx_is_one_clear_problem(data):
    with pytest.raises(CatalogImportError) as caught:
        import_catalog(data, base=standard_catalog())
    [problem] = caught.value.problems
    assert problem.sheet == "" and problem.row is None and problem.column is None
    assert ".xls" in problem.message
    assert str(problem) == problem.message


def test_a_rename_with_its_code_keeps_the_id():
    base = standard_catalog()
    wb = _workbook(base, "D14")
    ws = wb["社会救助"]
    row = _rows_by_code(ws)
    ws[f"C{row['D14-02-03']}"] = "低保审核信息公示"
    ws[f"B{row['D14-02-01']}"] = "城乡最低生活保障"  # the level-1 item is renamed too
    imported = import_catalog(_save(wb), base=base)

    assert imported.level2("D14-02-03") == base.level2("D14-02-03").model_copy(update={"name": "低保审核信息公示"})
    assert imported.level1("D14-02").name == "城乡最低生活保障"
    assert [i.id for i in imported.level1("D14-02").items] == [i.id for i in base.level1("D14-02").items]
    assert {d.code for d in imported.domains if d != base.domain(d.code)} == {"D14"}


def test_new_items_get_ids_that_cannot_collide_with_standard_numbering():
    base = standard_catalog()
    wb = _workbook(base, "D14")
    ws = wb["社会救助"]
    last = max(_rows_by_code(ws).values())
    template = [ws.cell(last, c).value for c in range(1, 17)]

    def add(r: int, level1: str | None, name: str) -> None:
        values = [None, level1, name, *template[3:15], None]  # no 序号, no 事项编码
        for c, value in enumerate(values, start=1):
            ws.cell(r, c).value = value

    add(last + 1, None, "救助资金发放")  # continues 临时救助 (merged block ends above)
    add(last + 2, "社会救助资金", "资金使用情况")
    add(last + 3, None, "审计结果")
    imported = import_catalog(_save(wb), base=base)

    assert [i.id for i in imported.level1("D14-04").items][-1] == "D14-04-101"
    assert imported.level1("D14-05") == Level1Item(
        id="D14-05",
        name="社会救助资金",
        items=tuple(imported.level2(i) for i in ("D14-05-101", "D14-05-102")),
    )
    assert [imported.level2(i).name for i in ("D14-05-101", "D14-05-102")] == ["资金使用情况", "审计结果"]


def test_text_cells_and_separators_are_normalised():
    """公开对象/方式/层级 as single text cells, full-width codes, channels split on any separator."""
    base = standard_catalog()
    wb = Workbook()
    ws = wb.active
    ws.title = "社会救助领域"
    ws.append(["序号", "一级事项", "二级事项", "公开内容", "公开依据", "公开时限", "公开主体", "公开渠道", "公开对象", "公开方式", "公开层级", "事项编码"])
    item = base.level2("D14-02-03")
    ws.append([1, "最低生活保障", "审核信息", item.content, item.basis, item.time_limit, item.subject,
               "社区/企事业单位/村公示栏（电子屏）；", "全社会", "主动公开", "乡镇级", "Ｄ１４－０２－０３ "])  # fmt: skip
    ws.append([None, None, "办事指南", "要素", "依据", "10个工作日", "民政部门", "政府网站;两微一端,公开查阅点", "特定群体", "依申请", "县乡两级"])
    imported = import_catalog(_save(wb), base=base)

    assert imported.level1("D14-02").items[0] == item
    guide = imported.level1("D14-02").items[1]
    assert guide.id == "D14-02-02"  # matched by (一级事项, 二级事项) names
    assert (guide.channels, guide.audience, guide.method, guide.levels) == (
        ("政府网站", "两微一端", "公开查阅点"), "特定群体", "依申请", ("县级", "乡级"),
    )  # fmt: skip
    assert [l1.id for l1 in imported.domain("D14").level1] == ["D14-02"]  # the sheet replaces the domain


def test_problem_reads_like_an_excel_reference():
    assert str(Problem("社会救助", 7, "C", "公开时限 is empty")) == "社会救助!C7: 公开时限 is empty"
    assert str(Problem("社会救助", None, None, "no header")) == "社会救助: no header"
    assert str(Problem("", None, None, "not a workbook")) == "not a workbook"
