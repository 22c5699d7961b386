"""What a run would do, counted: the `--dry-run` report (rows per placement, rejects by reason,
the paths nothing places). Every source record is counted exactly once:

    rows_read = planned + blank + duplicates + rejected
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .outcomes import Item, Planned, Reject, Skipped

UNMAPPED_PATHS_KEPT = 1000  # distinct unmapped paths listed; the rest are counted together


@dataclass
class MigrationSummary:
    source: str = ""
    rows_read: int = 0
    planned: int = 0
    blank: int = 0
    duplicates: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    placements: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    unmapped_paths: Counter[str] = field(default_factory=Counter)
    last_line: int = 0

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def add(self, item: Item) -> None:
        self.rows_read += 1
        self.last_line = item.line
        if isinstance(item, Planned):
            self.planned += 1
            self.placements[item.target.label] += 1
        elif isinstance(item, Skipped):
            if item.reason == "blank":
                self.blank += 1
            else:
                self.duplicates += 1
        elif isinstance(item, Reject):
            self.rejects[item.reason] += 1
            if item.reason == "unmapped_path":
                path = item.old_path
                key = path if path in self.unmapped_paths or len(self.unmapped_paths) < UNMAPPED_PATHS_KEPT else "(other paths)"
                self.unmapped_paths[key] += 1


def summarise(items: Iterable[Item], source: str | None = None) -> MigrationSummary:
    """Consume a stream (a LegacyStream, or any items) into its summary."""
    summary = MigrationSummary(source=source if source is not None else getattr(items, "source", ""))
    for item in items:
        summary.add(item)
    return summary


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


def _table(heading: str, rows: list[tuple[str, int]]) -> list[str]:
    width = max([_width(heading), *(_width(label) for label, _ in rows)])
    digits = max([4, *(len(f"{n:,}") for _, n in rows)])
    lines = [f"{_pad(heading, width)}  {'rows':>{digits}}", f"{'-' * width}  {'-' * digits}"]
    lines += [f"{_pad(label, width)}  {n:>{digits},}" for label, n in rows]
    return lines


def format_summary(summary: MigrationSummary) -> str:
    """The summary as a plain-text report (monospace, CJK counted double width)."""
    lines = [f"migration {summary.source}".rstrip(), ""]
    lines += _table(
        "source records",
        [
            ("read", summary.rows_read),
            ("  planned", summary.planned),
            ("  blank, skipped", summary.blank),
            ("  duplicates, skipped", summary.duplicates),
            ("  rejected", summary.rejected),
        ],
    )
    if summary.placements:
        ordered = sorted(summary.placements.items(), key=lambda kv: (-kv[1], kv[0]))
        lines += ["", *_table("placement (region / domain / level-1 / level-2)", [(" / ".join(label), n) for label, n in ordered])]
    if summary.rejects:
        lines += ["", *_table("rejects by reason", sorted(summary.rejects.items(), key=lambda kv: (-kv[1], kv[0])))]
    if summary.unmapped_paths:
        lines += ["", *_table("unmapped old column paths", sorted(summary.unmapped_paths.items(), key=lambda kv: (-kv[1], kv[0])))]
    return "\n".join(lines) + "\n"
