"""Reading export files record by record: CSV, xlsx and JSON Lines, streamed in constant memory.

Readers only split the file into records keyed by the export's own column names; they judge
nothing but the file's syntax (an unparseable line is a `Reject`, never a crash).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl import load_workbook

from services.common.spreadsheets import csv_text_back

from .errors import SourceError

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
HEADER_SEARCH_ROWS = 20  # exports often carry a title row or two above the header
_SNIFF_BYTES = 1 << 20
_DELIMITERS = (",", "\t", ";", "|")
# Bodies can be long; the csv module's default field limit (128 KiB) is not enough.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class RawRow:
    """One record as the export has it: column name → cell value (str, number, datetime, …)."""

    line: int
    values: dict[str, object]


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record the file's syntax does not allow; becomes a Reject upstream."""

    line: int
    reason: str
    detail: str
    source_fields: dict[str, object] = field(default_factory=dict)


Record = RawRow | BadRecord


def infer_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise SourceError(f"{path.name}: old binary .xls is not readable; save it as .xlsx (or CSV) first")
    if suffix not in FORMATS:
        raise SourceError(f"{path.name}: cannot tell the format from {suffix or 'no extension'!r}; set format = csv | xlsx | jsonl in the config")
    return FORMATS[suffix]


def detect_encoding(path: Path, declared: str = "auto") -> str:
    """A BOM decides; else the declared encoding; else UTF-8 if the first MiB decodes, else GB18030."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # Excel's "Unicode text" export
    if declared != "auto":
        return declared
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def _sniff_delimiter(path: Path, encoding: str, marker: str) -> str:
    """The delimiter that splits the header line (the first line naming `marker`) most."""
    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        for number, line in enumerate(handle):
            if marker in line or number >= HEADER_SEARCH_ROWS:
                return max(_DELIMITERS, key=line.count) if any(d in line for d in _DELIMITERS) else ","
    return ","


def csv_records(path: Path, *, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str] | str]]:
    """(line the record starts on, cells); a record the parser refuses comes as (line, message)."""
    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        last = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if reader.line_num == last:
                    raise SourceError(f"{path.name} line {last + 1}: {exc}") from None
                yield last + 1, str(exc)
                last = reader.line_num
                continue
            yield last + 1, cells
            last = reader.line_num


def xlsx_records(path: Path, *, sheet: str | None) -> Iterator[tuple[int, tuple[object, ...]]]:
    """(sheet row number, cell values); dates come as datetimes when the cell is formatted as one."""
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, InvalidFileException …
        raise SourceError(f"{path.name}: not a readable xlsx workbook ({exc})") from None
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise SourceError(f"{path.name}: no sheet {sheet!r}; sheets: {', '.join(workbook.sheetnames)}")
        worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
        # Exporters often write a wrong <dimension>; read every row that is really there.
        worksheet.reset_dimensions()
        yield from enumerate(worksheet.iter_rows(values_only=True), start=1)
    finally:
        workbook.close()


def table_records(path: Path) -> Iterator[tuple[int, Sequence[object]]]:
    """A small side table (the mapping table): CSV or the first sheet of an xlsx."""
    if infer_format(path) == "xlsx":
        yield from xlsx_records(path, sheet=None)
        return
    encoding = detect_encoding(path)
    with path.open(encoding=encoding, newline="") as handle:
        first = handle.readline()
    delimiter = max(_DELIMITERS, key=first.count) if any(d in first for d in _DELIMITERS) else ","
    for line, cells in csv_records(path, encoding=encoding, delimiter=delimiter):
        if isinstance(cells, str):
            raise SourceError(f"{path.name} line {line}: {cells}")
        yield line, cells


def _clean_header(cells: Sequence[object]) -> tuple[str, ...]:
    names = []
    for index, cell in enumerate(cells):
        name = "" if cell is None else " ".join(str(cell).replace("\ufeff", "").split())
        names.append(name or f"(column {index + 1})")
    return tuple(names)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@dataclass
class LegacySource:
    """An opened export: its column names, and its records once, in order."""

    columns: tuple[str, ...]
    records: Iterator[Record]
    close: Callable[[], None]


def _tabular(rows: Iterator[tuple[int, Sequence[object] | str]], name: str, wanted: Sequence[str], hint: str = "") -> LegacySource:
    """Find the header (the first row naming the title column), then key each row by it."""
    title = wanted[0]
    header: tuple[str, ...] | None = None
    for line, cells in rows:
        if isinstance(cells, str):
            continue
        names = _clean_header(cells)
        if title in names:
            header = names
            break
        if line >= HEADER_SEARCH_ROWS:
            break
    if header is None:
        getattr(rows, "close", lambda: None)()
        raise SourceError(f"{name}: no header row naming the title column {title!r} in the first {HEADER_SEARCH_ROWS} rows{hint}")
    missing = [c for c in wanted if c not in header]
    if missing:
        getattr(rows, "close", lambda: None)()
        raise SourceError(f"{name}: the header has no column {', '.join(map(repr, missing))}; it has: {', '.join(header)}")
    width = len(header)
    # A reject file fed back in (fixed up): its writer put a quote before text a spreadsheet
    # would run as a formula; the text is what follows it.
    unquote = header[:3] == ("line", "reason", "detail") and header[-1] == "other_fields"  # rejects.py's layout

    def records() -> Iterator[Record]:
        for line, cells in rows:
            if isinstance(cells, str):
                yield BadRecord(line, "bad_csv", cells)
                continue
            if unquote:
                cells = [csv_text_back(c) if isinstance(c, str) else c for c in cells]
            values = dict(zip(header, cells, strict=False))  # short rows: the missing cells are blank
            if len(cells) > width:
                extra = cells[width:]
                if not all(_blank(c) for c in extra):
                    values.update({f"(extra {i})": c for i, c in enumerate(extra, start=1)})
                    yield BadRecord(line, "column_count", f"{len(cells)} cells, but the header has {width} columns", values)
                    continue
            yield RawRow(line, values)

    return LegacySource(columns=header, records=records(), close=getattr(rows, "close", lambda: None))


def _jsonl(path: Path, encoding: str, wanted: Sequence[str]) -> LegacySource:
    handle = path.open(encoding=encoding, errors="replace")

    def records() -> Iterator[Record]:
        with handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    yield RawRow(line, {})
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    yield BadRecord(line, "bad_json", str(exc), {"(line)": text.rstrip("\r\n")})
                    continue
                if not isinstance(value, dict):
                    yield BadRecord(line, "bad_json", f"a JSON {type(value).__name__}, not an object", {"(line)": text.rstrip("\r\n")})
                    continue
                yield RawRow(line, value)

    return LegacySource(columns=tuple(dict.fromkeys(wanted)), records=records(), close=handle.close)


def open_source(path: Path, *, format: str | None, encoding: str, delimiter: str | None, sheet: str | None, wanted: Sequence[str]) -> LegacySource:
    """Open an export; `wanted` are the source column names the config uses, title first.
    Raises SourceError before any record when the file, sheet or a column is missing."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    kind = format or infer_format(path)
    if kind == "xlsx":
        return _tabular(xlsx_records(path, sheet=sheet), path.name, wanted)
    text_encoding = detect_encoding(path, encoding)
    if kind == "jsonl":
        return _jsonl(path, text_encoding, wanted)
    separator = delimiter or _sniff_delimiter(path, text_encoding, wanted[0])
    hint = f" (read as {text_encoding}, split at {separator!r}: set encoding or delimiter in the config if that is wrong)"
    return _tabular(csv_records(path, encoding=text_encoding, delimiter=separator), path.name, wanted, hint)
