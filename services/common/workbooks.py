"""Uploaded Excel workbooks, read without letting one hurt the process that received it.

An .xlsx is a zip of XML: 150 KB can hold a million rows or a gigabyte of shared strings, and
openpyxl builds Python objects for all of it. So an upload is
1. read with a byte cap (413 past it, before it is all in memory);
2. inspected in a worker process, streaming, before openpyxl sees it: the zip's declared sizes
   and compression ratios, the shared strings, and each sheet's rows, cells, merged areas and
   highest row/column, against `WorkbookLimits` (413 naming the limit and the sheet);
3. parsed in that same worker process, which is a fresh child (forkserver), killed past a time
   limit: the event loop keeps serving while it runs, and whatever memory the parse took goes
   away with the child.
The parser is any module-level function `parse(data, **kwargs)`; what it returns or raises comes
back to the caller (its exceptions must pickle — give them `__reduce__` if their arguments are
not their constructor's).
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import re
import weakref
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError, XMLPullParser

import structlog

from .bodies import BodyTooLarge, read_bounded

log = structlog.get_logger("tongyuan.workbooks")

_CHUNK = 64 * 1024
_CELL_REF = re.compile(r"^([A-Z]{1,3})(\d+)$")
_RANGE = re.compile(r"^([A-Z]{1,3})(\d+)(?::([A-Z]{1,3})(\d+))?$")


@dataclass(frozen=True)
class WorkbookLimits:
    """What one uploaded workbook may hold (Settings.workbook_*). A county's catalog or the
    bridge's mapping is a few thousand rows of a few dozen columns."""

    max_bytes: int = 2_000_000
    max_uncompressed_bytes: int = 40_000_000
    max_ratio: int = 100
    max_sheets: int = 100
    max_rows: int = 20_000
    max_columns: int = 200
    max_cells: int = 300_000
    max_shared_strings: int = 200_000
    max_shared_strings_bytes: int = 20_000_000
    parse_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings) -> "WorkbookLimits":
        return cls(**{name: getattr(settings, f"workbook_{name}") for name in cls.__dataclass_fields__})


class WorkbookRefused(Exception):
    """The upload is refused before anything is changed; `problems` are FastAPI-style details."""

    def __init__(self, status: int, problems: list[dict]):
        super().__init__("; ".join(p["msg"] for p in problems))
        self.status = status
        self.problems = problems

    def __reduce__(self):
        return (WorkbookRefused, (self.status, self.problems))


def _refuse(status: int, limit: str, msg: str, sheet: str | None = None) -> WorkbookRefused:
    loc = ["body", *([sheet] if sheet else []), limit]
    return WorkbookRefused(status, [{"loc": loc, "msg": msg, "type": f"workbook.{limit}"}])


def refusal_response(refused: WorkbookRefused):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=refused.status, content={"detail": refused.problems})


async def read_body(request, limits: WorkbookLimits) -> bytes:
    """The uploaded workbook, or WorkbookRefused(413) as soon as it exceeds `limits.max_bytes`."""
    try:
        return await read_bounded(request, limits.max_bytes, "工作簿")
    except BodyTooLarge as exc:
        raise _refuse(413, "max_bytes", str(exc)) from None


# --------------------------------------------------------------------------------------------
# Inspection: streaming, in the worker, before openpyxl
# --------------------------------------------------------------------------------------------


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - 64
    return number


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _events(archive: zipfile.ZipFile, name: str):
    """(event, element) of one member, read in chunks; elements are cleared once seen."""
    parser: XMLPullParser[Element] = XMLPullParser(events=("start", "end"))
    with archive.open(name) as stream:
        head = True
        while chunk := stream.read(_CHUNK):
            if head and (b"<!DOCTYPE" in chunk or b"<!ENTITY" in chunk):
                raise _refuse(422, "doctype", f"{name} 含有 DTD 声明，不是 Excel 生成的工作簿")
            head = False
            parser.feed(chunk)
            yield from parser.read_events()
    parser.close()
    yield from parser.read_events()


def _sheet_names(archive: zipfile.ZipFile) -> dict[str, str]:
    """Worksheet part → the sheet's name as Excel shows it (for messages)."""
    names: dict[str, str] = {}
    try:
        ids = {}
        for event, element in _events(archive, "xl/workbook.xml"):
            if event == "end" and _local(element.tag) == "sheet":
                rid = next((v for k, v in element.attrib.items() if _local(k) == "id"), None)
                ids[rid] = element.get("name", "")
        for event, element in _events(archive, "xl/_rels/workbook.xml.rels"):
            if event == "end" and _local(element.tag) == "Relationship" and element.get("Id") in ids:
                target = element.get("Target", "").lstrip("/")
                names[target if target.startswith("xl/") else "xl/" + target] = ids[element.get("Id")]
    except (KeyError, ParseError):
        pass  # openpyxl will say the file is not a workbook
    return names


def inspect(data: bytes, limits: WorkbookLimits) -> None:
    """WorkbookRefused(413) for anything past `limits`; a file that is not a zip is left to the
    parser, which says so in its own words."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return
    with archive:
        members = archive.infolist()
        if len(members) > 10 * limits.max_sheets + 50:
            raise _refuse(413, "max_sheets", f"压缩包内文件过多（{len(members)} 个），不像是一个工作簿")
        total = sum(m.file_size for m in members)
        if total > limits.max_uncompressed_bytes:
            raise _refuse(413, "max_uncompressed_bytes", f"工作簿解压后共 {total} 字节，超过 {limits.max_uncompressed_bytes} 字节的上限")
        for member in members:
            # Small parts (styles, themes) compress well legitimately; a big part that shrinks
            # more than max_ratio is padding made to be expanded.
            if member.file_size > 1_000_000 and member.file_size > limits.max_ratio * max(member.compress_size, 1):
                ratio = member.file_size // max(member.compress_size, 1)
                raise _refuse(413, "max_ratio", f"{member.filename} 的压缩比为 {ratio}:1，超过 {limits.max_ratio}:1 的上限（疑似压缩炸弹）")
        try:
            _inspect_parts(archive, {m.filename for m in members}, limits)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            # A member whose data does not match its declared size or checksum, or is stored
            # with an unknown method: reading it stops at the declared size, and fails here.
            raise _refuse(422, "unreadable", f"工作簿已损坏，无法读取（{type(exc).__name__}）") from None


def _inspect_parts(archive: zipfile.ZipFile, names: set[str], limits: WorkbookLimits) -> None:
    if "xl/sharedStrings.xml" in names:
        _inspect_shared_strings(archive, limits)
    sheets = sorted(n for n in names if n.startswith("xl/worksheets/") and n.endswith(".xml"))
    if len(sheets) > limits.max_sheets:
        raise _refuse(413, "max_sheets", f"工作簿有 {len(sheets)} 个工作表，超过 {limits.max_sheets} 个的上限")
    titles = _sheet_names(archive)
    cells = 0
    for part in sheets:
        cells += _inspect_sheet(archive, part, titles.get(part, part), limits, cells)


def _inspect_shared_strings(archive: zipfile.ZipFile, limits: WorkbookLimits) -> None:
    size = archive.getinfo("xl/sharedStrings.xml").file_size
    if size > limits.max_shared_strings_bytes:
        raise _refuse(413, "max_shared_strings_bytes", f"共享字符串表解压后 {size} 字节，超过 {limits.max_shared_strings_bytes} 字节的上限")
    count = 0
    try:
        for event, element in _events(archive, "xl/sharedStrings.xml"):
            if event == "end" and _local(element.tag) == "si":
                count += 1
                element.clear()
                if count > limits.max_shared_strings:
                    raise _refuse(413, "max_shared_strings", f"共享字符串超过 {limits.max_shared_strings} 条的上限")
    except ParseError:
        return  # malformed XML: openpyxl refuses it with its own message


def _inspect_sheet(archive: zipfile.ZipFile, part: str, title: str, limits: WorkbookLimits, cells_before: int) -> int:
    """The sheet's cell count; refuses rows, columns, cells and merged areas past the limits."""
    rows = cells = merged = 0
    in_row = 0
    try:
        for event, element in _events(archive, part):
            tag = _local(element.tag)
            if event == "start":
                if tag == "row":
                    rows += 1
                    in_row = 0
                    number = element.get("r", "")
                    if rows > limits.max_rows or (number.isdigit() and int(number) > limits.max_rows):
                        raise _refuse(413, "max_rows", f"工作表“{title}”超过 {limits.max_rows} 行的上限", title)
                elif tag == "c":
                    in_row += 1
                    cells += 1
                    found = _CELL_REF.match(element.get("r", ""))
                    if in_row > limits.max_columns or (found and _column_number(found.group(1)) > limits.max_columns):
                        raise _refuse(413, "max_columns", f"工作表“{title}”有一行超过 {limits.max_columns} 列的上限", title)
                    if cells_before + cells > limits.max_cells:
                        raise _refuse(413, "max_cells", f"工作簿超过 {limits.max_cells} 个单元格的上限（在工作表“{title}”）", title)
                elif tag == "dimension":
                    _check_range(element.get("ref", ""), title, limits)
            elif event == "end":
                if tag == "mergeCell":
                    merged += _check_range(element.get("ref", ""), title, limits)
                    if merged > limits.max_cells:
                        raise _refuse(413, "max_cells", f"工作表“{title}”的合并单元格超过 {limits.max_cells} 个单元格的上限", title)
                if tag in ("row", "mergeCell", "c"):
                    element.clear()
    except ParseError:
        pass  # malformed XML: openpyxl refuses it with its own message
    return cells


def _check_range(ref: str, title: str, limits: WorkbookLimits) -> int:
    """The number of cells of an A1 or A1:B2 range; refuses one reaching past the limits."""
    found = _RANGE.match(ref.replace("$", ""))
    if not found:
        return 0
    first_col, first_row, last_col, last_row = found.groups()
    last_col, last_row = last_col or first_col, last_row or first_row
    if int(last_row) > limits.max_rows:
        raise _refuse(413, "max_rows", f"工作表“{title}”的范围 {ref} 超过 {limits.max_rows} 行的上限", title)
    if _column_number(last_col) > limits.max_columns:
        raise _refuse(413, "max_columns", f"工作表“{title}”的范围 {ref} 超过 {limits.max_columns} 列的上限", title)
    return (abs(int(last_row) - int(first_row)) + 1) * (abs(_column_number(last_col) - _column_number(first_col)) + 1)


# --------------------------------------------------------------------------------------------
# The worker process
# --------------------------------------------------------------------------------------------


def _child(connection, parse: Callable[..., Any], data: bytes, kwargs: dict, limits: WorkbookLimits) -> None:
    try:
        inspect(data, limits)
        outcome: tuple = ("ok", parse(data, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        outcome = ("raised", exc)
    try:
        connection.send(outcome)
    except Exception as exc:  # noqa: BLE001 - an exception that does not pickle
        connection.send(("failed", f"{type(outcome[1]).__name__}: {outcome[1]}; {exc!r}"))
    connection.close()


_context = None


def _worker_context(parse: Callable[..., Any]):
    """Children fork from a server process that imported openpyxl and the first parser's module
    once, not from the portal (whose threads and connections a fork would copy)."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["openpyxl", __name__, parse.__module__])
    return _context


def _run(parse: Callable[..., Any], data: bytes, kwargs: dict, limits: WorkbookLimits) -> Any:
    context = _worker_context(parse)
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sending, parse, data, kwargs, limits), name="tongyuan-workbook", daemon=True)
    child.start()
    sending.close()
    try:
        if not receiving.poll(limits.parse_seconds):
            raise _refuse(413, "parse_seconds", f"工作簿 {limits.parse_seconds:g} 秒内未能读完，超过解析时间上限")
        kind, value = receiving.recv()
    except EOFError:
        log.warning("workbook.worker_died", exitcode=child.exitcode)
        raise _refuse(413, "worker", "读取工作簿的进程异常退出（可能是工作簿过大）") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiving.close()
    if kind == "ok":
        return value
    if kind == "raised":
        raise value
    log.warning("workbook.parse_failed", error=value)
    raise _refuse(422, "unreadable", "工作簿无法读取")


async def parse_workbook(parse: Callable[..., Any], data: bytes, limits: WorkbookLimits, *, errors: tuple[type[Exception], ...] = (), **kwargs) -> Any:
    """`parse(data, **kwargs)` in a fresh worker process after the inspection, awaited without
    blocking the event loop. Raises WorkbookRefused or one of `errors` (the parser's own
    refusals); anything else the parser raised is an unreadable workbook (422), not a 500."""
    async with _slots():
        try:
            return await asyncio.to_thread(_run, parse, data, kwargs, limits)
        except WorkbookRefused:
            raise
        except errors:
            raise
        except Exception as exc:  # noqa: BLE001 - the upload is bad whatever the parser tripped on
            log.warning("workbook.parse_raised", error=repr(exc))
            raise _refuse(422, "unreadable", f"工作簿无法读取（{type(exc).__name__}）") from None


# At most two workbooks are parsed at once per event loop: further uploads wait their turn
# rather than each starting a process.
_semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _semaphores:
        _semaphores[loop] = asyncio.Semaphore(2)
    return _semaphores[loop]
