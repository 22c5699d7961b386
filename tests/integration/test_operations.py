"""Operating the pipeline: a consumer crash, its dead letters replayed, and `tongyuan verify`."""

import json

from contracts.events import dlq_topic
from tests.integration.conftest import wait_for
from tests.integration.test_pipeline import body, canonical_events, unique


def test_dead_letters_replay_into_the_store_and_everything_verifies(stack):
    # Stopped, not killed: the replay is the point here, crashes are test_faults'.
    stack.stop("column")
    try:
        tag = unique("dlq")
        pid = stack.publish(body(f"死信重放 {tag}"))["publication_id"]
        wait_for(lambda: stack.search_ids(tag) == [pid], what="the publication in search")
        assert stack.column.entry(pid) is None  # the column consumer is down
        # The column group had refused this event (say, a bug since fixed): it sits in its DLQ.
        (event,) = canonical_events(stack, pid)
        stack.produce(dlq_topic("tongyuan-column"), json.dumps(event).encode(), key=pid.encode())
        listed = stack.cli("dlq", "list", "--group", "tongyuan-column")
        assert listed.exit_code == 0 and f"{len([line for line in listed.output.splitlines() if '/' in line])} dead letter" in listed.output
        replay = stack.cli("dlq", "replay", "--group", "tongyuan-column")
        assert "applied" in replay.output
        assert stack.column.entry(pid).version == 1 and stack.client.get(f"/publications/{pid}").status_code == 200
    finally:
        stack.start("column")
    # Restarted, the consumer catches up from its committed offsets; the redelivered event is a no-op.
    # Every group on every topic it reads, bulk lane included, before verify compares the stores.
    stack.wait_caught_up()
    verified = stack.cli("verify")
    assert verified.exit_code == 0, verified.output
    assert "0 difference(s)" in verified.output
