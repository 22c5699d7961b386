"""A lock that hands itself to the longest waiter: turns at one SQLite file's write lock.

`threading.Lock` wakes a waiter on release but lets whichever thread asks next win. A consumer
writing a migration's batch in parts, releasing between them, asked first every time: a
clerk's batch, waiting in the other lane's thread, got its turn only when the whole batch was
written. Here a release passes the lock straight to the first waiter, and a writer can ask
whether anyone is waiting, so it knows when a turn is worth giving up."""

from __future__ import annotations

import threading
from collections import deque


class TurnLock:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    def acquire(self, timeout: float = -1) -> bool:
        with self._guard:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(None if timeout < 0 else timeout):
            return True
        with self._guard:
            if turn.is_set():  # handed over as the wait ran out: it is ours
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._guard:
            if not self._held:
                raise RuntimeError("release of a TurnLock that is not held")
            if self._waiting:
                self._waiting.popleft().set()  # still held: it passes to the first waiter
            else:
                self._held = False

    def waited_for(self) -> bool:
        """Someone is queued for the lock (a hint: it may have given up by the time you act)."""
        return bool(self._waiting)

    def __enter__(self) -> TurnLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
