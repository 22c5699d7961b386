"""`make bench-bridge`: a change on the government-service platform → visible in the column.

It starts its own stack (embedded Tansu on a free port, a temporary var dir, the publisher,
column and indexer processes), the platform simulator and the bridge (relay, webhook receiver),
seeds the platform, waits for the initial sync, then measures per change, from the edit on the
platform until the column store holds the edited guide (polled read-only every 20 ms):

1. baseline: the same kind of edit sent straight to the gate as a CMS event on tongyuan.cms.v1
   (what the pipeline itself costs, measured in this run);
2. webhook: the platform's signed webhook → bridge fetches the item → outbox → gate → column;
3. polling: no webhooks; the bridge polls every --poll-interval seconds (default 5, as deployed).

Not a timed test: it prints p50/p99 next to the target (webhook p99 < 2 s) and a `BENCH_JSON`
line (also written to bench/out/); a missed target is reported, never fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.processes import interrupt

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
TARGET_WEBHOOK_P99_MS = 2000.0
SECRET = "bench-webhook-secret"


def log(message: str) -> None:
    print(f"[bench-bridge {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))]

    return {"n": len(ordered), "p50": rank(50), "p99": rank(99), "max": ordered[-1]} if ordered else {"n": 0}


class Column:
    """The column store, read-only, as a reader of the public site sees it."""

    def __init__(self, var: Path):
        self.path = var / "column.db"

    def bodies(self, ids: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(ids))
        rows = self._rows(f"SELECT publication_id, document FROM column_publications WHERE publication_id IN ({marks})", ids) if ids else []
        return {pid: json.loads(doc)["body_html"] for pid, doc in rows if doc}

    def _rows(self, query: str, params=()) -> list:
        if not self.path.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as connection:
                return connection.execute(query, params).fetchall()
        except sqlite3.OperationalError:  # the column consumer has not created its tables yet
            return []

    def by_ref(self, source: str) -> dict[str, str]:
        rows = self._rows("SELECT publication_id, document FROM column_publications WHERE status = 'published'")
        out = {}
        for pid, doc in rows:
            data = json.loads(doc) if doc else None
            if data and data["source_ref"]["source"] == source:
                out[data["source_ref"]["ref"]] = pid
        return out


def measure(changes: list[tuple[str, str]], make_change, column: Column, *, rate: float, timeout: float) -> list[float]:
    """Send each change at `rate`/s; per change, milliseconds until its tag is in the column."""
    pending: dict[str, tuple[str, float]] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def watch():
        while not done.is_set() or pending:
            with lock:
                ids = list(pending)
            bodies = column.bodies(ids)
            now = time.monotonic()
            with lock:
                for pid in ids:
                    tag, sent = pending[pid]
                    if tag in bodies.get(pid, ""):
                        latencies.append((now - sent) * 1000)
                        del pending[pid]
                    elif now - sent > timeout:
                        log(f"change {tag} not visible after {timeout}s")
                        del pending[pid]
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    for n, (pid, key) in enumerate(changes):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        tag = f"bench{uuid.uuid4().hex[:10]}"
        with lock:
            pending[pid] = (tag, time.monotonic())
        make_change(key, tag)
    done.set()
    watcher.join(timeout + 5)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300, help="service items on the simulated platform")
    parser.add_argument("--changes", type=int, default=40, help="edits per phase")
    parser.add_argument("--rate", type=float, default=2.0, help="edits per second")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="the bridge's poll interval in the polling phase")
    parser.add_argument("--keep-var", action="store_true")
    args = parser.parse_args(argv)

    from kafka import KafkaConsumer, TopicPartition

    from contracts.events import TOPIC_CMS, TOPIC_SERVICE_ITEMS, PublishRequestData, PublishRequestedEvent, new_event_id
    from contracts.identity import Principal
    from devtools.platform_simulator import Platform, Served, WebhookSender, seed_items
    from devtools.platform_simulator import create_app as simulator_app
    from services.bridge.app import create_app, create_runtime
    from services.common.broker import EmbeddedBroker, free_port
    from services.common.kafka import ensure_topics, idempotent_producer
    from services.common.settings import BridgeSettings, Settings
    from services.publisher.app import bootstrap, directory_provider
    from services.publisher.gate import service_items

    var = Path(tempfile.mkdtemp(prefix="tongyuan-bench-bridge-"))
    load = os.getloadavg()[0]
    broker = EmbeddedBroker(port=free_port(), log_path=var / "broker.log").start()
    env = {**os.environ, "TONGYUAN_KAFKA_BOOTSTRAP": broker.bootstrap, "TONGYUAN_VAR_DIR": str(var), "TONGYUAN_LOG_LEVEL": "warning"}
    env.pop("TONGYUAN_DATABASE_URL", None)
    settings = Settings(kafka_bootstrap=broker.bootstrap, var_dir=var, log_level="warning")
    ensure_topics(broker.bootstrap, settings.topic_partitions)
    publisher = bootstrap(settings)
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", name], env=env, cwd=ROOT, stdout=open(var / f"{name}.log", "wb"), stderr=subprocess.STDOUT
        )
        for name in ("publisher", "column", "indexer")
    }
    publisher_consumes = "TOPIC_SERVICE_ITEMS" in (ROOT / "services" / "publisher" / "app.py").read_text("utf-8")
    stop = threading.Event()
    results: dict = {
        "items": args.items,
        "changes": args.changes,
        "rate": args.rate,
        "poll_interval_s": args.poll_interval,
        "load_avg_at_start": load,
        "machine": "2 cores, shared",
    }
    platform = Platform(seed_items(args.items), seed=1)
    producer = idempotent_producer(broker.bootstrap)

    def stand_in_agent():
        """The publisher's service-items agent, in-process, until services/publisher/app.py runs it."""
        directory = directory_provider(publisher)
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        partitions = [TopicPartition(TOPIC_SERVICE_ITEMS, p) for p in consumer.partitions_for_topic(TOPIC_SERVICE_ITEMS) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        while not stop.is_set():
            records = [r for batch in consumer.poll(timeout_ms=20, max_records=500).values() for r in batch]
            if records:
                service_items.handle_service_item_batch([r.value for r in records], publisher=publisher, directory=directory())
        consumer.close()

    try:
        if not publisher_consumes:
            threading.Thread(target=stand_in_agent, daemon=True).start()
        column = Column(var)
        with Served(simulator_app(platform)) as simulator:
            bridge_settings = BridgeSettings(
                platform_url=simulator.url, webhook_secret=SECRET, poll_interval=args.poll_interval, reconcile_interval=10**6, relay_interval=0.05
            )
            runtime = create_runtime(settings.model_copy(update={"bridge": bridge_settings}), producer=producer).start(poll=False)
            with Served(create_app(runtime)) as receiver:
                log(f"stack up in {var}; initial sync of {args.items} items")
                runtime.bridge.poll()
                live = runtime.store.status()["live"]
                deadline = time.monotonic() + 180
                while len(refs := column.by_ref("/bridge/hunan-zwfw")) < live:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"initial sync: {len(refs)} of {live} in the column after 180 s; see {var}")
                    time.sleep(0.2)
                codes = sorted(refs)
                log(f"{len(codes)} service publications in the column")

                # 1. baseline: the gate's own lane (CMS topic), same kind of change.
                cms_refs: dict[str, str] = {}
                admin = Principal(user="bench", roles=("admin",))
                placements = [{"region_code": "430102", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}]

                def cms_send(ref: str, tag: str) -> None:
                    data = PublishRequestData(
                        source_ref=ref, actor=admin, placements=placements, title=f"基线 {ref}", body_html=f"<p>{tag}</p>", formed_at=datetime.now(UTC).date()
                    )
                    event = PublishRequestedEvent(id=new_event_id(), source="/cms/bench", subject=ref, data=data)
                    producer.send(TOPIC_CMS, key=ref.encode(), value=event.model_dump_json(exclude_none=True).encode()).get(10)

                for n in range(args.changes):
                    cms_send(f"bench-{n}", "seed")
                deadline = time.monotonic() + 60
                while len(cms_refs := {k: v for k, v in column.by_ref("/cms/bench").items()}) < args.changes and time.monotonic() < deadline:
                    time.sleep(0.1)
                baseline = measure([(cms_refs[f"bench-{n}"], f"bench-{n}") for n in range(args.changes)], cms_send, column, rate=args.rate, timeout=30)
                results["baseline_cms_ms"] = percentiles(baseline)
                log(f"baseline (CMS lane): {results['baseline_cms_ms']}")

                # 2. webhook.
                platform.webhooks = WebhookSender(f"{receiver.url}/bridge/webhooks/{bridge_settings.platform}", SECRET)
                chosen = [codes[(n * 7) % len(codes)] for n in range(args.changes)]
                chosen = list(dict.fromkeys(chosen))
                webhook = measure(
                    [(refs[c], c) for c in chosen], lambda code, tag: platform.edit(code, note=f"基准测试 {tag}"), column, rate=args.rate, timeout=30
                )
                results["webhook_ms"] = percentiles(webhook)
                log(f"webhook: {results['webhook_ms']}")
                platform.webhooks.close()
                platform.webhooks = None

                # 3. polling only.
                runtime.bridge.poll()
                poller = threading.Thread(target=runtime._loop, daemon=True)
                runtime.store.status()  # reconciliation is far off: the loop only polls
                poller.start()
                polled = measure(
                    [(refs[c], c) for c in chosen],
                    lambda code, tag: platform.edit(code, note=f"轮询测试 {tag}"),
                    column,
                    rate=args.rate,
                    timeout=args.poll_interval * 3 + 30,
                )
                results["polling_ms"] = percentiles(polled)
                log(f"polling every {args.poll_interval:g}s: {results['polling_ms']}")
                runtime.shutdown()
    finally:
        stop.set()
        interrupt(processes.values())
        producer.close()
        broker.stop()

    webhook_p99 = results.get("webhook_ms", {}).get("p99")
    base_p50 = results.get("baseline_cms_ms", {}).get("p50")
    results["webhook_p99_target_ms"] = TARGET_WEBHOOK_P99_MS
    results["webhook_p99_ok"] = webhook_p99 is not None and webhook_p99 < TARGET_WEBHOOK_P99_MS
    results["webhook_p50_over_baseline_p50"] = round(results["webhook_ms"]["p50"] / base_p50, 2) if base_p50 else None
    results["stand_in_agent"] = not publisher_consumes
    print()
    print(f"platform change → visible in the column ({args.changes} edits at {args.rate:g}/s, {args.items} items; machine shared, load {load:.1f})")
    print(f"{'path':<28}{'n':>5}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, key in (("baseline: CMS topic → gate", "baseline_cms_ms"), ("webhook", "webhook_ms"), (f"polling every {args.poll_interval:g} s", "polling_ms")):
        row = results.get(key, {"n": 0})
        print(f"{name:<28}{row['n']:>5}" + "".join(f"{row.get(k, float('nan')):>10.0f}" for k in ("p50", "p99", "max")))
    print(
        f"webhook p99 target < {TARGET_WEBHOOK_P99_MS:.0f} ms: {'OK' if results['webhook_p99_ok'] else 'MISS'}; webhook p50 ÷ baseline p50 = {results['webhook_p50_over_baseline_p50']}"
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"bridge-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=1))
    print("BENCH_JSON " + json.dumps(results))
    if not args.keep_var:
        import shutil

        shutil.rmtree(var, ignore_errors=True)
    ok = all(results.get(k, {}).get("n") == len(chosen) for k in ("webhook_ms", "polling_ms"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
