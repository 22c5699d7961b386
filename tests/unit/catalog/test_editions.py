"""Editions, localisation and what publishing an edition does to existing publications."""

import json

import pytest
from sqlalchemy import select

from contracts.catalog import STANDARD, Catalog, diff_catalogs, localise, regions_of_city, standard_catalog, standard_catalog_2021
from contracts.events import CATALOG_CHANGED, TOPIC_CATALOG, TOPIC_PUBLICATIONS
from services.catalog import editions as catalogs
from services.catalog.store import Catalogs
from services.common.db import create_store_engine
from services.publisher.app import directory_provider
from services.publisher.gate import handlers
from services.publisher.gate.domain import Directory, Rejected
from services.publisher.store import Publisher
from services.publisher.tables import outbox
from tests.conftest import ADMIN, COUNTY, OTHER_COUNTY, TOWNSHIP, draft, placement

REGIONS = {r.code: r for r in regions_of_city("4301")}


@pytest.fixture
def publisher(tmp_path):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    Catalogs(publisher.engine).create_tables()
    catalogs.load_reference(publisher, standard_editions=[standard_catalog_2021(), standard_catalog()], regions=regions_of_city("4301"))
    return publisher


def directory(publisher):
    return Directory(catalogs=Catalogs(publisher.engine).in_force(), regions=REGIONS)


def events(publisher, topic):
    with publisher.engine.connect() as connection:
        return [json.loads(p) for (p,) in connection.execute(select(outbox.c.payload).where(outbox.c.topic == topic).order_by(outbox.c.id))]


def test_reference_editions_are_published_in_order(publisher):
    changed = events(publisher, TOPIC_CATALOG)
    assert [(e["data"]["scope"], e["data"]["edition"], e["data"]["version"]) for e in changed] == [(STANDARD, "2021", 1), (STANDARD, "2022", 2)]
    assert changed[0]["type"] == CATALOG_CHANGED
    assert "D27" in changed[1]["data"]["added"]  # 旅游, one of the six domains added in 2022
    assert Catalogs(publisher.engine).in_force()[STANDARD].edition == "2022"


def test_derivation_follows_the_region_hierarchy(publisher):
    county = catalogs.derive_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    assert county.derived_from == "standard@2022" and county.domains == standard_catalog().domains
    catalogs.publish_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    township = catalogs.derive_edition(publisher, scope=TOWNSHIP, edition="2023", regions=REGIONS)
    assert township.derived_from == f"{COUNTY}@2023"
    with pytest.raises(catalogs.CatalogRefused):
        catalogs.derive_edition(publisher, scope=TOWNSHIP, edition="2024", regions=REGIONS, parent_key=f"{OTHER_COUNTY}@2023")
    with pytest.raises(catalogs.CatalogRefused):
        catalogs.derive_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)  # exists already


def test_a_published_edition_is_immutable(publisher):
    catalogs.derive_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    catalogs.publish_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    with pytest.raises(catalogs.CatalogRefused, match="cannot change"):
        catalogs.edit_draft(publisher, scope=COUNTY, edition="2023", rename={"D14-02-02": "新名称"}, drop=set(), specialise={})
    with pytest.raises(catalogs.CatalogRefused, match="already published"):
        catalogs.publish_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)


def test_a_county_edition_governs_the_county_and_its_townships_only(publisher):
    catalogs.derive_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    catalogs.edit_draft(publisher, scope=COUNTY, edition="2023", rename={}, drop={"D14-02-04"}, specialise={"D14-02-02": {"subject": "芙蓉区民政局"}})
    catalogs.publish_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    current = directory(publisher)
    assert current.catalog_for(TOWNSHIP).key == f"{COUNTY}@2023"
    assert current.catalog_for(OTHER_COUNTY).key == "standard@2022"
    assert current.catalog_for(TOWNSHIP).level2("D14-02-02").subject == "芙蓉区民政局"
    with pytest.raises(Rejected) as caught:
        handlers.publish(principal=ADMIN, draft=draft(placements=[placement(TOWNSHIP, "D14-02-04")]), publisher=publisher, directory=current)
    assert "D14-02-04" not in [c["id"] for c in caught.value.errors[0].choices]
    # Another county still publishes under the standard item.
    handlers.publish(principal=ADMIN, draft=draft(placements=[placement(OTHER_COUNTY, "D14-02-04")]), publisher=publisher, directory=current)


def test_renaming_reissues_the_publications_filed_under_the_item(publisher):
    before = directory(publisher)
    mine = handlers.publish(principal=ADMIN, draft=draft(placements=[placement(TOWNSHIP, "D14-02-02")]), publisher=publisher, directory=before)
    theirs = handlers.publish(principal=ADMIN, draft=draft(placements=[placement(OTHER_COUNTY, "D14-02-02")]), publisher=publisher, directory=before)
    catalogs.derive_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    catalogs.edit_draft(publisher, scope=COUNTY, edition="2023", rename={"D14-02-02": "低保办事指南"}, drop=set(), specialise={})
    assert catalogs.publish_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS) == 1
    latest = {e["subject"]: e for e in events(publisher, TOPIC_PUBLICATIONS)}
    assert latest[mine.publication_id]["data"]["version"] == 2
    assert latest[mine.publication_id]["data"]["placements"][0]["level2_name"] == "低保办事指南"
    assert latest[theirs.publication_id]["data"]["version"] == 1  # other county: standard name stands
    change = events(publisher, TOPIC_CATALOG)[-1]["data"]
    assert change["renamed"] == [{"id": "D14-02-02", "old": "办事指南", "new": "低保办事指南"}]


def test_a_dropped_item_keeps_its_publications(publisher):
    filed = handlers.publish(principal=ADMIN, draft=draft(placements=[placement(TOWNSHIP, "D14-02-04")]), publisher=publisher, directory=directory(publisher))
    catalogs.derive_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    catalogs.edit_draft(publisher, scope=COUNTY, edition="2023", rename={}, drop={"D14-02-04"}, specialise={})
    catalogs.publish_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    with publisher.transaction() as store:
        stored = store.get(filed.publication_id)
    assert stored.status == "published" and stored.version == 1
    assert events(publisher, TOPIC_CATALOG)[-1]["data"]["dropped"] == ["D14-02-04"]


def test_localise_and_diff_are_pure():
    base = standard_catalog()
    edited = localise(base, rename={"D14-02": "城乡低保"}, drop={"D14-02-01"}, specialise={"D14-02-02": {"channels": ["政府网站"]}})
    changes = diff_catalogs(base, edited)
    assert changes.dropped == ("D14-02-01",)
    assert [(r.id, r.new) for r in changes.renamed] == [("D14-02", "城乡低保")]
    assert changes.changed == (("D14-02-02", ("channels",)),)
    with pytest.raises(ValueError):
        localise(base, rename={"D99-01": "x"})
    with pytest.raises(ValueError):
        localise(base, specialise={"D14-02-02": {"colour": "red"}})


def test_republishing_catalogs_re_emits_each_edition_in_force_with_its_version(publisher):
    catalogs.derive_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    catalogs.publish_edition(publisher, scope=COUNTY, edition="2023", regions=REGIONS)
    before = events(publisher, TOPIC_CATALOG)

    assert catalogs.republish_catalogs(publisher) == 2

    again = events(publisher, TOPIC_CATALOG)[len(before) :]
    assert sorted((e["data"]["scope"], e["data"]["edition"], e["data"]["version"]) for e in again) == [(COUNTY, "2023", 1), (STANDARD, "2022", 2)]
    snapshots = {e["data"]["scope"]: Catalog.model_validate(e["data"]["catalog"]) for e in again}
    assert snapshots == Catalogs(publisher.engine).in_force()  # each whole edition, as the publisher holds it
    assert all(e["data"]["added"] == [] and e["data"]["renamed"] == [] for e in again)  # a snapshot, not a change


def test_the_gate_checks_against_an_edition_published_by_another_process_at_once(publisher):
    # Two handles on one database: the gate's process and, say, the portal's catalog API.
    gate = directory_provider(publisher)
    elsewhere = Publisher(create_store_engine(str(publisher.engine.url)))
    assert gate().catalog_for(TOWNSHIP).key == "standard@2022"
    catalogs.derive_edition(elsewhere, scope=COUNTY, edition="2023", regions=REGIONS)
    catalogs.edit_draft(elsewhere, scope=COUNTY, edition="2023", rename={}, drop={"D14-02-04"}, specialise={})
    assert gate().catalog_for(TOWNSHIP).key == "standard@2022"  # a draft governs nothing
    catalogs.publish_edition(elsewhere, scope=COUNTY, edition="2023", regions=REGIONS)
    # The very next batch or request is checked against the new edition: no waiting for a cache.
    with pytest.raises(Rejected):
        handlers.publish(principal=ADMIN, draft=draft(placements=[placement(TOWNSHIP, "D14-02-04")]), publisher=publisher, directory=gate())
    assert gate().catalog_for(TOWNSHIP).key == f"{COUNTY}@2023"
    unchanged = gate()
    assert gate() is unchanged  # nothing published since: the parsed directory is reused
