"""Old column path → placement (table first, then rules in order, else unmapped), and a config
that fails, field by field, before any row is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.migration import ConfigError, Reject, build_placer, load_config, normalise_path, read_legacy
from services.migration.config import parse_config
from services.migration.mapping import RuleSpec

from .conftest import MIGRATOR, SAMPLES


def rule(pattern: str, level2: str, *, glob: bool = False, region: str | None = None) -> RuleSpec:
    return RuleSpec(**({"glob": pattern} if glob else {"prefix": pattern}), domain=level2[:3], level1=level2[:6], level2=level2, region=region)


def write_table(path: Path, rows: list[list[str]]) -> Path:
    lines = ["old_path,region_code,domain,level1_id,level2_id", *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("政务公开/重点领域/社会救助/低保", "政务公开/重点领域/社会救助/低保"),
        (" 政务公开 > 重点领域 >社会救助> 低保 ", "政务公开/重点领域/社会救助/低保"),
        ("信息公开 » 社会救助 » 低保\u3000政策", "信息公开/社会救助/低保 政策"),
        ("/政务公开//重点领域/", "政务公开/重点领域"),
        ("政务公开\\重点领域＞社会救助›低保", "政务公开/重点领域/社会救助/低保"),
        ("", ""),
    ],
)
def test_paths_are_normalised(raw, expected):
    assert normalise_path(raw) == expected


def test_table_beats_rules_and_rules_apply_in_order(directory, tmp_path):
    table = write_table(tmp_path / "table.csv", [["政务公开/社会救助/低保/政策", "", "D14", "D14-02", "D14-02-01"]])
    placer = build_placer(
        [
            rule("政务公开/社会救助/低保", "D14-02-04"),
            rule("政务公开/社会救助", "D14-01-01"),  # broader, later: only what the first misses
            rule("政务公开/*/财政/**", "D04-01-03", glob=True),
        ],
        table=table,
        default_region="430121",
        directory=directory,
    )

    def where(path: str) -> str | None:
        target = placer.place(path)
        return target and target.ref.level2_id

    assert where("政务公开/社会救助/低保/政策") == "D14-02-01", "the table's exact path wins over the 低保 rule"
    assert where("政务公开/社会救助/低保/政策/2021") == "D14-02-04", "the table is exact; deeper paths fall to the rules"
    assert where("政务公开/社会救助/低保") == "D14-02-04"
    assert where("政务公开/社会救助/低保/审批") == "D14-02-04", "first matching rule wins"
    assert where("政务公开/社会救助/特困") == "D14-01-01"
    assert where("政务公开/社会救助低保") is None, "a prefix matches whole segments only"
    assert where("政务公开/重点领域/财政/预算/2021") == "D04-01-03", "** spans segments"
    assert where("政务公开/重点/领域/财政/预算") is None, "* stays within one segment"
    assert where("政务公开/机构概况") is None, "no match: unmapped, never the nearest guess"
    assert placer.place("政务公开/社会救助/低保").ref.region_code == "430121", "rules default to the config's region"


def test_unmapped_rows_are_rejected_naming_the_path(directory, tmp_path):
    config = parse_config(
        "\n".join(
            [
                'site = "t"',
                'region_code = "430121"',
                "[columns]",
                'title = "标题"',
                'body = "内容"',
                'date = "日期"',
                'path = "栏目"',
                "[[rules]]",
                'prefix = "公开/低保"',
                'domain = "D14"',
                'level1 = "D14-02"',
                'level2 = "D14-02-04"',
            ]
        ),
        base_dir=tmp_path,
    )
    export = tmp_path / "export.csv"
    export.write_text("标题,内容,日期,栏目\n低保公示,<p>x,2021-3-5,公开/低保\n领导信息,<p>y,2021-3-6,公开/领导\n", encoding="utf-8")
    with read_legacy(config, export, principal=MIGRATOR, catalog_directory=directory) as stream:
        items = list(stream)
    assert [type(i).__name__ for i in items] == ["Planned", "Reject"]
    assert isinstance(items[1], Reject) and items[1].reason == "unmapped_path" and "公开/领导" in items[1].detail


SAMPLE_CONFIG = (SAMPLES / "changsha-county.toml").read_text("utf-8")


def config_error(tmp_path: Path, directory, text: str, table: str | None = None) -> list[str]:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    if table is not None:
        (tmp_path / "changsha-county-mapping.csv").write_text(table, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, directory)
    assert str(path) in str(caught.value)
    return caught.value.problems


def test_the_sample_configs_load(directory):
    for name in ("changsha-county.toml", "liuyang.toml", "wangcheng.toml"):
        config = load_config(SAMPLES / name, directory)
        assert config.source == f"/migration/{config.site}"
    assert load_config(SAMPLES / "changsha-county.toml", directory).mapping_table == SAMPLES / "changsha-county-mapping.csv"


def test_a_target_the_catalog_lacks_fails_listing_the_valid_choices(tmp_path, directory):
    table = (SAMPLES / "changsha-county-mapping.csv").read_text("utf-8-sig")
    text = SAMPLE_CONFIG.replace('level2 = "D14-02-04"          # 审批信息', 'level2 = "D14-02-09"').replace('domain = "环境保护"', 'domain = "环保"')
    problems = config_error(tmp_path, directory, text, table)
    assert len(problems) == 2, problems
    assert problems[0].startswith('rules #1 (prefix "政务公开/重点领域/社会救助/低保"): level2:')
    assert "'D14-02-09' is not a level-2 item of 社会救助 / 最低生活保障" in problems[0]
    assert "D14-02-01 政策法规文件, D14-02-02 办事指南, D14-02-03 审核信息, D14-02-04 审批信息" in problems[0]
    assert problems[1].startswith("rules #8") and "unknown domain '环保'" in problems[1] and "D09 生态环境" in problems[1]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('level1 = "D14-03"', 'level1 = "D09-01"', "'D09-01' is not a level-1 item of 社会救助; valid: D14-01 综合业务, D14-02 最低生活保障"),
        ('region_code = "430121"', 'region_code = "439999"', "region: unknown region code '439999'; counties known: 430102 芙蓉区"),
        ('domain = "D04"', 'domain = "税收管理"', "level1: 税收管理 has no level-1 items in catalog standard@2022"),
    ],
)
def test_each_kind_of_bad_target(tmp_path, directory, old, new, expected):
    table = (SAMPLES / "changsha-county-mapping.csv").read_text("utf-8-sig")
    problems = config_error(tmp_path, directory, SAMPLE_CONFIG.replace(old, new, 1), table)
    assert any(expected in p for p in problems), problems


def test_a_bad_mapping_table_row_names_its_line(tmp_path, directory):
    table = "旧栏目路径,地区代码,领域,一级事项,二级事项\n政务公开/低保,,D14,D14-02,D14-02-01\n政务公开/特困,430121999,D14,D14-03,D14-03-01\n政务公开/低保,,D14,D14-02,D14-02-02\n,,D14,D14-02,D14-02-01\n"
    problems = config_error(tmp_path, directory, SAMPLE_CONFIG, table)
    assert any("line 3 (政务公开/特困): region: unknown region code '430121999'" in p for p in problems), problems
    assert any("line 4 (政务公开/低保): already mapped differently on line 2" in p for p in problems), problems
    assert any("line 5: no old path" in p for p in problems), problems
    assert all(p.startswith("mapping table ") for p in problems)


def test_a_mapping_table_without_its_columns(tmp_path, directory):
    problems = config_error(tmp_path, directory, SAMPLE_CONFIG, "路径,事项\n政务公开/低保,D14-02-01\n")
    assert any("no header row found" in p and "二级事项" in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('site = "changsha-county"', 'site = "长沙县 site"', "site: String should match pattern"),
        ('title = "标题"\n', "", "columns.title: Field required"),
        ("[columns]", "[colums]", "colums: Extra inputs are not permitted"),
        ('encoding = "auto"', 'encoding = "big5"', "encoding: Value error, unknown encoding 'big5'"),
        (
            'glob = "政务公开/*/财政预决算/部门预算"',
            'glob = "政务公开/*/财政预决算/部门预算"\nprefix = "政务公开"',
            "rules #4: Value error, give exactly one of prefix or glob",
        ),
        ('format = "csv"', 'format = "xls"', "format: Input should be 'csv', 'xlsx' or 'jsonl'"),
        ('base_url = "http://www.csx.gov.cn/"', 'base_url = "www.csx.gov.cn"', "base_url: Input should be a valid URL"),
        ('region_code = "430121"', "region_code = [", "not valid TOML"),
    ],
)
def test_config_fields_fail_fast_and_by_name(tmp_path, directory, old, new, expected):
    text = SAMPLE_CONFIG if old != 'format = "csv"' else SAMPLE_CONFIG.replace('site = "changsha-county"', 'site = "changsha-county"\nformat = "csv"')
    assert old in text
    problems = config_error(tmp_path, directory, text.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_a_config_that_could_place_nothing(tmp_path, directory):
    text = 'site = "x"\nregion_code = "430121"\n[columns]\ntitle = "t"\nbody = "b"\ndate = "d"\npath = "p"\n'
    problems = config_error(tmp_path, directory, text)
    assert any("no [[rules]] and no mapping_table" in p for p in problems), problems


def test_a_missing_mapping_table(tmp_path, directory):
    problems = config_error(tmp_path, directory, SAMPLE_CONFIG)
    assert any("mapping table" in p and "not found" in p for p in problems), problems
