"""Old column path → catalog placement: the explicit table first (exact path), then the rules in
order; a path neither places is unmapped, and its rows are rejected — never guessed.

Every target is checked against the catalog of its region when the mapping is built, so a typo
in the config fails before any row is read, with the valid choices listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, model_validator

from contracts.catalog import Catalog, Region
from contracts.events import PlacementRef

from .errors import ConfigError
from .sources import table_records

# Old sites write paths as 政务公开/重点领域, 政务公开 > 重点领域, 政务公开»重点领域 …
_SEPARATORS = re.compile(r"[/\\>＞›»]")
_CACHE_LIMIT = 100_000


def normalise_path(raw: str) -> str:
    """One spelling per path: segments trimmed, inner whitespace collapsed, joined by '/'."""
    return "/".join(segment for segment in (" ".join(part.split()) for part in _SEPARATORS.split(raw)) if segment)


class CatalogDirectory(Protocol):
    """What placements are checked against; the publisher's `Directory` is one."""

    @property
    def regions(self) -> Mapping[str, Region]: ...

    def catalog_for(self, region_code: str) -> Catalog: ...


class RuleSpec(BaseModel):
    """One `[[rules]]` entry: paths under `prefix` (whole segments) or matching `glob` go to the
    given item. In a glob `*` stays within one segment, `**` spans segments, `?` is one character.
    `domain` takes a code, name or alias; `level1`/`level2` an id or the item's exact name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str | None = None
    glob: str | None = None
    region: str | None = None
    domain: str
    level1: str
    level2: str
    note: str = ""

    @model_validator(mode="after")
    def _one_pattern(self) -> RuleSpec:
        given = [name for name in ("prefix", "glob") if (getattr(self, name) or "").strip()]
        if len(given) != 1:
            raise ValueError("give exactly one of prefix or glob")
        return self

    @property
    def pattern(self) -> str:
        return f'prefix "{self.prefix}"' if self.prefix else f'glob "{self.glob}"'


@dataclass(frozen=True, slots=True)
class Target:
    """A placement the gate will accept, with the names the dry-run summary shows."""

    ref: PlacementRef
    region_name: str
    domain_name: str
    level1_name: str
    level2_name: str

    @property
    def label(self) -> tuple[str, str, str, str]:
        return (self.region_name, self.domain_name, self.level1_name, self.level2_name)


class TargetError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")


def _choices(pairs: Iterable[tuple[str, str]], limit: int = 40) -> str:
    pairs = list(pairs)
    shown = ", ".join(f"{code} {name}" for code, name in pairs[:limit])
    return shown + (f", … ({len(pairs)} in all)" if len(pairs) > limit else "")


def _pick(items, key: str):
    key = key.strip()
    return next((i for i in items if i.id == key), None) or next((i for i in items if i.name == key), None)


def resolve_target(directory: CatalogDirectory, region_code: str, domain: str, level1: str, level2: str) -> Target:
    """A target by region code, domain code/name/alias and level-1/level-2 id or name, checked
    against the catalog that region publishes under."""
    region = directory.regions.get(region_code)
    if region is None:
        counties = sorted((r.code, r.name) for r in directory.regions.values() if r.level == "county")
        raise TargetError("region", f"unknown region code {region_code!r}; counties known: {_choices(counties)}")
    catalog = directory.catalog_for(region_code)
    found = catalog.resolve_domain(domain)
    if found is None:
        raise TargetError("domain", f"unknown domain {domain!r}; valid: {_choices((d.code, d.name) for d in catalog.domains)}")
    item1 = _pick(found.level1, level1)
    if item1 is None:
        if not found.level1:
            raise TargetError("level1", f"{found.name} has no level-1 items in catalog {catalog.key}")
        raise TargetError("level1", f"{level1!r} is not a level-1 item of {found.name}; valid: {_choices((i.id, i.name) for i in found.level1)}")
    item2 = _pick(item1.items, level2)
    if item2 is None:
        if not item1.items:
            raise TargetError("level2", f"{found.name} / {item1.name} has no level-2 items in catalog {catalog.key}")
        raise TargetError("level2", f"{level2!r} is not a level-2 item of {found.name} / {item1.name}; valid: {_choices((j.id, j.name) for j in item1.items)}")
    return Target(
        ref=PlacementRef(region_code=region.code, domain_code=found.code, level1_id=item1.id, level2_id=item2.id),
        region_name=region.name,
        domain_name=found.name,
        level1_name=item1.name,
        level2_name=item2.name,
    )


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*|\*|\?)", normalise_path(pattern))
    wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(p, re.escape(p)) for p in parts))


@dataclass(frozen=True, slots=True)
class _Rule:
    target: Target
    prefix: str | None
    glob: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.prefix is not None:
            return path == self.prefix or path.startswith(self.prefix + "/")
        return self.glob.fullmatch(path) is not None  # type: ignore[union-attr]


@dataclass(frozen=True)
class Placer:
    """Places normalised paths: exact table entries win over rules; rules apply in order."""

    table: Mapping[str, Target]
    rules: tuple[_Rule, ...]
    # Exports repeat a few hundred paths a million times; remember the answers.
    _seen: dict[str, Target | None] = field(default_factory=dict, repr=False, compare=False)

    def place(self, path: str) -> Target | None:
        try:
            return self._seen[path]
        except KeyError:
            pass
        found = self.table.get(path) or next((rule.target for rule in self.rules if rule.matches(path)), None)
        if len(self._seen) >= _CACHE_LIMIT:
            self._seen.clear()
        self._seen[path] = found
        return found


# Header spellings accepted in a mapping table, English or as offices write them.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "path": ("old_path", "path", "旧栏目路径", "原栏目路径", "栏目路径", "原栏目", "旧栏目", "栏目"),
    "region": ("region_code", "region", "地区代码", "地区"),
    "domain": ("domain", "domain_code", "领域"),
    "level1": ("level1_id", "level1", "一级事项"),
    "level2": ("level2_id", "level2", "二级事项"),
}


def _table_header(cells: Sequence[object]) -> dict[str, int] | None:
    names = [str(c).strip() if c is not None else "" for c in cells]
    found = {key: next((names.index(a) for a in aliases if a in names), -1) for key, aliases in TABLE_COLUMNS.items()}
    required = ("path", "domain", "level1", "level2")
    return {k: i for k, i in found.items() if i >= 0} if all(found[k] >= 0 for k in required) else None


def _cell(cells: Sequence[object], columns: dict[str, int], key: str) -> str:
    index = columns.get(key, -1)
    value = cells[index] if 0 <= index < len(cells) else None
    return "" if value is None else " ".join(str(value).split())


def load_table(path: Path, *, default_region: str, directory: CatalogDirectory) -> dict[str, Target]:
    """The explicit mapping table (CSV or xlsx): old path → region, domain, level-1, level-2.
    The region cell may be blank (the config's region). All problems are reported at once."""
    if not path.is_file():
        raise ConfigError(str(path), ["mapping table not found"])
    problems: list[str] = []
    table: dict[str, Target] = {}
    first_line: dict[str, int] = {}
    columns: dict[str, int] | None = None
    for line, cells in table_records(path):
        if columns is None:
            columns = _table_header(cells)
            if columns is None and line >= 20:
                break
            continue
        old_path = normalise_path(_cell(cells, columns, "path"))
        values = [_cell(cells, columns, k) for k in ("region", "domain", "level1", "level2")]
        if not old_path and not any(values):
            continue
        if not old_path:
            problems.append(f"line {line}: no old path")
            continue
        try:
            target = resolve_target(directory, values[0] or default_region, *values[1:])
        except TargetError as exc:
            problems.append(f"line {line} ({old_path}): {exc}")
            continue
        if old_path in table and table[old_path] != target:
            problems.append(f"line {line} ({old_path}): already mapped differently on line {first_line[old_path]}")
            continue
        table.setdefault(old_path, target)
        first_line.setdefault(old_path, line)
    if columns is None:
        wanted = "; ".join(f"{key}: {' | '.join(aliases)}" for key, aliases in TABLE_COLUMNS.items())
        raise ConfigError(str(path), [f"no header row found in the first 20 lines; columns wanted ({wanted})"])
    if problems:
        raise ConfigError(str(path), problems)
    return table


def build_placer(rules: Sequence[RuleSpec], *, table: Path | None, default_region: str, directory: CatalogDirectory) -> Placer:
    """Compile and check the whole mapping; raises ConfigError listing every bad target."""
    problems: list[str] = []
    compiled: list[_Rule] = []
    for number, rule in enumerate(rules, start=1):
        try:
            target = resolve_target(directory, rule.region or default_region, rule.domain, rule.level1, rule.level2)
        except TargetError as exc:
            problems.append(f"rules #{number} ({rule.pattern}): {exc}")
            continue
        prefix = normalise_path(rule.prefix) if rule.prefix else None
        compiled.append(_Rule(target=target, prefix=prefix, glob=None if prefix is not None else _glob_regex(rule.glob or "")))
    entries: dict[str, Target] = {}
    if table is not None:
        try:
            entries = load_table(table, default_region=default_region, directory=directory)
        except ConfigError as exc:
            problems += [f"mapping table {exc.where}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError("mapping", problems)
    return Placer(table=entries, rules=tuple(compiled))
