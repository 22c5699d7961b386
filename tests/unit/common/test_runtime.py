"""The collector settings our long-running processes take once started (services/common/runtime.py)."""

from __future__ import annotations

import gc

import pytest

from services.common import runtime


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_startup_state_is_frozen_and_young_collections_are_rarer(restored_collector):
    kept_for_life = [{"edition": n} for n in range(1_000)]
    runtime.settle_garbage_collector()
    assert gc.get_freeze_count() >= len(kept_for_life)
    assert gc.get_threshold() == (runtime.YOUNG_THRESHOLD, runtime.MIDDLE_THRESHOLD, runtime.OLD_THRESHOLD)


def test_a_batch_freed_by_reference_counting_never_meets_the_collector(restored_collector):
    runtime.settle_garbage_collector()
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        for _ in range(20):
            batch = [{"publication_id": f"p{n}", "placements": [{"region": "430102"}]} for n in range(500)]
            del batch
    finally:
        gc.callbacks.remove(count)
    # 20 batches of 1,000 containers each, at the default threshold of 700: ~28 collections.
    assert collections == []


def test_cyclic_garbage_is_still_collected(restored_collector):
    runtime.settle_garbage_collector()

    class Node:
        pass

    first, second = Node(), Node()
    first.other, second.other = second, first
    del first, second
    assert gc.collect() >= 2
