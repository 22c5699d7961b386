"""The government-service platform and the column share one source: the simulator, the bridge
(poller, webhooks, relay) and the real broker, publisher, column and indexer processes."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import select

from contracts.events import TOPIC_SERVICE_ITEMS, PublicationData
from contracts.service_items import GUIDE_SECTIONS, ServiceItem
from devtools.platform_simulator import Faults, Platform, Served, seed_items
from devtools.platform_simulator import create_app as simulator_app
from services.bridge.app import create_app, create_runtime
from services.bridge.mapping import map_item
from services.bridge.report import Expected, Mirrored, mirror_report
from services.column.store import documents
from services.common.kafka import idempotent_producer
from services.common.settings import BridgeSettings
from services.publisher.app import bootstrap, directory_provider
from services.publisher.gate import service_items
from services.publisher.gate.domain import sanitise_html
from tests.integration.conftest import wait_for

SECRET = "integration-webhook-secret"
ITEMS = 1000
ROOT = Path(__file__).resolve().parents[2]
# Until the publisher process runs a tongyuan.service-items.v1 agent, this test applies the
# bridge's events in-process through the same gate handler (the process's relay ships them on).
PUBLISHER_CONSUMES = "TOPIC_SERVICE_ITEMS" in (ROOT / "services" / "publisher" / "app.py").read_text("utf-8")
# Once the column's detail page includes the bridge's partial, the guide shows as tabs/sections.
DETAIL_SHOWS_GUIDE = "bridge/service_guide.html" in (ROOT / "services" / "column" / "templates" / "column" / "detail.html").read_text("utf-8")


class StandInAgent:
    """What the publisher's agent will do: read the topic, apply batches through the gate."""

    def __init__(self, stack):
        self.publisher = bootstrap(stack.settings, load_reference=False)
        self.directory = directory_provider(self.publisher)
        self.consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
        self.rejections: list = []
        self.applied = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stand-in-service-items-agent", daemon=True)

    def _run(self) -> None:
        partitions = [TopicPartition(TOPIC_SERVICE_ITEMS, p) for p in self.consumer.partitions_for_topic(TOPIC_SERVICE_ITEMS) or []]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        while not self.stop.is_set():
            records = [r for batch in self.consumer.poll(timeout_ms=100, max_records=500).values() for r in batch]
            if records:
                outcomes = service_items.handle_service_item_batch([r.value for r in records], publisher=self.publisher, directory=self.directory())
                self.rejections += [o.rejection for o in outcomes if o.rejection is not None]
                self.applied += len(records)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(10)
        self.consumer.close()


@pytest.fixture(scope="module")
def world(stack):
    platform = Platform(seed_items(ITEMS, seed=20260302), seed=20260302)
    producer = idempotent_producer(stack.bootstrap)
    with Served(simulator_app(platform)) as simulator:
        settings = BridgeSettings(
            platform_url=simulator.url, webhook_secret=SECRET, timeout=0.3, attempts=8, page_size=100, overlap_seconds=1.0, relay_interval=0.05
        )
        runtime = create_runtime(stack.settings.model_copy(update={"bridge": settings}), producer=producer).start(poll=False)
        with Served(create_app(runtime)) as receiver:
            from devtools.platform_simulator import WebhookSender

            platform.webhooks = WebhookSender(f"{receiver.url}/bridge/webhooks/{settings.platform}", SECRET)
            agent = StandInAgent(stack) if not PUBLISHER_CONSUMES else None
            if agent:
                agent.__enter__()
            try:
                yield platform, runtime, agent
            finally:
                if agent:
                    agent.__exit__()
                platform.webhooks.close()
                runtime.shutdown()
                producer.close()


def bridge_publications(stack) -> list[Mirrored]:
    with stack.column.engine.connect() as connection:
        rows = connection.execute(select(documents.c.publication_id, documents.c.status, documents.c.document)).all()
    out = []
    for publication_id, status, document in rows:
        if not document or document["source_ref"]["source"] != "/bridge/hunan-zwfw":
            continue
        data = PublicationData.model_validate(document)
        out.append(
            Mirrored(publication_id, data.source_ref.ref, status, data.title, data.body_html, frozenset((p.region_code, p.level2_id) for p in data.placements))
        )
    return out


def expected_state(platform: Platform, runtime) -> dict[str, Expected]:
    table, regions = runtime.store.mapping(), runtime.bridge.regions
    expected = {}
    for code, truth in platform.state().items():
        item = ServiceItem.model_validate(truth["document"])
        mapping = map_item(item, table, regions)
        if truth["status"] == "active" and mapping.mapped:
            expected[code] = Expected(
                code, item.name, sanitise_html(service_items.guide_html(item)), frozenset((p.region_code, p.level2_id) for p in mapping.placements)
            )
    return expected


def report(stack, platform, runtime):
    return mirror_report(expected_state(platform, runtime), bridge_publications(stack))


def publication_of(stack, code: str) -> Mirrored | None:
    return next((p for p in bridge_publications(stack) if p.implementation_code == code), None)


def test_1000_items_with_every_kind_of_fault_end_up_exactly_mirrored(stack, world):
    platform, runtime, agent = world
    platform.faults = Faults(
        timeout=0.03, error=0.03, truncated=0.03, malformed=0.03, duplicate_page=0.3, reorder=0.3, delete_between=0.2, cursor_backwards=0.1, hang_seconds=0.5
    )
    runtime.bridge.poll()
    platform.churn(150)  # edits, revocations, reinstatements, deletions — each also a webhook
    runtime.bridge.poll()
    platform.churn(80)
    runtime.bridge.reconcile()
    platform.faults = Faults()
    runtime.bridge.reconcile()  # the periodic full reconciliation repairs what the weather hid
    assert set(platform.fault_log) == {"timeout", "error", "truncated", "malformed", "duplicate_page", "reorder", "delete_between", "cursor_backwards"}

    final = wait_for(
        lambda: (r := report(stack, platform, runtime)).exact and runtime.store.outbox_backlog() == 0 and r,
        timeout=90,
        interval=0.5,
        what="the column to mirror the platform",
    )
    assert final.expected > 600 and final.mirrored == final.expected, final.summary()
    assert agent is None or agent.rejections == []
    # The column shows them through search too, and the unmapped ones are reported, not lost.
    sample = next(iter(expected_state(platform, runtime).values()))
    sample_id = publication_of(stack, sample.implementation_code).publication_id
    # The indexer is a consumer of its own; it may apply the last batch after the column did.
    wait_for(lambda: sample_id in stack.search_ids(sample.title, per_page=100, region=sorted(sample.placements)[0][0]), timeout=30, what="the item in search")
    unmapped = {k.implementation_code for k in runtime.store.unmapped()}
    truly_unmapped = {
        c
        for c, t in platform.state().items()
        if t["status"] == "active" and not map_item(ServiceItem.model_validate(t["document"]), runtime.store.mapping(), runtime.bridge.regions).mapped
    }
    assert unmapped == truly_unmapped and unmapped
    page = stack.client.get("/bridge/unmapped")  # once the portal mounts the bridge's router
    assert page.status_code == 404 or sorted(unmapped)[0] in page.text


def live_item(stack, platform, runtime) -> tuple[str, Mirrored]:
    runtime.bridge.reconcile()
    expected = expected_state(platform, runtime)
    code = sorted(expected)[len(expected) // 2]
    return code, wait_for(
        lambda: (p := publication_of(stack, code)) and p.status == "published" and p.body_html == expected[code].body_html and p,
        timeout=60,
        what="the item in the column",
    )


def test_a_guide_edited_on_the_platform_appears_changed_on_the_detail_page_and_in_search(stack, world):
    platform, runtime, _ = world
    code, before = live_item(stack, platform, runtime)
    tag = f"guide{uuid.uuid4().hex[:8]}"
    platform.edit(code, note=f"自2026年4月起，申请人可凭电子证照办理（{tag}）")  # the webhook tells the bridge
    pid = before.publication_id
    wait_for(
        lambda: tag in stack.client.get(f"/publications/{pid}").text and pid in stack.search_ids(tag),
        timeout=30,
        what="the edited guide on the page and in search",
    )
    page = stack.client.get(f"/publications/{pid}").text
    item = ServiceItem.model_validate(platform.state()[code]["document"])
    for text in ("受理条件", "申请材料", "办理流程", "法定办结时限", "承诺办结时限", "咨询电话", item.guide.materials[0].name, item.guide.place):
        assert text in page, text
    if item.guide.online_url:
        assert f'href="{item.guide.online_url}"' in page
    after = publication_of(stack, code)
    assert after.publication_id == pid  # the same publication, a new version
    entry = stack.column.entry(pid)
    assert entry.document.kind == "service" and any(tag in c for c in entry.document.service_guide["conditions"])
    if DETAIL_SHOWS_GUIDE:
        positions = [page.index(f"<h3>{title}</h3>") for _, title in GUIDE_SECTIONS]
        assert positions == sorted(positions) and "办事指南栏目" in page


def test_a_revoked_item_is_withdrawn(stack, world):
    platform, runtime, _ = world
    code, live = live_item(stack, platform, runtime)
    platform.revoke(code)
    pid = live.publication_id
    wait_for(lambda: stack.column.entry(pid).status == "withdrawn", timeout=30, what="the withdrawal")
    notice = stack.client.get(f"/publications/{pid}")
    assert notice.status_code == 200 and "已撤销" in notice.text and code in notice.text
    wait_for(lambda: pid not in stack.search_ids(live.title, per_page=100, region=sorted(live.placements)[0][0]), timeout=30, what="the withdrawal in search")
    assert report(stack, platform, runtime).exact
