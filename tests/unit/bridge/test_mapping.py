"""Service item → catalog placements: rules, overrides, area codes, and the workbook."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook

from contracts.catalog import regions_of_city, standard_catalog
from contracts.service_items import ServiceItem, credit_code_check, valid_credit_code
from devtools.platform_simulator import HIGH_TECH_ZONE_AREA, TEMPLATES, seed_items
from services.bridge.mapping import (
    MappingImportError,
    MappingTable,
    Override,
    Rule,
    Target,
    from_xlsx,
    map_item,
    region_of,
    table_from_dict,
    table_to_dict,
    to_xlsx,
)
from tests.data.make_bridge_mapping import EXCLUDED, REFILED

REGIONS = {r.code: r for r in regions_of_city("4301")}
FIXTURE = Path(__file__).parents[2] / "data" / "bridge-mapping.xlsx"
CATALOG = standard_catalog()
TIANXIN_TOWNSHIP = min(r.code for r in REGIONS.values() if r.parent_code == "430103")
ITEMS = [ServiceItem.model_validate(d) for d in seed_items(1344)]  # every basic item × every unit


def item(basic: str, region: str) -> ServiceItem:
    area = HIGH_TECH_ZONE_AREA if region == "4301GX" else region.ljust(12, "0")
    return next(i for i in ITEMS if i.basic_code == basic and i.area_code == area)


def pairs(result) -> set[tuple[str, str]]:
    return {(p.region_code, p.level2_id) for p in result.placements}


def test_area_codes_become_our_regions():
    assert region_of("430102000000", REGIONS, {}) == "430102"
    assert region_of("430102001000", REGIONS, {}) == "430102001"
    assert region_of(HIGH_TECH_ZONE_AREA, REGIONS, {}) is None  # no statistical code …
    assert region_of(HIGH_TECH_ZONE_AREA, REGIONS, {HIGH_TECH_ZONE_AREA: "4301GX"}) == "4301GX"  # … the table says which
    assert region_of("110101000000", REGIONS, {}) is None  # not a region this bridge serves


def test_the_defaults_place_every_simulated_basic_item_they_name_and_report_the_rest():
    table = MappingTable.defaults()
    named = {r.basic_code for r in table.rules}
    for template in TEMPLATES:
        region = "430102001" if template.level == "township" else "4301GX"
        result = map_item(item(template.basic_code, region), table, REGIONS)
        if template.basic_code in named:
            assert result.mapped and all(CATALOG.level2(p.level2_id) for p in result.placements), template.name
            assert {p.region_code for p in result.placements} == {region}
        else:
            assert not result.mapped and template.basic_code in result.reason
    # One item, two columns: 乡村建设规划许可证核发 is filed under 城乡规划 and 重大建设项目.
    assert pairs(map_item(item("43010010000000", "430121"), table, REGIONS)) == {("430121", "D01-03-01"), ("430121", "D02-01-01")}


def test_the_most_specific_rule_wins_and_overrides_beat_rules():
    township_item = item("43070001000000", "430102001")
    table = MappingTable(
        rules=(
            Rule(Target("D14-01-01"), item_type="07"),
            Rule(Target("D14-04-02"), basic_code="4307*"),
            Rule(Target("D14-02-02"), basic_code="43070001000000"),
            Rule(Target("D14-03-02"), basic_code="43070001000000", region="430102"),
        )
    )
    assert pairs(map_item(township_item, table, REGIONS)) == {("430102001", "D14-03-02")}  # narrower region
    assert pairs(map_item(item("43070001000000", TIANXIN_TOWNSHIP), table, REGIONS)) == {(TIANXIN_TOWNSHIP, "D14-02-02")}  # exact code
    assert pairs(map_item(item("43070002000000", TIANXIN_TOWNSHIP), table, REGIONS)) == {(TIANXIN_TOWNSHIP, "D14-04-02")}  # prefix beats type
    assert pairs(map_item(item("43070018000000", "430103"), table, REGIONS)) == {("430103", "D14-04-02")}
    assert pairs(map_item(item("43050003000000", TIANXIN_TOWNSHIP), table, REGIONS)) == set()

    refiled = MappingTable(rules=table.rules, overrides=(Override(township_item.implementation_code, Target("D15-01-03"), region="430102"),))
    assert pairs(map_item(township_item, refiled, REGIONS)) == {("430102", "D15-01-03")}
    excluded = MappingTable(rules=table.rules, overrides=(Override(township_item.implementation_code, exclude=True),))
    result = map_item(township_item, excluded, REGIONS)
    assert result.excluded and not result.mapped


def test_the_table_round_trips_through_json_and_excel():
    table = MappingTable.defaults()
    table = MappingTable(
        rules=table.rules,
        overrides=(
            Override(ITEMS[0].implementation_code, Target("D14-02-02"), region="430102", note="改挂"),
            Override(ITEMS[1].implementation_code, exclude=True),
        ),
        areas=table.areas,
    )
    assert table_from_dict(table_to_dict(table)) == table
    again = from_xlsx(to_xlsx(table, CATALOG), catalog=CATALOG, regions=REGIONS)
    assert again == table
    sheet = load_workbook(__import__("io").BytesIO(to_xlsx(table, CATALOG)))["映射规则"]
    assert [c.value for c in sheet[1]][:7] == ["基本编码", "事项类型", "地区", "领域", "一级事项", "二级事项", "说明"]
    assert sheet["H2"].value == CATALOG.level2(table.rules[0].target.level2_id).name  # names beside the ids


def test_a_hand_edited_workbook_imports():
    table = from_xlsx(FIXTURE.read_bytes(), catalog=CATALOG, regions=REGIONS)
    by_code = {(r.basic_code, r.region): r for r in table.rules}
    assert by_code[("43070001000000", None)].item_type == "07"  # typed as the number 7
    assert by_code[("4301*", None)].target == Target("D25-01-01")
    assert by_code[("43070018000000", None)].target == Target("D16-01-01")  # full-width spaces trimmed
    assert sum(1 for r in table.rules if r.basic_code == "43010010000000" and r.region == "430121") == 2
    assert {o.implementation_code: (o.exclude, o.target) for o in table.overrides} == {REFILED: (False, Target("D14-03-02")), EXCLUDED: (True, None)}
    assert table.areas == {HIGH_TECH_ZONE_AREA: "4301GX"}


def test_a_bad_workbook_is_refused_whole_with_every_problem_located(tmp_path):
    from tests.data.make_bridge_mapping import build

    workbook = build()
    rules = workbook["映射规则"]
    rules["A2"] = "D14-02-99"  # not in the catalog
    rules["D4"] = "99"  # not a type
    rules["E5"] = "999999"  # not a region
    rules["F6"] = "D09"  # domain does not match the item
    workbook["区划对照"]["A2"] = "4301"
    path = tmp_path / "bad.xlsx"
    workbook.save(path)
    with pytest.raises(MappingImportError) as refused:
        from_xlsx(path.read_bytes(), catalog=CATALOG, regions=REGIONS)
    problems = refused.value.problems
    assert any(p.startswith("映射规则!F2") and "D14-02-99" in p for p in problems)
    assert any(p.startswith("映射规则!B4") for p in problems)
    assert any(p.startswith("映射规则!C5") for p in problems)
    assert any(p.startswith("映射规则!6") and "领域" in p for p in problems)
    assert any(p.startswith("区划对照!A2") for p in problems)
    with pytest.raises(MappingImportError, match="不是有效的 Excel"):
        from_xlsx(b"not a workbook")
    del workbook["指定映射"]
    workbook.save(path)
    with pytest.raises(MappingImportError, match="指定映射"):
        from_xlsx(path.read_bytes())


def test_implementation_codes_carry_the_basic_code_area_and_a_valid_credit_code():
    sample = ITEMS[0]
    assert sample.implementation_code.startswith(f"{sample.basic_code}-{sample.area_code}-000-{sample.department_credit_code}-")
    assert valid_credit_code("115113010833722043")  # the example in DOMAIN.md
    assert not valid_credit_code("115113010833722042")
    broken = sample.department_credit_code[:17] + ("0" if credit_code_check(sample.department_credit_code[:17]) != "0" else "1")
    with pytest.raises(ValueError, match="credit"):
        ServiceItem.model_validate(
            {
                **sample.model_dump(),
                "department_credit_code": broken,
                "implementation_code": sample.implementation_code.replace(sample.department_credit_code, broken),
            }
        )
    with pytest.raises(ValueError, match="basic_code"):
        ServiceItem.model_validate({**sample.model_dump(), "basic_code": "43999999000000"})
    with pytest.raises(ValueError):
        ServiceItem.model_validate({**sample.model_dump(), "item_type": "11"})
