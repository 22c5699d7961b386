"""`tongyuan catalog export | import | diff` as an office would use them."""

import io

import openpyxl
import pytest

from services.cli import cli
from tests.conftest import cli_under


@pytest.fixture
def run(tmp_path, monkeypatch):
    with cli_under(monkeypatch, tmp_path / "var", cli) as run:
        yield run


def test_export_edit_import_diff(run, tmp_path):
    exported = tmp_path / "standard.xlsx"
    assert run("catalog", "export", "--region", "standard", "-o", str(exported)).exit_code == 0
    workbook = openpyxl.load_workbook(exported)
    sheet = workbook["社会救助"]
    renamed = next(row for row in sheet.iter_rows() if row[-1].value == "D14-02-02")
    column = next(cell.column for row in sheet.iter_rows(max_row=3) for cell in row if cell.value == "二级事项")
    renamed[column - 1].value = "低保办事指南"
    edited = tmp_path / "county.xlsx"
    workbook.save(edited)

    result = run("catalog", "import", str(edited), "--region", "430102", "--edition", "2023")
    assert result.exit_code == 0, result.output
    assert "430102@2023" in result.output and "published" in result.output
    diff = run("catalog", "diff", "standard@2022", "430102@2023")
    assert "~ D14-02-02 办事指南 → 低保办事指南" in diff.output
    listing = run("catalog", "list").output
    assert "430102@2023\tpublished" in listing


def test_a_bad_workbook_is_refused_whole(run, tmp_path):
    bad = tmp_path / "bad.xlsx"
    workbook = openpyxl.Workbook()
    workbook.active.title = "不存在的领域"
    workbook.active["A1"] = "随便什么"
    buffer = io.BytesIO()
    workbook.save(buffer)
    bad.write_bytes(buffer.getvalue())
    result = run("catalog", "import", str(bad), "--region", "430102", "--edition", "2023")
    assert result.exit_code == 1 and "nothing was imported" in result.output
    assert "430102@2023" not in run("catalog", "list").output
