"""Writes tests/data/bridge-mapping.xlsx: a mapping workbook as an office edits it by hand.

Columns in their own order with an extra reference column, type codes typed as numbers (1 for
01), full-width spaces, blank rows, ✓/√ ticks, a prefix rule and a region rule, overrides that
re-file one item and exclude another, and an area code for 长沙高新区.

    .venv/bin/python tests/data/make_bridge_mapping.py
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook

from contracts.service_items import credit_code_check, organization_code_check

OUT = Path(__file__).with_name("bridge-mapping.xlsx")


def _credit(area6: str, body: str) -> str:
    first17 = f"11{area6}{body}{organization_code_check(body)}"
    return first17 + credit_code_check(first17)


# A 文艺路街道 低保 item re-filed under 特困供养, and a 天心区 enforcement item kept out of the column.
REFILED = f"43070001000000-430102001000-000-{_credit('430102', '00608117')}-1-00"
EXCLUDED = f"43020021000000-430103000000-000-{_credit('430103', '00608125')}-1-00"


def build() -> Workbook:
    workbook = Workbook()
    rules = workbook.active
    rules.title = "映射规则"
    rules.append(["二级事项", "基本编码", "事项名称（参考）", "事项类型", "地区", "领域", "一级事项", "说明"])
    rules.append(["D14-02-02", "43070001000000", "最低生活保障对象认定", 7, "", "D14", "D14-02", "低保 → 办事指南"])
    rules.append([])
    rules.append(["D25-01-01", "4301*", "食品经营许可等", "", "", "D25", "D25-01", "前缀规则"])
    rules.append(["D01-03-01", "43010010000000", "乡村建设规划许可证核发", "01", "430121", "D01", "D01-03", "仅长沙县"])
    rules.append(["D02-01-01", "43010010000000", "乡村建设规划许可证核发", "01", "430121", "D02", "D02-01", "同一事项两处公开"])
    rules.append(["\u3000D16-01-01\u3000", "43070018000000", "出生登记", "07", "", "", "", ""])
    overrides = workbook.create_sheet("指定映射")
    overrides.append(["实施编码", "不公开", "地区", "领域", "一级事项", "二级事项", "说明"])
    overrides.append([REFILED, "", "", "D14", "D14-03", "D14-03-02", "改挂特困供养"])
    overrides.append([EXCLUDED, "√", "", "", "", "", "执法事项不在专栏公开"])
    areas = workbook.create_sheet("区划对照")
    areas.append(["平台区划代码", "本系统地区代码", "说明"])
    areas.append(["430190000000", "4301GX", "长沙高新区"])
    return workbook


if __name__ == "__main__":
    build().save(OUT)
    print(f"wrote {OUT}")
