"""CloudEvents 1.0 (structured JSON mode) and the data of every Tongyuan event type.

Consumers ignore unknown fields (extra="ignore"), so adding an optional field is not a
breaking change; a breaking change is a new `.v2` type published alongside this one.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import date, datetime, timezone
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, GetPydanticSchema, field_validator
from pydantic_core import Url, core_schema

from .catalog import Catalog
from .identity import Principal

PUBLISHED: Final = "cn.gov.tongyuan.publication.published.v1"
WITHDRAWN: Final = "cn.gov.tongyuan.publication.withdrawn.v1"
REJECTED: Final = "cn.gov.tongyuan.publication.rejected.v1"
CMS_PUBLISH_REQUESTED: Final = "cn.gov.tongyuan.cms.publish-requested.v1"
SERVICE_ITEM_CHANGED: Final = "cn.gov.tongyuan.service-item.changed.v1"
CATALOG_CHANGED: Final = "cn.gov.tongyuan.catalog.changed.v1"

TOPIC_PUBLICATIONS = "tongyuan.publications.v1"
# The bulk lane: the same events for publications a migration brings in, on a topic of their
# own so a million of them never queue ahead of a clerk's new publication.
TOPIC_PUBLICATIONS_BULK = "tongyuan.publications.bulk.v1"
PUBLICATION_TOPICS = (TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK)
TOPIC_CMS = "tongyuan.cms.v1"
TOPIC_SERVICE_ITEMS = "tongyuan.service-items.v1"
TOPIC_REJECTIONS = "tongyuan.rejections.v1"
TOPIC_CATALOG = "tongyuan.catalog.v1"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
# The bulk lane carries CloudEvents batches (the JSON batch format: an array of structured events):
# per message, the relay, the broker and every consumer pay a fixed cost that a million rows would
# pay a million times. At most this many events, or bytes, per batch; consumers take single events
# there too. contracts/bulk.py turns a batch record into structured-mode records any SDK reads.
CLOUDEVENTS_BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
BULK_EVENTS_PER_MESSAGE = 100
BULK_BYTES_PER_MESSAGE = 512 * 1024


def dlq_topic(group: str) -> str:
    return f"tongyuan.publications.dlq.{group}"


RegionCode = Annotated[str, Field(pattern=r"^[0-9A-Z]{2,12}$", description="statistical division code, or 4301GX-style code of our own")]
ItemId = Annotated[str, Field(pattern=r"^D\d{2}(-\d{2}){0,2}$", max_length=16)]
PublicationId = Annotated[str, Field(pattern=r"^[0-9a-zA-Z._:-]{1,80}$")]
Text = Annotated[str, Field(max_length=500)]


class Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# An http(s) link, checked by pydantic-core alone: HttpUrl makes the same check but wraps it in
# a Python call per value (pydantic ≥ 2.10), a quarter of each consumer's parse of a publication.
WebLink = Annotated[Url, GetPydanticSchema(lambda _source, _handler: core_schema.url_schema(max_length=2083, allowed_schemes=["http", "https"]))]


class Attachment(Contract):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    url: WebLink


class PlacementRef(Contract):
    """Where a clerk files an item: region → domain → level-1 item → level-2 item.

    Checked against the catalog by the publisher, which answers with the valid choices;
    `domain_code` also accepts the domain's name or an alias (环境保护 → D09).
    """

    region_code: Annotated[str, Field(min_length=1, max_length=20)]
    domain_code: Annotated[str, Field(min_length=1, max_length=20)]
    level1_id: Annotated[str, Field(min_length=1, max_length=20)]
    level2_id: Annotated[str, Field(min_length=1, max_length=20)]


class Placement(Contract):
    """A placement enriched from the catalog, so consumers never need the catalog to render it."""

    region_code: RegionCode
    domain_code: Annotated[str, Field(pattern=r"^D\d{2}$")]
    level1_id: ItemId
    level2_id: ItemId
    region_name: str
    domain_name: str
    level1_name: str
    level2_name: str


class CatalogAttributes(Contract):
    """What the catalog says about the level-2 item a publication is filed under."""

    time_limit: str | None = None
    channels: tuple[str, ...] = ()
    audience: str | None = None
    method: str | None = None
    subject: str | None = None


class SourceRef(Contract):
    """Who the publication came from, for de-duplication: a CMS id or a 实施编码."""

    source: str
    ref: str | None = None


class PublicationData(Contract):
    publication_id: PublicationId
    version: Annotated[int, Field(ge=1)]
    placements: Annotated[tuple[Placement, ...], Field(min_length=1)]
    kind: Literal["info", "service"] = "info"
    title: str
    summary: str | None = None
    body_html: str = ""
    attachments: tuple[Attachment, ...] = ()
    index_number: str
    publishing_body: str | None = None
    formed_at: date
    published_at: datetime
    catalog: CatalogAttributes = CatalogAttributes()
    service_guide: dict[str, Any] | None = None
    source_ref: SourceRef


WithdrawalType = Literal["withdrawn", "gone", "redirect", "vanish"]


class WithdrawalData(Contract):
    """A versioned tombstone: the publication stays known, so a late older publish cannot revive it."""

    publication_id: PublicationId
    version: Annotated[int, Field(ge=1)]
    withdrawal_type: WithdrawalType
    explanation: str = ""
    redirect_to: str | None = None
    withdrawn_at: datetime
    # What the withdrawn notice page shows; absent for `vanish`.
    title: str | None = None
    placements: tuple[Placement, ...] = ()


# C0 controls except tab, line feed and carriage return, and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control_characters(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


class PublicationDraft(Contract):
    """What a clerk or a CMS submits; the publisher validates, enriches and versions it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    placements: Annotated[list[PlacementRef], Field(min_length=1, max_length=20)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    body_html: Annotated[str, Field(max_length=1_000_000)] = ""
    summary: Annotated[str | None, Field(max_length=1000)] = None
    formed_at: date
    published_at: datetime | None = None
    publishing_body: Annotated[str | None, Field(max_length=100)] = None
    index_number: Annotated[str | None, Field(max_length=60)] = None
    attachments: Annotated[list[Attachment], Field(max_length=50)] = []

    _plain_text = field_validator("title", "summary", "publishing_body", "index_number")(_no_control_characters)

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class PublishRequestData(PublicationDraft):
    """What an upstream CMS sends on tongyuan.cms.v1: a draft plus the CMS's own id.

    The same `source_ref` always maps to the same publication; `withdraw` withdraws it.
    """

    source_ref: Annotated[str, Field(min_length=1, max_length=120, description="the CMS's own id for the item")]
    # The clerk acting in the CMS. The topic is trusted by transport (broker ACLs), so the
    # claims come as data, and the gate authorises them exactly as it does a bearer token's.
    actor: Principal
    withdraw: WithdrawalType | None = None
    explanation: Annotated[str, Field(max_length=2000)] = ""


class FieldError(Contract):
    loc: tuple[str | int, ...]
    msg: str
    type: str
    choices: tuple[dict[str, str], ...] | None = None


class RejectionData(Contract):
    original_id: str
    original_type: str | None = None
    original_source: str | None = None
    source_ref: str | None = None
    errors: tuple[FieldError, ...]


DataT = TypeVar("DataT", bound=BaseModel)


class CloudEvent(BaseModel, Generic[DataT]):
    """CloudEvents 1.0 envelope in structured JSON mode; extension attributes are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[str, Field(min_length=1, max_length=200)]
    source: Annotated[str, Field(min_length=1, max_length=300)]
    type: str
    subject: str | None = None
    time: datetime | None = None
    datacontenttype: str = "application/json"
    data: DataT

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class PublishedEvent(CloudEvent[PublicationData]):
    type: Literal["cn.gov.tongyuan.publication.published.v1"] = PUBLISHED


class WithdrawnEvent(CloudEvent[WithdrawalData]):
    type: Literal["cn.gov.tongyuan.publication.withdrawn.v1"] = WITHDRAWN


class PublishRequestedEvent(CloudEvent[PublishRequestData]):
    type: Literal["cn.gov.tongyuan.cms.publish-requested.v1"] = CMS_PUBLISH_REQUESTED


class RejectedEvent(CloudEvent[RejectionData]):
    type: Literal["cn.gov.tongyuan.publication.rejected.v1"] = REJECTED


class CatalogRename(Contract):
    id: str
    old: str
    new: str


class CatalogChangedData(Contract):
    """A unit's catalog edition was published: the whole snapshot, and what changed.

    `version` grows with every edition published for the scope, so consumers keep only the
    newest; publications filed under renamed items are re-issued by the publisher with the
    new names, so consumers need not rewrite them.
    """

    scope: str
    edition: str
    version: Annotated[int, Field(ge=1)]
    catalog: Catalog
    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    renamed: tuple[CatalogRename, ...] = ()


class CatalogChangedEvent(CloudEvent[CatalogChangedData]):
    type: Literal["cn.gov.tongyuan.catalog.changed.v1"] = CATALOG_CHANGED


PublicationEvent = Annotated[PublishedEvent | WithdrawnEvent, Field(discriminator="type")]


def new_event_id() -> str:
    """A time-ordered UUID (version 7, RFC 9562): ids made later sort later, so the outbox's
    unique index on them grows at its end instead of dirtying a random page per event (a
    page a row of WAL and checkpoint in every SQLite store that keeps them)."""
    return str(uuid7())


def uuid7() -> uuid.UUID:
    """Python 3.14's uuid.uuid7 where there is one; otherwise the same layout: 48 bits of Unix
    milliseconds, the version, 74 random bits and the variant."""
    if _STDLIB_UUID7 is not None:
        return _STDLIB_UUID7()
    return uuid7_at(time.time_ns() // 1_000_000, os.urandom(10))


def uuid7_at(milliseconds: int, entropy: bytes) -> uuid.UUID:
    """A version-7 UUID for the given Unix milliseconds (clamped to the 48 bits there are), its
    74 other bits from the first ten bytes of `entropy`: deterministic, for an id that must be
    derived from something and still sort by time."""
    stamp = min(max(milliseconds, 0), (1 << 48) - 1)
    random = int.from_bytes(entropy[:10]) >> 6  # 74 bits
    value = stamp << 80 | 0x7 << 76 | (random >> 62) << 64 | 0b10 << 62 | random & ((1 << 62) - 1)
    return uuid.UUID(int=value)


_STDLIB_UUID7 = getattr(uuid, "uuid7", None)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
