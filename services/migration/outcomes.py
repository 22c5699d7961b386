"""What reading a legacy export yields: one item per source record, in file order.

`line` is where a person finds the record (CSV: the line it starts on; xlsx: the sheet row;
JSON Lines: the line). It grows strictly through the stream, so a resumed run skips the items
up to the last line it finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from contracts.events import PublishRequestData

from .mapping import Target

# Why a row was rejected; the detail says what exactly.
REJECT_REASONS = (
    "bad_csv",  # the CSV parser could not read the record
    "bad_json",  # a JSON Lines line is not a JSON object
    "bad_encoding",  # undecodable bytes in a field (wrong encoding, or a damaged file)
    "column_count",  # more filled cells than the header has columns
    "missing_id",  # the config names an id column and this row's is blank
    "bad_id",  # the old id is too long to be a source_ref
    "missing_title",
    "title_too_long",  # over 200 characters: rejected, never truncated
    "missing_date",
    "bad_date",
    "bad_formed_date",
    "formed_after_published",
    "missing_path",
    "bad_attachment",
    "unmapped_path",  # neither the mapping table nor a rule places the old column path
    "conflicting_duplicate",  # same source_ref as an earlier row, different content
    # and "invalid_<field>" when the publish request fails its own validation
)


@dataclass(frozen=True, slots=True)
class Reject:
    """A source record that will not be migrated, with why; it goes to the reject file."""

    line: int
    reason: str
    detail: str
    source_fields: Mapping[str, object]
    old_path: str = ""  # normalised, once the row got that far (the summary lists unmapped ones)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that is not an item: a blank row, or an exact repeat of an earlier row."""

    line: int
    reason: Literal["blank", "duplicate"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Planned:
    """A publish request ready for the gate, and where it came from."""

    line: int
    request: PublishRequestData
    old_path: str
    target: Target
    source_fields: Mapping[str, object]

    def reject(self, reason: str, detail: str) -> Reject:
        """For the gate side: the same row as a reject (e.g. when the gate refuses it)."""
        return Reject(self.line, reason, detail, self.source_fields, self.old_path)


Item = Planned | Reject | Skipped
