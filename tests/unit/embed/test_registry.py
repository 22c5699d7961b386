"""The township portal registry: validated adds, all-or-nothing Excel import with cell-level
problems, export round trip, the links the county column uses, and the `tongyuan embed` commands."""

import io

import openpyxl
import pytest

from contracts.catalog import regions_of_city
from services.common.db import create_store_engine
from services.embed.cli import embed_cli
from services.embed.domain import RegistryError
from services.embed.registry import (
    add_portal,
    export_portals,
    import_portals,
    known_regions,
    portal_links,
    read_rows,
    townships_lacking_portal,
)
from services.embed.store import EmbedStore
from tests.conftest import cli_under
from tests.data.make_township_portals import townships
from tests.factories import published

SAMPLE = "tests/data/township-portals.xlsx"
KNOWN = known_regions()
REGIONS = {r.code: r for r in regions_of_city("4301")}


@pytest.fixture
def store(tmp_path):
    store = EmbedStore(create_store_engine(f"sqlite:///{tmp_path / 'embed.db'}"))
    store.create()
    return store


def sample() -> bytes:
    with open(SAMPLE, "rb") as handle:
        return handle.read()


def workbook(rows: list[list]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "登记"
    sheet.append(["区划代码", "门户网站地址", "政务公开专栏地址"])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_the_sample_registry_imports_and_leaves_one_township_of_the_county_without_a_portal(store):
    imported = import_portals(store, sample(), known=KNOWN)
    county = townships()
    assert len(imported) == len(county) - 1 == len(store.portals())
    first = store.portals()[county[0].code]
    assert first.portal_url == f"https://www.example.gov.cn/furong/{county[0].code}/"  # full-width spaces gone
    assert [r.code for r in townships_lacking_portal(store, REGIONS, under="430102")] == [county[-1].code]
    assert len(townships_lacking_portal(store, REGIONS)) == 172 - len(imported)


def test_portal_links_point_the_county_columns_township_sub_columns_at_the_portals(store):
    import_portals(store, sample(), known=KNOWN)
    links = portal_links(store)
    county = townships()
    assert links[county[0].code] == f"https://www.example.gov.cn/furong/{county[0].code}/zwgk/"
    assert county[-1].code not in links  # falls back to its column page


def test_an_import_with_any_bad_row_changes_nothing_and_names_every_cell(store):
    add_portal(store, "430102001", "https://www.example.gov.cn/a/", "https://www.example.gov.cn/a/zwgk/", known=KNOWN)
    before = store.portals()
    bad = workbook(
        [
            ["430102002", "https://www.example.gov.cn/b/", "https://www.example.gov.cn/b/zwgk/"],
            ["430102003", "http://www.example.gov.cn/c/", "https://www.example.gov.cn/c/zwgk/"],
            [None, None, None],
            ["999999999", "https://www.example.gov.cn/d/", "https://www.example.gov.cn/d/zwgk/"],
            ["430102002", "https://www.example.gov.cn/e/", "https://www.example.gov.cn/e/zwgk/"],
            ["430102008", "https://www.example.gov.cn/a/", "https://www.example.gov.cn/f/zwgk/"],
            ["430102009", "https://www.example.gov.cn/g/", ""],
        ]
    )
    with pytest.raises(RegistryError) as caught:
        import_portals(store, bad, known=KNOWN)
    where = [p.where for p in caught.value.problems]
    assert where == ["登记!A3", "登记!A5", "登记!A6", "登记!A7", "登记!A8"]
    messages = " | ".join(str(p) for p in caught.value.problems)
    assert (
        "https" in messages
        and "not a known region" in messages
        and "appears twice" in messages
        and "430102001" in messages
        and "column URL is empty" in messages
    )
    assert store.portals() == before


def test_a_workbook_without_the_columns_or_not_a_workbook_is_refused(store):
    with pytest.raises(RegistryError, match="no sheet"):
        import_portals(store, _sheet_without_header(), known=KNOWN)
    with pytest.raises(RegistryError, match="not a readable"):
        import_portals(store, b"not a workbook", known=KNOWN)


def _sheet_without_header() -> bytes:
    book = openpyxl.Workbook()
    book.active.append(["名称", "网址"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_export_then_import_is_unchanged_and_replace_makes_the_registry_the_file(store):
    import_portals(store, sample(), known=KNOWN)
    before = store.portals()
    exported = export_portals(store, KNOWN, with_missing_under="430102")
    assert len(read_rows(exported)) == len(before)  # the township without a portal is a blank row to fill in
    import_portals(store, exported, known=KNOWN)
    assert store.portals() == before
    one = workbook([["430103002", "https://www.example.gov.cn/tx/", "https://www.example.gov.cn/tx/zwgk/"]])
    import_portals(store, one, known=KNOWN, replace_all=True)
    assert list(store.portals()) == ["430103002"]


def test_an_import_updates_entries_it_names_and_keeps_the_others(store):
    add_portal(store, "430102001", "https://www.example.gov.cn/a/", "https://www.example.gov.cn/a/zwgk/", known=KNOWN)
    add_portal(store, "430102002", "https://www.example.gov.cn/b/", "https://www.example.gov.cn/b/zwgk/", known=KNOWN)
    import_portals(store, workbook([["430102001", "https://www.example.gov.cn/a2/", "https://www.example.gov.cn/a2/zwgk/"]]), known=KNOWN)
    assert {code: p.portal_url for code, p in store.portals().items()} == {
        "430102001": "https://www.example.gov.cn/a2/",
        "430102002": "https://www.example.gov.cn/b/",
    }


def test_adding_twice_needs_replace(store):
    add_portal(store, "430102001", "https://www.example.gov.cn/a/", "https://www.example.gov.cn/a/zwgk/", known=KNOWN)
    with pytest.raises(RegistryError, match="already has a portal"):
        add_portal(store, "430102001", "https://www.example.gov.cn/b/", "https://www.example.gov.cn/b/zwgk/", known=KNOWN)
    add_portal(store, "430102001", "https://www.example.gov.cn/b/", "https://www.example.gov.cn/b/zwgk/", known=KNOWN, replace=True)
    assert store.portals()["430102001"].portal_url == "https://www.example.gov.cn/b/"
    assert store.remove_portal("430102001") and not store.remove_portal("430102001")


def test_the_registry_does_not_touch_the_feeds(store):
    store.apply([published()])
    before = store.state("430102001")
    add_portal(store, "430102001", "https://www.example.gov.cn/a/", "https://www.example.gov.cn/a/zwgk/", known=KNOWN)
    assert store.state("430102001") == before


# --- the commands -------------------------------------------------------------------------------
@pytest.fixture
def run(tmp_path, monkeypatch):
    with cli_under(monkeypatch, tmp_path / "var", embed_cli) as run:
        yield run


def test_portals_commands(run, tmp_path):
    added = run("portals", "add", "430102001", "--portal", "https://www.example.gov.cn/a", "--column", "https://www.example.gov.cn/a/zwgk/")
    assert added.exit_code == 0 and "https://www.example.gov.cn/a/" in added.output
    refused = run("portals", "add", "430102", "--portal", "http://x", "--column", "https://www.example.gov.cn/c/")
    assert refused.exit_code == 1 and "not a township" in refused.output and "https" in refused.output and "nothing was changed" in refused.output
    assert (
        run("portals", "add", "X00000001", "--portal", "https://x.example.cn/", "--column", "https://x.example.cn/gk/", "--region-code", "X00000001").exit_code
        == 0
    )
    assert run("portals", "import", SAMPLE).exit_code == 0
    listing = run("portals", "list", "--under", "430102").output
    assert "430102001\thttps://www.example.gov.cn/furong/430102001/" in listing
    missing = run("portals", "list", "--missing", "--under", "430102").output
    assert missing.splitlines()[0] == f"{townships()[-1].code}\t{townships()[-1].name}"
    out = tmp_path / "portals.xlsx"
    registered = run("portals", "list").output.splitlines()
    assert run("portals", "export", "-o", str(out)).exit_code == 0 and len(read_rows(out.read_bytes())) == len(registered) > 1
    assert run("portals", "remove", "X00000001").exit_code == 0 and run("portals", "remove", "X00000001").exit_code == 1


def test_rules_commands(run):
    assert "include\tD14\t社会救助" in run("rules", "list").output
    assert run("rules", "exclude", "d14-02-03").exit_code == 0
    assert "exclude\tD14-02-03" in run("rules", "list").output
    assert run("rules", "include", "D33").exit_code == 2
    assert run("rules", "clear", "D14-02-03").exit_code == 0 and "D14-02-03" not in run("rules", "list").output
    assert run("rules", "exclude", "D14").exit_code == 0 and run("rules", "reset").exit_code == 0
    assert "include\tD14" in run("rules", "list").output
