"""Publish once, appear everywhere — through the real broker, processes and stores."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select

from contracts.events import TOPIC_CMS, TOPIC_PUBLICATIONS, TOPIC_REJECTIONS, dlq_topic
from services.publisher.tables import outbox, publications
from tests.integration.conftest import wait_for

TOWNSHIP, COUNTY = "430102001", "430102"


def body(title: str, text: str = "<p>城乡最低生活保障（低保）标准调整。</p>", region: str = TOWNSHIP, level2: str = "D14-02-02") -> dict:
    return {
        "placements": [{"region_code": region, "domain_code": level2[:3], "level1_id": level2[:6], "level2_id": level2}],
        "title": title,
        "body_html": text,
        "formed_at": "2026-03-02",
        "publishing_body": "文艺路街道办事处",
        "attachments": [{"name": "调整表.xlsx", "url": "https://example.gov.cn/files/a.xlsx"}],
    }


def unique(word: str) -> str:
    # A random CJK-free tag makes each test's documents findable on their own.
    return f"{word}{uuid.uuid4().hex[:8]}"


def cms_request(ref: str, draft: dict) -> dict:
    """A publish request as the 芙蓉区 CMS sends it on tongyuan.cms.v1, acting as its editor."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/cms/furong",
        "type": "cn.gov.tongyuan.cms.publish-requested.v1",
        "datacontenttype": "application/json",
        "data": {"source_ref": ref, "actor": {"user": "furong-cms", "roles": ["editor"], "regions": [COUNTY]}, **draft},
    }


def canonical_events(stack, publication_id: str) -> list[dict]:
    events = [json.loads(r.value) for r in stack.read_topic(TOPIC_PUBLICATIONS) if r.key == publication_id.encode()]
    return sorted(events, key=lambda e: e["data"]["version"])


def test_http_publish_appears_in_the_column_and_in_search(stack):
    tag = unique("tag")
    receipt = stack.publish(body(f"低保标准调整公告 {tag}"))
    assert receipt["version"] == 1
    pid = receipt["publication_id"]
    wait_for(lambda: stack.visible(pid, query=tag), what="the publication in column and search")
    page = stack.client.get(f"/publications/{pid}").text
    assert f"低保标准调整公告 {tag}" in page and "文艺路街道办事处" in page and "调整表.xlsx" in page
    # A two-character Chinese word finds it; the list pages down to the level-2 item show it.
    assert pid in stack.search_ids("低保", region=COUNTY, per_page=100)
    for path in (f"/columns/{COUNTY}", f"/columns/{COUNTY}/D14", f"/columns/{COUNTY}/D14/D14-02", f"/columns/{TOWNSHIP}/D14/D14-02-02"):
        assert tag in stack.client.get(path).text, path
    # The search page and its JSON twin agree.
    assert pid in stack.client.get("/search", params={"q": tag}).text


def test_cms_publish_over_kafka_goes_through_the_same_gate(stack):
    tag = unique("cms")
    ref = unique("article-")
    request = cms_request(ref, body(f"养老服务补贴发放公示 {tag}", "<p>养老服务补贴</p>", level2="D14-02-03"))
    stack.produce(TOPIC_CMS, json.dumps(request, ensure_ascii=False).encode(), key=ref.encode())
    pid = wait_for(lambda: stack.search_ids(tag), what="the CMS publication in search")[0]
    wait_for(lambda: stack.visible(pid), what="the CMS publication in the column")

    bad = {
        **request,
        "id": str(uuid.uuid4()),
        "data": {
            **request["data"],
            "source_ref": unique("bad-"),
            "placements": [{"region_code": TOWNSHIP, "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-99"}],
        },
    }
    stack.produce(TOPIC_CMS, json.dumps(bad).encode(), key=b"bad")

    def rejection():
        for record in stack.read_topic(TOPIC_REJECTIONS):
            event = json.loads(record.value)
            if event["data"]["original_id"] == bad["id"]:
                return event
        return None

    event = wait_for(rejection, what="the rejection")
    assert event["type"] == "cn.gov.tongyuan.publication.rejected.v1"
    (error,) = event["data"]["errors"]
    assert error["loc"] == ["data", "placements", 0, "level2_id"]
    assert {"id": "D14-02-02", "name": "办事指南"} in error["choices"]


def test_the_same_event_delivered_twice_changes_nothing(stack):
    tag = unique("dup")
    pid = stack.publish(body(f"救助信息公示 {tag}"))["publication_id"]
    wait_for(lambda: stack.visible(pid, query=tag))
    (event,) = canonical_events(stack, pid)
    # A redelivery carries the same id and version; alter the title so applying it would show.
    event["data"]["title"] = "不应出现的标题"
    partition, offset = stack.produce(TOPIC_PUBLICATIONS, json.dumps(event).encode(), key=pid.encode())
    stack.wait_consumed(TOPIC_PUBLICATIONS, partition, offset)
    assert "不应出现的标题" not in stack.client.get(f"/publications/{pid}").text
    assert stack.search_ids("不应出现的标题") == []
    assert stack.column.entry(pid).version == 1


def test_an_older_version_arriving_after_a_newer_one_is_ignored(stack):
    tag = unique("ver")
    pid = stack.publish(body(f"第一版 {tag}"))["publication_id"]
    wait_for(lambda: stack.visible(pid, query=tag))
    response = stack.client.post(f"/v1/publications/{pid}", json={**body(f"第二版 {tag}"), "version": 1})
    assert response.status_code == 202 and response.json()["version"] == 2
    wait_for(lambda: stack.visible(pid, version=2))
    old = canonical_events(stack, pid)[0]
    assert old["data"]["version"] == 1
    partition, offset = stack.produce(TOPIC_PUBLICATIONS, json.dumps(old).encode(), key=pid.encode())
    stack.wait_consumed(TOPIC_PUBLICATIONS, partition, offset)
    assert "第二版" in stack.client.get(f"/publications/{pid}").text
    hits = stack.search(q=tag)["hits"]
    assert [h["title"] for h in hits] == [f"第二版 {tag}"]
    # A stale revision over HTTP is refused with the current version.
    stale = stack.client.post(f"/v1/publications/{pid}", json={**body("过时"), "version": 1})
    assert stale.status_code == 409 and stale.json()["current_version"] == 2


def test_a_withdrawal_leaves_lists_and_search_and_shows_a_notice(stack):
    tag = unique("wd")
    pid = stack.publish(body(f"待撤销的公告 {tag}"))["publication_id"]
    wait_for(lambda: stack.visible(pid, query=tag))
    response = stack.client.post(f"/v1/publications/{pid}/withdraw", json={"type": "withdrawn", "explanation": "政策已废止"})
    assert response.status_code == 202 and response.json()["version"] == 2
    wait_for(lambda: stack.search_ids(tag) == [] and stack.column.entry(pid).status == "withdrawn", what="the withdrawal")
    notice = stack.client.get(f"/publications/{pid}")
    assert notice.status_code == 200 and "政策已废止" in notice.text and "已撤销" in notice.text
    assert tag not in stack.client.get(f"/columns/{TOWNSHIP}/D14/D14-02-02").text

    gone_pid = stack.publish(body(f"将删除的公告 {tag}"))["publication_id"]
    wait_for(lambda: stack.visible(gone_pid))
    stack.client.post(f"/v1/publications/{gone_pid}/withdraw", json={"type": "gone", "explanation": "误发"})
    wait_for(lambda: stack.client.get(f"/publications/{gone_pid}").status_code == 410, what="410 for a gone publication")


def test_a_malformed_event_goes_to_the_dlq_and_the_stream_goes_on(stack):
    partition, offset = stack.produce(
        TOPIC_PUBLICATIONS, b'{"specversion": "1.0", "type": "cn.gov.tongyuan.publication.published.v1", "data": {"title": 1}}', key=b"poison"
    )
    tag = unique("after")
    pid = stack.publish(body(f"毒消息之后 {tag}"))["publication_id"]
    wait_for(lambda: stack.visible(pid, query=tag), what="the next good event")
    stack.wait_consumed(TOPIC_PUBLICATIONS, partition, offset)
    for group in ("tongyuan-column", "tongyuan-indexer"):
        letters = [r for r in stack.read_topic(dlq_topic(group)) if r.key == b"poison"]
        assert len(letters) == 1, group
        headers = dict(letters[0].headers)
        assert b"invalid" in headers["tongyuan-error"] and headers["tongyuan-origin"] == f"{TOPIC_PUBLICATIONS}/{partition}/{offset}".encode()


def test_a_bad_request_gets_422_and_writes_nothing(stack):
    engine = stack.client.app  # noqa: F841 (the portal shares the publisher's database)
    from services.publisher.app import bootstrap

    publisher = bootstrap(stack.settings, load_reference=False)

    def counts():
        with publisher.engine.connect() as connection:
            return (
                connection.execute(select(func.count()).select_from(publications)).scalar_one(),
                connection.execute(select(func.count()).select_from(outbox)).scalar_one(),
            )

    before = counts()
    wrong_item = stack.client.post("/v1/publications", json=body("x", level2="D14-02-99"))
    assert wrong_item.status_code == 422
    (detail,) = wrong_item.json()["detail"]
    assert detail["loc"] == ["body", "placements", 0, "level2_id"] and {"id": "D14-02-01", "name": "政策法规文件"} in detail["choices"]
    missing = stack.client.post("/v1/publications", json={"title": "无事项"})
    assert missing.status_code == 422 and {tuple(e["loc"]) for e in missing.json()["detail"]} >= {("body", "placements"), ("body", "formed_at")}
    broken = stack.client.post("/v1/publications", content=b'{"title": ', headers={"content-type": "application/json"})
    assert broken.status_code == 422
    assert counts() == before


def test_healthz_reports_every_part(stack):
    # Run first after the stack started, the consumers' first heartbeats may still be due.
    response = wait_for(lambda: (r := stack.client.get("/healthz")).status_code == 200 and r, timeout=30, what="every part up in /healthz")
    checks = response.json()["checks"]
    assert set(checks) == {
        "broker",
        "broker:log",
        "store:publisher",
        "store:column",
        "store:search",
        "consumer:tongyuan-publisher",
        "consumer:tongyuan-column",
        "consumer:tongyuan-indexer",
        "store:embed",
        "consumer:tongyuan-embed",
        "store:supervision",
        "consumer:tongyuan-supervision",
    }
    assert all(c["up"] for c in checks.values())
