"""The platform client (httpx + tenacity). Bad weather is normal here: timeouts, 5xx, truncated or
malformed bodies and duplicated pages are retried with exponential backoff and jitter; a listing
that comes back short (offset paging under concurrent changes, a page served twice) is listed
again; a record that stays unreadable is reported, not guessed at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import structlog
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from contracts.service_items import ServiceItem

log = structlog.get_logger("tongyuan.bridge.client")


class Transient(Exception):
    """The platform answered with a server error; try again."""


class Malformed(Exception):
    """The platform answered with something unreadable. `good`/`bad` keep what a list page did yield."""

    def __init__(self, message: str, good: dict | None = None, bad: dict[str, str] | None = None):
        super().__init__(message)
        self.good = good or {}
        self.bad = bad or {}


class DuplicatePage(Exception):
    """A page came back identical to the page before it."""


class Unreadable(Exception):
    """A record stayed unreadable through every retry."""


RETRYABLE = (httpx.TimeoutException, httpx.TransportError, Transient, Malformed, DuplicatePage)


@dataclass(frozen=True)
class Summary:
    implementation_code: str
    status: str
    version: int | None
    updated_at: datetime


@dataclass(frozen=True)
class Detail:
    item: ServiceItem
    status: str  # active | revoked
    version: int | None
    updated_at: datetime | None


@dataclass
class Listing:
    summaries: dict[str, Summary] = field(default_factory=dict)
    total: int = 0
    complete: bool = True
    bad: dict[str, str] = field(default_factory=dict)  # entry → why it could not be read
    server_cursor: datetime | None = None


def _time(value) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _summary(entry) -> Summary:
    if not isinstance(entry, dict):
        raise ValueError("entry is not an object")
    code = entry.get("implementation_code")
    if not isinstance(code, str) or not code:
        raise ValueError("missing implementation_code")
    status = entry.get("status", "active")
    if status not in ("active", "revoked"):
        raise ValueError(f"unknown status {status!r}")
    version = entry.get("version")
    return Summary(code, status, version if isinstance(version, int) else None, _time(entry["updated_at"]))


class PlatformClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 3.0,
        attempts: int = 6,
        max_wait: float = 2.0,
        page_size: int = 100,
        concurrency: int = 8,
        relists: int = 3,
        transport: httpx.BaseTransport | None = None,
    ):
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout), transport=transport, headers={"accept": "application/json"})
        self.attempts, self.max_wait = attempts, max_wait
        self.page_size, self.concurrency, self.relists = page_size, concurrency, relists
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bridge-detail")
        self.retries = 0

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def _retrying(self) -> Retrying:
        def count(_state) -> None:
            self.retries += 1

        return Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential_jitter(multiplier=0.05, max=self.max_wait, jitter=0.1),
            stop=stop_after_attempt(self.attempts),
            before_sleep=count,
            reraise=True,
        )

    def _get(self, path: str, params: dict | None = None) -> tuple[int, object]:
        response = self.http.get(path, params=params)
        if response.status_code >= 500:
            raise Transient(f"{response.status_code} from {path}")
        if response.status_code == 404:
            return 404, None
        if response.status_code >= 400:
            raise Unreadable(f"{response.status_code} from {path}: {response.text[:200]}")
        try:
            return response.status_code, json.loads(response.content)
        except ValueError as exc:
            raise Malformed(f"not JSON ({len(response.content)} bytes): {exc}") from None

    # --- the change list ---------------------------------------------------------------------
    def _page(self, since: datetime | None, page: int, previous: tuple[str, ...] | None) -> tuple[dict[str, Summary], int, datetime | None, tuple[str, ...]]:
        params: dict = {"page": page, "page_size": self.page_size}
        if since is not None:
            params["updated_since"] = since.isoformat()
        _, body = self._get("/api/v1/items", params)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list) or not isinstance(body.get("total"), int):
            raise Malformed("list page without items/total")
        good: dict[str, Summary] = {}
        bad: dict[str, str] = {}
        order: list[str] = []
        for index, entry in enumerate(body["items"]):
            try:
                summary = _summary(entry)
            except (ValueError, KeyError, TypeError) as exc:
                label = entry.get("implementation_code") if isinstance(entry, dict) and entry.get("implementation_code") else f"page {page} entry {index}"
                bad[str(label)] = f"unreadable list entry: {exc}"
                continue
            order.append(summary.implementation_code)
            if summary.implementation_code not in good or summary.version and (good[summary.implementation_code].version or 0) < summary.version:
                good[summary.implementation_code] = summary
        if bad:
            raise Malformed(f"{len(bad)} unreadable entries on page {page}", good, bad)
        codes = tuple(sorted(order))
        if page > 1 and codes and codes == previous:
            raise DuplicatePage(f"page {page} repeats page {page - 1}")
        cursor = None
        try:
            cursor = _time(body["cursor"]) if body.get("cursor") else None
        except ValueError:
            pass
        return good, body["total"], cursor, codes

    def _page_with_retries(self, since, page, previous) -> tuple[dict[str, Summary], int, datetime | None, tuple[str, ...], dict[str, str]]:
        try:
            for attempt in self._retrying():
                with attempt:
                    good, total, cursor, codes = self._page(since, page, previous)
            return good, total, cursor, codes, {}
        except Malformed as exc:
            if not exc.good and not exc.bad:
                raise
            # Entries that stay unreadable are reported; the rest of the page is used.
            log.warning("bridge.unreadable_entries", page=page, entries=list(exc.bad))
            return exc.good, -1, None, tuple(sorted(exc.good)), exc.bad

    def list_changes(self, since: datetime | None) -> Listing:
        """Every item changed at or after `since` (None: every item). Offset paging under
        concurrent changes can skip an item; a short listing is listed again and the results
        merged, and reported as incomplete if it stays short."""
        listing = Listing()
        for _round in range(self.relists):
            total, page, previous = None, 1, None
            while True:
                good, page_total, cursor, codes, bad = self._page_with_retries(since, page, previous)
                if page_total >= 0:
                    total = page_total if total is None else total
                if cursor is not None and (listing.server_cursor is None or cursor > listing.server_cursor):
                    listing.server_cursor = cursor
                listing.bad.update(bad)
                for code, summary in good.items():
                    held = listing.summaries.get(code)
                    if held is None or (summary.version or 0) > (held.version or 0) or summary.updated_at > held.updated_at:
                        listing.summaries[code] = summary
                if len(codes) + len(bad) < self.page_size or (total is not None and page * self.page_size >= total):
                    break
                previous, page = codes, page + 1
            listing.total = total or 0
            if len(listing.summaries) + len(listing.bad) >= listing.total:
                listing.complete = True
                return listing
            log.info("bridge.listing_short", listed=len(listing.summaries), total=listing.total, round=_round + 1)
        listing.complete = False
        return listing

    # --- details -------------------------------------------------------------------------------
    def _detail_once(self, code: str) -> Detail | None:
        status, body = self._get(f"/api/v1/items/{code}")
        if status == 404:
            return None
        if not isinstance(body, dict):
            raise Malformed("detail is not an object")
        try:
            item = ServiceItem.model_validate(body)
            if item.implementation_code != code:
                raise Malformed(f"asked for {code}, got {item.implementation_code}")
            state = body.get("status", "active")
            if state not in ("active", "revoked"):
                raise Malformed(f"unknown status {state!r}")
            version = body.get("version")
            updated = _time(body["updated_at"]) if body.get("updated_at") else None
        except (ValidationError, ValueError, KeyError) as exc:
            raise Malformed(f"unreadable record: {str(exc).splitlines()[0]}") from None
        return Detail(item, state, version if isinstance(version, int) else None, updated)

    def detail(self, code: str) -> Detail | None:
        """The item, or None when the platform has really deleted it (a 404 asked twice).
        Raises Unreadable when the record stays malformed, or the last transport error."""
        missing = 0
        try:
            for attempt in self._retrying():
                with attempt:
                    found = self._detail_once(code)
                    if found is None:
                        missing += 1
                        if missing < 2:  # one 404 may be a platform hiccup
                            time.sleep(0.05)
                            raise Transient("404, asking again")
                    return found
        except Transient:
            if missing >= 2 or missing >= self.attempts:
                return None
            raise
        except Malformed as exc:
            raise Unreadable(str(exc)) from None
        return None

    def details(self, codes: Iterable[str]) -> dict[str, Detail | None | Exception]:
        """Details fetched concurrently; each value is the Detail, None (deleted) or the error."""

        def one(code: str):
            try:
                return code, self.detail(code)
            except Exception as exc:  # reported per item; one bad record does not stop the rest
                return code, exc

        return dict(self.pool.map(one, list(codes)))
