"""What keeping the newest batch of each partition to one record costs the relay against Tansu
(services.common.kafka.NewestBatchAlone).

`python -m bench.relay_batches [--rows N] [--bulk-rows M] [--rounds R]`: an embedded broker, a
publisher database with N canonical outbox rows (a clerk's publication, ~2 KB) and M bulk-lane
rows (100 to a message), drained by the real relay with plain batches (what Kafka gets) and
with the newest batch of each partition alone (what Tansu gets), the two alternating, R rounds
each. Prints rows/s per round and the ratio of the medians."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from contracts.events import TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK
from services.common.broker import EmbeddedBroker, free_port
from services.common.db import create_store_engine
from services.common.kafka import ensure_topics, idempotent_producer
from services.publisher.relay.outbox import RELAY_TOPICS, OutboxRelay
from services.publisher.store import Publisher

BODY = "<p>申请人应当如实提供家庭人口、收入和财产状况等证明材料，并签署授权核查家庭经济状况声明。</p>" * 20


def fill(publisher: Publisher, round_no: int, rows: int, bulk_rows: int) -> None:
    with publisher.transaction() as store:
        for n in range(rows):
            event_id = f"r{round_no}-c{n}"
            store.add_to_outbox(
                event_id=event_id, topic=TOPIC_PUBLICATIONS, key=f"p{round_no}-{n}", payload=json.dumps({"id": event_id, "body_html": BODY}, ensure_ascii=False)
            )
        for n in range(bulk_rows):
            event_id = f"r{round_no}-b{n}"
            store.add_to_outbox(
                event_id=event_id,
                topic=TOPIC_PUBLICATIONS_BULK,
                key=f"m{round_no}-{n}",
                payload=json.dumps({"id": event_id, "body_html": BODY}, ensure_ascii=False),
            )


def drain(publisher: Publisher, bootstrap: str, newest_alone: bool) -> float:
    relay = OutboxRelay(publisher, lambda: idempotent_producer(bootstrap, newest_batch_alone=newest_alone))
    started = time.perf_counter()
    while relay.relay_once():
        pass
    took = time.perf_counter() - started
    relay._discard_producer()
    assert publisher.outbox_backlog() == 0
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--bulk-rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "broker.log").start()
        try:
            ensure_topics(broker.bootstrap, 4, list(RELAY_TOPICS))
            publisher = Publisher(create_store_engine(f"sqlite:///{Path(tmp) / 'publisher.db'}"))
            publisher.create_tables()
            rows = args.rows + args.bulk_rows
            times: dict[str, list[float]] = {"batched": [], "newest alone": []}
            for round_no in range(args.rounds * 2):
                # Alternating, the first of each pair swapped every round: neither gets the warm broker.
                name = ("batched", "newest alone")[(round_no + round_no // 2) % 2]
                fill(publisher, round_no, args.rows, args.bulk_rows)
                took = drain(publisher, broker.bootstrap, name == "newest alone")
                times[name].append(took)
                print(f"round {round_no + 1}: {name:14} {rows / took:8.0f} rows/s ({took:.2f} s)")
            batched, single = statistics.median(times["batched"]), statistics.median(times["newest alone"])
            print(f"median: batched {rows / batched:.0f} rows/s, newest alone {rows / single:.0f} rows/s; newest alone takes {single / batched:.2f}× as long")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
