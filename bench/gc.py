"""What CPython's cyclic collector costs `tongyuan migrate`, and what settling it saves.

The gate of a migration (read the export, map, validate, sanitise, write publication and
outbox rows) runs on N synthetic rows into a fresh SQLite var dir (no broker: the relay is
another process), in turns:

- baseline: the collector as CPython starts it (thresholds 700/10/10, nothing frozen);
- Tongyuan: `services.common.runtime.settle_garbage_collector()`, as every long-running
  process of ours calls it once started (startup state frozen, young threshold 50,000).

It prints, for each, CPU per row (user + system), the collector's own CPU and number of
collections, and peak RSS, and the ratio of the two. The consumers run the same way; their
share is visible in `make bench-migration`, not here.

    .venv/bin/python -m bench.gc [--rows N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import describe, parallel_capacity
from bench.pipeline import ROOT, log

# Runs `tongyuan migrate`, counting the collector's passes and CPU; "baseline" keeps CPython's
# collector as it starts.
_DRIVER = r"""
import atexit, gc, json, sys, time
mode, report = sys.argv[1], sys.argv[2]
sys.argv = ["tongyuan"] + sys.argv[3:]
spent = {"collections": 0, "cpu_s": 0.0}
started = [0.0]
def timed(phase, info):
    if phase == "start":
        started[0] = time.process_time()
    else:
        spent["collections"] += 1
        spent["cpu_s"] += time.process_time() - started[0]
gc.callbacks.append(timed)
atexit.register(lambda: open(report, "w").write(json.dumps(spent)))
if mode == "baseline":
    import services.common.runtime as runtime
    runtime.settle_garbage_collector = lambda: None
from services.cli import main
main()
"""


def run_gate(mode: str, export: Path, config: Path) -> dict:
    var_dir = Path(tempfile.mkdtemp(prefix=f"tongyuan-bench-gc-{mode}-"))
    report = var_dir / "collector.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}
    env.update(TONGYUAN_VAR_DIR=str(var_dir), TONGYUAN_KAFKA_BOOTSTRAP="127.0.0.1:9", TONGYUAN_LOG_LEVEL="warning")
    command = [sys.executable, "-c", _DRIVER, mode, str(report), "migrate", str(export), "--config", str(config), "--batch", "500"]
    try:
        wall = time.monotonic()
        # Its output goes to a file: a pipe nobody reads while we wait would fill and stall it.
        with open(var_dir / "migrate.log", "wb") as output:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - wall
        if status != 0:
            raise SystemExit(f"tongyuan migrate ({mode}) failed: {(var_dir / 'migrate.log').read_text()[-2000:]}")
        collector = json.loads(report.read_text())
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    return {
        "wall_s": round(wall, 2),
        "user_s": round(usage.ru_utime, 2),
        "system_s": round(usage.ru_stime, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "collector_cpu_s": round(collector["cpu_s"], 2),
        "collections": collector["collections"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="legacy rows per run (default 50,000)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating (default 2)")
    args = parser.parse_args(argv)
    from devtools.synthetic_export import write_synthetic_export

    machine = parallel_capacity()
    scratch = Path(tempfile.mkdtemp(prefix="tongyuan-bench-gc-"))
    try:
        log(f"writing {args.rows:,} legacy rows")
        export = write_synthetic_export(scratch, args.rows)
        runs: dict[str, list[dict]] = {"baseline": [], "tongyuan": []}
        for round_ in range(args.rounds):
            for mode in runs:
                log(f"round {round_ + 1}/{args.rounds}: {mode}")
                runs[mode].append(run_gate(mode, export.csv_path, export.config_path))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"Tongyuan collector benchmark  {time.strftime('%Y-%m-%dT%H:%M:%S%z')}  ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    print(f"machine: {describe(machine)}; a fixed piece of work took {machine['single_s'] * 1000:.0f} ms alone (compare runs by it)")
    print(f"tongyuan migrate, {args.rows:,} rows into a fresh var dir, {args.rounds} run(s) each, medians:")
    medians = {}
    for mode, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        medians[mode] = median
        print(
            f"  {mode:<9} CPU {median['cpu_s'] / args.rows * 1000:.3f} ms/row (user {median['user_s']:.1f} s, system {median['system_s']:.1f} s); "
            f"collector {median['collector_cpu_s']:.2f} s in {median['collections']:,.0f} passes ({median['collector_cpu_s'] / median['cpu_s']:.0%} of the CPU); "
            f"peak RSS {median['peak_rss_mb']:.0f} MB"
        )
    ratio = medians["tongyuan"]["cpu_s"] / medians["baseline"]["cpu_s"]
    print(f"  CPU per row, tongyuan / baseline: {ratio:.2f}")
    print("BENCH_JSON " + json.dumps({"rows": args.rows, "machine": machine, "runs": runs, "ratio_cpu": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
