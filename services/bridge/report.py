"""The reconciliation report (pure): the platform's truth against what the column shows.

Each side comes in as plain data — the platform's items with what the column should show for
them, and the column's publications from this bridge — so the same report serves the tests,
the benchmark and an operator's script, whichever stores they read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expected:
    """What the column should show for one active, mapped item."""

    implementation_code: str
    title: str
    body_html: str
    placements: frozenset[tuple[str, str]]  # (region code, level-2 id)


@dataclass(frozen=True)
class Mirrored:
    """One publication in the column that came from this bridge."""

    publication_id: str
    implementation_code: str
    status: str  # published | withdrawn
    title: str | None
    body_html: str | None
    placements: frozenset[tuple[str, str]]


@dataclass
class MirrorReport:
    expected: int = 0
    mirrored: int = 0
    missing: list[str] = field(default_factory=list)  # should be live, is not
    duplicated: list[str] = field(default_factory=list)  # more than one publication for one item
    stale: list[str] = field(default_factory=list)  # live, but not the platform's current content
    not_withdrawn: list[str] = field(default_factory=list)  # live, but revoked, deleted or unmapped

    @property
    def exact(self) -> bool:
        return not (self.missing or self.duplicated or self.stale or self.not_withdrawn)

    def summary(self) -> str:
        return (
            f"expected {self.expected} live, column has {self.mirrored} live: missing {len(self.missing)}, duplicated {len(self.duplicated)}, "
            f"stale {len(self.stale)}, not withdrawn {len(self.not_withdrawn)}"
        )


def mirror_report(expected: dict[str, Expected], mirrored: list[Mirrored]) -> MirrorReport:
    report = MirrorReport(expected=len(expected))
    by_code: dict[str, list[Mirrored]] = defaultdict(list)
    for publication in mirrored:
        by_code[publication.implementation_code].append(publication)
    for code, publications in sorted(by_code.items()):
        if len(publications) > 1:
            report.duplicated.append(code)
        live = [p for p in publications if p.status == "published"]
        report.mirrored += bool(live)
        want = expected.get(code)
        if want is None:
            if live:
                report.not_withdrawn.append(code)
            continue
        if not live:
            continue  # counted as missing below
        if any(p.title != want.title or p.body_html != want.body_html or p.placements != want.placements for p in live):
            report.stale.append(code)
    report.missing = sorted(code for code in expected if not any(p.status == "published" for p in by_code.get(code, ())))
    return report
