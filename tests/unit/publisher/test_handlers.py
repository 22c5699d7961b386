"""The gate against a real (SQLite) publisher store: state and event in one transaction."""

import json

import pytest
from sqlalchemy import func, select

from contracts.events import PUBLISHED, WITHDRAWN, PublishRequestData
from services.common.db import create_store_engine
from services.publisher.gate import batches, handlers
from services.publisher.gate.domain import Rejected, VersionConflict
from services.publisher.store import Publisher
from services.publisher.tables import outbox, publications
from tests.conftest import ADMIN, EDITOR, OTHER_COUNTY, draft, placement, publisher_on, store_backends
from tests.unit.publisher.writes import withdraw


@pytest.fixture
def publisher(tmp_path):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    return publisher


def rows(publisher, table):
    with publisher.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def outbox_events(publisher):
    with publisher.engine.connect() as connection:
        return [json.loads(p) for (p,) in connection.execute(select(outbox.c.payload).order_by(outbox.c.id))]


def test_publish_writes_the_publication_and_its_event_together(publisher, directory):
    accepted = handlers.publish(principal=ADMIN, draft=draft(), publisher=publisher, directory=directory)
    assert accepted.version == 1
    (event,) = outbox_events(publisher)
    assert event["type"] == PUBLISHED and event["subject"] == accepted.publication_id
    assert event["data"]["version"] == 1 and event["data"]["index_number"] == "430102001/2026-00001"
    assert event["specversion"] == "1.0" and event["source"] == "/publisher"


def test_new_publications_and_events_get_time_ordered_ids(publisher, directory):
    """Every store indexes publication ids and the outbox event ids: ids made later sort
    later, so those indexes grow at their end (UUID version 7)."""
    import time
    import uuid

    first = handlers.publish(principal=ADMIN, draft=draft(), publisher=publisher, directory=directory)
    time.sleep(0.002)
    from_cms = batches.accept_cms_request("ev-order", "/cms/furong", cms_request(), publisher=publisher, directory=directory)
    assert uuid.UUID(first.publication_id).version == 7 and uuid.UUID(from_cms.publication_id).version == 7
    assert first.publication_id < from_cms.publication_id
    events = [event["id"] for event in outbox_events(publisher)]
    assert all(uuid.UUID(event_id).version == 7 for event_id in events) and events == sorted(events)


def test_a_rejected_draft_writes_nothing(publisher, directory):
    with pytest.raises(Rejected):
        handlers.publish(principal=ADMIN, draft=draft(placements=[placement(level2="D14-02-99")]), publisher=publisher, directory=directory)
    assert rows(publisher, publications) == 0 and rows(publisher, outbox) == 0


def test_revision_needs_the_current_version(publisher, directory):
    first = handlers.publish(principal=ADMIN, draft=draft(), publisher=publisher, directory=directory)
    second = handlers.revise(first.publication_id, principal=ADMIN, draft=draft(title="更正"), expected_version=1, publisher=publisher, directory=directory)
    assert second.version == 2
    with pytest.raises(VersionConflict) as caught:
        handlers.revise(first.publication_id, principal=ADMIN, draft=draft(title="过时的更正"), expected_version=1, publisher=publisher, directory=directory)
    assert caught.value.current == 2
    assert [e["data"]["version"] for e in outbox_events(publisher)] == [1, 2]
    # The correction keeps the index number (索引号) of the original.
    assert len({e["data"]["index_number"] for e in outbox_events(publisher)}) == 1


def test_withdrawal_is_a_new_version(publisher, directory):
    first = handlers.publish(principal=ADMIN, draft=draft(), publisher=publisher, directory=directory)
    gone = withdraw(publisher, directory, first.publication_id, "gone", "信息有误")
    assert (gone.version, gone.status) == (2, "withdrawn")
    last = outbox_events(publisher)[-1]
    assert last["type"] == WITHDRAWN and last["data"]["withdrawal_type"] == "gone" and last["data"]["version"] == 2


def cms_request(**overrides):
    values = dict(source_ref="cms-42", actor=EDITOR.model_dump(), **draft().model_dump())
    values.update(overrides)
    return PublishRequestData.model_validate(values)


def test_cms_redelivery_creates_no_second_version(publisher, directory):
    first = batches.accept_cms_request("ev-1", "/cms/furong", cms_request(), publisher=publisher, directory=directory)
    again = batches.accept_cms_request("ev-1", "/cms/furong", cms_request(), publisher=publisher, directory=directory)
    assert again.publication_id == first.publication_id and again.event_id is None
    assert rows(publisher, outbox) == 1


def test_cms_same_source_ref_updates_the_same_publication(publisher, directory):
    first = batches.accept_cms_request("ev-1", "/cms/furong", cms_request(), publisher=publisher, directory=directory)
    unchanged = batches.accept_cms_request("ev-2", "/cms/furong", cms_request(), publisher=publisher, directory=directory)
    changed = batches.accept_cms_request("ev-3", "/cms/furong", cms_request(title="新标题"), publisher=publisher, directory=directory)
    assert unchanged.version == 1 and unchanged.event_id is None
    assert changed.publication_id == first.publication_id and changed.version == 2
    withdrawn = batches.accept_cms_request(
        "ev-4", "/cms/furong", cms_request(withdraw="withdrawn", explanation="已过期"), publisher=publisher, directory=directory
    )
    assert (withdrawn.version, withdrawn.status) == (3, "withdrawn")
    assert rows(publisher, publications) == 1


def test_another_cms_with_the_same_ref_is_another_publication(publisher, directory):
    a = batches.accept_cms_request("ev-1", "/cms/furong", cms_request(), publisher=publisher, directory=directory)
    b = batches.accept_cms_request("ev-1", "/cms/tianxin", cms_request(), publisher=publisher, directory=directory)
    assert a.publication_id != b.publication_id


def test_republish_re_emits_current_state_with_unchanged_versions(publisher, directory):
    kept = handlers.publish(principal=ADMIN, draft=draft(title="保留"), publisher=publisher, directory=directory)
    gone = handlers.publish(principal=ADMIN, draft=draft(title="撤销"), publisher=publisher, directory=directory)
    withdraw(publisher, directory, gone.publication_id, "withdrawn", "废止", expected_version=1)
    before = len(outbox_events(publisher))
    assert handlers.republish_all(publisher) == 2
    again = {e["subject"]: e for e in outbox_events(publisher)[before:]}
    assert again[kept.publication_id]["type"] == PUBLISHED and again[kept.publication_id]["data"]["version"] == 1
    assert again[gone.publication_id]["type"] == WITHDRAWN and again[gone.publication_id]["data"]["version"] == 2


def test_a_cms_batch_is_applied_in_order_and_a_refusal_stops_nothing(publisher, directory):
    from services.publisher.gate.batches import InboundRequest

    bad = cms_request(source_ref="cms-bad", placements=[placement(level2="D14-02-99")])
    batch = [
        InboundRequest("e1", "/cms/furong", cms_request(source_ref="a")),
        InboundRequest("e2", "/cms/furong", bad),
        InboundRequest("e3", "/cms/furong", cms_request(source_ref="a", title="第二版")),
        InboundRequest("e1", "/cms/furong", cms_request(source_ref="a", title="重投递")),
        InboundRequest("e4", "/cms/furong", cms_request(source_ref="b")),
        InboundRequest("e5", "/cms/furong", cms_request(source_ref="b", withdraw="gone", explanation="误发")),
    ]
    outcomes = batches.accept_cms_batch(batch, publisher=publisher, directory=directory)
    assert isinstance(outcomes[1], Rejected)
    a1, a2, again, b1, b2 = (outcomes[i] for i in (0, 2, 3, 4, 5))
    assert (a1.version, a2.version, again.version, again.event_id) == (1, 2, 2, None)
    assert a1.publication_id == a2.publication_id == again.publication_id
    assert (b1.version, b2.version, b2.status) == (1, 2, "withdrawn")
    events = outbox_events(publisher)
    assert [(e["subject"], e["data"]["version"]) for e in events] == [
        (a1.publication_id, 1),
        (a1.publication_id, 2),
        (b1.publication_id, 1),
        (b1.publication_id, 2),
    ]
    assert events[1]["data"]["title"] == "第二版"
    # New publications got consecutive index numbers; the revision kept its number.
    assert events[0]["data"]["index_number"] == events[1]["data"]["index_number"]
    numbers = sorted({events[0]["data"]["index_number"], events[2]["data"]["index_number"]})
    assert len(numbers) == 2 and all(n.startswith("430102001/") for n in numbers)
    with publisher.transaction() as store:
        assert store.get(a1.publication_id).document.title == "第二版"
        assert store.get(b1.publication_id).status == "withdrawn"
    # The same batch again is all redeliveries: nothing new.
    batches.accept_cms_batch(batch, publisher=publisher, directory=directory)
    assert len(outbox_events(publisher)) == 4


def test_editors_publish_only_for_their_county_and_its_townships(publisher, directory):
    from services.publisher.gate.domain import Forbidden

    handlers.publish(principal=EDITOR, draft=draft(), publisher=publisher, directory=directory)  # a township of 芙蓉区
    with pytest.raises(Forbidden) as caught:
        handlers.publish(principal=EDITOR, draft=draft(placements=[placement(), placement(OTHER_COUNTY)]), publisher=publisher, directory=directory)
    assert [e.loc for e in caught.value.errors] == [("placements", 1, "region_code")]
    theirs = handlers.publish(principal=ADMIN, draft=draft(placements=[placement(OTHER_COUNTY)]), publisher=publisher, directory=directory)
    with pytest.raises(Forbidden):
        withdraw(publisher, directory, theirs.publication_id, "gone", "x", principal=EDITOR)
    # Nor can an editor move another unit's publication into their own column.
    with pytest.raises(Forbidden):
        handlers.revise(theirs.publication_id, principal=EDITOR, draft=draft(), expected_version=1, publisher=publisher, directory=directory)
    assert rows(publisher, publications) == 2


def test_a_cms_actor_is_authorised_like_a_token(publisher, directory):
    from contracts.identity import Principal

    township_clerk = Principal(user="t", roles=("editor",), regions=("430102002",))
    with pytest.raises(Rejected) as caught:
        batches.accept_cms_request("e1", "/cms/furong", cms_request(actor=township_clerk.model_dump()), publisher=publisher, directory=directory)
    assert caught.value.errors[0].loc == ("actor", "placements", 0, "region_code") and caught.value.errors[0].type == "auth.region"
    assert rows(publisher, outbox) == 0


def test_the_outbox_event_carries_exactly_the_stored_document(tmp_path, directory):
    """The event's data is spliced in from the stored document's JSON (serialised once): both
    must say the same, and the event must read back as the event that was built."""
    from contracts.events import PublishedEvent

    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'p.db'}"))
    publisher.create_tables()
    requests = [
        batches.InboundRequest(f"e{n}", "/cms/t", PublishRequestData(**draft(title=f"公告{n}").model_dump(), source_ref=f"r{n}", actor=ADMIN)) for n in range(3)
    ]
    batches.accept_cms_batch(requests, publisher=publisher, directory=directory)
    with publisher.engine.connect() as connection:
        payloads = connection.execute(select(outbox.c.payload).order_by(outbox.c.id)).scalars().all()
        documents = dict(connection.execute(select(publications.c.publication_id, publications.c.document)).all())
    assert len(payloads) == 3
    for payload in payloads:
        event = PublishedEvent.model_validate_json(payload)
        assert json.loads(payload)["data"] == json.loads(event.data.model_dump_json())
        assert event.data.model_dump(mode="json") == documents[event.data.publication_id]


@pytest.fixture(params=store_backends())
def any_publisher(request, tmp_path):
    with publisher_on(request.param, tmp_path) as publisher:
        yield publisher


def test_index_numbers_count_up_per_region_and_year_and_a_revision_keeps_its_own(any_publisher, directory):
    def stored(accepted):
        with any_publisher.transaction() as store:
            return store.get(accepted.publication_id).document

    def index_number(accepted):
        return stored(accepted).index_number

    first = handlers.publish(principal=ADMIN, draft=draft(), publisher=any_publisher, directory=directory)
    second = handlers.publish(principal=ADMIN, draft=draft(title="第二条"), publisher=any_publisher, directory=directory)
    elsewhere = handlers.publish(principal=ADMIN, draft=draft(placements=[placement(OTHER_COUNTY)]), publisher=any_publisher, directory=directory)
    assert [index_number(a) for a in (first, second)] == ["430102001/2026-00001", "430102001/2026-00002"]
    assert index_number(elsewhere) == f"{OTHER_COUNTY}/2026-00001"
    revised = handlers.revise(
        first.publication_id, draft(title="改过的标题"), principal=ADMIN, expected_version=1, publisher=any_publisher, directory=directory
    )
    assert revised.version == 2 and index_number(revised) == "430102001/2026-00001"
    assert stored(revised).title == "改过的标题"  # the update reached the row
