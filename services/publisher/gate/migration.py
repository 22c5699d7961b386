"""`tongyuan migrate`, the gate side: a legacy export's rows through the publisher's gate.

The reading side (services/migration) turns the export into publish requests and rejects.
Here each batch of requests goes through the same gate as a clerk's or a CMS's publication
(validation, sanitising, catalog enrichment, outbox) under the source `/migration/<site>`,
with events on the bulk lane, and the run's checkpoint is written in the batch's own
transaction — so a run killed at any point resumes exactly after the last batch that
committed, and running it twice creates nothing new:

- a row's publication id is derived from its source ref and its original publication date (see
  publication_id_for), so it is the same on every run and every machine, and a row found again
  under its ref keeps the id it was first given whatever its date has become;
- its inbound event id covers the row and the content (see migration_event_id), so an unchanged
  row is recognised as already migrated and a row corrected in the old site becomes a new
  version.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import structlog

from contracts.events import TOPIC_PUBLICATIONS_BULK, uuid7_at
from contracts.identity import Principal
from services.migration import MigrationConfig, Planned, Reject, RejectWriter, read_legacy
from services.publisher.store import Publisher

from .batches import InboundRequest, accept_inbound
from .domain import Directory, Rejected, content_hash
from .handlers import Clock, utc_clock

log = structlog.get_logger("tongyuan.migration")


def publication_id_for(source: str, ref: str, published_at: datetime) -> str:
    """A version-7 UUID whose time is the item's original publication (a naive time read as
    UTC, as the gate reads it) and whose other bits are a digest of source and ref.

    Time-ordered like the ids the gate gives new publications, so a migration of an export in
    publication order — the order an old CMS numbers its articles — adds to the end of every
    store's index on publication ids instead of dirtying a random page of each, for each row."""
    moment = published_at if published_at.tzinfo is not None else published_at.replace(tzinfo=timezone.utc)
    digest = hashlib.blake2b(f"{source}#{ref}".encode(), digest_size=10, person=b"tongyuan-migr").digest()
    return uuid7_at(int(moment.timestamp() * 1000), digest).hex


def migration_event_id(publication_id: str, digest: str) -> str:
    """A migrated row's inbound event id: its derived publication id and its content digest.

    The inbound ledger's index on event ids then grows at its end when an export runs in
    publication order, as the publication ids do."""
    return f"migration:{publication_id}:{digest[:16]}"


def migration_principal(config: MigrationConfig) -> Principal:
    """The migration acts as an editor of the old site's unit: it may file items for that
    county and its townships, and the gate refuses anything else, as it would a clerk."""
    return Principal(user=f"migration/{config.site}", roles=("editor",), regions=(config.region_code,))


def file_fingerprint(path: Path) -> str:
    """Size and first megabyte: enough to notice that --resume was given another file."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()


class CannotResume(Exception):
    """--resume with no checkpoint for the site, or with a different file."""


@dataclass
class MigrationProgress:
    line: int = 0  # the last source line dealt with and committed
    accepted: int = 0  # publications created (or re-versioned because the old row changed)
    unchanged: int = 0  # already migrated with this content
    rejected: int = 0  # in the reject file
    skipped: int = 0  # blank rows and exact repeats
    resumed_from: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return self.accepted + self.unchanged + self.rejected + self.skipped


def migrate(
    config: MigrationConfig,
    path: Path,
    *,
    publisher: Publisher,
    directory: Callable[[], Directory],
    rejects_path: Path,
    resume: bool = False,
    batch_size: int = 250,
    on_batch: Callable[[MigrationProgress], None] = lambda progress: None,
    clock: Clock = utc_clock,
) -> MigrationProgress:
    fingerprint = file_fingerprint(path)
    progress = MigrationProgress()
    if resume:
        progress = _resumed(publisher, config.site, path, fingerprint)
    principal = migration_principal(config)
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        read_legacy(config, path, principal=principal, catalog_directory=directory(), after_line=progress.line) as stream,
        RejectWriter(rejects_path, stream.columns, after_line=progress.line if resume else None) as rejects,
    ):

        def commit(batch: list[Planned], last_line: int) -> None:
            _through_the_gate(
                batch, last_line, source=stream.source, site=config.site, path=path, fingerprint=fingerprint,
                publisher=publisher, directory=directory(), rejects=rejects, progress=progress, clock=clock,
            )  # fmt: skip
            on_batch(progress)

        batch: list[Planned] = []
        last_line = progress.line
        for item in stream:
            last_line = item.line
            if isinstance(item, Planned):
                batch.append(item)
            elif isinstance(item, Reject):
                rejects.write(item)
                progress.rejected += 1
            else:
                progress.skipped += 1
            if len(batch) >= batch_size:
                commit(batch, last_line)
                batch = []
        if batch or last_line > progress.line or not resume:
            commit(batch, last_line)
    log.info("migration.finished", site=config.site, **_counts(progress))
    return progress


def _resumed(publisher: Publisher, site: str, path: Path, fingerprint: str) -> MigrationProgress:
    with publisher.transaction() as store:
        checkpoint = store.migration_checkpoint(site)
    if checkpoint is None:
        raise CannotResume(f"no earlier run of site {site!r} to resume; run without --resume")
    if checkpoint["fingerprint"] != fingerprint:
        raise CannotResume(f"site {site!r} was last migrated from {checkpoint['source_file']}, and {path} is not that file; run without --resume")
    return MigrationProgress(
        line=checkpoint["position"],
        accepted=checkpoint["accepted"],
        unchanged=checkpoint["unchanged"],
        rejected=checkpoint["rejected"],
        skipped=checkpoint["skipped"],
        resumed_from=checkpoint["position"],
    )


def _through_the_gate(
    batch: list[Planned],
    last_line: int,
    *,
    source: str,
    site: str,
    path: Path,
    fingerprint: str,
    publisher: Publisher,
    directory: Directory,
    rejects: RejectWriter,
    progress: MigrationProgress,
    clock: Clock,
) -> None:
    digests = [content_hash(p.request) for p in batch]
    accepted = unchanged = refused = 0
    requests = []
    for planned, digest in zip(batch, digests, strict=True):
        draft = planned.request
        assert draft.published_at is not None  # services.migration dates every row it plans
        publication_id = publication_id_for(source, draft.source_ref, draft.published_at)
        event_id = migration_event_id(publication_id, digest)
        requests.append(InboundRequest(event_id=event_id, source=source, request=draft, publication_id=publication_id, content_hash=digest))
    with publisher.transaction() as store:
        outcomes = accept_inbound(store, requests, directory=directory, now=clock(), topic=TOPIC_PUBLICATIONS_BULK, log_each=False) if requests else []
        for planned, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                rejects.write(planned.reject("refused_by_gate", "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in outcome.errors)))
                refused += 1
            elif outcome.event_id is None:
                unchanged += 1
            else:
                accepted += 1
        # The reject file is made durable before the checkpoint that says its rows are done.
        rejects.flush()
        store.save_migration_checkpoint(
            site=site,
            source_file=str(path),
            fingerprint=fingerprint,
            position=last_line,
            accepted=progress.accepted + accepted,
            unchanged=progress.unchanged + unchanged,
            rejected=progress.rejected + refused,
            skipped=progress.skipped,
        )
    progress.accepted += accepted
    progress.unchanged += unchanged
    progress.rejected += refused
    progress.line = last_line
    log.debug("migration.batch", site=site, line=last_line, accepted=accepted, unchanged=unchanged, refused=refused)


def _counts(progress: MigrationProgress) -> dict:
    return dict(line=progress.line, accepted=progress.accepted, unchanged=progress.unchanged, rejected=progress.rejected, skipped=progress.skipped)
