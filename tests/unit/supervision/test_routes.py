"""The dashboard's filters, checked alone: every bad one named, before any measure is taken."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest
from fastapi import HTTPException

from contracts.catalog import regions_of_city
from services.supervision.routes import Asked, out_of_range, query_of

REGIONS = {r.code: r for r in regions_of_city("4301")}
STORE = SimpleNamespace(catalogs=lambda: {})
TODAY = date(2022, 8, 31)


def asked(**changes) -> Asked:
    return Asked(**{"region": None, "as_of": None, "start": None, "end": None, "domain": None, "sort": "coverage", **changes})


def problems(filters: Asked) -> dict[str, str]:
    with pytest.raises(HTTPException) as refused:
        query_of(STORE, REGIONS, filters, TODAY)
    assert refused.value.status_code == 422
    return {problem["loc"][1]: problem["msg"] for problem in refused.value.detail}


def test_the_defaults_are_the_city_and_this_year_up_to_today():
    query = query_of(STORE, REGIONS, asked(), TODAY)
    assert (query.region, query.as_of, query.start, query.end) == ("4301", TODAY, date(2022, 1, 1), TODAY)


def test_dates_outside_the_regime_are_each_named():
    filters = asked(as_of=date(1989, 12, 31), end=date(2100, 1, 1))
    assert [p["loc"] for p in out_of_range(filters)] == [["query", "as_of"], ["query", "to"]]
    assert set(problems(filters)) == {"as_of", "to"}


def test_contradicting_filters_and_an_unknown_domain_are_named_together():
    found = problems(asked(start=date(2022, 5, 1), end=date(2022, 4, 1), domain="D99"))
    assert set(found) == {"from", "domain"}


def test_an_unknown_region_is_a_404():
    with pytest.raises(HTTPException) as refused:
        query_of(STORE, REGIONS, asked(region="999999"), TODAY)
    assert refused.value.status_code == 404
