"""One export record → a clean legacy item, or the reason it cannot be one.

Nothing is guessed: a title over the limit is rejected rather than cut, a date that does not
parse is rejected rather than replaced by today. Bodies stay raw HTML; the gate sanitises them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from hashlib import blake2b

from .config import Columns
from .mapping import normalise_path
from .values import BadValue, absolute_links, clean_line, clean_title, parse_attachments, parse_moment, text_of

TITLE_LIMIT = 200  # PublicationDraft.title
REF_LIMIT = 120  # PublishRequestData.source_ref


class RowProblem(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LegacyRow:
    old_id: str | None
    path: str
    title: str
    body: str
    published_at: datetime
    formed_at: date
    index_number: str
    department: str
    attachments: list[dict[str, str]]

    @property
    def source_ref(self) -> str:
        """Stable on every run and machine: the old article id, else the published date and a
        digest of what identifies an item on the old site (column, title, published date, index
        number), `row:2021-03-05:<digest>`. The date leads so that an export in publication
        order adds to the end of the publisher's index on refs (a digest alone would scatter it)."""
        if self.old_id is not None:
            return self.old_id
        return f"row:{self.published_at.date().isoformat()}:{self._identity_digest()}"

    def _identity_digest(self) -> str:
        key = "\x1f".join((self.path, self.title, self.published_at.date().isoformat(), self.index_number))
        return blake2b(key.encode("utf-8"), digest_size=16).hexdigest()

    def content_fingerprint(self) -> int:
        """What the article says, wherever the old site listed it; equal fingerprints mean the
        same article. Only compared within one run, so Python's hash is enough (and keeps
        memory low)."""
        attachments = tuple((a["name"], a["url"]) for a in self.attachments)
        return hash((self.title, self.body, self.published_at, self.formed_at, self.index_number, self.department, attachments))


def is_blank(values: Mapping[str, object]) -> bool:
    for value in values.values():
        if value is not None and (value.__class__ is not str or value.strip()):
            return False
    return True


def _lookup(values: Mapping[str, object], key: str) -> object:
    if key in values or "." not in key:
        return values.get(key)
    value: object = values
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


_FIELDS = ("id", "title", "body", "date", "formed_date", "path", "index_number", "department", "attachments")


class RowReader:
    """Reads the configured columns of one record, checking each value on the way."""

    def __init__(self, columns: Columns, base_url: str | None):
        self.columns = columns
        self.base_url = base_url
        self._names = tuple(getattr(columns, f) for f in _FIELDS)
        self._nested = any(name and "." in name for name in self._names)
        # A few hundred old paths repeat through a million rows.
        self._paths: dict[str, str] = {}

    def _path(self, raw: object) -> str:
        text = text_of(raw)
        found = self._paths.get(text)
        if found is None:
            if len(self._paths) >= 100_000:
                self._paths.clear()
            found = self._paths[text] = normalise_path(text)
        return found

    def _cells(self, values: Mapping[str, object]) -> list[object]:
        if self._nested:
            cells = [None if name is None else _lookup(values, name) for name in self._names]
        else:
            get = values.get
            cells = [None if name is None else get(name) for name in self._names]
        # U+FFFD is what undecodable bytes became: the encoding is wrong, or the file damaged.
        if "\ufffd" in "".join([cell for cell in cells if cell.__class__ is str]):
            column = next(name for name, cell in zip(self._names, cells, strict=True) if isinstance(cell, str) and "\ufffd" in cell)
            raise RowProblem("bad_encoding", f"{column}: undecodable bytes (is the encoding right?)")
        return cells

    def read(self, values: Mapping[str, object]) -> LegacyRow:
        c = self.columns
        raw_id, raw_title, raw_body, raw_date, raw_formed, raw_path, raw_index, raw_department, raw_attachments = self._cells(values)
        old_id = None
        if c.id is not None:
            old_id = clean_line(raw_id)
            if not old_id:
                raise RowProblem("missing_id", f"{c.id} is blank")
            if len(old_id) > REF_LIMIT:
                raise RowProblem("bad_id", f"{c.id} is {len(old_id)} characters, more than {REF_LIMIT}")
        title = clean_title(raw_title)
        if not title:
            raise RowProblem("missing_title", f"{c.title} is blank")
        if len(title) > TITLE_LIMIT:
            raise RowProblem("title_too_long", f"{c.title} is {len(title)} characters, more than {TITLE_LIMIT}")
        try:
            published_at = parse_moment(raw_date)
        except BadValue as exc:
            raise RowProblem("bad_date", f"{c.date}: {exc}") from None
        if published_at is None:
            raise RowProblem("missing_date", f"{c.date} is blank")
        formed_at = published_at.date()
        if c.formed_date is not None:
            try:
                formed = parse_moment(raw_formed)
            except BadValue as exc:
                raise RowProblem("bad_formed_date", f"{c.formed_date}: {exc}") from None
            if formed is not None:
                formed_at = formed.date()
                if formed_at > published_at.date():
                    raise RowProblem("formed_after_published", f"{c.formed_date} {formed_at} is after {c.date} {published_at.date()}")
        path = self._path(raw_path)
        if not path:
            raise RowProblem("missing_path", f"{c.path} is blank")
        try:
            attachments = parse_attachments(raw_attachments, self.base_url)
        except BadValue as exc:
            raise RowProblem("bad_attachment", f"{c.attachments}: {exc}") from None
        return LegacyRow(
            old_id=old_id,
            path=path,
            title=title,
            body=absolute_links(text_of(raw_body).strip(), self.base_url),
            published_at=published_at,
            formed_at=formed_at,
            index_number=clean_line(raw_index),
            department=clean_line(raw_department),
            attachments=attachments,
        )
