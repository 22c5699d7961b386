"""What the Elasticsearch adapter stores: the index template (settings + mapping) and the
document written for each event. Pure functions; elasticsearch.py does the I/O.

Two analyses of every text field:
- the configured Chinese analyzer (`smartcn`, `ik_max_word` or the built-in `cjk`) on the
  field itself, for BM25 ranking by words;
- `<field>.chars`, one token per Han character and one per run of other letters/digits
  (full-width folded, lowercased), for exact matching: a query word must occur as a phrase
  of those tokens, so 低保 never matches 低…保 scattered over a sentence and a one-character
  query still matches — the same rules the embedded index keeps with bigrams + unigrams.
"""

from __future__ import annotations

from typing import Any

from contracts.events import PublicationData, WithdrawalData

from .index import as_utc, document_of

ANALYZERS = ("smartcn", "ik_max_word", "cjk")
# ik indexes with every overlapping word (ik_max_word) and searches with the coarsest split.
_SEARCH_ANALYZER = {"smartcn": "smartcn", "ik_max_word": "ik_smart", "cjk": "cjk"}

CHARS_ANALYZER = "tongyuan_chars"
# Java regex (the `pattern` tokenizer, group 0 = each match is a token): a Han character on
# its own, or a run of letters/digits of any other script.
CHARS_PATTERN = r"\p{IsHan}|[[\p{L}\p{Nd}]&&[^\p{IsHan}]]+"

# Fields searched as text, in the order a snippet prefers them.
TEXT_FIELDS = ("title", "summary", "body_text", "attachment_names", "publishing_body")
# How much the start of the body the hit keeps in _source for a snippet without a match.
LEAD_CHARS = 300

# Region codes: province 2, city 4, county 6 (or 4301GX-style codes of our own), township 9,
# village 12. A region filter is a term query on every placement's ancestors.
REGION_LEVELS = (2, 4, 6, 9, 12)
COUNTY_LENGTH = 6

MAPPING_VERSION = 1


def check_analyzer(analyzer: str) -> str:
    if analyzer not in ANALYZERS:
        raise ValueError(f"analyzer is one of {ANALYZERS}, not {analyzer!r}")
    return analyzer


def index_template(patterns: list[str], analyzer: str, *, shards: int = 1, replicas: int = 1) -> dict[str, Any]:
    """The body of PUT _index_template/<name>: every concrete index behind the alias is made from it."""
    check_analyzer(analyzer)
    chars = {"type": "text", "analyzer": CHARS_ANALYZER}
    text = {"type": "text", "analyzer": analyzer, "search_analyzer": _SEARCH_ANALYZER[analyzer], "fields": {"chars": chars}}
    keyword = {"type": "keyword"}
    return {
        "index_patterns": patterns,
        # Above the built-in templates (priority 100 and below for logs-*, metrics-* …).
        "priority": 200,
        "_meta": {"tongyuan_mapping": MAPPING_VERSION, "analyzer": analyzer},
        "template": {
            "settings": {
                "index": {"number_of_shards": shards, "number_of_replicas": replicas},
                "analysis": {
                    "tokenizer": {CHARS_ANALYZER: {"type": "pattern", "pattern": CHARS_PATTERN, "group": 0}},
                    "analyzer": {CHARS_ANALYZER: {"type": "custom", "tokenizer": CHARS_ANALYZER, "filter": ["cjk_width", "lowercase"]}},
                },
            },
            "mappings": {
                # Fields we do not map stay in _source unindexed: a new field in document_of
                # never turns into a mapping error for every document.
                "dynamic": False,
                "properties": {
                    "publication_id": keyword,
                    "version": {"type": "long"},
                    "status": keyword,  # published | withdrawn (a tombstone)
                    "withdrawal_type": keyword,
                    "title": text,
                    "summary": text,
                    "body_text": text,
                    "attachment_names": text,
                    "publishing_body": text,
                    "index_number": {"type": "keyword", "fields": {"text": chars}},
                    "kind": keyword,
                    "published_at": {"type": "date"},
                    "withdrawn_at": {"type": "date"},
                    # What a hit renders, kept as given and never indexed.
                    "placements": {"type": "object", "enabled": False},
                    "lead": {"type": "text", "index": False},
                    # Nested, so region, domain and items of a filter must hold for one placement.
                    "placement_keys": {
                        "type": "nested",
                        "properties": {
                            "region_code": keyword,
                            "region_path": keyword,  # the region and every ancestor
                            "county": keyword,  # the county-level ancestor, for the region facet
                            "domain": keyword,
                            "level1": keyword,
                            "level2": keyword,
                        },
                    },
                },
            },
        },
    }


def region_path(code: str) -> list[str]:
    """The code and every ancestor: 430102001 → 43, 4301, 430102, 430102001."""
    return [code[:size] for size in REGION_LEVELS if size < len(code)] + [code]


def county_of(code: str) -> str | None:
    """The county-level unit a region counts towards (a township counts towards its county)."""
    return code[:COUNTY_LENGTH] if len(code) >= COUNTY_LENGTH else None


def published_document(data: PublicationData) -> dict[str, Any]:
    document = document_of(data)
    body = document.pop("body_text")
    return {
        "publication_id": data.publication_id,
        "version": data.version,
        "status": "published",
        **document,
        "body_text": body,
        "lead": body[:LEAD_CHARS],
        "attachment_names": [attachment.name for attachment in data.attachments],
        "placement_keys": [
            {
                "region_code": p.region_code,
                "region_path": region_path(p.region_code),
                "county": county_of(p.region_code),
                "domain": p.domain_code,
                "level1": p.level1_id,
                "level2": p.level2_id,
            }
            for p in data.placements
        ],
    }


def tombstone_document(data: WithdrawalData) -> dict[str, Any]:
    # No text and no placements: a tombstone only carries its version and why it is there.
    return {
        "publication_id": data.publication_id,
        "version": data.version,
        "status": "withdrawn",
        "withdrawal_type": data.withdrawal_type,
        "withdrawn_at": as_utc(data.withdrawn_at).isoformat(),
    }


def copy_request(source: list[str], dest: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(body, query parameters) of the `_reindex` that `tongyuan reindex` runs as a task: our
    versions kept (external), a version the destination already has or beats skipped
    (conflicts=proceed: a 409 there is not a failure), searchable once done."""
    body = {"source": {"index": source, "size": 1000}, "dest": {"index": dest, "version_type": "external"}, "conflicts": "proceed"}
    return body, {"slices": "auto", "refresh": True, "wait_for_completion": False}
