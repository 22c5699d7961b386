"""How much the benchmark's machine can do at once, measured in the same run.

A "2-core" VM may give two vCPUs that share one physical core (or its caches and memory
bandwidth): two busy processes then get much less than twice the work of one done. Every
figure of the pipeline is CPU-bound, so the benchmarks print this next to their results.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time

# A fixed piece of the pipeline's kind of work: decoding a CJK-heavy JSON document and
# walking it in Python.
_DOCUMENT = json.dumps(
    {"title": "关于城乡规划城市、镇详细规划的通知", "body": "为进一步做好城市、镇详细规划相关工作，切实保障人民群众的知情权。" * 30, "n": list(range(50))},
    ensure_ascii=False,
)


def _work(rounds: int) -> float:
    """Seconds this process took for `rounds` decodings (wall clock, while busy throughout)."""
    started = time.perf_counter()
    total = 0
    for _ in range(rounds):
        document = json.loads(_DOCUMENT)
        total += sum(document["n"]) + len(document["body"])
    return time.perf_counter() - started


def _child(rounds: int, start_at: float, results) -> None:
    while time.perf_counter() < start_at:  # start together
        pass
    results.put(_work(rounds))


def _together(rounds: int, cpus: int) -> list[float]:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.perf_counter() + 0.3
    children = [context.Process(target=_child, args=(rounds, start_at, results)) for _ in range(cpus)]
    for child in children:
        child.start()
    together = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join()
    return together


def parallel_capacity(rounds: int = 60_000, trials: int = 3) -> dict:
    """The work per second of one busy process per CPU at once, as a multiple of one busy
    process's (2.0 on two real cores; 1.0 if the two "cores" were one). One alone and all
    together are measured in turn, `trials` times; the median ratio is reported."""
    cpus = os.cpu_count() or 1
    ratios, singles = [], []
    for _ in range(trials):
        single = _work(rounds)
        together = _together(rounds, cpus)
        singles.append(single)
        ratios.append(sum(single / t for t in together))
    return {
        "cpus": cpus,
        "single_s": round(statistics.median(singles), 3),
        "ratios": [round(r, 2) for r in ratios],
        "capacity": round(statistics.median(ratios), 2),
    }


def describe(capacity: dict) -> str:
    return f"{capacity['cpus']} busy processes do {capacity['capacity']:.2f}× the work of one ({capacity['cpus']:.2f}× on {capacity['cpus']} real cores)"
