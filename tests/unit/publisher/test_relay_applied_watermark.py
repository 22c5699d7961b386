"""After a clean stop every consumer group had applied the outbox through some row: a broker
that lost its log is then sent only the rows after it (and each scope's catalog in force),
not the whole outbox again."""

import json

import pytest

from contracts.events import TOPIC_CATALOG, TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK
from services.publisher.relay.broker_log import LogAtStop, applied_watermark
from services.publisher.relay.outbox import OutboxRelay
from tests.conftest import publisher_on, store_backends
from tests.unit.publisher.test_relay_broker_log import NEW, OLD, Log, outbox_event_ids, publish

GROUPS = ("tongyuan-column", "tongyuan-indexer")
ENDS = {(TOPIC_PUBLICATIONS, 0): 7, (TOPIC_PUBLICATIONS, 1): 0, (TOPIC_PUBLICATIONS_BULK, 0): 3, (TOPIC_CATALOG, 0): 2}
CAUGHT_UP = {
    "tongyuan-column": {(TOPIC_PUBLICATIONS, 0): 7, (TOPIC_PUBLICATIONS_BULK, 0): 3, (TOPIC_CATALOG, 0): 2},
    "tongyuan-indexer": {(TOPIC_PUBLICATIONS, 0): 7, (TOPIC_PUBLICATIONS_BULK, 0): 3},  # reads no catalog
}


@pytest.fixture(params=store_backends())
def publisher(request, tmp_path, directory):
    """On SQLite, and on PostgreSQL when TONGYUAN_TEST_PG_URL is set: the re-emission is one
    UPDATE with a grouped subquery."""
    with publisher_on(request.param, tmp_path) as publisher:
        publisher.directory = directory
        yield publisher


def watermark(committed=CAUGHT_UP, *, ids=OLD, known=OLD, dead_letters=0, requested=False, sent_through=12):
    return applied_watermark(LogAtStop(ids, ENDS, committed, dead_letters), known_topic_ids=known, reemission_requested=requested, sent_through=sent_through)[0]


def test_every_group_at_every_end_of_the_relays_log_has_applied_every_row_sent():
    assert watermark() == 12
    assert watermark(sent_through=9) == 9, "rows after the first unsent one are not counted"


@pytest.mark.parametrize(
    "why, changes",
    [
        ("a group behind on a lane", {"committed": {**CAUGHT_UP, "tongyuan-indexer": {(TOPIC_PUBLICATIONS, 0): 7, (TOPIC_PUBLICATIONS_BULK, 0): 2}}}),
        ("a group that committed nothing", {"committed": {**CAUGHT_UP, "tongyuan-embed": {}}}),
        ("a catalog reader behind", {"committed": {**CAUGHT_UP, "tongyuan-column": {**CAUGHT_UP["tongyuan-column"], (TOPIC_CATALOG, 0): 1}}}),
        ("another log than the relay's", {"ids": NEW}),
        ("no log known to the relay", {"known": {}}),
        ("a re-emission still owed", {"requested": True}),
        ("a dead letter the log would take with it", {"dead_letters": 1}),
    ],
)
def test_no_watermark_when_a_group_may_not_have_applied_a_row(why, changes):
    assert watermark(**changes) is None, why


def test_a_new_log_gets_only_the_rows_after_the_watermark(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, check_every=0)
    publish(publisher, 5)
    assert relay.relay_once() == 5
    publisher.record_applied_through(publisher.sent_through())  # a clean stop
    publish(publisher, 2, start=5)
    assert publisher.sent_through() == 5, "the first unsent row bounds it"

    log.lose_everything()
    assert relay.relay_once() == 2
    assert log.event_ids() == outbox_event_ids(publisher)[5:], "the applied rows are not sent again"
    assert publisher.outbox_backlog() == 0 and not publisher.reemission_pending() and publisher.known_topic_ids() == NEW


def test_without_a_watermark_a_new_log_gets_everything(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, check_every=0)
    publish(publisher, 3)
    assert relay.relay_once() == 3
    log.lose_everything()
    assert relay.relay_once() == 3 and log.event_ids() == outbox_event_ids(publisher)


def test_each_scopes_newest_catalog_goes_to_a_new_log_whatever_was_applied(publisher):
    log = Log()
    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, check_every=0)
    with publisher.transaction() as store:
        for event_id, scope in [("standard-1", "standard"), ("county-1", "430102"), ("standard-2", "standard")]:
            store.add_to_outbox(event_id=event_id, topic=TOPIC_CATALOG, key=scope, payload=json.dumps({"id": event_id}))
    publish(publisher, 2)
    while relay.relay_once():
        pass
    publisher.record_applied_through(publisher.sent_through())

    log.lose_everything()
    assert relay.relay_once() == 2
    assert log.event_ids(TOPIC_CATALOG) == ["county-1", "standard-2"] and log.event_ids() == []


def test_the_watermark_only_rises(publisher):
    publisher.record_applied_through(7)
    publisher.record_applied_through(3)
    assert publisher.applied_through() == 7


def test_an_idle_relay_records_the_watermark_now_and_then(publisher):
    import threading

    log, recorded, stop = Log(), [], threading.Event()

    def record():
        recorded.append(publisher.outbox_backlog())
        if len(recorded) == 2:
            stop.set()

    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, applied_watermark=record, watermark_every=0.01)
    publish(publisher, 3)
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"interval": 0.005})
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and recorded == [0, 0], "only once the outbox is sent, and again later"


def test_a_relay_whose_watermark_cannot_be_read_keeps_relaying(publisher):
    log = Log()

    def broker_away():
        raise ConnectionError("no broker")

    relay = OutboxRelay(publisher, log.producer, topic_ids=lambda: log.ids, applied_watermark=broker_away, watermark_every=0)
    relay._record_watermark_if_due()
    publish(publisher, 1)
    assert relay.relay_once() == 1 and publisher.applied_through() == 0
