"""Township embedding rules, pure (which events apply: services/common/projection.py): what counts as 重大民生信息 (major
livelihood information), which feeds a placement belongs to, and the portal registry's checks.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import nh3

from contracts.catalog import DOMAIN_NAMES, Region
from contracts.events import PublicationData

# The livelihood domains the reform names (社会救助, 养老服务, 就业, 社会保险, 义务教育, 医疗卫生,
# 保障性住房, 涉农补贴, 救灾), by canonical name so the codes follow contracts.catalog.
DEFAULT_MAJOR_DOMAIN_NAMES = ("救灾", "社会救助", "养老服务", "涉农补贴", "就业", "社会保险", "义务教育", "卫生健康", "保障性住房")
DOMAIN_CODES = {name: f"D{index:02d}" for index, (name, _aliases) in enumerate(DOMAIN_NAMES, start=1)}
CANONICAL_DOMAIN_NAMES = {code: name for name, code in DOMAIN_CODES.items()}
DEFAULT_MAJOR_DOMAINS = tuple(sorted(DOMAIN_CODES[name] for name in DEFAULT_MAJOR_DOMAIN_NAMES))

RULE_TARGET = re.compile(r"^D\d{2}(-\d{2}(-\d{2})?)?$")


# --- what counts as 重大民生信息 ---------------------------------------------------------------
class Filed(Protocol):
    """Where something is filed: a Placement, or a placement row read back from a store."""

    @property
    def domain_code(self) -> str: ...
    @property
    def level1_id(self) -> str: ...
    @property
    def level2_id(self) -> str: ...


@dataclass(frozen=True)
class MajorRules:
    """Catalog targets (domain `D14`, level-1 `D14-02`, level-2 `D14-02-03`) → counts or not.

    The most specific target wins, so an office can take a whole domain and leave out one of
    its items, or take one item of a domain it otherwise leaves out."""

    targets: Mapping[str, bool] = field(default_factory=dict)

    @classmethod
    def default(cls) -> MajorRules:
        return cls({code: True for code in DEFAULT_MAJOR_DOMAINS})

    def counts(self, placement: Filed, flag: bool | None = None) -> bool:
        """A publication's own flag decides first; then the rule for its level-2 item, level-1 item, domain."""
        if flag is not None:
            return flag
        for target in (placement.level2_id, placement.level1_id, placement.domain_code):
            if target in self.targets:
                return self.targets[target]
        return False

    def major_domains(self) -> list[str]:
        """Domains the column shows a section for: those the rules take wholly or in part."""
        return sorted({target[:3] for target, major in self.targets.items() if major})


def explicit_flag(data: PublicationData) -> bool | None:
    """The publication's own `major_livelihood` flag, when the contract carries one.

    Read defensively: the field is optional and newer than this consumer may be."""
    flag = getattr(data, "major_livelihood", None)
    return flag if isinstance(flag, bool) else None


def check_rule_target(target: str) -> str:
    target = target.strip().upper()
    if not RULE_TARGET.match(target) or target[:3] not in CANONICAL_DOMAIN_NAMES:
        raise ValueError(f"{target!r} is not a catalog domain (D01–D32) or item id (D14-02, D14-02-03)")
    return target


# --- feeds: which scopes a placement belongs to ------------------------------------------
SCOPE_LENGTHS = (4, 6, 9, 12)  # city, county, township, village: statistical code prefixes


def scopes_of(region_code: str) -> list[str]:
    """The region and every ancestor whose aggregate feed includes it, by code prefix, as the
    column aggregates (a county's feed includes its townships' items)."""
    return sorted({region_code[:n] for n in SCOPE_LENGTHS if n < len(region_code)} | {region_code})


def excerpt(summary: str | None, body_html: str, limit: int = 160) -> str:
    """Plain text for feed summaries: the summary, else the body's text, cut at `limit`."""
    text = summary or html.unescape(nh3.clean(body_html or "", tags=set()))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the portal registry -------------------------------------------------------------------
@dataclass(frozen=True)
class Portal:
    region_code: str
    portal_url: str  # the township's own government portal
    column_url: str  # its 政务公开专栏, where the 重大民生信息 column goes


@dataclass(frozen=True)
class Problem:
    where: str  # "region 430102001" or "乡镇门户!C4"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class RegistryError(ValueError):
    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in problems))


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_https_url(raw: str) -> str:
    """A well-formed absolute https URL (host lower-cased, IDN hosts in punycode), or ValueError."""
    value = (raw or "").strip()
    if not value:
        raise ValueError("is empty")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError("must not contain spaces or control characters")
    if len(value) > 500:
        raise ValueError("is longer than 500 characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a well-formed URL ({exc})") from None
    if parts.scheme.lower() != "https":
        raise ValueError("must be an https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not carry a user name or password")
    host = parts.hostname or ""
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"has an invalid host name {parts.hostname!r}") from None
    labels = host.split(".")
    if len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"has no valid public host name ({parts.hostname or 'none'!r})")
    netloc = host if port in (None, 443) else f"{host}:{port}"
    return urlunsplit(("https", netloc, parts.path or "/", parts.query, ""))


def validate_portals(
    rows: Iterable[tuple[str, str, str, str]],
    *,
    known: Mapping[str, Region | None],
    registered: Mapping[str, Portal],
    replacing: Collection[str] = (),
) -> list[Portal]:
    """Check portals to add, as (where, region code, portal URL, column URL); all or nothing.

    `known` maps region codes to their Region (None: known by code only); `registered` is the
    registry as it stands; `replacing` the codes whose entries the caller means to overwrite
    (or, for a whole-registry import, every code). Raises RegistryError with every problem."""
    problems: list[Problem] = []
    portals: list[Portal] = []
    seen_codes: dict[str, str] = {}
    seen_urls: dict[str, tuple[str, str]] = {}
    for portal in registered.values():
        if portal.region_code not in replacing:
            for url in (portal.portal_url, portal.column_url):
                seen_urls[url] = (portal.region_code, "the registry")
    for where, raw_code, raw_portal, raw_column in rows:
        code = (raw_code or "").strip().upper()
        before = len(problems)
        if not code:
            problems.append(Problem(where, "region code is empty"))
        elif code not in known:
            problems.append(Problem(where, f"region {code} is not a known region"))
        elif (region := known[code]) is not None and region.level != "township":
            problems.append(Problem(where, f"region {code} ({region.name}) is a {region.level}, not a township (乡镇/街道)"))
        elif code in seen_codes:
            problems.append(Problem(where, f"region {code} appears twice (also {seen_codes[code]})"))
        elif code in registered and code not in replacing:
            problems.append(Problem(where, f"region {code} already has a portal ({registered[code].portal_url}); remove it first or replace it"))
        urls = []
        for label, raw in (("portal URL", raw_portal), ("column URL", raw_column)):
            try:
                urls.append(normalise_https_url(raw))
            except ValueError as exc:
                problems.append(Problem(where, f"{label} {exc}"))
        if len(problems) > before:
            continue
        portal_url, column_url = urls
        seen_codes[code] = where
        for url in dict.fromkeys(urls):
            if url in seen_urls:
                other, place = seen_urls[url]
                problems.append(Problem(where, f"{url} is already the address of region {other} ({place})"))
            seen_urls[url] = (code, where)
        portals.append(Portal(code, portal_url, column_url))
    if problems:
        raise RegistryError(problems)
    return portals
