"""Catalog picker latency: what a CMS sees when a clerk walks region → domain → level-1.

Runs the portal alone (`tongyuan run portal`, no broker needed) on a free port with a
temporary var dir, warms the cache, then times sequential keep-alive requests with httpx:
the three picker levels, a conditional request answered 304, and as the baseline measured
in the same run, a static file served by the same process (the HTTP floor).

    .venv/bin/python -m bench.catalog_api [--requests N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from services.common.broker import free_port
from tests.processes import interrupt

PATHS = {
    "domains": "/v1/regions/430102001/catalog",
    "level-1 items": "/v1/regions/430102001/catalog/D14",
    "level-2 items": "/v1/regions/430102001/catalog/D14/D14-02",
}
TARGET_MS = 10.0


def timed(client: httpx.Client, path: str, n: int, headers: dict | None = None) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code in (200, 304), (path, response.status_code)
    return samples


def quantile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    var = tempfile.mkdtemp(prefix="tongyuan-bench-catalog-")
    env = {**os.environ, "TONGYUAN_VAR_DIR": var, "TONGYUAN_PORT": str(port), "TONGYUAN_LOG_LEVEL": "warning"}
    env.pop("TONGYUAN_DATABASE_URL", None)
    portal = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "portal"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/static/site.css")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            for path in PATHS.values():
                timed(client, path, 50)  # warm the rendered cache and the directory
            rows = {"baseline: static file": timed(client, "/static/site.css", args.requests)}
            for name, path in PATHS.items():
                rows[name] = timed(client, path, args.requests)
            etag = client.get(PATHS["level-1 items"]).headers["etag"]
            rows["level-1 items, 304"] = timed(client, PATHS["level-1 items"], args.requests, {"If-None-Match": etag})
        floor = statistics.median(rows["baseline: static file"])
        print(f"catalog picker latency, {args.requests} sequential keep-alive requests each (ms)")
        print(f"{'request':<24}{'p50':>8}{'p95':>8}{'p99':>8}{'x floor':>9}  target")
        for name, samples in rows.items():
            p50, p95, p99 = statistics.median(samples), quantile(samples, 95), quantile(samples, 99)
            verdict = "" if name.startswith("baseline") else f"p99 < {TARGET_MS:.0f} ms {'PASS' if p99 < TARGET_MS else 'MISS'}"
            print(f"{name:<24}{p50:>8.2f}{p95:>8.2f}{p99:>8.2f}{p50 / floor:>9.2f}  {verdict}")
        return 0
    finally:
        interrupt([portal], grace=10)


if __name__ == "__main__":
    raise SystemExit(main())
