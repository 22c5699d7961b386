"""The broker stops while clerks publish, then starts again (last: memory storage loses every
topic, so this runs after the tests that read topics). Nothing is lost, nothing duplicated."""

import time

from services.common.kafka import ensure_topics
from services.publisher.app import bootstrap
from tests.integration.conftest import wait_for
from tests.integration.test_faults import listed_once, publish_burst
from tests.integration.test_pipeline import unique


def test_the_outbox_holds_events_while_the_broker_is_down(stack):
    tag = unique("broker")
    before = publish_burst(stack, tag, 20)
    wait_for(lambda: stack.search(q=tag)["total"] == len(before), timeout=60)
    stack.broker.stop()
    during = publish_burst(stack, tag, 30)  # the gate keeps accepting: the outbox holds them
    publisher = bootstrap(stack.settings, load_reference=False)
    time.sleep(1)
    assert publisher.outbox_backlog() >= len(during)
    stack.broker.start()  # the same port, and (memory storage) no topics, no offsets
    ensure_topics(stack.bootstrap, stack.settings.topic_partitions)
    everything = before + during
    wait_for(lambda: stack.search(q=tag, per_page=100)["total"] == len(everything), timeout=180, what="the events held in the outbox to reach search")
    wait_for(lambda: publisher.outbox_backlog() == 0, timeout=60, what="the outbox to drain")
    wait_for(lambda: len([i for i in stack.column.listing("430102001", per_page=1000)[1] if tag in i.title]) == len(everything), timeout=120)
    listed_once(stack, tag, everything)
    verified = stack.cli("verify")
    assert verified.exit_code == 0 and "0 difference(s)" in verified.output, verified.output
