"""`make bench-consumer`: what one faust consumer costs per event before its store does anything.

Four consumers read every publication, so their fixed per-event cost is paid four times on the
embedded default's two cores. This puts N real `publication.published` events (made by the gate)
on an embedded Tansu topic, then reads them back

1. with the consuming loop every Tongyuan consumer runs (faust app, `noack_take`, the DLQ-aware
   `process_batch`, an ack per event) and a store that does nothing, in a process of its own;
2. with a bare aiokafka consumer (no group, no parsing, no acks): the baseline; and
3. with the same loop reading the same events as the bulk lane carries them, CloudEvents
   batches of 100: the difference is the part of the cost paid per Kafka message,

and prints CPU microseconds per event of each and their ratio. Not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time

from bench.pipeline import ROOT, Payloads, log

PARTITIONS = 4


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def counting_store(total: int, out: str):
    """A store write that only counts; once `total` events came, it writes "events wall cpu"
    (from the first batch on) to `out` and ends the child process."""
    state: dict = {"n": 0, "start": None}

    def apply(events) -> None:
        if state["start"] is None:
            state["start"] = (time.monotonic(), _cpu())
        state["n"] += len(events)
        if state["n"] >= total:
            wall0, cpu0 = state["start"]
            with open(out, "w") as handle:
                handle.write(f"{state['n']} {time.monotonic() - wall0} {_cpu() - cpu0}\n")
            os._exit(0)

    return apply


def run_faust_consumer(total: int, out: str, loop: str) -> None:
    """The child: a real consumer app whose store only counts; writes its figures to `out`.
    `loop`: "faust" puts back faust's own fetch loop (a guard per message), "ours" is the
    loop without uvloop, "ours+uvloop" what `tongyuan run` runs."""
    from services.common.faust_consumer import create_consumer, run_worker
    from services.common.projection import InThread

    if loop == "faust":
        from faust.transport.consumer import Consumer

        from services.common.faust_patches import PromptConsumer

        PromptConsumer._drain_messages = Consumer._drain_messages  # type: ignore[method-assign]  # the baseline: faust's own loop
    if loop == "ours+uvloop":
        from services.common.faust_consumer import use_fast_event_loop

        use_fast_event_loop()  # what `tongyuan run` does
    from services.common.logging import configure_logging
    from services.common.settings import Settings

    configure_logging("warning", json=True)
    app = create_consumer(f"bench-consumer-{os.getpid()}", InThread(counting_store(total, out)), Settings(), heartbeat=lambda stats: None)
    sys.argv = [sys.argv[0]]
    run_worker(app)


def _run_child(bootstrap: str, total: int, loop: str) -> tuple[int, float, float] | None:
    out = os.path.join(tempfile.mkdtemp(prefix="tongyuan-bench-consumer-"), "figures")
    env = dict(os.environ, TONGYUAN_KAFKA_BOOTSTRAP=bootstrap, TONGYUAN_VAR_DIR=tempfile.mkdtemp(prefix="tongyuan-bench-consumer-"))
    child = subprocess.run([sys.executable, "-m", "bench.consumer", "--child", str(total), out, loop], cwd=ROOT, env=env, timeout=600, capture_output=True)
    if not os.path.exists(out):
        print(child.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
        return None
    n, wall, cpu = open(out).read().split()
    return int(n), float(wall), float(cpu)


def published_events(count: int) -> list[tuple[bytes, bytes]]:
    """Distinct published events as the relay sends them: drafts through the gate's outbox."""
    from services.common.settings import Settings
    from services.publisher.app import bootstrap, directory_provider
    from services.publisher.gate.inbound import handle_cms_batch

    publisher = bootstrap(Settings(var_dir=tempfile.mkdtemp(prefix="tongyuan-bench-consumer-")))
    directory = directory_provider(publisher)
    payloads = Payloads()
    for start in range(0, 1000, 500):
        handle_cms_batch([payloads.cms_event("consumer", start + i)[1] for i in range(500)], publisher=publisher, directory=directory())
    rows = [(key.encode(), payload.encode()) for _, topic, key, payload in publisher.unsent(2000) if "publication.published" in payload[:300]]
    return [rows[i % len(rows)] for i in range(count)]


def baseline(bootstrap: str, topic: str, total: int) -> tuple[float, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> tuple[float, float]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            wall, cpu, received = time.monotonic(), _cpu(), 0
            while received < total:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                received += sum(len(records) for records in batches.values())
            return time.monotonic() - wall, _cpu() - cpu
        finally:
            await consumer.stop()

    return asyncio.run(read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consumer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--child", nargs=3, metavar=("TOTAL", "OUT", "LOOP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_faust_consumer(int(args.child[0]), args.child[1], args.child[2])
        return 0
    from kafka import KafkaProducer

    from contracts.events import BULK_EVENTS_PER_MESSAGE, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK
    from services.common.broker import EmbeddedBroker, free_port
    from services.common.kafka import ensure_topics

    log(f"making {args.events:,} published events through the gate")
    events = published_events(args.events)
    broker = EmbeddedBroker(port=free_port()).start()
    try:
        ensure_topics(broker.bootstrap, PARTITIONS)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, batch_size=256 * 1024)
        for key, value in events:
            producer.send(TOPIC_PUBLICATIONS, key=key, value=value)
        producer.flush()
        producer.close()
        log("bare aiokafka consumer (baseline)")
        base_wall, base_cpu = baseline(broker.bootstrap, TOPIC_PUBLICATIONS, len(events))
        figures = {}
        for loop in ("faust", "ours", "ours+uvloop"):
            log(f"the consuming loop with a store that does nothing ({loop} fetch loop)")
            figures[loop] = _run_child(broker.bootstrap, len(events), loop)
    finally:
        broker.stop()
    # The same events as the bulk lane carries them: what the per-message part of the cost is.
    log(f"the same events in CloudEvents batches of {BULK_EVENTS_PER_MESSAGE} on the bulk lane (ours+uvloop)")
    broker = EmbeddedBroker(port=free_port()).start()
    try:
        ensure_topics(broker.bootstrap, PARTITIONS)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
        for start in range(0, len(events), BULK_EVENTS_PER_MESSAGE):
            producer.send(TOPIC_PUBLICATIONS_BULK, value=b"[" + b",".join(value for _, value in events[start : start + BULK_EVENTS_PER_MESSAGE]) + b"]")
        producer.flush()
        producer.close()
        figures["batched"] = _run_child(broker.bootstrap, len(events), "ours+uvloop")
    finally:
        broker.stop()
    if None in figures.values():
        return 1
    bare = base_cpu / len(events) * 1e6
    print(f"events: {len(events):,} published events ({sum(len(v) for _, v in events) / len(events):,.0f} B mean) on {PARTITIONS} partitions")
    print(f"  bare aiokafka consumer (baseline)      {bare:7.1f} µs CPU/event   ({len(events) / base_wall:,.0f} events/s)")
    for loop, label in (
        ("faust", "faust's fetch loop (guard per message)"),
        ("ours", "a guard per fetched batch"),
        ("ours+uvloop", "… and uvloop (as `tongyuan run`)"),
    ):
        n, wall, cpu = figures[loop]
        print(f"  {label:<38} {cpu / n * 1e6:7.1f} µs CPU/event   ({n / wall:,.0f} events/s)   {cpu / n * 1e6 / bare:5.1f}× baseline")
    n, wall, cpu = figures["batched"]
    single = figures["ours+uvloop"][2] / figures["ours+uvloop"][0] * 1e6
    label = f"… in batches of {BULK_EVENTS_PER_MESSAGE} (the bulk lane)"
    print(f"  {label:<38} {cpu / n * 1e6:7.1f} µs CPU/event   ({n / wall:,.0f} events/s)   {cpu / n * 1e6 / bare:5.1f}× baseline")
    print("  (all: a faust app, noack_take, parsing and DLQ checks, an ack per message; the store does nothing)")
    print(f"  per-message part of a consumer's cost: {single - cpu / n * 1e6:,.1f} µs of {single:,.1f} µs per event ({(single - cpu / n * 1e6) / single:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
