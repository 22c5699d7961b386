"""What the stack costs at a clerk's pace: CPU per process idle, and per publication at R/s.

`make bench` measures a backlog, where every consumer works in full batches. Clerks publish
a few items a second; then each consumer's batches hold one or two events and its costs per
batch (a store transaction, a search-index commit, faust's commit) dominate. This starts its
own `tongyuan up` (as `make bench` does), reads each process's CPU time while nothing happens
(the idle baseline, measured in the same run), then sends N publications over HTTP paced at
R/s and reports, per process, the CPU beyond its idle rate divided by N, once every
publication is live in the column store and the search index.

    .venv/bin/python -m bench.pace [--rate R] [--publications N] [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.machine import describe, parallel_capacity
from bench.pipeline import Payloads, Stack, Stores, _ppid_and_cpu, descendants, log, wait_until, warm_up


def _cpu(tree: dict[int, str]) -> dict[int, float]:
    return {pid: (_ppid_and_cpu(pid) or (0, 0.0))[1] for pid in tree}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="publications per second")
    parser.add_argument("--publications", type=int, default=600)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)

    machine = parallel_capacity()
    var = Path(tempfile.mkdtemp(prefix="tongyuan-bench-pace-"))
    stack, stores, payloads = Stack(var), Stores(var), Payloads()
    try:
        log(f"starting `tongyuan up` (var {var})")
        stack.start()
        stack.wait_healthy()
        warm_up(stack, stores, payloads, "pace")
        time.sleep(5)  # let the warm-up's commits and timers settle
        tree = descendants(stack.process.pid)

        log(f"idle baseline: {args.idle_seconds:.0f} s with nothing to do")
        before, started = _cpu(tree), time.monotonic()
        time.sleep(args.idle_seconds)
        idle_rate = {pid: (cpu - before[pid]) / (time.monotonic() - started) for pid, cpu in _cpu(tree).items()}

        log(f"{args.publications} publications over HTTP at {args.rate:g}/s")
        bodies = [payloads.draft(500_000 + i).as_body() for i in range(args.publications)]
        ids: list[str] = []
        errors: list[str] = []
        lock, local = threading.Lock(), threading.local()

        def send(body: dict) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=30, headers=stack.auth)
            response = local.client.post(f"{stack.url}/v1/publications", json=body)
            with lock:
                if response.status_code == 202:
                    ids.append(response.json()["publication_id"])
                else:
                    errors.append(f"{response.status_code}: {response.text[:200]}")

        before, started = _cpu(tree), time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            for i, body in enumerate(bodies):
                delay = started + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send, body)
        if errors:
            raise SystemExit(f"{len(errors)} publications refused, first: {errors[0]}")
        wait_until(lambda: len(stores.visible(ids)) == len(ids), 300, "every publication to be live in the column and the search index")
        elapsed = time.monotonic() - started
        after = _cpu(tree)
    finally:
        stack.stop()
        stores.close()
        shutil.rmtree(var, ignore_errors=True)

    print(f"Tongyuan at a clerk's pace: {args.publications} publications over HTTP at {args.rate:g}/s")
    print(f"machine: {describe(machine)}; a fixed piece of work took {machine['single_s'] * 1000:,.0f} ms alone")
    print(f"  {'process':<22}{'idle, % of a core':>18}{'CPU ms per publication':>25}")
    total_idle = total = 0.0
    for pid, name in sorted(tree.items(), key=lambda item: item[1]):
        used = after[pid] - before[pid] - idle_rate[pid] * elapsed
        total_idle += idle_rate[pid]
        total += used
        print(f"  {name:<22}{100 * idle_rate[pid]:>17.1f}%{1000 * used / args.publications:>25.2f}")
    print(f"  {'all':<22}{100 * total_idle:>17.1f}%{1000 * total / args.publications:>25.2f}")
    print("(`make bench` in the same terms: CPU per event in its throughput phase, where batches are full)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
