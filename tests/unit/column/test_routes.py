"""The column's page helpers, called alone (no app, no store: what they read is stubbed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import HTTPException

from contracts.catalog import regions_of_city, standard_catalog
from contracts.regions import trail
from services.column.routes import Listed, listed_items, region_or_404

REGIONS = {r.code: r for r in regions_of_city("4301")}
TOWNSHIP = next(r for r in REGIONS.values() if r.level == "township")


def test_the_trail_runs_from_the_city_down_to_the_region():
    chain = trail(TOWNSHIP, REGIONS)
    assert chain[-1] == TOWNSHIP and chain[0].level == "city"
    assert all(child.parent_code == parent.code for parent, child in zip(chain, chain[1:], strict=False))


def test_an_unknown_region_is_a_404_naming_it():
    with pytest.raises(HTTPException) as refused:
        region_or_404(REGIONS, "999999")
    assert refused.value.status_code == 404 and "999999" in str(refused.value.detail)


def test_an_item_a_later_edition_dropped_is_listed_under_the_name_it_was_filed_with():
    catalog = standard_catalog()
    domain = catalog.domains[0]
    dropped = f"{domain.level1[0].id}-99"
    store = SimpleNamespace(filed_name=lambda item: "旧事项" if item == dropped else None, archived_items=lambda *_: set())
    found, level1, level2, archived = listed_items(store, catalog, TOWNSHIP, Listed(TOWNSHIP.code, domain.code, dropped[:6], dropped, 1))
    assert found == domain and level1 == domain.level1[0] and archived
    assert level2 is not None and (level2.id, level2.name) == (dropped, "旧事项")


def test_an_item_never_filed_is_a_404():
    catalog = standard_catalog()
    domain = catalog.domains[0]
    store = SimpleNamespace(filed_name=lambda item: None, archived_items=lambda *_: set())
    with pytest.raises(HTTPException) as refused:
        listed_items(store, catalog, TOWNSHIP, Listed(TOWNSHIP.code, domain.code, f"{domain.code}-99", f"{domain.code}-99-99", 1))
    assert refused.value.status_code == 404
