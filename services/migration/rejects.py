"""The reject file: every row that is not migrated, with why, and the row as the export had it.

CSV in UTF-8 with a BOM so Excel opens it as such: line, reason, detail, then the export's own
columns (so a fixed-up reject file can be fed back in as an export: refs are stable, so rows
already migrated change nothing), then `other_fields` (JSON) for anything outside those columns.
Text a spreadsheet would run as a formula is written with a leading quote (services.common.
spreadsheets); reading the file back takes it off again.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

from services.common.spreadsheets import csv_text, csv_text_back

from .outcomes import Reject

FIXED = ("line", "reason", "detail")
OTHER = "other_fields"


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def read_rejects(path: Path) -> Iterator[Reject]:
    """The rejects of a reject file, source fields as text (columns by position, so an export
    column that happens to be called `reason` does not confuse it)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        columns = [csv_text_back(c) for c in header[len(FIXED) : -1]]
        for cells in reader:
            cells = [csv_text_back(cell) for cell in cells]
            fields: dict[str, object] = dict(zip(columns, cells[len(FIXED) : -1], strict=False))
            if cells[-1]:
                fields.update(json.loads(cells[-1]))
            yield Reject(int(cells[0]), cells[1], cells[2], fields)


class RejectWriter:
    """Writes rejects as they come. `after_line` (for --resume) keeps the rejects an earlier run
    wrote up to that line and drops the rest, which the resumed run writes again."""

    def __init__(self, path: Path, source_columns: Sequence[str], *, after_line: int | None = None):
        self.path = path
        self.columns = tuple(source_columns)
        self.count = 0
        self.by_reason: Counter[str] = Counter()
        kept = self._kept(after_line) if after_line is not None and path.is_file() else []
        self._handle = path.open("w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow([*FIXED, *map(csv_text, self.columns), OTHER])
        for reject in kept:
            self.write(reject)

    def _kept(self, after_line: int) -> list[Reject]:
        return [r for r in read_rejects(self.path) if r.line <= after_line]

    def write(self, reject: Reject) -> None:
        fields = reject.source_fields
        known = set(self.columns)
        others = {k: cell_text(v) for k, v in fields.items() if k not in known}
        self._writer.writerow(
            [
                reject.line,
                csv_text(reject.reason),
                csv_text(reject.detail),
                *(csv_text(cell_text(fields.get(c))) for c in self.columns),
                json.dumps(others, ensure_ascii=False) if others else "",
            ]
        )
        self.count += 1
        self.by_reason[reject.reason] += 1

    def flush(self) -> None:
        """Make what was written durable; call it when the run records its checkpoint."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> RejectWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
