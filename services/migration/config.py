"""A legacy site's migration config: a TOML file per old site, checked before any row is read.

site = "changsha-county"          # source /migration/changsha-county
region_code = "430121"            # the county whose old site this is
format = "csv"                    # csv | xlsx | jsonl; from the file extension when absent
encoding = "auto"                 # auto | utf-8 | utf-8-sig | gb18030 (a BOM always wins)
mapping_table = "mapping.csv"     # optional; relative to this file; wins over the rules

[columns]                         # which source column holds what
title = "标题"
...

[[rules]]                         # in order; the first match places the row
prefix = "政务公开/重点领域/社会救助/低保"
domain = "社会救助"
level1 = "D14-02"
level2 = "审批信息"
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .mapping import CatalogDirectory, Placer, RuleSpec, build_placer

# Names of the same encodings as offices write them; GB18030 reads GBK and GB2312 text too.
_ENCODINGS = {"auto": "auto", "utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8-sig", "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030"}


class Columns(BaseModel):
    """Source column names (CSV/xlsx header cells, JSON keys; `a.b` reaches into a JSON object)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Annotated[str, Field(min_length=1)]
    body: Annotated[str, Field(min_length=1)]
    date: Annotated[str, Field(min_length=1, description="the published date")]
    path: Annotated[str, Field(min_length=1, description="the old column path, e.g. 政务公开/重点领域/社会救助/低保")]
    id: str | None = Field(default=None, description="the old site's article id; source_ref is derived from the row when absent")
    formed_date: str | None = None
    index_number: str | None = None
    department: str | None = Field(default=None, description="the publishing body")
    attachments: str | None = None

    def used(self) -> list[str]:
        """The configured source columns, title first (it finds the header row)."""
        names = [self.title, self.body, self.date, self.path, self.id, self.formed_date, self.index_number, self.department, self.attachments]
        return list(dict.fromkeys(n for n in names if n))


class MigrationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="short ascii name; the source becomes /migration/<site>")]
    region_code: Annotated[str, Field(pattern=r"^[0-9A-Z]{2,12}$", description="the county whose old site this is; the default region of every rule")]
    format: Literal["csv", "xlsx", "jsonl"] | None = None
    encoding: str = "auto"
    delimiter: Annotated[str | None, Field(min_length=1, max_length=1)] = None
    sheet: str | None = None
    base_url: HttpUrl | None = Field(default=None, description="the old site's address, for relative links in attachments and bodies")
    mapping_table: Path | None = None
    columns: Columns
    rules: list[RuleSpec] = []

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        key = value.strip().lower().replace("_", "-")
        if key not in _ENCODINGS:
            raise ValueError(f"unknown encoding {value!r}; use one of auto, utf-8, utf-8-sig, gb18030")
        return _ENCODINGS[key]

    @model_validator(mode="after")
    def _something_places(self) -> MigrationConfig:
        if not self.rules and self.mapping_table is None:
            raise ValueError("no [[rules]] and no mapping_table: no row could be placed")
        return self

    @property
    def source(self) -> str:
        return f"/migration/{self.site}"

    def placer(self, directory: CatalogDirectory) -> Placer:
        """The compiled mapping; raises ConfigError naming every target the catalog lacks."""
        return build_placer(self.rules, table=self.mapping_table, default_region=self.region_code, directory=directory)


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f" #{part + 1}"
        else:
            out += f".{part}" if out else str(part)
    return out or "(config)"


def parse_config(text: str, *, base_dir: Path, where: str = "config") -> MigrationConfig:
    """The config from TOML text; `mapping_table` is resolved against base_dir."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, [f"not valid TOML: {exc}"]) from None
    try:
        config = MigrationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(where, [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None
    if config.mapping_table is not None and not config.mapping_table.is_absolute():
        config = config.model_copy(update={"mapping_table": base_dir / config.mapping_table})
    return config


def load_config(path: Path, directory: CatalogDirectory) -> MigrationConfig:
    """Read and check a config: its fields, its mapping table, and every mapping target against
    the catalog. Raises ConfigError listing every problem; nothing is read from the export."""
    if not path.is_file():
        raise ConfigError(str(path), ["no such file"])
    config = parse_config(path.read_text("utf-8-sig"), base_dir=path.parent, where=str(path))
    try:
        config.placer(directory)
    except ConfigError as exc:
        raise ConfigError(str(path), exc.problems) from None
    return config
