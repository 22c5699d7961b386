"""A stand-in for the provincial integrated government-service platform (政务服务一体化平台).

The real platform is not reachable from here, so this serves the same kind of API with items
spread over Changsha's units, and can be told to misbehave the ways real platforms do:

    GET  /api/v1/items?updated_since=&page=&page_size=   paged change list (oldest change first)
    GET  /api/v1/items/{实施编码}                          the item with its full 办事指南 (404 once deleted)
    POST webhook → the registered URL on every change, signed (HMAC-SHA256, timestamp, nonce)

Faults (each a probability per response, see `Faults`): timeouts, 500s, truncated bodies,
malformed records, a page served twice, items shuffled within a page, an item deleted between
the list and the detail, a cursor (and clock) that goes backwards. `/_sim/*` lets tests and the
benchmark edit, revoke and delete items, set faults and read the platform's true state.
"""

from .http import Served, create_app
from .items import Faults, SimItem, item_fingerprint, seed_items
from .platform import Platform, WebhookSender
from .templates import COUNTY_TEMPLATES, HIGH_TECH_ZONE_AREA, PLATFORM, TEMPLATES, TOWNSHIP_TEMPLATES, Template

__all__ = [
    "COUNTY_TEMPLATES",
    "HIGH_TECH_ZONE_AREA",
    "PLATFORM",
    "TEMPLATES",
    "TOWNSHIP_TEMPLATES",
    "Faults",
    "Platform",
    "Served",
    "SimItem",
    "Template",
    "WebhookSender",
    "create_app",
    "item_fingerprint",
    "seed_items",
]
