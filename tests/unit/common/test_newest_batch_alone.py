"""Against Tansu the relay's producer keeps the newest record batch of every partition to one
record (Tansu reports a partition's end from its newest batch), in order within a partition."""

from kafka.partitioner.default import murmur2

from services.common.kafka import NewestBatchAlone


class Acked:
    def __init__(self, offset):
        self.offset = offset

    def get(self, timeout=None):
        return self


class Inner:
    """Records what was sent between flushes: each flush closes the batches in hand."""

    def __init__(self, fail_on=None):
        self.batches, self.pending, self.fail_on = [], [], fail_on

    def partitions_for(self, topic):
        return {0, 1, 2, 3}

    def send(self, topic, *, key, value, headers, partition):
        if value == self.fail_on:
            raise ValueError("record too large")
        self.pending.append((topic, partition, value))
        return Acked(len(self.pending))

    def flush(self, timeout=None):
        if self.pending:
            self.batches.append(self.pending)
        self.pending = []


def partition_of(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % 4


def test_the_last_record_of_each_partition_goes_after_the_rest_and_alone():
    inner = Inner()
    producer = NewestBatchAlone(inner)
    keys = [b"p1", b"p2", b"p1", b"p3", b"p1", b"p2"]
    futures = [producer.send("t", key=key, value=f"v{n}".encode()) for n, key in enumerate(keys)]
    producer.flush()
    first, last = inner.batches
    per_partition = {}
    for _, partition, value in first + last:
        per_partition.setdefault(partition, []).append(value)
    expected = {}
    for n, key in enumerate(keys):
        expected.setdefault(partition_of(key), []).append(f"v{n}".encode())
    assert per_partition == expected, "order within a partition is kept"
    assert sorted(p for _, p, _ in last) == sorted(expected), "one record of each partition in the second step"
    assert all(value == expected[p][-1] for _, p, value in last), "and it is that partition's last"
    assert all(f.get() for f in futures)


def test_keyless_records_go_round_the_partitions_and_a_get_flushes():
    inner = Inner()
    producer = NewestBatchAlone(inner)
    sent = producer.send("bulk", key=None, value=b"batch")
    assert inner.batches == []
    assert sent.get().offset == 1 and inner.batches == [[("bulk", 1, b"batch")]]
    producer.send("bulk", key=None, value=b"next").get()
    assert inner.batches[-1] == [("bulk", 2, b"next")]


def test_a_record_the_producer_refuses_fails_its_own_future():
    producer = NewestBatchAlone(Inner(fail_on=b"huge"))
    refused, fine = producer.send("t", key=b"a", value=b"huge"), producer.send("t", key=b"b", value=b"ok")
    producer.flush()
    assert fine.get()
    try:
        refused.get()
    except ValueError as exc:
        assert "too large" in str(exc)
    else:
        raise AssertionError("the refused record's future did not fail")
