"""Atom (RFC 4287) and JSON Feed 1.1 documents of 重大民生信息, rendered from feed items (pure)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .store import FeedItem

ATOM = "http://www.w3.org/2005/Atom"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
JSON_FEED_MEDIA_TYPE = "application/feed+json; charset=utf-8"
# China keeps one offset all year, so dates shown are Beijing dates without a tz database.
BEIJING = timezone(timedelta(hours=8), "CST")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

ET.register_namespace("", ATOM)


@dataclass(frozen=True)
class FeedInfo:
    """What a feed says about itself; URLs are absolute."""

    id: str  # a permanent URN, so a feed keeps its identity if the portal's address changes
    title: str
    description: str
    author: str
    self_url: str  # this document
    home_url: str  # the iframe-ready page showing the same items
    base_url: str  # where the portal's detail pages live
    updated: datetime
    language: str = "zh-CN"


def entry_id(publication_id: str) -> str:
    return f"urn:tongyuan:publication:{publication_id}"


def local_time(value: datetime) -> str:
    return value.astimezone(BEIJING).isoformat(timespec="seconds")


def _text(value: str | None) -> str:
    return _NOT_XML.sub("", value or "")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: _text(v) for k, v in attributes.items()})
    if text is not None:
        element.text = _text(text)
    return element


def atom(info: FeedInfo, items: list[FeedItem]) -> bytes:
    feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": info.language})
    _sub(feed, "id", info.id)
    _sub(feed, "title", info.title)
    _sub(feed, "subtitle", info.description)
    _sub(feed, "updated", local_time(info.updated))
    _sub(feed, "link", rel="self", type="application/atom+xml", href=info.self_url)
    _sub(feed, "link", rel="alternate", type="text/html", href=info.home_url)
    author = _sub(feed, "author")
    _sub(author, "name", info.author)
    _sub(feed, "generator", "同源 Tongyuan")
    for item in items:
        entry = _sub(feed, "entry")
        _sub(entry, "id", entry_id(item.publication_id))
        _sub(entry, "title", item.title)
        _sub(entry, "link", rel="alternate", type="text/html", href=f"{info.base_url}/publications/{item.publication_id}")
        _sub(entry, "published", local_time(item.published_at))
        _sub(entry, "updated", local_time(item.updated))
        if item.publishing_body:
            _sub(_sub(entry, "author"), "name", item.publishing_body)
        _sub(entry, "category", term=item.domain_code, label=item.domain_name)
        _sub(entry, "summary", item.summary or item.title, type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def json_feed(info: FeedInfo, items: list[FeedItem]) -> bytes:
    document = {
        "version": JSON_FEED_VERSION,
        "title": info.title,
        "home_page_url": info.home_url,
        "feed_url": info.self_url,
        "description": info.description,
        "language": info.language,
        "authors": [{"name": info.author}],
        "items": [
            {
                "id": entry_id(item.publication_id),
                "url": f"{info.base_url}/publications/{item.publication_id}",
                "title": item.title,
                "content_text": item.summary or item.title,
                "summary": item.summary or item.title,
                "date_published": local_time(item.published_at),
                "date_modified": local_time(item.updated),
                "tags": [item.domain_name, item.level2_name],
                **({"authors": [{"name": item.publishing_body}]} if item.publishing_body else {}),
                "_tongyuan": {"domain_code": item.domain_code, "region_code": item.region_code, "index_number": item.index_number},
            }
            for item in items
        ],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
