"""Through the real broker and processes: a forged event written straight to the canonical
topic puts no script on any public surface and `tongyuan republish --force` brings every store
back to the publisher's truth; a withdrawal takes the content off every public surface,
conditional requests with validators from before included."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from fastapi.testclient import TestClient

from contracts.events import PUBLISHED, TOPIC_PUBLICATIONS
from services.embed.app import build_store as build_embed_store
from services.operations import versions_held
from tests.integration.conftest import wait_for
from tests.unit.publisher.test_forged_events import HOSTILE, HOSTILE_BODY, unsafe

TOWNSHIP = "430102001"
SURFACES = (f"/embed/{TOWNSHIP}/fragment", f"/embed/{TOWNSHIP}", f"/embed/{TOWNSHIP}/atom.xml", f"/embed/{TOWNSHIP}/feed.json")


def draft(title: str, body_html: str) -> dict:
    return {
        "placements": [{"region_code": TOWNSHIP, "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}],
        "title": title,
        "body_html": body_html,
        "formed_at": "2026-03-02",
        "attachments": [{"name": "名单.xlsx", "url": "https://example.gov.cn/files/list.xlsx"}],
    }


def everywhere(stack, pid: str, version: int) -> bool:
    """Every store holds `version` of the publication (or a later one)."""
    held = versions_held(stack.settings, pid)
    return all(v is not None and v >= version for v in held.values())


def forged_event(stack, pid: str, tag: str) -> dict:
    """The publication as the gate made it, with a body and title no gate would pass, at v99."""
    publication = stack.client.get(f"/v1/publications/{pid}").json()["publication"]
    data = {**publication, "version": 99, "title": f"低保名单{tag}<script>alert('t')</script>", "body_html": HOSTILE_BODY + f"<p>{tag}</p>"}
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/publisher",
        "type": PUBLISHED,
        "subject": pid,
        "time": datetime.now(timezone.utc).isoformat(),
        "data": data,
    }


def test_a_forged_event_shows_no_script_and_republish_force_restores_the_truth(stack):
    tag = f"forged{uuid.uuid4().hex[:8]}"
    pid = stack.publish(draft(f"低保标准公示{tag}", "<p>真实正文</p>"))["publication_id"]
    wait_for(lambda: everywhere(stack, pid, 1), timeout=60, what="the publication in every store")

    stack.produce(TOPIC_PUBLICATIONS, json.dumps(forged_event(stack, pid, tag), ensure_ascii=False).encode(), key=pid.encode())
    wait_for(lambda: everywhere(stack, pid, 99), timeout=60, what="the forged v99 in every store")
    page = stack.client.get(f"/publications/{pid}")
    assert page.status_code == 200 and "低保名单公示" in page.text and unsafe(page.text) == []
    assert not HOSTILE.search(stack.column.entry(pid).document.body_html)  # cleaned before it was stored
    search_page = stack.client.get("/search", params={"q": tag})
    assert pid in search_page.text and unsafe(search_page.text) == []
    [hit] = [h for h in stack.search(q=tag)["hits"] if h["publication_id"] == pid]
    assert unsafe(hit["title_html"]) == unsafe(hit["snippet"]) == []
    for path in SURFACES[:3]:  # HTML and Atom; the JSON feed holds text, checked below
        answer = stack.client.get(path)
        assert answer.status_code == 200 and unsafe(answer.text) == [], path
    feed = stack.client.get(f"/embed/{TOWNSHIP}/feed.json").json()
    [item] = [i for i in feed["items"] if i["id"].endswith(f":{pid}")]
    assert "content_html" not in item and not HOSTILE.search(item["content_text"])

    # A plain republish re-emits v1, which every store ignores; --force outbids the forgery.
    result = stack.cli("republish", "--force", pid)
    assert result.exit_code == 0, result.output
    assert "v100" in result.output
    wait_for(lambda: everywhere(stack, pid, 100), timeout=60, what="the repair (v100) in every store")
    assert versions_held(stack.settings, pid) == {"column": 100, "embed": 100, "supervision": 100, "search": 100}
    assert stack.client.get(f"/v1/publications/{pid}").json()["version"] == 100
    page = stack.client.get(f"/publications/{pid}").text
    assert f"低保标准公示{tag}" in page and "真实正文" in page and "低保名单公示" not in page
    assert [h["title"] for h in stack.search(q=tag)["hits"]] == [f"低保标准公示{tag}"]


def test_a_withdrawal_takes_the_content_off_every_public_surface(stack):
    tag = f"wd{uuid.uuid4().hex[:8]}"
    title, personal = f"城乡低保对象名单{tag}", "张某某 身份证号430102199001011234"
    pid = stack.publish(draft(title, f"<p>{personal}</p>"))["publication_id"]
    wait_for(lambda: everywhere(stack, pid, 1), timeout=60, what="the publication in every store")
    public = TestClient(stack.client.app)  # no token: a member of the public
    paths = [f"/v1/publications/{pid}", f"/publications/{pid}", *SURFACES]
    before = {}
    for path in paths:
        answer = public.get(path)
        assert answer.status_code == 200 and title in answer.text and "etag" in answer.headers, path
        before[path] = answer.headers["etag"]
    assert pid in [h["publication_id"] for h in stack.search(q=tag)["hits"]]

    withdrawn = stack.client.post(f"/v1/publications/{pid}/withdraw", json={"type": "gone", "explanation": "名单含个人信息，公示期满撤下"})
    assert withdrawn.status_code == 202, withdrawn.text
    wait_for(lambda: everywhere(stack, pid, 2), timeout=60, what="the withdrawal in every store")
    wait_for(lambda: pid not in build_embed_store(stack.settings).versions() or build_embed_store(stack.settings).version_of(pid) == 2, what="the embed store")

    for path in paths:
        for headers in ({}, {"If-None-Match": before[path]}):
            answer = public.get(path, headers=headers)
            assert answer.status_code != 304, (path, headers)
            assert title not in answer.text and personal not in answer.text and tag not in answer.text, (path, headers)
            assert answer.headers.get("etag") != before[path], path
    assert public.get(f"/v1/publications/{pid}").status_code == 410
    assert public.get(f"/publications/{pid}").status_code == 410
    tombstone = public.get(f"/v1/publications/{pid}").json()
    assert tombstone["status"] == "withdrawn" and tombstone["withdrawal"]["withdrawal_type"] == "gone" and "publication" not in tombstone
    assert stack.search(q=tag)["total"] == 0
    search_page = public.get("/search", params={"q": tag}).text
    assert title not in search_page and personal not in search_page
    # The disclosure office (admin) still reads the whole record.
    record = stack.client.get(f"/v1/publications/{pid}").json()
    assert record["publication"]["title"] == title and personal in record["publication"]["body_html"]
