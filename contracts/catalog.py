"""The standard catalog (标准目录) as contract models, and how editions derive from it.

Item ids are stable codes: domain `D14`, level-1 item `D14-02`, level-2 item `D14-02-03`.
Domain codes follow the order of the 2019 guidance's 26 domains, then the 6 added in 2022.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, PrivateAttr

# Regions have a module of their own (contracts.regions); these names stay importable from here.
from .regions import HIGH_TECH_ZONE_CODE as HIGH_TECH_ZONE_CODE
from .regions import HIGH_TECH_ZONE_NAME as HIGH_TECH_ZONE_NAME
from .regions import Region as Region
from .regions import all_regions as all_regions
from .regions import regions_of_city as regions_of_city
from .regions import regions_of_province as regions_of_province

# Canonical name first, then the names localities also use for the same domain.
DOMAIN_NAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("城乡规划", ()),
    ("重大建设项目", ()),
    ("公共资源交易", ()),
    ("财政预决算", ("预决算",)),
    ("安全生产", ()),
    ("税收管理", ()),
    ("征地补偿", ()),
    ("国有土地上房屋征收与补偿", ("房屋征收与补偿",)),
    ("生态环境", ("环境保护",)),
    ("公共文化服务", ()),
    ("公共法律服务", ()),
    ("扶贫", ()),
    ("救灾", ()),
    ("社会救助", ()),
    ("养老服务", ()),
    ("户籍管理", ()),
    ("涉农补贴", ()),
    ("就业", ("就业创业",)),
    ("社会保险", ()),
    ("义务教育", ()),
    ("卫生健康", ("医疗卫生",)),
    ("市政服务", ()),
    ("农村危房改造", ("农村危改房改造",)),
    ("保障性住房", ()),
    ("食品药品监管", ()),
    ("城市综合执法", ()),
    ("旅游", ()),
    ("统计", ()),
    ("自然资源", ()),
    ("交通运输", ()),
    ("广播电视", ()),
    ("新闻出版版权", ("新闻出版", "版权")),
)
ADDED_2022 = frozenset({"旅游", "统计", "自然资源", "交通运输", "广播电视", "新闻出版版权"})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Level2Item(_Model):
    id: str
    name: str
    content: str | None = None
    basis: str | None = None
    time_limit: str | None = None
    subject: str | None = None
    channels: tuple[str, ...] = ()
    audience: str | None = None
    method: str | None = None
    levels: tuple[str, ...] = ()
    verified: bool = True


class Level1Item(_Model):
    id: str
    name: str
    items: tuple[Level2Item, ...] = ()


class Domain(_Model):
    code: str
    name: str
    aliases: tuple[str, ...] = ()
    added_2022: bool = False
    guideline: str | None = None
    level1: tuple[Level1Item, ...] = ()


STANDARD = "standard"


class Catalog(_Model):
    """One edition of one unit's catalog: an immutable snapshot once published.

    `scope` is "standard" (the ministry guideline) or the region code of the county or
    township whose localised catalog this is; `derived_from` is the parent edition's key.
    """

    edition: str
    domains: tuple[Domain, ...]
    scope: str = STANDARD
    derived_from: str | None = None

    @property
    def key(self) -> str:
        return edition_key(self.scope, self.edition)

    def domain(self, code: str) -> Domain | None:
        return self._by_code().get(code)

    def resolve_domain(self, code_or_name: str) -> Domain | None:
        """A domain by code, canonical name or alias (环境保护 → 生态环境)."""
        key = code_or_name.strip()
        return self._by_code().get(key) or self._by_name().get(key)

    def level1(self, level1_id: str) -> Level1Item | None:
        return self._items()[0].get(level1_id)

    def level2(self, level2_id: str) -> Level2Item | None:
        return self._items()[1].get(level2_id)

    def _by_code(self) -> dict[str, Domain]:
        return _index(self)[0]

    def _by_name(self) -> dict[str, Domain]:
        return _index(self)[1]

    def _items(self) -> tuple[dict[str, Level1Item], dict[str, Level2Item]]:
        return _index(self)[2:4]

    _indexes: tuple | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # pydantic would compare the private lookup cache too.
        if not isinstance(other, Catalog):
            return NotImplemented
        return (self.edition, self.scope, self.derived_from, self.domains) == (other.edition, other.scope, other.derived_from, other.domains)

    def __hash__(self) -> int:
        return id(self)


def edition_key(scope: str, edition: str) -> str:
    return f"{scope}@{edition}"


def _index(catalog: Catalog) -> tuple:
    # Built once per catalog object on first lookup; model_copy(update=…) copies private
    # attributes too, so the cache remembers which domains tuple it was built from. Read
    # from __pydantic_private__ directly: the gate looks items up several times per
    # publication, and pydantic's __getattr__ for a private attribute is slow on that path.
    domains = catalog.__dict__["domains"]
    private = cast(dict[str, Any], catalog.__pydantic_private__)  # a model with private attributes has it
    cached = private["_indexes"]
    if cached is None or cached[0] is not domains:
        by_code = {d.code: d for d in domains}
        by_name = {name: d for d in domains for name in (d.name, *d.aliases)}
        l1 = {i.id: i for d in domains for i in d.level1}
        l2 = {j.id: j for d in domains for i in d.level1 for j in i.items}
        cached = private["_indexes"] = (domains, (by_code, by_name, l1, l2))
    return cached[1]


_PAREN = re.compile(r"^(?P<name>[^（(]+)[（(](?P<alias>[^）)]+)[）)]$")
_LEVEL_WORDS = {"县级": "县级", "乡级": "乡级"}


def _split_name(raw: str) -> tuple[str, tuple[str, ...]]:
    match = _PAREN.match(raw.strip())
    if not match:
        return raw.strip(), ()
    return match["name"].strip(), (match["alias"].strip(),)


def _canonical_domain(raw: str) -> int:
    name, aliases = _split_name(raw)
    for index, (canonical, known) in enumerate(DOMAIN_NAMES):
        names = {canonical, *known}
        if name in names or any(a in names for a in aliases):
            return index
    raise ValueError(f"domain {raw!r} is not one of the 32 standard domains")


def _as_tuple(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in cast(Iterable[object], value))


def _reference(name: str) -> dict:
    path = resources.files("contracts.reference").joinpath(name)
    return json.loads(path.read_text("utf-8")) if path.is_file() else {"domains": []}


@lru_cache
def standard_catalog() -> Catalog:
    """The standard catalog, 2022 edition: all 32 domains, with the items found so far.

    Items come from contracts/reference/standard-catalog.json and, for domains it lacks,
    catalog-supplement.json (each with its sources; unverified rows carry verified=False).
    """
    found: dict[int, dict] = {}
    for name in ("standard-catalog.json", "catalog-supplement.json"):
        for entry in _reference(name)["domains"]:
            index = _canonical_domain(entry["domain"])
            if entry.get("level1") and not any(l1.get("level2") for l1 in found.get(index, {}).get("level1", [])):
                found[index] = entry
            found.setdefault(index, entry)
    domains = []
    for index, (name, aliases) in enumerate(DOMAIN_NAMES):
        code = f"D{index + 1:02d}"
        source = found.get(index, {})
        level1 = tuple(
            Level1Item(
                id=f"{code}-{i:02d}",
                name=l1["name"],
                items=tuple(
                    Level2Item(
                        id=f"{code}-{i:02d}-{j:02d}",
                        name=l2["name"],
                        content=l2.get("content"),
                        basis=l2.get("basis"),
                        time_limit=l2.get("time_limit"),
                        subject=l2.get("subject"),
                        channels=_as_tuple(l2.get("channels")),
                        audience=l2.get("audience"),
                        method=l2.get("method"),
                        levels=_as_tuple(l2.get("level")),
                        verified=l2.get("note") != "未核实",
                    )
                    for j, l2 in enumerate(l1.get("level2", []), start=1)
                ),
            )
            for i, l1 in enumerate(source.get("level1", []), start=1)
        )
        domains.append(Domain(code=code, name=name, aliases=aliases, added_2022=name in ADDED_2022, guideline=source.get("guideline"), level1=level1))
    return Catalog(edition="2022", scope=STANDARD, derived_from=edition_key(STANDARD, "2021"), domains=tuple(domains))


@lru_cache
def standard_catalog_2021() -> Catalog:
    """The 2021 edition: the 26 domains of the 2019 guidance, before the 6 added in 2022."""
    current = standard_catalog()
    return Catalog(edition="2021", scope=STANDARD, domains=tuple(d for d in current.domains if not d.added_2022))


def scope_chain(region_code: str, regions: dict[str, Region]) -> list[str]:
    """The scopes whose catalog may apply to a region, nearest first: the region itself,
    its ancestors (township → county → city), then the standard catalog."""
    chain: list[str] = []
    code: str | None = region_code
    while code and code not in chain:
        chain.append(code)
        region = regions.get(code)
        code = region.parent_code if region else None
    chain.append(STANDARD)
    return chain


def effective_catalog(region_code: str, regions: dict[str, Region], catalogs: dict[str, Catalog]) -> Catalog | None:
    """The catalog a region publishes under: its own published edition, else its nearest
    ancestor's, else the standard one. `catalogs` maps scope → current published edition."""
    for scope in scope_chain(region_code, regions):
        if scope in catalogs:
            return catalogs[scope]
    return None


@dataclass(frozen=True)
class Rename:
    id: str
    old: str
    new: str


@dataclass(frozen=True)
class CatalogDiff:
    """What changed between two editions, by item id (a rename keeps the id)."""

    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    renamed: tuple[Rename, ...] = ()
    changed: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (level-2 id, attribute names)

    @property
    def empty(self) -> bool:
        return not (self.added or self.dropped or self.renamed or self.changed)


_ATTRIBUTES = ("content", "basis", "time_limit", "subject", "channels", "audience", "method", "levels")


def _nodes(catalog: Catalog) -> dict[str, object]:
    nodes: dict[str, object] = {}
    for domain in catalog.domains:
        if domain.level1:
            nodes[domain.code] = domain
        for level1 in domain.level1:
            nodes[level1.id] = level1
            for level2 in level1.items:
                nodes[level2.id] = level2
    return nodes


def diff_catalogs(old: Catalog, new: Catalog) -> CatalogDiff:
    before, after = _nodes(old), _nodes(new)
    renamed = tuple(Rename(i, before[i].name, after[i].name) for i in before if i in after and before[i].name != after[i].name)  # type: ignore[attr-defined]
    changed = tuple(
        (i, tuple(a for a in _ATTRIBUTES if getattr(before[i], a) != getattr(after[i], a)))
        for i in before
        if i in after and isinstance(after[i], Level2Item) and any(getattr(before[i], a) != getattr(after[i], a) for a in _ATTRIBUTES)
    )
    return CatalogDiff(
        added=tuple(i for i in after if i not in before),
        dropped=tuple(i for i in before if i not in after),
        renamed=renamed,
        changed=changed,
    )


def derive_catalog(parent: Catalog, *, scope: str, edition: str) -> Catalog:
    """A new edition starts as a copy of its parent; localisation then edits the copy."""
    return parent.model_copy(update={"scope": scope, "edition": edition, "derived_from": parent.key})


def localise(
    catalog: Catalog,
    *,
    rename: dict[str, str] | None = None,
    drop: set[str] | frozenset[str] = frozenset(),
    specialise: dict[str, dict[str, object]] | None = None,
) -> Catalog:
    """A unit's edits to its draft edition: rename items (ids stay), drop items, and set
    level-2 attributes (subject, channels, levels …) to the unit's own values."""
    rename, specialise = rename or {}, specialise or {}
    known = set(_nodes(catalog)) | {d.code for d in catalog.domains}
    unknown = (set(rename) | set(drop) | set(specialise)) - known
    if unknown:
        raise ValueError(f"not in {catalog.key}: {', '.join(sorted(unknown))}")
    bad = {a for values in specialise.values() for a in values} - set(_ATTRIBUTES)
    if bad:
        raise ValueError(f"not a level-2 attribute: {', '.join(sorted(bad))}")
    domains = []
    for domain in catalog.domains:
        level1s = []
        for level1 in domain.level1:
            if level1.id in drop:
                continue
            items = tuple(
                Level2Item.model_validate({**j.model_dump(), **specialise.get(j.id, {}), "name": rename.get(j.id, j.name)})
                for j in level1.items
                if j.id not in drop
            )
            level1s.append(level1.model_copy(update={"name": rename.get(level1.id, level1.name), "items": items}))
        domains.append(domain.model_copy(update={"name": rename.get(domain.code, domain.name), "level1": () if domain.code in drop else tuple(level1s)}))
    return catalog.model_copy(update={"domains": tuple(domains)})
