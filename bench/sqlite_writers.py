"""SQLite write transactions under contention: how long a writer waits for the file's lock.

Two processes of four threads each write small transactions (a 2 KB row, 2 ms of work inside
the transaction, 5 ms between transactions) to one WAL file, as the portal's request threads
and the publisher's relay do. Measured both ways in the same run:

- baseline: SQLite's own busy handler (BEGIN IMMEDIATE with busy_timeout; it sleeps 1, 2, 5 …
  then 100 ms between tries) and no lock of ours;
- Tongyuan: `services.common.db.writing` (threads queue on a per-file lock; another process is
  asked again every millisecond).

    .venv/bin/python -m bench.sqlite_writers [--transactions N] [--rounds R]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import text

from services.common import db

PROCESSES, THREADS = 2, 4


def _writer_process(path: str, baseline: bool, transactions: int, results) -> None:
    if baseline:
        db._begin_immediate = lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE")
    engine = db.create_store_engine(f"sqlite:///{path}")
    if baseline:
        db._ENGINE_WRITERS.pop(engine, None)
    waits: list[float] = []

    def thread() -> None:
        for _ in range(transactions):
            started = time.perf_counter()
            with db.writing(engine) as connection:
                connection.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "x" * 2000})
                time.sleep(0.002)
            waits.append(time.perf_counter() - started)
            time.sleep(0.005)

    threads = [threading.Thread(target=thread) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(waits)


def run(baseline: bool, transactions: int) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="tongyuan-bench-sqlite-"))
    path = directory / "writers.db"
    engine = db.create_store_engine(f"sqlite:///{path}")
    with db.writing(engine) as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    engine.dispose()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    started = time.perf_counter()
    processes = [context.Process(target=_writer_process, args=(str(path), baseline, transactions, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    waits = sorted(w for _ in processes for w in results.get(timeout=600))
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    for file in directory.iterdir():
        file.unlink()
    directory.rmdir()

    def at(q: float) -> float:
        return 1000 * waits[min(len(waits) - 1, int(q * len(waits)))]

    return {"tx_per_s": len(waits) / elapsed, "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": 1000 * waits[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=60, help="per thread")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each")
    args = parser.parse_args(argv)
    print(f"SQLite writers: {PROCESSES} processes × {THREADS} threads × {args.transactions} transactions, {os.cpu_count()} CPUs")
    best: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name, baseline in (("SQLite's busy handler", True), ("Tongyuan's writing()", False)):
            figures = run(baseline, args.transactions)
            print(
                f"  round {round_ + 1}  {name:<22} {figures['tx_per_s']:6.0f} tx/s   per transaction (waiting included) p50 {figures['p50_ms']:6.1f}  p99 {figures['p99_ms']:6.1f}  max {figures['max_ms']:6.1f} ms"
            )
            if name not in best or figures["p99_ms"] < best[name]["p99_ms"]:
                best[name] = figures
    base, ours = best["SQLite's busy handler"], best["Tongyuan's writing()"]
    print(
        f"best of {args.rounds}: p99 per transaction {base['p99_ms']:.0f} → {ours['p99_ms']:.0f} ms ({ours['p99_ms'] / base['p99_ms']:.2f}×), throughput {ours['tx_per_s'] / base['tx_per_s']:.2f}×"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
