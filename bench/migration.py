"""`make bench-migration`: N generated legacy rows through `tongyuan migrate` into every store.

It writes a synthetic old-site export (devtools/synthetic_export.py: Chinese HTML bodies of
1–2 KB, six date formats, ~1% unmapped paths, some repeated rows; in publication order unless
`--dates random`), starts its own
`tongyuan up` (embedded Tansu, SQLite stores, a temporary var dir), and then:

1. migration: runs `tongyuan migrate` on the export and times until the publisher store, the
   column, the search index, the embed store and the supervision store all hold every planned
   row (polled read-only with sqlite3);
2. broker ceiling: the same number of migrated events produced to a fresh topic and consumed
   back with no processing (bench.pipeline's ceiling phase), for the ratio.

while sampling every process's RSS and CPU (/proc), the migrate process included. It prints
rows/s end to end against the target (≥ 1,700 rows/s, i.e. 1,000,000 rows in < 10 minutes on
2 cores), peak memory per process, CPU and bytes written to disk per row per process, and writes
bench/out/migration-*.json.
Not a timed test: a missed target is reported, never fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import describe, parallel_capacity
from bench.pipeline import (
    OUT_DIR,
    PAGE_MB,
    ROOT,
    BenchFailure,
    Payloads,
    Sampler,
    Stack,
    Stores,
    _status_kb,
    begin,
    ceiling_phase,
    failed,
    log,
    warm_up,
)
from devtools.synthetic_export import DATE_ORDERS

TARGET_ROWS_PER_S = 1700.0
SITE_SOURCE = "/migration/synthetic"
COUNTS = {
    "publisher": ("publisher.db", f"SELECT count(*) FROM publisher_publications WHERE source = '{SITE_SOURCE}'"),
    # Publications with a placement, counted on the placements' publication index: the column's
    # own table holds every document, and counting it reads gigabytes per poll over a large run.
    # Equivalent here: every migrated row is published, none withdrawn.
    "column": ("column.db", "SELECT count(*) FROM (SELECT DISTINCT publication_id FROM column_placements)"),
    "search": ("search.db", "SELECT count(*) FROM search_documents WHERE status = 'published'"),
    "embed": ("embed.db", "SELECT count(*) FROM embed_publications"),
    "supervision": ("supervision.db", "SELECT count(*) FROM supervision_publications"),
}


# An upper bound on each count, read off the end of the table's rowid b-tree: rowids only grow
# (every counted table is a rowid table), so rows added since a baseline are at most the
# rowids added. Counting a million-row store reads all of it: polled through a run, exact
# counts would take CPU from the stack under test.
BOUNDS = {
    "publisher": "SELECT coalesce(max(rowid), 0) FROM publisher_publications",
    "column": "SELECT coalesce(max(rowid), 0) FROM column_placements",
    "search": "SELECT coalesce(max(rowid), 0) FROM search_documents",
    "embed": "SELECT coalesce(max(rowid), 0) FROM embed_publications",
    "supervision": "SELECT coalesce(max(rowid), 0) FROM supervision_publications",
}


def _connection(var_dir: Path, connections: dict, store: str) -> sqlite3.Connection:
    if store not in connections:
        connections[store] = sqlite3.connect(f"file:{var_dir / COUNTS[store][0]}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    return connections[store]


def counts(var_dir: Path, connections: dict, stores=COUNTS) -> dict[str, int]:
    return {store: _connection(var_dir, connections, store).execute(COUNTS[store][1]).fetchone()[0] for store in stores}


def bounds(var_dir: Path, connections: dict) -> dict[str, int]:
    return {store: _connection(var_dir, connections, store).execute(query).fetchone()[0] for store, query in BOUNDS.items()}


def written_bytes(pid: int) -> int | None:
    """Bytes the process has caused to be written to storage (/proc/<pid>/io write_bytes):
    SQLite's WAL and checkpoints, tantivy's segments. Charged when a page is dirtied, so it
    does not wait for the kernel's writeback."""
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="legacy rows to generate and migrate (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=500, help="rows per gate transaction (tongyuan migrate --batch)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for every store to catch up (default 300 + rows/200)")
    parser.add_argument("--keep-var", action="store_true", help="keep the temporary var dir and print its path")
    parser.add_argument("--dates", choices=DATE_ORDERS, default="publication", help="the export's rows in publication order (default) or dated at random")
    args = parser.parse_args(argv)
    timeout = args.timeout or 300 + args.rows / 200

    # SIGTERM ends the run like Ctrl-C: through the finally below, which stops the stack.
    def interrupted(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    run_id = uuid.uuid4().hex[:8]
    var_dir = Path(tempfile.mkdtemp(prefix="tongyuan-bench-migration-"))
    results: dict = {
        "run_id": run_id,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "environment": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loadavg_at_start": os.getloadavg(), "machine": parallel_capacity()},
        "target_rows_per_s": TARGET_ROWS_PER_S,
    }
    stack = Stack(var_dir)
    sampler: Sampler | None = None
    connections: dict = {}
    migrate: subprocess.Popen | None = None
    exit_code = 0
    try:
        from devtools.synthetic_export import write_synthetic_export

        log(f"writing {args.rows:,} legacy rows")
        started = time.monotonic()
        export = write_synthetic_export(var_dir / "export", args.rows, dates=args.dates)
        results["export"] = {
            "rows": export.rows,
            "planned": export.planned,
            "duplicates": export.duplicates,
            "unmapped": export.unmapped,
            "bytes": export.csv_path.stat().st_size,
            "written_s": round(time.monotonic() - started, 1),
            "dates": args.dates,
        }
        log(f"starting `tongyuan up` (var {var_dir})")
        stack.start()
        sampler = Sampler(stack.process.pid)
        sampler.start()
        stack.wait_healthy()
        stores = Stores(var_dir)
        warm_up(stack, stores, Payloads(), run_id)
        baseline, baseline_bounds = counts(var_dir, connections), bounds(var_dir, connections)

        log(f"migrating {export.planned:,} planned rows")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}
        env.update(TONGYUAN_VAR_DIR=str(var_dir), TONGYUAN_KAFKA_BOOTSTRAP=stack.bootstrap, TONGYUAN_LOG_LEVEL="info")
        phase = begin("migration", sampler)
        migrate_log = open(var_dir / "migrate.log", "wb")
        migrate = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "migrate", str(export.csv_path), "--config", str(export.config_path), "--batch", str(args.batch)],
            cwd=ROOT,
            env=env,
            stdout=migrate_log,
            stderr=subprocess.STDOUT,
        )
        migrate_peak_kb, gate_done_s, migrate_cpu_s, migrate_written = 0, None, 0.0, 0
        written_before = {name: written_bytes(pid) or 0 for name, pid in sampler.pids().items()}
        arrived: dict[str, float] = {}
        last_report = time.monotonic()
        # A poll reads five rowid bounds (see BOUNDS): each second, whatever the stores' size.
        while len(arrived) < len(COUNTS):
            time.sleep(1.0)
            elapsed = time.monotonic() - phase.started
            if migrate.returncode is None:
                migrate_peak_kb = max(migrate_peak_kb, _status_kb(migrate.pid, "VmHWM") or 0)
                # Reaped here rather than by Popen.poll: its rusage holds the exact CPU time and
                # blocks written (in 512-byte units) of the whole run.
                pid, status, usage = os.wait4(migrate.pid, os.WNOHANG)
                if pid:
                    migrate.returncode = os.waitstatus_to_exitcode(status)
                    migrate_cpu_s, migrate_written = usage.ru_utime + usage.ru_stime, usage.ru_oublock * 512
            if migrate.returncode is not None and gate_done_s is None:
                gate_done_s = elapsed
                if migrate.returncode != 0:
                    raise BenchFailure(f"tongyuan migrate exited with {migrate.returncode}; see {var_dir / 'migrate.log'}")
            at_most = {store: bound - baseline_bounds[store] for store, bound in bounds(var_dir, connections).items()}
            # Counted exactly only once the bound says a store may be complete.
            for store, count in counts(var_dir, connections, [s for s in COUNTS if s not in arrived and at_most[s] >= export.planned]).items():
                if count - baseline[store] >= export.planned:
                    arrived[store] = elapsed
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                log(f"{elapsed:5.0f}s at most " + ", ".join(f"{store} {at_most[store]:,}" for store in COUNTS))
            if elapsed > timeout:
                now = counts(var_dir, connections)
                raise BenchFailure(f"not every store held the {export.planned:,} rows after {timeout:.0f}s: {now}")
        phase.end(sampler)
        written = {name: (written_bytes(pid) or 0) - written_before.get(name, 0) for name, pid in sampler.pids().items()}
        # Reaping a child adds its I/O to the parent's: the benchmark's own figure would count
        # tongyuan migrate twice, and it writes nothing of the stores itself.
        written.pop("bench (this process)", None)
        written["tongyuan migrate"] = migrate_written
        migrate.wait(60)
        total_s = max(arrived.values())
        results["migration"] = {
            "rows": export.rows,
            "planned": export.planned,
            "gate_done_s": round(gate_done_s or total_s, 1),
            "store_s": {k: round(v, 1) for k, v in arrived.items()},
            "total_s": round(total_s, 1),
            "rows_per_s": round(export.rows / total_s, 1),
            "migrate_cpu_s": round(migrate_cpu_s, 1),
            "migrate_peak_rss_mb": round(migrate_peak_kb / PAGE_MB, 1),
            "written_mb": {name: round(b / 1e6, 1) for name, b in written.items() if b > 0},
        }
        results["phases"] = [vars(phase)]

        log("broker ceiling: the migrated events, produced and consumed with no processing")
        messages = _migrated_events(var_dir, limit=min(export.planned, 200_000))
        ceiling = ceiling_phase(stack.bootstrap, run_id, messages, timeout=600)
        results["ceiling"] = {"events": ceiling.events, "events_per_s": round(ceiling.events_per_s, 1)}
        results["ratio_to_ceiling"] = round(results["migration"]["rows_per_s"] / ceiling.events_per_s, 4)
    except (BenchFailure, KeyboardInterrupt) as exc:
        exit_code = failed(results, exc)
    finally:
        if migrate is not None and migrate.poll() is None:
            migrate.terminate()
            migrate.wait(30)
        if sampler is not None:
            sampler.stop_event.set()
            results["processes"] = {name: {"hwm_mb": round(s.hwm_kb / PAGE_MB, 1), "cpu_s": round(s.cpu_s, 1)} for name, s in sampler.processes.items()}
        for connection in connections.values():
            connection.close()
        stack.stop()
        if args.keep_var:
            log(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    print(report(results))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"migration-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str))
    print(f"BENCH_JSON {json.dumps(results, ensure_ascii=False, default=str)}", flush=True)
    log(f"wrote {out.relative_to(ROOT)}")
    return exit_code


def _migrated_events(var_dir: Path, limit: int) -> list[tuple[bytes, bytes]]:
    """The bulk lane's own payloads, from the outbox, for a like-for-like ceiling."""
    connection = sqlite3.connect(f"file:{var_dir / 'publisher.db'}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT key, payload FROM publisher_outbox WHERE topic = 'tongyuan.publications.bulk.v1' LIMIT ?", (limit,)).fetchall()
    finally:
        connection.close()
    return [(key.encode(), payload.encode()) for key, payload in rows]


def report(results: dict) -> str:
    lines = [f"Tongyuan migration benchmark  {results['started_at']}  ({results['environment']['cpus']} CPUs)"]
    machine = results["environment"].get("machine")
    if machine:
        lines.append(f"machine: {describe(machine)}; a fixed piece of work took {machine['single_s'] * 1000:,.0f} ms alone (compare runs by it)")
    export = results.get("export")
    if export:
        lines.append(
            f"export: {export['rows']:,} rows ({export['bytes'] / 1e6:,.0f} MB CSV), {export['planned']:,} to migrate, "
            f"{export['unmapped']:,} unmapped, {export['duplicates']:,} repeated, dated in {export.get('dates', 'random')} order; "
            f"written in {export['written_s']} s"
        )
    migration = results.get("migration")
    if migration:
        verdict = "PASS" if migration["rows_per_s"] >= TARGET_ROWS_PER_S else "MISS"
        lines += [
            f"gate done (tongyuan migrate exited) at {migration['gate_done_s']:,.1f} s; every store holds every row at {migration['total_s']:,.1f} s",
            "  " + ", ".join(f"{store} {seconds:,.1f} s" for store, seconds in migration["store_s"].items()),
            f"  end to end          {migration['rows_per_s']:,.0f} rows/s   target ≥ {TARGET_ROWS_PER_S:,.0f}   {verdict}"
            f"   ({migration['rows'] / 1e6:.2f}M rows in {migration['total_s'] / 60:.1f} min)",
        ]
    if "ceiling" in results:
        lines.append(
            f"  broker ceiling      {results['ceiling']['events_per_s']:,.0f} events/s (same payloads, no processing); ratio {results['ratio_to_ceiling']:.1%}"
        )
    if migration:
        lines.append(f"  tongyuan migrate    peak RSS {migration['migrate_peak_rss_mb']:.0f} MB, CPU {migration['migrate_cpu_s']:.0f} s")
    phase = (results.get("phases") or [None])[0]
    if phase and migration:
        per_row = {name: pct / 100 * phase["wall_s"] * 1000 / migration["rows"] for name, pct in phase["cpu_percent"].items()}
        per_row["tongyuan migrate"] = migration["migrate_cpu_s"] * 1000 / migration["rows"]
        lines.append("  CPU ms per row: " + ", ".join(f"{n} {v:.2f}" for n, v in sorted(per_row.items(), key=lambda kv: -kv[1]) if v >= 0.005))
    if migration and migration.get("written_mb"):
        written = migration["written_mb"]
        lines.append(
            f"  written to disk per row: {sum(written.values()) * 1000 / migration['rows']:.1f} KB ("
            + ", ".join(
                f"{n} {mb * 1000 / migration['rows']:.1f}" for n, mb in sorted(written.items(), key=lambda kv: -kv[1]) if mb * 1000 / migration["rows"] >= 0.05
            )
            + ")"
        )
    processes = results.get("processes")
    if processes:
        lines.append("  peak RSS (VmHWM): " + ", ".join(f"{name} {p['hwm_mb']:.0f} MB" for name, p in sorted(processes.items())))
    if results.get("failure"):
        lines.append(f"FAILED: {results['failure']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
