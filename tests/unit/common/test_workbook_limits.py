"""Uploaded workbooks (catalog import, bridge mapping) are bounded, inspected before openpyxl
sees them, and parsed in a worker process: hostile ones are refused with the limit named and
change nothing, and the portal keeps serving while a legal one is read."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import zipfile
from functools import cache

import httpx
import pytest
from fastapi.testclient import TestClient

from contracts.catalog import regions_of_city, standard_catalog
from services.bridge.app import build_store
from services.bridge.mapping import MappingTable, Override, Target, to_xlsx
from services.catalog.xlsx_write import export_catalog
from services.column.app import build_store as build_column_store
from services.common.auth import build_verifier
from services.common.settings import Settings
from services.common.workbooks import WorkbookLimits, WorkbookRefused, inspect
from services.portal.app import create_app
from tests.conftest import ADMIN
from tests.factories import catalog_changed

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
MAPPING = "/v1/bridge/mapping.xlsx"
CATALOG_IMPORT = "/v1/catalogs/430102/2031/xlsx"


def workbook(**parts: bytes) -> bytes:
    """A small real workbook (openpyxl's own) with some parts replaced: `sheet` for
    xl/worksheets/sheet1.xml, `strings` for xl/sharedStrings.xml, any other name as given."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "映射规则"
    book.active["A1"] = "基本编码"
    plain = io.BytesIO()
    book.save(plain)
    names = {"sheet": "xl/worksheets/sheet1.xml", "strings": "xl/sharedStrings.xml"}
    replaced = {names.get(k, k): v for k, v in parts.items()}
    out = io.BytesIO()
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for info in source.infolist():
            target.writestr(info.filename, replaced.pop(info.filename, source.read(info.filename)))
        for name, data in replaced.items():
            target.writestr(name, data)
    return out.getvalue()


def sheet_of(rows: bytes, dimension: str = "A1") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><dimension ref="{dimension}"/><sheetData>'.encode()
        + rows
        + b"</sheetData></worksheet>"
    )


@cache
def million_rows() -> bytes:
    """The attack as found: a million empty-ish rows that compress to a small file."""
    return workbook(sheet=sheet_of(b'<row><c s="0"/></row>' * 1_000_000, "A1:A1000000"))


@cache
def strings_bomb() -> bytes:
    return workbook(strings=f'<?xml version="1.0"?><sst xmlns="{MAIN}">'.encode() + b"<si><t>x</t></si>" * 2_000_000 + b"</sst>")


@cache
def zip_bomb() -> bytes:
    return workbook(**{"xl/media/padding.bin": b"\0" * 100_000_000})


RELAXED = WorkbookLimits(max_uncompressed_bytes=10**10, max_ratio=10**6, max_shared_strings_bytes=10**10)


def refused_limit(data: bytes, limits: WorkbookLimits) -> str:
    with pytest.raises(WorkbookRefused) as refused:
        inspect(data, limits)
    assert refused.value.status == 413
    (problem,) = refused.value.problems
    return problem["loc"][-1]


def test_each_limit_is_found_by_the_inspection_and_named():
    assert refused_limit(million_rows(), WorkbookLimits(max_uncompressed_bytes=10**10, max_ratio=10**6)) == "max_rows"
    lying = workbook(sheet=sheet_of(b"".join(b'<row><c t="n"><v>1</v></c></row>' for _ in range(25_000))))  # no r=, small dimension
    assert refused_limit(lying, RELAXED) == "max_rows"
    wide = workbook(sheet=sheet_of(b"<row>" + b'<c t="n"><v>1</v></c>' * 500 + b"</row>"))
    assert refused_limit(wide, RELAXED) == "max_columns"
    merged = workbook(sheet=sheet_of(b"").replace(b"</worksheet>", b'<mergeCells count="1"><mergeCell ref="A1:GR19999"/></mergeCells></worksheet>'))
    assert refused_limit(merged, RELAXED) == "max_cells"
    assert refused_limit(strings_bomb(), RELAXED) == "max_shared_strings"
    assert refused_limit(strings_bomb(), WorkbookLimits(max_ratio=10**6)) == "max_shared_strings_bytes"
    assert refused_limit(zip_bomb(), WorkbookLimits()) == "max_uncompressed_bytes"
    assert refused_limit(zip_bomb(), WorkbookLimits(max_uncompressed_bytes=10**10)) == "max_ratio"
    # The messages are for the clerk: Chinese, naming the sheet and the limit.
    with pytest.raises(WorkbookRefused) as refused:
        inspect(million_rows(), WorkbookLimits(max_uncompressed_bytes=10**10, max_ratio=10**6))
    assert refused.value.problems[0]["msg"] == "工作表“映射规则”的范围 A1:A1000000 超过 20000 行的上限" and refused.value.problems[0]["loc"] == [
        "body",
        "映射规则",
        "max_rows",
    ]


def test_a_real_workbook_passes_the_inspection():
    inspect(export_catalog(standard_catalog()), WorkbookLimits())
    inspect(to_xlsx(MappingTable.defaults(), standard_catalog()), WorkbookLimits())


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path, kafka_bootstrap=None, workbook_max_bytes=1_000_000)


@pytest.fixture
def client(settings):
    _, local = build_verifier(settings)
    app = create_app(settings)
    build_column_store(settings).apply_catalogs([catalog_changed()])
    return TestClient(app, headers={"Authorization": f"Bearer {local.mint(ADMIN, audience=settings.auth_audience)}"})


def state(client, settings) -> tuple:
    """What an upload could change: the bridge's mapping and the catalog editions."""
    return build_store(settings).mapping(), client.get("/v1/catalogs").json()


@pytest.mark.parametrize("path", [MAPPING, CATALOG_IMPORT])
@pytest.mark.parametrize(
    "attack, limits",
    [
        (million_rows, {"max_rows", "max_ratio", "max_uncompressed_bytes"}),
        (strings_bomb, {"max_ratio", "max_shared_strings", "max_shared_strings_bytes"}),
        (zip_bomb, {"max_uncompressed_bytes"}),
    ],
)
def test_hostile_workbooks_are_refused_with_the_limit_named_and_change_nothing(client, settings, path, attack, limits):
    data = attack()
    assert len(data) < 150_000  # well under the byte cap: the inspection must catch it
    before = state(client, settings)
    answer = client.put(path, content=data)
    assert answer.status_code == 413, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"][-1] in limits and "上限" in problem["msg"]
    assert state(client, settings) == before


@pytest.mark.parametrize("path", [MAPPING, CATALOG_IMPORT])
def test_an_oversized_body_is_413_before_it_is_read_whole(client, settings, path):
    before = state(client, settings)
    declared = client.put(path, content=b"x" * 1_000_001)
    assert declared.status_code == 413 and declared.json()["detail"][0]["msg"] == "工作簿超过 1000000 字节的上限"
    chunked = client.put(path, content=iter([b"x" * 600_000, b"x" * 600_000]))
    assert chunked.status_code == 413 and chunked.json()["detail"][0]["loc"] == ["body", "max_bytes"]
    assert state(client, settings) == before


def test_an_unreadable_workbook_is_a_422_that_changes_nothing(client, settings):
    before = state(client, settings)
    for path in (MAPPING, CATALOG_IMPORT):
        assert client.put(path, content=b"not a workbook").status_code == 422
    assert state(client, settings) == before


def test_normal_workbooks_still_import(client, settings):
    answer = client.put(CATALOG_IMPORT, content=export_catalog(standard_catalog()))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"key": "430102@2031", "status": "draft"}
    assert client.get("/v1/catalogs/430102/2031").json()["status"] == "draft"
    table = MappingTable(rules=(), overrides=(Override("11430102MB1234567X4000101000001", Target("D14-02-02"), region="430102"),), areas={})
    mapped = client.put(MAPPING, content=to_xlsx(table, standard_catalog()))
    assert mapped.status_code == 200, mapped.text
    assert build_store(settings).mapping() == table


def large_mapping(rows: int) -> bytes:
    """A legal mapping workbook of `rows` overrides: slow enough to read that the portal would
    stall on it if it were read on the event loop."""
    overrides = tuple(Override(f"11430102MB1234567X{4000101000000 + n:013d}", Target("D14-02-02"), region="430102") for n in range(rows))
    return to_xlsx(MappingTable(rules=(), overrides=overrides, areas={}), standard_catalog())


def test_the_portal_serves_others_while_a_workbook_is_parsed(client):
    data = large_mapping(15_000)
    headers = dict(client.headers)

    async def scenario():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://portal", headers=headers) as http:
            upload = asyncio.create_task(http.put(MAPPING, content=data))
            # Ordering, not timing: once a worker process is reading the workbook, another
            # request must be answered before the upload is.
            while not upload.done() and not any(p.name == "tongyuan-workbook" for p in multiprocessing.active_children()):
                await asyncio.sleep(0.01)
            assert not upload.done(), "the upload finished without a worker process: it was parsed on the event loop"
            page = await http.get("/v1/bridge/unmapped")
            assert page.status_code == 200
            assert not upload.done()
            answer = await upload
            assert answer.status_code == 200, answer.text
            assert answer.json()["overrides"] == 15_000

    asyncio.run(scenario())


def test_a_draft_edited_while_its_workbook_was_read_is_not_overwritten(client, settings):
    """The workbook is parsed outside any transaction; the save refuses if the draft moved."""
    from services.catalog import editions as catalogs
    from services.catalog.xlsx_read import import_catalog
    from services.publisher.app import bootstrap

    assert client.post("/v1/catalogs/430102/2032/derive", json={}).status_code == 201
    publisher = bootstrap(settings)
    regions = {r.code: r for r in regions_of_city("4301")}
    base = catalogs.import_base(publisher, scope="430102", edition="2032", regions=regions)
    imported = import_catalog(export_catalog(standard_catalog()), base=base)
    assert client.patch("/v1/catalogs/430102/2032", json={"rename": {"D14-02-02": "低保办事指南"}}).status_code == 200
    edited = client.get("/v1/catalogs/430102/2032").json()
    with pytest.raises(catalogs.CatalogRefused, match="changed while the workbook was being read"):
        catalogs.save_import(publisher, imported, base=base, regions=regions, publish=False)
    assert client.get("/v1/catalogs/430102/2032").json() == edited
