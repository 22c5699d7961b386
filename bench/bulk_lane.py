"""`make bench-bulk-lane`: the bulk lane's two record formats, A/B in one run.

- batched: the format the relay used to send, CloudEvents batches of up to 100 events (a JSON
  array, `application/cloudevents-batch+json`), which no CloudEvents SDK reads;
- single: one structured CloudEvent per record (`application/cloudevents+json`), what the
  CloudEvents Kafka binding defines and what the relay sends now.

N real `publication.published` events made by the gate are, for each format in turn (alternating,
ROUNDS times, a fresh embedded broker each time):

1. packed and produced as the relay does it (`messages_of`, its idempotent LZ4 producer, flush,
   every ack awaited): events/s and CPU µs/event of the relay side;
2. read by one consumer running the consuming loop every Tongyuan consumer runs (faust app,
   `noack_take`, `process_batch`, uvloop) with a store that does nothing, in a process of its
   own: events/s and CPU µs/event from its first event to its last.

The machine is shared and noisy: read the ratios of each round, not the absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.consumer import PARTITIONS, _cpu, _run_child, published_events
from bench.pipeline import log

BATCH_EVENTS = 100  # what the relay packed into one bulk-lane record before
BATCH_BYTES = 512 * 1024


def batched_messages(rows: list[tuple[int, str, str, str]]):
    """The relay's former bulk-lane packing, kept here as the A of the A/B."""
    from services.publisher.relay import Message

    headers = [("content-type", b"application/cloudevents-batch+json")]
    messages, pending, size = [], [], 0
    for row_id, topic, _key, payload in rows:
        encoded = payload.encode()
        if pending and (len(pending) == BATCH_EVENTS or size + len(encoded) > BATCH_BYTES):
            messages.append(Message(topic, None, b"[" + b",".join(p for _, p in pending) + b"]", headers, [r for r, _ in pending]))
            pending, size = [], 0
        pending.append((row_id, encoded))
        size += len(encoded) + 1
    if pending:
        messages.append(Message(rows[-1][1], None, b"[" + b",".join(p for _, p in pending) + b"]", headers, [r for r, _ in pending]))
    return messages


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


def one_round(rows, pack) -> dict:
    from services.common.broker import EmbeddedBroker, free_port
    from services.common.kafka import ensure_topics

    broker = EmbeddedBroker(port=free_port()).start()
    try:
        ensure_topics(broker.bootstrap, PARTITIONS)
        relay_wall, relay_cpu = relay(broker.bootstrap, rows, pack)
        consumed = _run_child(broker.bootstrap, len(rows), "ours+uvloop")
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
    args = parser.parse_args(argv)

    from contracts.events import TOPIC_PUBLICATIONS_BULK
    from services.publisher.relay import messages_of

    log(f"making {args.events:,} published events through the gate")
    rows = [(n, TOPIC_PUBLICATIONS_BULK, key.decode(), value.decode()) for n, (key, value) in enumerate(published_events(args.events))]
    formats = {"batched": batched_messages, "single": messages_of}
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
