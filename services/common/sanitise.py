"""The one HTML policy of the pipeline, and the only way a page may mark text as safe.

The gate cleans every body with it before it is stored; consumers clean again before their
own store writes and pages clean once more as they render, because anyone who can produce to a
topic can put an event there that never went through the gate, and a store may hold one.
Templates get HTML only through the filters installed here: `sanitised` (a body), `marked`
(search text: escaped, with <mark> around matches) and `safe_link` (an href).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import nh3
from markupsafe import Markup

# ammonia's defaults plus nothing: no style, no script, no event handlers, only web links.
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_SCHEMES = frozenset({"http", "https"})
# What a link becomes when its address is not one a reader may be sent to.
NOWHERE = "#"


def sanitise_html(body: str) -> str:
    """A body as the gate stores it: nh3's allow-list of tags and attributes, these schemes only."""
    return nh3.clean(body, url_schemes=set(URL_SCHEMES), link_rel="noopener noreferrer")


def safe_body(body: str | None) -> Markup:
    """Body HTML for a template, cleaned here whatever the store says it holds."""
    return Markup(sanitise_html(body or ""))


def safe_marked(text: str | None) -> Markup:
    """Search text as HTML: already escaped by the search side, <mark> the only tag kept."""
    return Markup(nh3.clean(text or "", tags={"mark"}, attributes={}, url_schemes=set(), link_rel=None))


def is_safe_link(url: str | None) -> bool:
    """An http(s) address or a path on this site; never javascript:, data: or a scheme-relative //host."""
    if not url or any(ord(ch) < 33 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme:
        return parts.scheme.lower() in LINK_SCHEMES and bool(parts.netloc)
    # Browsers read a backslash as a slash: /\host is another site, like //host.
    return not url.replace("\\", "/").startswith("//") and not parts.netloc


def safe_link(url: Any) -> str:
    text = str(url) if url is not None else ""
    return text if is_safe_link(text) else NOWHERE


def safe_links(value: Any) -> Any:
    """A copy of nested data (a service guide) with every `…_url` that is not a safe link dropped."""
    if isinstance(value, Mapping):
        return {
            key: (None if isinstance(key, str) and key.endswith("url") and not is_safe_link(item if isinstance(item, str) else None) else safe_links(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [safe_links(item) for item in value]
    return value


def install_filters(env) -> None:
    """Give a Jinja environment the filters its templates use instead of `|safe`."""
    env.filters.update(sanitised=safe_body, marked=safe_marked, safe_link=safe_link)
