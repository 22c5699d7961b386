"""Each sample export read end to end: what is planned, where, and every other row accounted for."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from contracts.events import PublishRequestData
from services.migration import Planned, Reject, Skipped

from .conftest import MIGRATOR, SAMPLES

SHANGHAI = ZoneInfo("Asia/Shanghai")


def planned(items) -> list[Planned]:
    return [i for i in items if isinstance(i, Planned)]


def rejects(items) -> Counter[str]:
    return Counter(i.reason for i in items if isinstance(i, Reject))


def skipped(items) -> Counter[str]:
    return Counter(i.reason for i in items if isinstance(i, Skipped))


def by_title(items, title: str) -> Planned:
    return next(i for i in planned(items) if i.request.title == title)


def csv_line_of(text: str) -> int:
    """The physical line of the CSV sample a text first appears on (GB18030, CRLF)."""
    lines = (SAMPLES / "changsha-county.csv").read_bytes().decode("gb18030").split("\r\n")
    return next(number for number, line in enumerate(lines, start=1) if text in line)


def test_csv_sample_gb18030_with_title_line_and_mapping_table(read_sample):
    items = read_sample("changsha-county.toml", "changsha-county.csv")

    assert len(items) == 29
    assert len(planned(items)) == 16
    assert skipped(items) == {"blank": 3, "duplicate": 2}
    assert rejects(items) == {
        "missing_title": 2,
        "unmapped_path": 1,
        "bad_date": 1,
        "title_too_long": 1,
        "bad_attachment": 1,
        "missing_date": 1,
        "conflicting_duplicate": 1,
    }
    lines = [i.line for i in items]
    assert lines == sorted(set(lines)), "one item per record, lines strictly increasing"
    assert lines[0] == 3, "a title line and the header come first"

    unmapped = next(i for i in items if isinstance(i, Reject) and i.reason == "unmapped_path")
    assert "政务公开/机构概况/领导信息" in unmapped.detail and unmapped.old_path == "政务公开/机构概况/领导信息"
    assert unmapped.line == csv_line_of("长沙县人民政府领导信息")
    assert unmapped.source_fields["标题"] == "长沙县人民政府领导信息" and unmapped.source_fields["序号"] == "12"
    # the record whose quoted body spans three lines moves every later line number down by two
    assert by_title(items, "长沙县2021年教育统计数据").line == csv_line_of("长沙县2021年教育统计数据")


def test_csv_sample_requests_keep_dates_index_numbers_and_raw_html(read_sample):
    items = read_sample("changsha-county.toml", "changsha-county.csv")
    for item in planned(items):
        assert isinstance(item.request, PublishRequestData)
        assert item.request.actor == MIGRATOR
        assert item.request.published_at.tzinfo is not None and item.request.published_at.utcoffset().total_seconds() == 8 * 3600

    low_income = by_title(items, "长沙县2021年3月新增城乡低保对象审批公示")
    assert low_income.request.published_at == datetime(2021, 3, 5, tzinfo=SHANGHAI)
    assert low_income.request.formed_at == date(2021, 3, 5), "formed date defaults to the published date"
    assert low_income.request.index_number == "000014349/2021-00101"
    assert low_income.request.publishing_body == "长沙县民政局"
    assert low_income.old_path == "政务公开/重点领域/社会救助/低保/审批公示"

    budget = by_title(items, "长沙县财政局2021年部门预算")
    assert "<script>" in budget.request.body_html and "<style>" in budget.request.body_html, "bodies stay raw; the gate sanitises"
    assert [(a.name, str(a.url)) for a in budget.request.attachments] == [("2021年部门预算公开表", "http://www.csx.gov.cn/uploads/2021/04/ysgk.pdf")]
    assert budget.request.published_at == datetime(2021, 4, 10, tzinfo=SHANGHAI)

    assert by_title(items, "2021年第一季度特困人员救助供养审批结果").request.published_at == datetime(2021, 3, 5, 10, 30, tzinfo=SHANGHAI)
    assert by_title(items, "关于某某公司建设项目环境影响报告表的批复").request.published_at == datetime(2022, 9, 1, 16, 20, tzinfo=SHANGHAI)
    assert by_title(items, "长沙县2021年教育统计数据").request.published_at == datetime(2021, 7, 1, tzinfo=SHANGHAI), "Excel serial 44378"
    assert by_title(items, "长沙县临时救助实施细则").request.index_number is None, "a blank index number is left to the gate"
    # a title stored with a colour tag comes out as plain text
    by_title(items, "长沙县2021年城乡低保标准调整通知")
    enrolment = by_title(items, "长沙县2022年义务教育招生工作方案")
    assert "\n" in enrolment.request.body_html and "报名时间" in enrolment.request.body_html


def test_csv_sample_placements_table_beats_rules(read_sample):
    items = read_sample("changsha-county.toml", "changsha-county.csv")
    where = {i.request.title: (i.target.ref.region_code, i.target.ref.level2_id) for i in planned(items)}
    # the 低保 prefix rule files under 审批信息 …
    assert where["长沙县2021年3月新增城乡低保对象审批公示"] == ("430121", "D14-02-04")
    assert where["长沙县2021年5月低保资金发放公示"] == ("430121", "D14-02-04")
    # … but the table's exact entries under the same prefix win
    assert where["长沙县最低生活保障实施办法"] == ("430121", "D14-02-01")
    assert where["长沙县2021年低保审核信息（第二批）"] == ("430121", "D14-02-03")
    # township rows go to the township named in the table
    assert where["星沙街道2022年9月低保审批名单公示"] == ("430121001", "D14-02-04")
    assert where["泉塘街道2021年8月低保审批名单"] == ("430121002", "D14-02-04")
    # globs, aliases (预决算, 环境保护) and item names resolve to ids
    assert where["长沙县财政局2021年部门预算"] == ("430121", "D04-01-03")
    assert where["关于某某公司建设项目环境影响报告表的批复"] == ("430121", "D09-01-01")
    assert where["长沙县2021年临时救助政策解读"] == ("430121", "D14-04-01"), "prefix covers deeper paths"
    environment = by_title(items, "关于某某公司建设项目环境影响报告表的批复")
    assert environment.target.label == ("长沙县", "生态环境", "行政许可", "建设项目环境影响评价文件审批")
    assert environment.request.placements[0].domain_code == "D09"


def test_xlsx_sample_ids_date_cells_merged_and_blank_rows(read_sample):
    items = read_sample("liuyang.toml", "liuyang.xlsx")

    assert len(items) == 15
    assert len(planned(items)) == 7
    assert skipped(items) == {"blank": 1, "duplicate": 1}
    assert rejects(items) == {
        "missing_title": 1,  # the merged section row 2021年下半年
        "conflicting_duplicate": 1,
        "missing_id": 1,
        "unmapped_path": 1,
        "bad_date": 1,
        "formed_after_published": 1,
    }
    assert [i.line for i in items][:3] == [3, 4, 5], "sheet rows: a merged title row, then the header"
    assert next(i for i in items if isinstance(i, Skipped) and i.reason == "blank").line == 8

    first = by_title(items, "浏阳市2021年城乡低保标准的通知")
    assert first.request.source_ref == "LY2021001"
    assert first.request.published_at == datetime(2021, 3, 1, 9, 30, tzinfo=SHANGHAI), "a datetime cell"
    assert first.request.formed_at == date(2021, 2, 26), "a date cell"
    assert first.target.ref.level2_id == "D14-02-01"
    assert by_title(items, "浏阳市2021年3月特困人员审批结果").request.published_at == datetime(2021, 3, 5, tzinfo=SHANGHAI), "text date 2021年3月5日"
    guide = by_title(items, "浏阳市2021年临时救助办事指南")
    assert guide.request.published_at == datetime(2021, 4, 14, tzinfo=SHANGHAI), "a bare serial number 44300"
    assert [str(a.url) for a in guide.request.attachments] == ["http://www.liuyang.gov.cn/u/2021/lsjz.doc"]
    assert by_title(items, "浏阳市预防接种门诊名单").request.published_at == datetime(2021, 6, 1, tzinfo=SHANGHAI), "20210601 typed as a number"
    assert by_title(items, "浏阳市预防接种门诊名单").target.ref.domain_code == "D21", "医疗卫生 is an alias of 卫生健康"
    conflict = next(i for i in items if isinstance(i, Reject) and i.reason == "conflicting_duplicate")
    assert "LY2021005" in conflict.detail


def test_jsonl_sample_nested_keys_and_bad_lines(read_sample):
    items = read_sample("wangcheng.toml", "wangcheng.jsonl")

    assert len(items) == 15
    assert len(planned(items)) == 6
    assert skipped(items) == {"blank": 2, "duplicate": 1}
    assert rejects(items) == {"bad_json": 2, "unmapped_path": 1, "bad_date": 1, "formed_after_published": 1, "invalid_index_number": 1}
    bad = [i for i in items if isinstance(i, Reject) and i.reason == "bad_json"]
    assert [i.line for i in bad] == [6, 8]
    assert bad[0].source_fields["(line)"].startswith('{"DOCID": 5005')
    invalid = next(i for i in items if isinstance(i, Reject) and i.reason == "invalid_index_number")
    assert invalid.line == 13 and "index_number" in invalid.detail and "60" in invalid.detail

    jobs = by_title(items, "望城区2021年春季招聘会岗位信息")
    assert jobs.request.source_ref == "5001", "numeric ids become text"
    assert jobs.request.formed_at == date(2021, 3, 4)
    assert [(a.name, str(a.url)) for a in jobs.request.attachments] == [("岗位表.xlsx", "http://www.wangcheng.gov.cn/att/2021/gwb.xlsx")]
    assert jobs.target.ref.level2_id == "D18-01-02"
    training = by_title(items, "望城区2021年职业技能培训计划")
    assert [(a.name, str(a.url)) for a in training.request.attachments] == [("培训报名表", "http://www.wangcheng.gov.cn/att/2021/bmb.doc")]
    assert by_title(items, "望城区2021年义务教育招生范围").target.ref.level2_id == "D20-04-03", "glob 招生* matched 招生范围"


@pytest.mark.parametrize(
    ("config", "export"),
    [("changsha-county.toml", "changsha-county.csv"), ("liuyang.toml", "liuyang.xlsx"), ("wangcheng.toml", "wangcheng.jsonl")],
)
def test_resume_after_a_line_yields_exactly_the_rest(read_sample, config, export):
    whole = read_sample(config, export)
    middle = whole[len(whole) // 2].line
    rest = read_sample(config, export, after_line=middle)
    assert rest == [i for i in whole if i.line > middle]
    assert rest and rest[0].line > middle
    # a repeat of a row before the resume point is still recognised as one
    if export.endswith(".csv"):
        assert any(isinstance(i, Skipped) and i.reason == "duplicate" for i in rest)


def test_two_runs_plan_the_same_requests(read_sample):
    first = read_sample("changsha-county.toml", "changsha-county.csv")
    second = read_sample("changsha-county.toml", "changsha-county.csv")
    assert [(i.line, i.request) for i in planned(first)] == [(i.line, i.request) for i in planned(second)]
    refs = [i.request.source_ref for i in planned(first)]
    assert len(set(refs)) == len(refs), "different rows, different refs"
