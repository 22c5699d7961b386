"""How our long-running processes set up CPython's cyclic garbage collector.

With CPython's default thresholds (700, 10, 10) a collection of the young generation runs
every 700 net allocations of container objects. One batch of events is thousands of them
(pydantic models, dicts of rows, SQLAlchemy parameters), so a batch in flight is examined
several times, survives, and is promoted — and the full collections that follow walk every
long-lived object again: the catalogs, SQLAlchemy's and pydantic's caches, faust's machinery.
In a migration the collector takes a large share of the process's CPU (`make bench-gc`
measures it; bench/README.md has the current figure).

So, once a process has built what it keeps for its whole life:
- `gc.freeze()` moves all of that to a permanent generation the collector never walks;
- the young generation is collected every YOUNG_THRESHOLD allocations instead of 700, so a
  batch is usually gone (freed by reference counting) before the collector looks at it.
Reference counting still frees everything that is not in a cycle at once; cyclic garbage
waits longer, which costs memory: a long migration peaks higher.

The consumers and `tongyuan migrate` do this; the portal does not. Its requests are small and
come one by one, so the settled collector saves it nothing worth having, and with it the
slowest HTTP publishes grew slower: the tail of a clerk's request is worth more than the CPU.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 10


def settle_garbage_collector() -> None:
    """Call once the process has built its long-lived state (app, stores, catalogs)."""
    gc.collect()  # what startup threw away is not frozen with the rest
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
