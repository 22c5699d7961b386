"""JSON Schemas of every event type, generated into contracts/schemas/ (`make schemas`)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from .events import CatalogChangedEvent, PublishedEvent, PublishRequestedEvent, RejectedEvent, WithdrawnEvent
from .service_items import ServiceItemChangedEvent

SCHEMA_DIR = Path(__file__).parent / "schemas"
MODELS: dict[str, type[BaseModel]] = {
    "cn.gov.tongyuan.publication.published.v1": PublishedEvent,
    "cn.gov.tongyuan.publication.withdrawn.v1": WithdrawnEvent,
    "cn.gov.tongyuan.publication.rejected.v1": RejectedEvent,
    "cn.gov.tongyuan.cms.publish-requested.v1": PublishRequestedEvent,
    "cn.gov.tongyuan.catalog.changed.v1": CatalogChangedEvent,
    "cn.gov.tongyuan.service-item.changed.v1": ServiceItemChangedEvent,
}


def rendered() -> dict[str, str]:
    out = {}
    for event_type, model in MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"urn:tongyuan:schema:{event_type}", **schema}
        out[f"{event_type}.json"] = json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    return [name for name, text in rendered().items() if not (directory / name).exists() or (directory / name).read_text("utf-8") != text]
