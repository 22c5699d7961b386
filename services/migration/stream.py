"""The main entry: a legacy export → Planned publish requests, Rejects and Skipped rows.

    with read_legacy(config, path, principal=actor, catalog_directory=directory) as stream:
        for item in stream:        # one per source record, `line` strictly increasing
            ...

The mapping is checked and the header read when the stream is opened, so a bad config or a
missing column fails before the first row. `after_line` resumes a run: every record is still
read (so duplicates of earlier rows are still recognised), but only those after it are yielded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from contracts.events import PublishRequestData
from contracts.identity import Principal

from .config import MigrationConfig
from .mapping import CatalogDirectory, Placer, Target
from .outcomes import Item, Planned, Reject, Skipped
from .rows import RowProblem, RowReader, is_blank
from .sources import BadRecord, LegacySource, Record, open_source

_TARGET_BITS = 20  # distinct placements of one site: catalog items × its regions, well under a million
_TARGET_MASK = (1 << _TARGET_BITS) - 1
_CONTENT_MASK = (1 << 44) - 1  # compared only between rows with the same source_ref


def _invalid(exc: ValidationError, line: int, values, old_path: str) -> Reject:
    errors = exc.errors()
    field = next((str(part) for part in errors[0]["loc"] if isinstance(part, str)), "request")
    detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in errors)
    return Reject(line, f"invalid_{field}", detail, values, old_path)


class LegacyStream:
    """An opened export; iterate it once. `columns` are the export's own column names (for the
    reject file), `source` the CloudEvents source every request goes out under."""

    def __init__(self, config: MigrationConfig, source: LegacySource, placer: Placer, principal: Principal, after_line: int):
        self.config = config
        self.source = config.source
        self.columns = source.columns
        self._records = source.records
        self._close = source.close
        self._placer = placer
        self._principal = principal
        self._reader = RowReader(config.columns, str(config.base_url) if config.base_url else None)
        self._after_line = after_line
        self._started = False
        # hash(source_ref) → its content fingerprint and first placement packed in one int:
        # ~130 bytes a row (125 MiB for a million). Placements are numbered as first met.
        self._seen: dict[int, int] = {}
        self._targets: list[Target] = []
        self._target_numbers: dict[tuple, int] = {}
        self._more_targets: dict[int, list[int]] = {}  # the rare article listed in several old columns

    def __iter__(self) -> Iterator[Item]:
        if self._started:
            raise RuntimeError("a legacy stream is read once; open it again to re-read")
        self._started = True
        after = self._after_line
        try:
            for record in self._records:
                item = self._item(record)
                if item.line > after:
                    yield item
        finally:
            self.close()

    def _item(self, record: Record) -> Item:
        if isinstance(record, BadRecord):
            return Reject(record.line, record.reason, record.detail, record.source_fields)
        line, values = record.line, record.values
        if is_blank(values):
            return Skipped(line, "blank")
        try:
            row = self._reader.read(values)
        except RowProblem as problem:
            return Reject(line, problem.reason, problem.detail, values)
        target = self._placer.place(row.path)
        if target is None:
            return Reject(line, "unmapped_path", f"no mapping table entry or rule places {row.path!r}", values, row.path)
        ref = row.source_ref
        try:
            request = PublishRequestData(
                placements=[target.ref],
                title=row.title,
                body_html=row.body,
                formed_at=row.formed_at,
                published_at=row.published_at,
                publishing_body=row.department or None,
                index_number=row.index_number or None,
                attachments=row.attachments,
                source_ref=ref,
                actor=self._principal,
            )
        except ValidationError as exc:
            return _invalid(exc, line, values, row.path)
        key, content, number = hash(ref), row.content_fingerprint() & _CONTENT_MASK, self._number(target)
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen[key] = content << _TARGET_BITS | number
            return Planned(line, request, row.path, target, values)
        if earlier >> _TARGET_BITS != content:
            return Reject(line, "conflicting_duplicate", f"an earlier row has source_ref {ref!r} with different content", values, row.path)
        numbers = [earlier & _TARGET_MASK, *self._more_targets.get(key, ())]
        if number in numbers:
            return Skipped(line, "duplicate", f"repeats an earlier row (source_ref {ref})")
        # The same article listed under another old column: one publication filed in both places
        # (the gate makes it a new version carrying every placement so far).
        self._more_targets.setdefault(key, []).append(number)
        placements = [self._targets[n].ref for n in numbers] + [target.ref]
        return Planned(line, request.model_copy(update={"placements": placements}), row.path, target, values)

    def _number(self, target: Target) -> int:
        identity = tuple(target.ref.model_dump().values())
        number = self._target_numbers.get(identity)
        if number is None:
            if len(self._targets) > _TARGET_MASK:
                raise RuntimeError(f"more than {_TARGET_MASK + 1:,} distinct placements in one export")
            number = self._target_numbers[identity] = len(self._targets)
            self._targets.append(target)
        return number

    def close(self) -> None:
        self._close()

    def __enter__(self) -> LegacyStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_legacy(
    config: MigrationConfig,
    path: Path,
    *,
    principal: Principal,
    catalog_directory: CatalogDirectory,
    after_line: int = 0,
) -> LegacyStream:
    """Open a legacy export for reading. Raises ConfigError (bad mapping target) or SourceError
    (no file, unknown format, missing sheet or column) before any row is read."""
    placer = config.placer(catalog_directory)
    source = open_source(
        path,
        format=config.format,
        encoding=config.encoding,
        delimiter=config.delimiter,
        sheet=config.sheet,
        wanted=config.columns.used(),
    )
    return LegacyStream(config, source, placer, principal, after_line)
