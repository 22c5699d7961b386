"""`make bench-turns`: what writing a migration's batches in turns costs, and what it saves a clerk.

A consumer applies a bulk-lane batch (2,000 migrated publications) and a clerk's batch (one
publication) in two threads, and both write the same SQLite file. Before, the clerk's batch
waited for the whole bulk batch to be written; now the bulk batch is written in parts of
TURN_EVENTS and, when a clerk's batch waits, commits between two parts and lets it write
(services.common.db.write_in_turns). For each store, in one process, on fresh files under a
temporary directory, measured both ways in the same run (the baseline is the same code with
one part per batch, which is what the stores did before):

1. CPU per event of applying batches back to back in one thread (nobody waits, so the only
   cost of turns is writing in parts: per-part statements, and roll-up rows a whole batch
   would have merged);
2. a clerk's apply time, wall clock, while a second thread applies bulk batches back to back:
   one clerk event every 50 ms, p50 / p95 / max.

The supervision store is left out: nobody waits on it within seconds, and in parts its
roll-ups cost markedly more CPU, so it writes each batch in one transaction. Events are real ones from the gate (a CMS batch through
the publisher's outbox), copied under new publication ids.

    .venv/bin/python -m bench.turns [--events 20000] [--stores column,embed,search] [--turns 250,500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.consumer import published_events
from bench.machine import describe, parallel_capacity
from bench.pipeline import log
from contracts.events import PublishedEvent, new_event_id
from services.common import db
from services.common.consuming import parse_publication_event
from services.common.logging import configure_logging
from services.common.settings import Settings

BULK_BATCH = 2000
CLERK_EVERY = 0.05
STORES = ("column", "embed", "search")


def copies(events: list[PublishedEvent], count: int, tag: str) -> list[PublishedEvent]:
    out = []
    for n in range(count):
        event = events[n % len(events)]
        pid = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-turns/{tag}/{n}").hex
        out.append(event.model_copy(update={"id": new_event_id(), "subject": pid, "data": event.data.model_copy(update={"publication_id": pid})}))
    return out


def build(store: str, var_dir: Path) -> Callable[[list], object]:
    settings = Settings(var_dir=var_dir)
    if store == "search":
        from services.indexer.app import build_index

        return build_index(settings, cache_mb=db.BULK_WRITER_CACHE_MB).apply_now
    module = {"column": "services.column.app", "embed": "services.embed.app"}[store]
    build_store = __import__(module, fromlist=["build_store"]).build_store
    return build_store(settings, cache_mb=db.BULK_WRITER_CACHE_MB).apply


def throughput(store: str, events: list[PublishedEvent], scratch: Path) -> float:
    """CPU µs per event, batches of BULK_BATCH applied one after another."""
    apply = build(store, scratch)
    cpu = time.process_time()
    for start in range(0, len(events), BULK_BATCH):
        apply(events[start : start + BULK_BATCH])
    return (time.process_time() - cpu) / len(events) * 1e6


def clerk_waits(store: str, bulk: list[PublishedEvent], clerk: list[PublishedEvent], scratch: Path) -> list[float]:
    """A clerk's apply times (s) while another thread applies `bulk` in batches."""
    apply = build(store, scratch)
    done = threading.Event()

    def migrate() -> None:
        try:
            for start in range(0, len(bulk), BULK_BATCH):
                apply(bulk[start : start + BULK_BATCH])
        finally:
            done.set()

    waits = []
    worker = threading.Thread(target=migrate)
    worker.start()
    time.sleep(CLERK_EVERY)
    for event in clerk:
        if done.is_set():
            break
        started = time.monotonic()
        apply([event])
        waits.append(time.monotonic() - started)
        time.sleep(CLERK_EVERY)
    worker.join()
    return waits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="bulk events per measurement (default 20,000)")
    parser.add_argument("--stores", default=",".join(STORES), help=f"which stores (default {','.join(STORES)})")
    parser.add_argument("--turns", default=str(db.TURN_EVENTS), help=f"events per part, one or more sizes (default {db.TURN_EVENTS}, as shipped)")
    args = parser.parse_args(argv)
    configure_logging("WARNING", False)  # the gate logs every publication it makes
    stores = [s for s in args.stores.split(",") if s]
    if unknown := set(stores) - set(STORES):
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")

    machine = parallel_capacity()
    log("making events through the gate")
    sample = [parse_publication_event(payload) for _, payload in published_events(1000)]
    sample = [event for event in sample if isinstance(event, PublishedEvent)]
    shipped = db.TURN_EVENTS
    ways = {"one part (before)": BULK_BATCH} | {f"turns of {size}": size for size in map(int, args.turns.split(","))}
    results: dict[str, dict[str, dict]] = {store: {} for store in stores}
    scratch = Path(tempfile.mkdtemp(prefix="tongyuan-bench-turns-"))
    try:
        for store in stores:
            for round_ in range(2):  # alternating, so a drift of the VM's speed hits both
                for way, part in ways.items() if round_ == 0 else reversed(ways.items()):
                    db.TURN_EVENTS = part
                    tag = f"{store}-{way}-{round_}"
                    log(f"{store}: {way}, round {round_ + 1}")
                    cpu = throughput(store, copies(sample, args.events, tag), scratch / f"{tag}-cpu")
                    waits = clerk_waits(store, copies(sample, args.events, tag + "-bulk"), copies(sample, 10_000, tag + "-clerk"), scratch / f"{tag}-wait")
                    entry = results[store].setdefault(way, {"cpu": [], "waits": []})
                    entry["cpu"].append(cpu)
                    entry["waits"] += waits
    finally:
        db.TURN_EVENTS = shipped
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"Tongyuan turns benchmark  {time.strftime('%Y-%m-%dT%H:%M:%S%z')}  ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    print(f"machine: {describe(machine)}; a fixed piece of work took {machine['single_s'] * 1000:.0f} ms alone (compare runs by it)")
    print(f"bulk batches of {BULK_BATCH:,}, {args.events:,} events per measurement, 2 rounds each way; a clerk's event every {CLERK_EVERY * 1000:.0f} ms")
    for store, ways_measured in results.items():
        base_cpu = statistics.median(ways_measured["one part (before)"]["cpu"])
        base_wait = _quantiles(ways_measured["one part (before)"]["waits"])
        print(f"  {store}:")
        for way, entry in ways_measured.items():
            cpu, wait = statistics.median(entry["cpu"]), _quantiles(entry["waits"])
            print(
                f"    {way:<18} bulk CPU {cpu:6.0f} µs/event ({cpu / base_cpu:.2f}× before); "
                f"clerk's apply p50 {wait['p50'] * 1000:5.0f} ms, p95 {wait['p95'] * 1000:5.0f} ms, max {wait['max'] * 1000:5.0f} ms "
                f"(p95 {wait['p95'] / base_wait['p95']:.2f}× before; {len(entry['waits'])} clerk batches)"
            )
    return 0


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "p95": ordered[int(0.95 * (len(ordered) - 1))], "max": ordered[-1]}


if __name__ == "__main__":
    raise SystemExit(main())
