"""The Directory the gate checks every request against: the catalogs in force and the regions."""

from __future__ import annotations

import threading

from contracts.catalog import STANDARD
from services.publisher.gate.domain import Directory

from .store import Catalogs


class DirectoryProvider:
    """The catalogs in force and the regions, re-read whenever their stamp moved: an edition
    published by any process (the catalog API in the portal, `tongyuan catalog`, another
    publisher) is what the next request or batch is checked against. A clerk who adds an item
    and files under it at once must not be told it does not exist. The stamp costs one small
    query a call; the catalogs are parsed again only when it changed."""

    def __init__(self, catalogs: Catalogs):
        self.catalogs = catalogs
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int, int], Directory] | None = None

    def __call__(self) -> Directory:
        with self._lock:
            stamp = self.catalogs.directory_stamp()
            if self._cached is None or self._cached[0] != stamp:
                current = self.catalogs.in_force()
                if STANDARD not in current:
                    raise RuntimeError("no catalog loaded; run `tongyuan db init`")
                # Read after the stamp: a change in between is read now and read again next call.
                self._cached = (stamp, Directory(catalogs=current, regions=self.catalogs.regions()))
            return self._cached[1]

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None
