"""What the embed routes keep between polls: rules by their counter, bodies by ETag."""

from __future__ import annotations

from services.embed.caching import RenderCache, Renders
from services.embed.store import ScopeState


class CountingStore:
    def __init__(self):
        self.reads = 0

    def rules(self):
        self.reads += 1
        return f"rules #{self.reads}"


def state(rules_version: int) -> ScopeState:
    return ScopeState(scope="430102001", version=1, changed_at=None, rules_version=rules_version, rules_changed_at=None)


def test_the_rules_are_read_once_per_counter_and_again_when_it_moves():
    store, renders = CountingStore(), Renders()
    assert renders.rules_at(store, state(1)) == renders.rules_at(store, state(1)) == "rules #1"
    assert renders.rules_at(store, state(2)) == "rules #2" and store.reads == 2


def test_the_render_cache_keeps_the_most_recently_used_bodies():
    cache = RenderCache(2)
    cache.put("a", b"A")
    cache.put("b", b"B")
    assert cache.get("a") == b"A"
    cache.put("c", b"C")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"A", None, b"C")


def test_a_cache_of_size_zero_keeps_nothing():
    cache = RenderCache(0)
    cache.put("a", b"A")
    assert cache.get("a") is None
