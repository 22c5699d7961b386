"""One contract for every Projection (services/common/projection.py): the version and tombstone
rule as the public sees it, whatever the store.

How an adapter runs it: its test module subclasses `ProjectionContract` and provides a
`subject` fixture, a `Subject` built on the `loop` fixture's event loop (an async client such
as AsyncElasticsearch belongs to the loop it first ran in): the projection, what the public
can see of it, and the version it holds of a publication. An adapter that refuses some events
for good also subclasses `RefusalContract` and gives its subject a way to make it refuse one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from contracts.events import PublishedEvent
from services.common.projection import Projection, PublicationEvent
from tests.factories import place, published, withdrawn

# Filed where every adapter shows it: a township of 长沙 (4301) under 社会救助 (D14), which the
# embed rules count as 重大民生信息 by default.
TOWNSHIP, OTHER_TOWNSHIP = "430102001", "430104001"


@dataclass
class Subject:
    projection: Projection[PublicationEvent]
    # What the public can see: (publication id, title) for each item shown, in any order; an
    # item shown twice would be listed twice.
    visible: Callable[[], Awaitable[list[tuple[str, str]]]]
    # The version held of a publication, tombstones included; None if never seen.
    version_of: Callable[[str], Awaitable[int | None]]
    # Makes the adapter refuse this event for good (RefusalContract).
    refuse: Callable[[PublicationEvent], None] | None = None


@dataclass
class Driver:
    """A Subject driven from plain test code: every call runs in the test's one loop."""

    subject: Subject
    loop: asyncio.AbstractEventLoop

    def apply(self, events: list[PublicationEvent]) -> list[tuple[PublicationEvent, str]]:
        return self.loop.run_until_complete(self.subject.projection.apply(events))

    def visible(self) -> list[tuple[str, str]]:
        return sorted(self.loop.run_until_complete(self.subject.visible()))

    def version_of(self, publication_id: str) -> int | None:
        return self.loop.run_until_complete(self.subject.version_of(publication_id))

    def healthy(self) -> bool:
        return self.loop.run_until_complete(self.subject.projection.healthy())


class ProjectionContract:
    @pytest.fixture
    def loop(self) -> Iterator[asyncio.AbstractEventLoop]:
        loop = asyncio.new_event_loop()
        yield loop
        loop.close()

    @pytest.fixture
    def subject(self, loop: asyncio.AbstractEventLoop) -> Subject:
        raise NotImplementedError("an adapter's test class provides the subject")

    @pytest.fixture
    def driver(self, subject: Subject, loop: asyncio.AbstractEventLoop) -> Driver:
        return Driver(subject, loop)

    def test_a_publication_is_visible(self, driver: Driver) -> None:
        assert driver.apply([published("a", title="低保标准调整公告")]) == []
        assert driver.visible() == [("a", "低保标准调整公告")]
        assert driver.version_of("a") == 1
        assert driver.healthy()

    def test_a_duplicate_or_a_replay_of_the_same_version_changes_nothing(self, driver: Driver) -> None:
        event = published("a", title="第一版")
        driver.apply([event])
        driver.apply([event, event])
        driver.apply([published("a", title="同版本重投")])  # a replay: the same version, a new event id
        assert driver.visible() == [("a", "第一版")]
        assert driver.version_of("a") == 1

    def test_an_older_version_arriving_late_is_ignored(self, driver: Driver) -> None:
        driver.apply([published("a", 2, title="第二版")])
        driver.apply([published("a", 1, title="第一版")])
        assert driver.visible() == [("a", "第二版")]
        assert driver.version_of("a") == 2

    def test_within_a_batch_the_newest_version_wins_whatever_the_order(self, driver: Driver) -> None:
        driver.apply([published("a", 3, title="第三版"), published("a", 1, title="第一版"), published("a", 2, title="第二版"), published("b", 1, title="别的")])
        assert driver.visible() == [("a", "第三版"), ("b", "别的")]
        assert driver.version_of("a") == 3

    def test_a_revision_replaces_the_publication(self, driver: Driver) -> None:
        driver.apply([published("a", 1, title="旧标题", placements=[place(TOWNSHIP)])])
        driver.apply([published("a", 2, title="新标题", placements=[place(OTHER_TOWNSHIP, "望月湖街道")])])
        assert driver.visible() == [("a", "新标题")]

    def test_a_withdrawal_removes_it_and_a_late_older_publish_does_not_bring_it_back(self, driver: Driver) -> None:
        driver.apply([published("a", 1), published("b", 1, title="留下的")])
        driver.apply([withdrawn("a", 2)])
        assert driver.visible() == [("b", "留下的")]
        assert driver.version_of("a") == 2  # the tombstone
        driver.apply([published("a", 1, title="迟到的旧版本")])
        assert driver.visible() == [("b", "留下的")]
        assert driver.version_of("a") == 2

    def test_a_withdrawal_seen_before_its_publication_still_wins(self, driver: Driver) -> None:
        driver.apply([withdrawn("a", 5)])
        driver.apply([published("a", 4)])
        assert driver.visible() == []
        assert driver.version_of("a") == 5

    def test_a_withdrawal_and_an_older_publish_in_one_batch(self, driver: Driver) -> None:
        driver.apply([published("a", 1), withdrawn("a", 2), published("a", 1, title="重投")])
        assert driver.visible() == []
        assert driver.version_of("a") == 2

    def test_a_higher_version_after_a_withdrawal_brings_it_back(self, driver: Driver) -> None:
        driver.apply([published("a", 1)])
        driver.apply([withdrawn("a", 2)])
        driver.apply([published("a", 3, title="重新发布")])
        assert driver.visible() == [("a", "重新发布")]
        assert driver.version_of("a") == 3

    def test_valid_events_are_not_refused(self, driver: Driver) -> None:
        assert driver.apply([published("a"), withdrawn("b", 2)]) == []
        assert driver.version_of("unknown") is None


class RefusalContract:
    """For adapters that refuse some events for good (a mapping error): refused, not raised."""

    def test_what_it_refuses_is_returned_not_raised_and_the_rest_is_applied(self, driver: Driver) -> None:
        bad, good = published("bad", title="坏的"), published("good", title="好的")
        assert driver.subject.refuse is not None
        driver.subject.refuse(bad)
        refused = driver.apply([bad, good])
        assert [(event.data.publication_id, isinstance(event, PublishedEvent)) for event, _ in refused] == [("bad", True)]
        assert all(reason for _, reason in refused)
        assert driver.visible() == [("good", "好的")]
