"""Catalog completeness against the standard catalog, and which catalog items apply to a unit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from contracts.catalog import Catalog, Domain, Level1Item, Level2Item

from .time_limits import TimeRule, parse_time_limit

UNIT_LEVEL_WORDS = {"county": "县级", "township": "乡级", "city": "市级", "province": "省级"}


def applies_to(item: Level2Item, level: str) -> bool:
    """An item applies to a unit when its 公开层级 is blank or names the unit's level."""
    return not item.levels or UNIT_LEVEL_WORDS.get(level, "") in item.levels


def _items(catalog: Catalog, domain_code: str | None) -> Iterable[tuple[Domain, Level1Item, Level2Item]]:
    for domain in catalog.domains:
        if domain_code and domain.code != domain_code:
            continue
        for level1 in domain.level1:
            for item in level1.items:
                yield domain, level1, item


@lru_cache(maxsize=1024)
def skeleton(catalog: Catalog, level: str, domain_code: str | None) -> tuple[tuple[str, str, str, str, Level2Item, bool, TimeRule], ...]:
    """A catalog's items as the measures need them, once per edition, level and domain."""
    return tuple(
        (domain.code, domain.name, level1.id, level1.name, item, applies_to(item, level), parse_time_limit(item.time_limit))
        for domain, level1, item in _items(catalog, domain_code)
    )


@dataclass(frozen=True)
class Completeness:
    """A unit's catalog in force against the standard one (items that apply to its level)."""

    standard_items: int
    present: int
    dropped: tuple[str, ...]
    added: tuple[str, ...]
    standard_domains: int
    domains_present: int
    domains_dropped: tuple[str, ...]
    domains_added: tuple[str, ...]

    @property
    def share(self) -> float | None:
        return self.present / self.standard_items if self.standard_items else None


@lru_cache(maxsize=2048)
def completeness(unit_catalog: Catalog, standard: Catalog, level: str, domain_code: str | None = None) -> Completeness:
    wanted = {item.id for _, _, item in _items(standard, domain_code) if applies_to(item, level)}
    held = {item.id for _, _, item in _items(unit_catalog, domain_code)}
    standard_domains = {d.code for d in standard.domains if d.level1 and (not domain_code or d.code == domain_code)}
    unit_domains = {d.code for d in unit_catalog.domains if d.level1 and (not domain_code or d.code == domain_code)}
    return Completeness(
        standard_items=len(wanted),
        present=len(wanted & held),
        dropped=tuple(sorted(wanted - held)),
        added=tuple(sorted(held - {item.id for _, _, item in _items(standard, domain_code)})),
        standard_domains=len(standard_domains),
        domains_present=len(standard_domains & unit_domains),
        domains_dropped=tuple(sorted(standard_domains - unit_domains)),
        domains_added=tuple(sorted(unit_domains - standard_domains)),
    )


def ancestor_scopes(region_code: str) -> list[str]:
    """Scopes a region's catalog may come from, by the shape of statistical codes (township
    9 digits → county 6 → city 4; 4301GX → 4301), for the consumer, which has no regions."""
    chain = [region_code]
    if region_code.isdigit():
        chain += [region_code[:n] for n in (6, 4, 2) if len(region_code) > n]
    elif len(region_code) > 4:
        chain += [region_code[:4], region_code[:2]]
    return [*chain, "standard"]
