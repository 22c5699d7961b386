"""Opening exports: encodings, delimiters, headers below title rows, and files that cannot be read."""

from __future__ import annotations

import codecs
import tracemalloc
from pathlib import Path

import pytest
from openpyxl import Workbook

from services.migration import Planned, SourceError, read_legacy
from services.migration.config import parse_config
from services.migration.sources import detect_encoding

from .conftest import MIGRATOR

CONFIG = """
site = "sources"
region_code = "430121"
{extra}
[columns]
title = "标题"
body = "内容"
date = "发布日期"
path = "栏目"
[[rules]]
prefix = "公开/低保"
domain = "D14"
level1 = "D14-02"
level2 = "D14-02-04"
"""
ROWS = [
    ["标题", "内容", "发布日期", "栏目"],
    ["低保公示", "<p>城乡低保名单，见下表", "2021年3月5日", "公开/低保"],
    ["特困公示", "<p>名单", "2021-3-6", "公开/低保"],
]


def config(tmp_path: Path, extra: str = ""):
    return parse_config(CONFIG.format(extra=extra), base_dir=tmp_path)


def read(path: Path, directory, cfg) -> list:
    with read_legacy(cfg, path, principal=MIGRATOR, catalog_directory=directory) as stream:
        return list(stream)


def write_csv(path: Path, encoding: str, delimiter: str = ",", rows=ROWS, prefix: str = "") -> Path:
    text = prefix + "".join(delimiter.join(row) + "\r\n" for row in rows)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gb18030", "gb18030"), ("gbk", "gb18030"), ("utf-16", "utf-16")],
)
def test_encodings_are_detected(tmp_path, directory, encoding, detected):
    path = write_csv(tmp_path / "export.csv", encoding, "\t" if encoding == "utf-16" else ",")
    assert detect_encoding(path) == detected
    items = read(path, directory, config(tmp_path))
    assert [i.request.title for i in items] == ["低保公示", "特困公示"]
    assert items[0].request.body_html == "<p>城乡低保名单，见下表"


def test_a_bom_wins_over_the_declared_encoding(tmp_path, directory):
    path = write_csv(tmp_path / "export.csv", "utf-8-sig")
    items = read(path, directory, config(tmp_path, 'encoding = "gb18030"'))
    assert [i.request.title for i in items] == ["低保公示", "特困公示"]


def test_undecodable_bytes_reject_the_row_instead_of_garbling_it(tmp_path, directory):
    path = write_csv(tmp_path / "export.csv", "utf-8")
    path.write_bytes(path.read_bytes().replace("特困".encode(), b"\xff\xfe"))  # a damaged row
    items = read(path, directory, config(tmp_path, 'encoding = "utf-8"'))
    assert [type(i).__name__ for i in items] == ["Planned", "Reject"]
    assert (items[1].reason, items[1].detail) == ("bad_encoding", "标题: undecodable bytes (is the encoding right?)")


def test_a_wrong_encoding_fails_at_the_header_saying_what_was_tried(tmp_path, directory):
    path = write_csv(tmp_path / "export.csv", "gb18030")
    with pytest.raises(SourceError, match="read as utf-8, split at ','"):
        read_legacy(config(tmp_path, 'encoding = "utf-8"'), path, principal=MIGRATOR, catalog_directory=directory)


@pytest.mark.parametrize("delimiter", [",", "\t", ";", "|"])
def test_the_delimiter_is_the_one_that_splits_the_header(tmp_path, directory, delimiter):
    rows = [ROWS[0], ["低保公示", "<p style='a:b;c:d'>名单, 见下表", "2021年3月5日", "公开/低保"]]
    text = "导出, 2023\r\n" + "".join(delimiter.join(f'"{c}"' for c in row) + "\r\n" for row in rows)
    (tmp_path / "export.csv").write_text(text, encoding="utf-8")
    [item] = read(tmp_path / "export.csv", directory, config(tmp_path))
    assert isinstance(item, Planned) and item.request.body_html == "<p style='a:b;c:d'>名单, 见下表"


def test_a_missing_column_fails_before_any_row_naming_what_is_there(tmp_path, directory):
    path = write_csv(tmp_path / "export.csv", "utf-8", rows=[["标题", "正文", "发布日期", "栏目"], ROWS[1]])
    with pytest.raises(SourceError, match="no column '内容'; it has: 标题, 正文, 发布日期, 栏目"):
        read_legacy(config(tmp_path), path, principal=MIGRATOR, catalog_directory=directory)


def test_no_header_row(tmp_path, directory):
    path = write_csv(tmp_path / "export.csv", "utf-8", rows=[["名称", "正文"], ["低保", "<p>"]])
    with pytest.raises(SourceError, match="no header row naming the title column '标题'"):
        read_legacy(config(tmp_path), path, principal=MIGRATOR, catalog_directory=directory)


@pytest.mark.parametrize(
    ("name", "message"),
    [("export.xls", "old binary .xls"), ("export.doc", "cannot tell the format"), ("missing.csv", "no such file")],
)
def test_files_that_cannot_be_read(tmp_path, directory, name, message):
    if name != "missing.csv":
        (tmp_path / name).write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(SourceError, match=message):
        read_legacy(config(tmp_path), tmp_path / name, principal=MIGRATOR, catalog_directory=directory)


def test_xlsx_sheet_by_name_and_a_missing_sheet(tmp_path, directory):
    workbook = Workbook()
    workbook.active.title = "说明"
    workbook.active.append(["本表为导出数据"])
    sheet = workbook.create_sheet("数据")
    for row in ROWS:
        sheet.append(row)
    workbook.save(tmp_path / "export.xlsx")
    items = read(tmp_path / "export.xlsx", directory, config(tmp_path, 'sheet = "数据"'))
    assert [(i.line, i.request.title) for i in items] == [(2, "低保公示"), (3, "特困公示")]
    with pytest.raises(SourceError, match="no sheet '信息'; sheets: 说明, 数据"):
        read_legacy(config(tmp_path, 'sheet = "信息"'), tmp_path / "export.xlsx", principal=MIGRATOR, catalog_directory=directory)
    with pytest.raises(SourceError, match="not a readable xlsx"):
        (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not a zip")
        read_legacy(config(tmp_path), tmp_path / "broken.xlsx", principal=MIGRATOR, catalog_directory=directory)


def test_jsonl_with_a_bom_and_the_format_named_in_the_config(tmp_path, directory):
    path = tmp_path / "dump.txt"
    path.write_bytes(codecs.BOM_UTF8 + '{"标题": "低保公示", "内容": "<p>x", "发布日期": "2021-3-5", "栏目": "公开/低保"}\n'.encode())
    [item] = read(path, directory, config(tmp_path, 'format = "jsonl"'))
    assert isinstance(item, Planned) and item.line == 1


def test_a_large_csv_streams_in_constant_memory(tmp_path, directory):
    """Memory held while reading does not grow with the file (rows are not kept)."""
    row = ["低保公示{n}", "<p>" + "城乡低保名单" * 150, "2021-3-5", "公开/低保"]

    def peak(rows: int) -> int:
        path = tmp_path / f"export-{rows}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            handle.write(",".join(ROWS[0]) + "\n")
            handle.writelines(",".join(c.format(n=n) for c in row) + "\n" for n in range(rows))
        cfg = config(tmp_path)
        tracemalloc.start()
        with read_legacy(cfg, path, principal=MIGRATOR, catalog_directory=directory) as stream:
            # drop each item as it comes; only the duplicate index keeps something per row
            count = sum(1 for _ in stream)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == rows
        return top

    small, large = peak(500), peak(5000)
    # ten times the rows (2.7 MB more file) may add the duplicate index (~100 B a row), not the rows
    assert large - small < 1_000_000, (small, large)
