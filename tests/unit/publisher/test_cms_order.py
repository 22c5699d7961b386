"""A CMS's requests for one article are applied in the CMS's own order (its CloudEvent `time`),
not in the order they arrive: an older request arriving late is refused with the reason, and
never replaces newer content. The real gate, on SQLite (and PostgreSQL when configured)."""

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from contracts.events import CMS_PUBLISH_REQUESTED, PUBLISHED, WITHDRAWN, PublishRequestData
from services.publisher.gate import batches, handlers
from services.publisher.gate.batches import InboundRequest, OutOfOrder
from services.publisher.gate.inbound import handle_cms_batch
from services.publisher.tables import outbox
from tests.conftest import EDITOR, draft, publisher_on, store_backends

CMS = "/cms/furong"
NOW = datetime(2026, 3, 10, 8, 0, tzinfo=timezone.utc)
EARLY, LATE = NOW - timedelta(hours=2), NOW - timedelta(hours=1)


@pytest.fixture(params=store_backends())
def publisher(request, tmp_path):
    with publisher_on(request.param, tmp_path) as publisher:
        yield publisher


def request(title: str = "低保标准调整公告", ref: str = "article-1", **overrides) -> PublishRequestData:
    return PublishRequestData(source_ref=ref, actor=EDITOR, **{**draft(title=title).model_dump(), **overrides})


def at(moment: datetime | None, title: str = "低保标准调整公告", event_id: str | None = None, **overrides) -> InboundRequest:
    return InboundRequest(event_id or str(uuid.uuid4()), CMS, request(title, **overrides), upstream_time=moment)


def accept(publisher, directory, *messages: InboundRequest):
    return batches.accept_cms_batch(list(messages), publisher=publisher, directory=directory, clock=lambda: NOW)


def stored(publisher, ref: str = "article-1"):
    with publisher.transaction() as store:
        return store.by_source_ref(CMS, ref)


def events(publisher) -> list[dict]:
    with publisher.engine.connect() as connection:
        return [json.loads(p) for (p,) in connection.execute(select(outbox.c.payload).order_by(outbox.c.id))]


def test_an_older_request_arriving_later_is_refused_and_the_newer_content_stays(publisher, directory):
    newer = at(LATE, "第二版")
    accept(publisher, directory, at(EARLY - timedelta(hours=1), "第一版"))
    accept(publisher, directory, newer)
    (refused,) = accept(publisher, directory, at(EARLY, "迟到的旧版"))
    assert isinstance(refused, OutOfOrder)
    (reason,) = refused.errors
    assert reason.loc == ("time",) and reason.type == "time.superseded"
    assert "较早" in reason.msg and newer.event_id in reason.msg and "未予采用" in reason.msg
    assert stored(publisher).document.title == "第二版" and stored(publisher).version == 2
    assert [e["data"]["title"] for e in events(publisher)] == ["第一版", "第二版"]


def test_a_redelivered_request_stays_a_no_op_not_a_refusal(publisher, directory):
    first, second = at(EARLY, "第一版"), at(LATE, "第二版")
    accept(publisher, directory, first, second)
    (again,) = accept(publisher, directory, first)  # the same id: a redelivery, whatever its time
    assert isinstance(again, handlers.Accepted) and again.event_id is None and again.version == 2
    assert len(events(publisher)) == 2


def test_within_one_batch_the_older_of_two_is_refused_whichever_comes_first(publisher, directory):
    outcomes = accept(publisher, directory, at(LATE, "新", ref="a"), at(EARLY, "旧", ref="a"), at(EARLY, "旧", ref="b"), at(LATE, "新", ref="b"))
    assert [type(o).__name__ for o in outcomes] == ["Accepted", "OutOfOrder", "Accepted", "Accepted"]
    assert stored(publisher, "a").document.title == stored(publisher, "b").document.title == "新"


def test_an_older_publish_cannot_bring_back_a_newer_withdrawal(publisher, directory):
    accept(publisher, directory, at(EARLY - timedelta(hours=1), "第一版"))
    accept(publisher, directory, at(LATE, withdraw="withdrawn", explanation="政策已废止"))
    (refused,) = accept(publisher, directory, at(EARLY, "第一版的更正"))
    assert isinstance(refused, OutOfOrder) and stored(publisher).status == "withdrawn"
    assert [e["type"] for e in events(publisher)] == [PUBLISHED, WITHDRAWN]


def test_a_newer_request_that_changes_nothing_still_moves_the_clock(publisher, directory):
    accept(publisher, directory, at(EARLY, "第一版"))
    (unchanged,) = accept(publisher, directory, at(LATE, "第一版"))
    assert unchanged.event_id is None
    (refused,) = accept(publisher, directory, at(EARLY + timedelta(minutes=30), "中间版"))
    assert isinstance(refused, OutOfOrder)


def test_the_same_time_again_is_not_older(publisher, directory):
    accept(publisher, directory, at(LATE, "第一版"))
    (same_time,) = accept(publisher, directory, at(LATE, "同一时刻的更正"))
    assert isinstance(same_time, handlers.Accepted) and same_time.version == 2


def test_a_time_far_ahead_of_the_gate_is_refused_so_it_cannot_block_the_article(publisher, directory):
    (refused,) = accept(publisher, directory, at(NOW + timedelta(days=365), "来自未来"))
    assert isinstance(refused, OutOfOrder) and refused.errors[0].type == "time.in_future" and "时钟" in refused.errors[0].msg
    assert stored(publisher) is None
    (within_skew,) = accept(publisher, directory, at(NOW + timedelta(minutes=5), "时钟略快"))
    assert isinstance(within_skew, handlers.Accepted)


def test_requests_without_a_time_keep_arrival_order(publisher, directory):
    accept(publisher, directory, at(LATE, "第一版"))
    (untimed,) = accept(publisher, directory, at(None, "无时间的更正"))
    assert isinstance(untimed, handlers.Accepted) and stored(publisher).document.title == "无时间的更正"


def test_each_cms_article_has_its_own_clock(publisher, directory):
    accept(publisher, directory, at(LATE, ref="a"))
    (other,) = accept(publisher, directory, at(EARLY, ref="b"))
    (other_cms,) = batches.accept_cms_batch(
        [InboundRequest("x", "/cms/tianxin", request(ref="a"), upstream_time=EARLY)], publisher=publisher, directory=directory, clock=lambda: NOW
    )
    assert isinstance(other, handlers.Accepted) and isinstance(other_cms, handlers.Accepted)


def cms_message(time: str | None, title: str, event_id: str | None = None) -> bytes:
    envelope = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": CMS,
        "type": CMS_PUBLISH_REQUESTED,
        "data": request(title).model_dump(mode="json"),
    }
    if time is not None:
        envelope["time"] = time
    return json.dumps(envelope, ensure_ascii=False).encode()


def test_off_the_topic_the_refusal_names_the_envelope_time(publisher, directory):
    now = datetime.now(timezone.utc)
    handle_cms_batch([cms_message((now - timedelta(minutes=1)).isoformat(), "新版")], publisher=publisher, directory=directory)
    late = cms_message((now - timedelta(hours=1)).isoformat().replace("+00:00", "+08:00"), "旧版")  # an older moment, in Beijing time
    bad = cms_message("昨天", "时间写错")
    refused, unreadable = handle_cms_batch([late, bad], publisher=publisher, directory=directory)
    rejection = refused.rejection
    assert rejection is not None and rejection.data.original_id == json.loads(late)["id"] and rejection.data.source_ref == "article-1"
    assert [(e.loc, e.type) for e in rejection.data.errors] == [(("time",), "time.superseded")]
    assert unreadable.rejection is not None and unreadable.rejection.data.errors[0].loc[0] == "time"
    assert stored(publisher).document.title == "新版"
