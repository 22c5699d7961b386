"""The reject file (written, read back, resumed) and the dry-run summary."""

from __future__ import annotations

import codecs
import csv
import unicodedata
from datetime import datetime

from services.migration import Planned, Reject, RejectWriter, format_summary, load_config, read_legacy, read_rejects, summarise
from services.migration.rejects import cell_text

from .conftest import MIGRATOR, SAMPLES


def write_rejects(path, directory, config: str, export: str, after_line: int | None = None) -> list[Reject]:
    cfg = load_config(SAMPLES / config, directory)
    with read_legacy(cfg, SAMPLES / export, principal=MIGRATOR, catalog_directory=directory, after_line=after_line or 0) as stream:
        with RejectWriter(path, stream.columns, after_line=after_line) as writer:
            written = []
            for item in stream:
                if isinstance(item, Reject):
                    writer.write(item)
                    written.append(item)
    return written


def test_reject_file_round_trip_for_each_format(tmp_path, directory):
    for config, export in [("changsha-county.toml", "changsha-county.csv"), ("liuyang.toml", "liuyang.xlsx"), ("wangcheng.toml", "wangcheng.jsonl")]:
        path = tmp_path / f"{export}.rejects.csv"
        written = write_rejects(path, directory, config, export)
        assert path.read_bytes().startswith(codecs.BOM_UTF8), "Excel opens it as UTF-8"
        back = list(read_rejects(path))
        assert [(r.line, r.reason, r.detail) for r in back] == [(r.line, r.reason, r.detail) for r in written]
        for original, read_back in zip(written, back, strict=True):
            assert {k: v for k, v in read_back.source_fields.items() if v != ""} == {
                k: cell_text(v) for k, v in original.source_fields.items() if cell_text(v) != ""
            }


def test_reject_file_layout(tmp_path, directory):
    path = tmp_path / "rejects.csv"
    write_rejects(path, directory, "changsha-county.toml", "changsha-county.csv")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "detail", "序号", "标题", "内容", "发布日期", "栏目", "索引号", "发布机构", "附件", "other_fields"]
    unmapped = next(r for r in rows if r[1] == "unmapped_path")
    assert unmapped[4] == "长沙县人民政府领导信息" and unmapped[7] == "政务公开/机构概况/领导信息"


def test_jsonl_rejects_keep_keys_outside_the_columns_and_raw_lines(tmp_path, directory):
    path = tmp_path / "rejects.csv"
    write_rejects(path, directory, "wangcheng.toml", "wangcheng.jsonl")
    back = {r.line: r for r in read_rejects(path)}
    assert back[6].source_fields["(line)"].startswith('{"DOCID": 5005'), "a bad JSON line is kept whole"
    assert back[10].source_fields["CHANNEL"] == '{"path": "政务公开/领导之窗"}'
    assert back[10].source_fields["DOCTITLE"] == "望城区领导之窗"


def test_a_resumed_reject_file_keeps_what_came_before_and_nothing_twice(tmp_path, directory):
    path = tmp_path / "rejects.csv"
    everything = write_rejects(path, directory, "changsha-county.toml", "changsha-county.csv")
    cut = everything[3].line
    # a run that wrote all of them but had committed only up to `cut` resumes there
    write_rejects(path, directory, "changsha-county.toml", "changsha-county.csv", after_line=cut)
    assert [(r.line, r.reason) for r in read_rejects(path)] == [(r.line, r.reason) for r in everything]


def test_cell_text():
    assert cell_text(datetime(2021, 3, 5, 10, 0)) == "2021-03-05 10:00:00"
    assert cell_text(None) == ""
    assert cell_text({"a": "低保"}) == '{"a": "低保"}'
    assert cell_text(44260) == "44260"


def test_summary_counts_every_record_once(read_sample):
    items = read_sample("changsha-county.toml", "changsha-county.csv")
    summary = summarise(items, "/migration/changsha-county")
    assert (summary.rows_read, summary.planned, summary.blank, summary.duplicates, summary.rejected) == (29, 16, 3, 2, 8)
    assert summary.rows_read == summary.planned + summary.blank + summary.duplicates + summary.rejected
    assert summary.placements[("长沙县", "社会救助", "最低生活保障", "审批信息")] == 3
    assert summary.placements[("星沙街道", "社会救助", "最低生活保障", "审批信息")] == 1
    assert sum(summary.placements.values()) == 16
    assert summary.rejects["missing_title"] == 2
    assert summary.unmapped_paths == {"政务公开/机构概况/领导信息": 1}
    assert summary.last_line == items[-1].line


def test_summary_of_a_stream_takes_its_source(directory):
    config = load_config(SAMPLES / "liuyang.toml", directory)
    with read_legacy(config, SAMPLES / "liuyang.xlsx", principal=MIGRATOR, catalog_directory=directory) as stream:
        summary = summarise(stream)
    assert summary.source == "/migration/liuyang"
    assert (summary.rows_read, summary.planned) == (15, 7)


def test_format_summary_is_a_readable_table(read_sample):
    items = read_sample("changsha-county.toml", "changsha-county.csv")
    text = format_summary(summarise(items, "/migration/changsha-county"))
    lines = text.splitlines()
    assert lines[0] == "migration /migration/changsha-county"
    for label, count in [("read", 29), ("planned", 16), ("blank, skipped", 3), ("duplicates, skipped", 2), ("rejected", 8)]:
        assert any(line.strip().startswith(label) and line.rstrip().endswith(f" {count}") for line in lines), (label, text)
    assert any("长沙县 / 社会救助 / 最低生活保障 / 审批信息" in line and line.rstrip().endswith(" 3") for line in lines)
    assert any(line.startswith("unmapped_path") and line.rstrip().endswith(" 1") for line in lines)
    assert any(line.startswith("政务公开/机构概况/领导信息") for line in lines)
    # the counts line up in one column, CJK counted as double width
    placement_rows = [line for line in lines if " / " in line and not line.startswith("placement")]
    widths = {sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line) for line in placement_rows}
    assert len(widths) == 1, widths


def test_planned_items_can_become_rejects_for_the_gate_side(read_sample):
    item = next(i for i in read_sample("changsha-county.toml", "changsha-county.csv") if isinstance(i, Planned))
    reject = item.reject("gate_rejected", "auth.region: migration may not publish for region 430121")
    assert (reject.line, reject.reason, reject.old_path) == (item.line, "gate_rejected", item.old_path)
    assert reject.source_fields["标题"] == item.request.title
