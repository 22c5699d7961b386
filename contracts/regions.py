"""Administrative regions (2023 division codes) as contract models: a province, its cities,
county-level units and townships, read from contracts/reference/regions/."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict

# Changsha's development zone, which the division table does not list: our own code.
HIGH_TECH_ZONE_CODE = "4301GX"
HIGH_TECH_ZONE_NAME = "长沙高新区"


class Region(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str
    name: str
    level: Literal["province", "city", "county", "township"]
    parent_code: str | None = None


@lru_cache
def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("contracts.reference").joinpath("regions", name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


@lru_cache
def _streets_by_county() -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in _rows("streets.csv"):
        grouped.setdefault(row["areaCode"], []).append(row)
    return grouped


def regions_of_province(province_code: str) -> tuple[Region, ...]:
    """A province, its cities, counties and townships (2023 codes)."""
    province = next((r for r in _rows("provinces.csv") if r["code"] == province_code), None)
    if province is None:
        raise ValueError(f"no province with code {province_code!r} in the 2023 division table")
    regions = [Region(code=province_code, name=province["name"], level="province")]
    for city in _rows("cities.csv"):
        if city["provinceCode"] == province_code:
            regions += [r.model_copy(update={"parent_code": province_code}) if r.level == "city" else r for r in regions_of_city(city["code"])]
    return tuple(regions)


def all_regions() -> tuple[Region, ...]:
    """The whole country: 31 provinces, their cities, 2,978 counties and 41,352 townships."""
    return tuple(r for province in _rows("provinces.csv") for r in regions_of_province(province["code"]))


@lru_cache
def regions_of_city(city_code: str = "4301") -> tuple[Region, ...]:
    """A city, its county-level units and their townships (2023 codes); Changsha by default.

    Changsha also gets 长沙高新区 under our own code, since development zones have none.
    """
    city = next((r for r in _rows("cities.csv") if r["code"] == city_code), None)
    if city is None:
        raise ValueError(f"no city with code {city_code!r} in the 2023 division table")
    regions = [Region(code=city_code, name=city["name"], level="city")]
    counties = [r for r in _rows("areas.csv") if r["cityCode"] == city_code]
    regions += [Region(code=r["code"], name=r["name"], level="county", parent_code=city_code) for r in counties]
    if city_code == "4301":
        regions.append(Region(code=HIGH_TECH_ZONE_CODE, name=HIGH_TECH_ZONE_NAME, level="county", parent_code=city_code))
    regions += [
        Region(code=r["code"], name=r["name"], level="township", parent_code=r["areaCode"])
        for county in counties
        for r in _streets_by_county().get(county["code"], ())
    ]
    return tuple(regions)


def trail(region: Region, regions: Mapping[str, Region]) -> list[Region]:
    """The region and those above it that `regions` holds, outermost first (a page's breadcrumb)."""
    chain = [region]
    while chain[0].parent_code and chain[0].parent_code in regions:
        chain.insert(0, regions[chain[0].parent_code])
    return chain
