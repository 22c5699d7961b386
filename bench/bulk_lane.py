"""`make bench-bulk-lane`: the bulk lane's two possible record formats, A/B in one run.

- batched: what the relay sends, CloudEvents batches of up to 100 events a record (the JSON batch
  format, `application/cloudevents-batch+json`), which SDKs read through contracts/bulk.py;
- single: one structured CloudEvent per record (`application/cloudevents+json`), what the
  CloudEvents Kafka binding defines and SDKs read as it is.

N real `publication.published` events made by the gate are, for each format in turn (alternating,
ROUNDS times, a fresh embedded broker each time):

1. packed and produced as the relay does it (its idempotent LZ4 producer, flush, every ack
   awaited): events/s and CPU µs/event of the relay side;
2. read by one consumer running the consuming loop every Tongyuan consumer runs (faust app,
   `noack_take`, `process_batch`, uvloop) with a store that does nothing, in a process of its
   own: events/s and CPU µs/event from its first event to its last.

The machine is shared and noisy: read the ratios of each round, not the absolute figures. The
whole migration A/B is `make bench-migration` run on each format in turn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.consumer import PARTITIONS, _cpu, counting_store, published_events
from bench.pipeline import ROOT, log

# Records a consumer takes per batch on the bulk lane: 2,000 events either way (the default
# consumer_bulk_batch_size), i.e. 20 batch records or 2,000 single ones.
TAKE_EVENTS = 2_000


def single_messages(rows: list[tuple[int, str, str, str]]):
    """One structured CloudEvent a record, keyed by publication: the B of the A/B."""
    from services.publisher.relay.outbox import Message

    headers = [("content-type", b"application/cloudevents+json")]
    return [Message(topic, key.encode(), payload.encode(), headers, [row_id]) for row_id, topic, key, payload in rows]


def relay(bootstrap: str, rows, pack) -> tuple[float, float]:
    """Wall and CPU seconds to pack, send and have every record acked, as relay_once does."""
    from services.common.kafka import idempotent_producer

    producer = idempotent_producer(bootstrap)
    try:
        wall, cpu = time.monotonic(), _cpu()
        futures = [producer.send(m.topic, key=m.key, value=m.value, headers=m.headers) for m in pack(rows)]
        producer.flush(timeout=120)
        for future in futures:
            future.get(timeout=120)
        return time.monotonic() - wall, _cpu() - cpu
    finally:
        producer.close()


def run_consumer(total: int, out: str, events_per_record: int) -> None:
    """The child: the consuming loop with a store that only counts; writes its figures to `out`."""
    from contracts.events import BULK_EVENTS_PER_MESSAGE
    from services.common.faust_consumer import create_consumer, run_worker, use_fast_event_loop
    from services.common.logging import configure_logging
    from services.common.projection import InThread
    from services.common.settings import Settings

    use_fast_event_loop()
    configure_logging("warning", json=True)
    # The agent takes bulk_batch_size // BULK_EVENTS_PER_MESSAGE records: 2,000 events either way.
    records = TAKE_EVENTS // events_per_record
    app = create_consumer(
        f"bench-bulk-{os.getpid()}",
        InThread(counting_store(total, out)),
        Settings(),
        heartbeat=lambda stats: None,
        bulk_batch_size=records * BULK_EVENTS_PER_MESSAGE,
    )
    sys.argv = [sys.argv[0]]
    run_worker(app)


def _consume(bootstrap: str, total: int, events_per_record: int) -> tuple[int, float, float] | None:
    out = os.path.join(tempfile.mkdtemp(prefix="tongyuan-bench-bulk-"), "figures")
    env = dict(os.environ, TONGYUAN_KAFKA_BOOTSTRAP=bootstrap, TONGYUAN_VAR_DIR=tempfile.mkdtemp(prefix="tongyuan-bench-bulk-"))
    child = subprocess.run(
        [sys.executable, "-m", "bench.bulk_lane", "--child", str(total), out, str(events_per_record)], cwd=ROOT, env=env, timeout=600, capture_output=True
    )
    if not os.path.exists(out):
        print(child.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
        return None
    n, wall, cpu = open(out).read().split()
    return int(n), float(wall), float(cpu)


def one_round(rows, pack) -> dict:
    from services.common.broker import EmbeddedBroker, free_port
    from services.common.kafka import ensure_topics

    broker = EmbeddedBroker(port=free_port()).start()
    try:
        ensure_topics(broker.bootstrap, PARTITIONS)
        relay_wall, relay_cpu = relay(broker.bootstrap, rows, pack)
        per_record = max(len(m.row_ids) for m in pack(rows[:1000]))
        consumed = _consume(broker.bootstrap, len(rows), per_record)
    finally:
        broker.stop()
    if consumed is None:
        raise SystemExit("the consumer did not finish")
    n, wall, cpu = consumed
    return {"relay/s": len(rows) / relay_wall, "relay µs": relay_cpu / len(rows) * 1e6, "consumer/s": n / wall, "consumer µs": cpu / n * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_lane", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("TOTAL", "OUT", "EVENTS_PER_RECORD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_consumer(int(args.child[0]), args.child[1], int(args.child[2]))
        return 0

    from contracts.events import TOPIC_PUBLICATIONS_BULK
    from services.publisher.relay.outbox import messages_of

    log(f"making {args.events:,} published events through the gate")
    rows = [(n, TOPIC_PUBLICATIONS_BULK, key.decode(), value.decode()) for n, (key, value) in enumerate(published_events(args.events))]
    formats = {"batched": messages_of, "single": single_messages}
    figures: dict[str, list[dict]] = {name: [] for name in formats}
    for round_ in range(args.rounds):
        order = list(formats) if round_ % 2 == 0 else list(reversed(formats))  # alternate who goes first
        for name in order:
            log(f"round {round_ + 1}/{args.rounds}: {name}")
            figures[name].append(one_round(rows, formats[name]))
    print(f"{args.events:,} published events ({statistics.mean(len(r[3]) for r in rows):,.0f} B mean), {PARTITIONS} partitions, LZ4, one consumer")
    print(f"{'round':<6} {'format':<8} {'relay ev/s':>11} {'relay µs/ev':>12} {'consumer ev/s':>14} {'consumer µs/ev':>15}")
    for round_ in range(args.rounds):
        for name in formats:
            f = figures[name][round_]
            print(f"{round_ + 1:<6} {name:<8} {f['relay/s']:>11,.0f} {f['relay µs']:>12.1f} {f['consumer/s']:>14,.0f} {f['consumer µs']:>15.1f}")
    print("single ÷ batched, per round (events/s: above 1 is faster; CPU: below 1 is cheaper):")
    for round_ in range(args.rounds):
        a, b = figures["batched"][round_], figures["single"][round_]
        print(
            f"  round {round_ + 1}: relay {b['relay/s'] / a['relay/s']:.2f}× ev/s, {b['relay µs'] / a['relay µs']:.2f}× CPU;"
            f"  consumer {b['consumer/s'] / a['consumer/s']:.2f}× ev/s, {b['consumer µs'] / a['consumer µs']:.2f}× CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
