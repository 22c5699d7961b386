"""Rows → requests: stable source refs, duplicates, and every per-row reject reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.migration import Planned, Reject, Skipped, read_legacy
from services.migration.config import parse_config

from .conftest import MIGRATOR

ROOT = Path(__file__).parents[3]
HEADER = "编号,标题,内容,发布日期,成文日期,栏目,索引号,发布机构,附件"
GOOD = "A1,低保公示,<p>名单,2021-3-5,,公开/低保,IDX-1,长沙县民政局,"


def config(tmp_path: Path, *, with_id: bool = False, base_url: str | None = None, audit_column: bool = False):
    lines = [
        'site = "rows"',
        'region_code = "430121"',
        *([f'base_url = "{base_url}"'] if base_url else []),
        "[columns]",
        *(['id = "编号"'] if with_id else []),
        'title = "标题"',
        'body = "内容"',
        'date = "发布日期"',
        'formed_date = "成文日期"',
        'path = "栏目"',
        'index_number = "索引号"',
        'department = "发布机构"',
        'attachments = "附件"',
        "[[rules]]",
        'prefix = "公开/低保"',
        'domain = "D14"',
        'level1 = "D14-02"',
        'level2 = "D14-02-04"',
        # A second old column for the same kind of article (审核 as well as 审批).
        *(["[[rules]]", 'prefix = "部门/民政/审核"', 'domain = "D14"', 'level1 = "D14-02"', 'level2 = "D14-02-03"'] if audit_column else []),
    ]
    return parse_config("\n".join(lines), base_dir=tmp_path)


def read(tmp_path: Path, rows: list[str], directory, **options) -> list:
    export = tmp_path / "export.csv"
    export.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    with read_legacy(config(tmp_path, **options), export, principal=MIGRATOR, catalog_directory=directory) as stream:
        return list(stream)


def ref_of(item) -> str:
    assert isinstance(item, Planned), item
    return item.request.source_ref


def test_refs_without_an_id_column_come_from_path_title_date_and_index_number(tmp_path, directory):
    items = read(
        tmp_path,
        [
            GOOD,
            "A2,低保公示,<p>另一个正文,2021/03/05 16:00,,公开 > 低保,IDX-1,另一个机构,",  # same identity, other body
            "A3,低保公示,<p>名单,2021-3-6,,公开/低保,IDX-1,长沙县民政局,",  # another day
            "A4,低保公示,<p>名单,2021-3-5,,公开/低保,IDX-2,长沙县民政局,",  # another index number
            "A5,低保公示（二）,<p>名单,2021-3-5,,公开/低保,IDX-1,长沙县民政局,",  # another title
            "A6,低保公示,<p>名单,2021-3-5,,公开/低保/审批,IDX-1,长沙县民政局,",  # another column
        ],
        directory,
    )
    assert isinstance(items[1], Reject) and items[1].reason == "conflicting_duplicate", "same identity, different content"
    refs = [ref_of(items[0]), *(ref_of(i) for i in items[2:])]
    assert len(set(refs)) == 5
    assert refs[0].startswith("row:2021-03-05:") and refs[1].startswith("row:2021-03-06:") and all(len(r) == 47 for r in refs)
    # The derivation is part of the contract with earlier runs: changing it would make a re-run
    # of an already migrated export publish everything a second time.
    assert refs[0] == "row:2021-03-05:c02b9e2713a32ea3e99da534b45c42fe"


def test_refs_of_an_export_in_publication_order_ascend(tmp_path, directory):
    """So the publisher's index on (source, ref) grows at its end, as its other indexes do."""
    days = ["2019-12-31", "2020-1-2", "2020-02-10", "2021年3月5日", "2021/11/30"]
    items = read(tmp_path, [f"A{n},公示{n},<p>名单,{day},,公开/低保,IDX-{n},长沙县民政局," for n, day in enumerate(days)], directory)
    refs = [ref_of(item) for item in items]
    assert refs == sorted(refs) and len(set(refs)) == len(days)


def test_refs_with_an_id_column_are_the_old_ids(tmp_path, directory):
    items = read(
        tmp_path,
        [
            GOOD,
            "A2,低保公示,<p>名单,2021-3-5,,公开/低保,IDX-1,长沙县民政局,",
            ",无编号,<p>x,2021-3-5,,公开/低保,,,",
            "x" * 121 + ",长编号,<p>x,2021-3-5,,公开/低保,,,",
        ],
        directory,
        with_id=True,
    )
    assert [ref_of(items[0]), ref_of(items[1])] == ["A1", "A2"], "same content, different ids: two items"
    assert [(i.reason, i.detail) for i in items[2:]] == [("missing_id", "编号 is blank"), ("bad_id", "编号 is 121 characters, more than 120")]


def test_refs_are_the_same_in_another_process(directory):
    """Another interpreter, another hash seed: the same refs (Python's own hash would differ)."""
    script = (
        "import json; from pathlib import Path\n"
        "from contracts.catalog import regions_of_city, standard_catalog\n"
        "from contracts.identity import Principal\n"
        "from services.publisher.gate.domain import Directory\n"
        "from services.migration import Planned, load_config, read_legacy\n"
        "d = Directory.single(standard_catalog(), {r.code: r for r in regions_of_city('4301')})\n"
        "s = Path('tests/data/migration')\n"
        "with read_legacy(load_config(s / 'changsha-county.toml', d), s / 'changsha-county.csv', principal=Principal(user='m'), catalog_directory=d) as items:\n"
        "    print(json.dumps([[i.line, i.request.source_ref] for i in items if isinstance(i, Planned)]))\n"
    )
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
            ).stdout
        )
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and len(runs[0]) == 16


def test_repeats_are_skipped_only_when_exact(tmp_path, directory):
    items = read(
        tmp_path,
        [
            GOOD,
            "A1, 低保公示\u3000,<p>名单,2021-03-05,,公开 / 低保,IDX-1,长沙县民政局 ,",  # spacing and date spelling differ: same row
            GOOD,
            "A1,低保公示,<p>名单,2021-3-5,,公开/低保,IDX-1,长沙县民政局,名单|http://a.gov.cn/m.xls",  # an attachment more
        ],
        directory,
    )
    assert isinstance(items[0], Planned)
    assert [(type(i).__name__, i.reason) for i in items[1:]] == [("Skipped", "duplicate"), ("Skipped", "duplicate"), ("Reject", "conflicting_duplicate")]
    assert ref_of(items[0]) in items[1].detail


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        ("A1,,<p>x,2021-3-5,,公开/低保,,,", "missing_title", "标题 is blank"),
        ("A1," + "长" * 201 + ",<p>x,2021-3-5,,公开/低保,,,", "title_too_long", "标题 is 201 characters, more than 200"),
        ("A1,公示,<p>x,,,公开/低保,,,", "missing_date", "发布日期 is blank"),
        ("A1,公示,<p>x,2021-02-29,,公开/低保,,,", "bad_date", "发布日期: '2021-02-29': day is out of range for month"),
        ("A1,公示,<p>x,2021-3-5,三月,公开/低保,,,", "bad_formed_date", "成文日期: '三月' is not a date"),
        ("A1,公示,<p>x,2021-3-5,2021-3-6,公开/低保,,,", "formed_after_published", "成文日期 2021-03-06 is after 发布日期 2021-03-05"),
        ("A1,公示,<p>x,2021-3-5,,,,,", "missing_path", "栏目 is blank"),
        ("A1,公示,<p>x,2021-3-5,,公开/低保,,,见附件", "bad_attachment", "附件: no link in '见附件'"),
        ("A1,公示,<p>x,2021-3-5,,公开/低保,,,/up/a.pdf", "bad_attachment", "set base_url"),
        ("A1,公示,<p>x,2021-3-5,,公开/办事,,,", "unmapped_path", "'公开/办事'"),
        ("A1,公示\x07,<p>x,2021-3-5,,公开/低保,,,", "invalid_title", "title: Value error, must not contain control characters"),
        ("A1,公示,<p>x,2021-3-5,,公开/低保,," + "机" * 101 + ",", "invalid_publishing_body", "publishing_body: String should have at most 100 characters"),
        ("A1,公示,<p>x,2021-3-5,,公开/低保,,,附件|ftp://a.gov.cn/x.pdf", "invalid_attachments", "attachments.0.url"),
        ("A1,公示,<p>x,2021-3-5,,公开/低保,,,,,extra", "column_count", "11 cells, but the header has 9 columns"),
    ],
)
def test_each_row_problem_is_a_reject_with_its_reason(tmp_path, directory, row, reason, detail):
    items = read(tmp_path, [row], directory)
    assert len(items) == 1 and isinstance(items[0], Reject), items
    assert (items[0].reason, items[0].line) == (reason, 2)
    assert detail in items[0].detail
    assert items[0].source_fields["编号"] == "A1", "the row as the export had it"


def test_blank_rows_are_skipped_not_rejected(tmp_path, directory):
    items = read(tmp_path, ["", ",,,,,,,,", " , ,\u3000,,,,,,", GOOD, ",,,,,,,,,,"], directory)
    assert [(type(i).__name__, i.line) for i in items] == [("Skipped", 2), ("Skipped", 3), ("Skipped", 4), ("Planned", 5), ("Skipped", 6)]
    assert all(i.reason == "blank" for i in items if isinstance(i, Skipped))


def test_a_request_carries_what_the_gate_needs(tmp_path, directory):
    [item] = read(
        tmp_path,
        ["A1,低保公示,<p style='x'>名单<script>x()</script>,2021-3-5 10:00,2021-3-1,公开/低保/审批,IDX-1,长沙县民政局,表|/u/a.xls"],
        directory,
        base_url="http://www.csx.gov.cn",
    )
    request = item.request
    assert request.body_html == "<p style='x'>名单<script>x()</script>", "raw; the gate sanitises"
    assert (request.formed_at.isoformat(), request.published_at.isoformat()) == ("2021-03-01", "2021-03-05T10:00:00+08:00")
    assert [p.model_dump() for p in request.placements] == [{"region_code": "430121", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-04"}]
    assert [(a.name, str(a.url)) for a in request.attachments] == [("表", "http://www.csx.gov.cn/u/a.xls")]
    assert (request.index_number, request.publishing_body, request.actor) == ("IDX-1", "长沙县民政局", MIGRATOR)
    assert item.old_path == "公开/低保/审批"
    assert item.reject("gate", "no").source_fields is item.source_fields


def test_a_body_keeps_pointing_at_the_old_sites_files(tmp_path, directory):
    [item] = read(
        tmp_path,
        ['A1,低保公示,"<p><a href=""/up/名单.xls"">名单</a><img src=""img/1.png""></p>",2021-3-5,,公开/低保/审批,,,'],
        directory,
        base_url="http://www.csx.gov.cn/zwgk/",
    )
    assert item.request.body_html == '<p><a href="http://www.csx.gov.cn/up/名单.xls">名单</a><img src="http://www.csx.gov.cn/zwgk/img/1.png"></p>'


def test_an_article_listed_under_two_old_columns_is_one_publication_in_both_places(tmp_path, directory):
    items = read(
        tmp_path,
        [
            GOOD,
            "A1,低保公示,<p>名单,2021-3-5,,部门/民政/审核,IDX-1,长沙县民政局,",  # the same article, another column
            "A1,低保公示,<p>名单,2021-3-5,,公开/低保/其他,IDX-1,长沙县民政局,",  # a third column, mapped to the first place
            "A1,低保公示,<p>名单,2021-3-5,,部门/民政/审核,IDX-1,长沙县民政局,",  # the second again
        ],
        directory,
        with_id=True,
        audit_column=True,
    )
    first, second, third, fourth = items
    assert isinstance(first, Planned) and [p.level2_id for p in first.request.placements] == ["D14-02-04"]
    assert isinstance(second, Planned) and second.request.source_ref == first.request.source_ref
    assert [p.level2_id for p in second.request.placements] == ["D14-02-04", "D14-02-03"], "every placement so far"
    assert second.request.model_copy(update={"placements": first.request.placements}) == first.request, "nothing else differs"
    assert [(type(i).__name__, i.reason) for i in (third, fourth)] == [("Skipped", "duplicate"), ("Skipped", "duplicate")]


def test_another_article_under_the_same_id_is_still_a_conflict(tmp_path, directory):
    items = read(tmp_path, [GOOD, "A1,低保公示,<p>另一份名单,2021-3-5,,部门/民政/审核,IDX-1,长沙县民政局,"], directory, with_id=True, audit_column=True)
    assert isinstance(items[1], Reject) and items[1].reason == "conflicting_duplicate"
