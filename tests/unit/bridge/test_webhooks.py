"""Webhooks are verified — signature, time window, nonce — before anything is done."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from services.bridge import routes
from services.bridge.app import templates
from services.bridge.store import BridgeStore
from services.bridge.sync import SyncReport
from services.bridge.webhooks import WebhookRefused, sign, verify
from services.common.db import create_store_engine
from tests.wired import mounted

SECRET = "s3cret-for-tests"
CODE = "43070001000000-430102001000-000-11430102MB1234567X-1-00"


def notice(code=CODE, event="item.updated") -> bytes:
    return json.dumps({"event": event, "platform": "hunan-zwfw", "implementation_code": code, "version": 3}).encode()


class Nonces:
    def __init__(self):
        self.seen = set()

    def __call__(self, nonce, _at) -> bool:
        if nonce in self.seen:
            return False
        self.seen.add(nonce)
        return True


def check(body, headers, *, now=None, secrets=(SECRET,), nonces=None):
    return verify(headers, body, secrets=list(secrets), now=now or time.time(), window=300, nonce_unused=nonces or Nonces())


def test_a_signed_notice_is_accepted_once():
    body, nonces = notice(), Nonces()
    headers = sign(body, SECRET, timestamp=int(time.time()), nonce="n-0001abcd")
    accepted = check(body, headers, nonces=nonces)
    assert accepted.implementation_code == CODE and accepted.event == "item.updated" and accepted.version == 3
    with pytest.raises(WebhookRefused) as replay:
        check(body, headers, nonces=nonces)
    assert replay.value.status == 409


@pytest.mark.parametrize(
    "tamper, status",
    [
        (lambda b, h: (b.replace(b"item.updated", b"item.revoked"), h), 401),  # body changed after signing
        (lambda b, h: (b, {**h, "X-Zwfw-Signature": "sha256=" + "0" * 64}), 401),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "X-Zwfw-Nonce"}), 401),
        (lambda b, h: (b, {**h, "X-Zwfw-Nonce": "n-other-nonce"}), 401),  # the nonce is signed too
    ],
)
def test_tampered_or_incomplete_requests_are_refused(tamper, status):
    body = notice()
    headers = sign(body, SECRET, timestamp=int(time.time()), nonce="n-0002abcd")
    with pytest.raises(WebhookRefused) as refused:
        check(*tamper(body, headers))
    assert refused.value.status == status


def test_old_or_future_timestamps_and_unknown_secrets_are_refused_and_burn_no_nonce():
    body, nonces = notice(), Nonces()
    stale = sign(body, SECRET, timestamp=int(time.time()) - 301, nonce="n-0003abcd")
    with pytest.raises(WebhookRefused, match="window"):
        check(body, stale, nonces=nonces)
    future = sign(body, SECRET, timestamp=int(time.time()) + 301, nonce="n-0004abcd")
    with pytest.raises(WebhookRefused, match="window"):
        check(body, future, nonces=nonces)
    with pytest.raises(WebhookRefused, match="signature"):
        check(body, sign(body, "other", timestamp=int(time.time()), nonce="n-0005abcd"), nonces=nonces)
    assert nonces.seen == set()
    # During a secret rotation both secrets are good.
    rotated = sign(body, "new-secret", timestamp=int(time.time()), nonce="n-0006abcd")
    assert check(body, rotated, secrets=("new-secret", SECRET)).implementation_code == CODE


def test_a_signed_body_that_is_not_a_notice_is_refused():
    for body in (b"[1, 2]", b"{not json", notice(code="../../etc/passwd"), notice(event="item.exploded")):
        with pytest.raises(WebhookRefused) as refused:
            check(body, sign(body, SECRET, timestamp=int(time.time()), nonce="n-0007abcd"))
        assert refused.value.status == 400


class RecordingBridge:
    def __init__(self):
        self.notices = []

    def on_notice(self, notice):
        self.notices.append(notice)
        report = SyncReport("webhook", fetched=1)
        report.outcomes["changed"] += 1
        return report


@pytest.fixture
def endpoint(tmp_path):
    store = BridgeStore(create_store_engine(f"sqlite:///{tmp_path / 'bridge.db'}"), "hunan-zwfw")
    store.create()
    bridge = RecordingBridge()
    runtime = SimpleNamespace(store=store, bridge=bridge, settings=SimpleNamespace(secrets=[SECRET], webhook_window=300.0))
    app = mounted(routes.router, bridge_runtime=runtime, templates=templates())
    return TestClient(app), bridge


def test_the_endpoint_acts_only_on_verified_notices_and_remembers_nonces_across_requests(endpoint):
    client, bridge = endpoint
    body = notice()
    headers = sign(body, SECRET, timestamp=int(time.time()), nonce="n-0008abcd")
    assert client.post("/bridge/webhooks/hunan-zwfw", content=body, headers=headers).status_code == 202
    assert client.post("/bridge/webhooks/hunan-zwfw", content=body, headers=headers).status_code == 409
    forged = sign(body, "guess", timestamp=int(time.time()), nonce="n-0009abcd")
    assert client.post("/bridge/webhooks/hunan-zwfw", content=body, headers=forged).status_code == 401
    assert client.post("/bridge/webhooks/other-platform", content=body, headers=headers).status_code == 404
    assert [n.nonce for n in bridge.notices] == ["n-0008abcd"]


@pytest.mark.parametrize("body", [b"[" * 50_000, b'{"a":' * 12_000, b'{"event":"item.updated","x":' + b"[" * 40_000])
def test_a_signed_deeply_nested_body_is_a_clear_400_not_a_server_error(endpoint, body):
    client, bridge = endpoint
    headers = sign(body, SECRET, timestamp=int(time.time()), nonce=f"n-deep{len(body)}")
    answer = client.post("/bridge/webhooks/hunan-zwfw", content=body, headers=headers)
    assert answer.status_code == 400 and "nests too deeply" in answer.json()["detail"]
    assert bridge.notices == []


def test_a_webhook_body_past_the_bound_is_413_with_or_without_a_declared_length(endpoint):
    client, bridge = endpoint
    body = b'{"event":"item.updated","pad":"' + b"x" * 70_000 + b'"}'
    headers = sign(body, SECRET, timestamp=int(time.time()), nonce="n-big00001")
    assert client.post("/bridge/webhooks/hunan-zwfw", content=body, headers=headers).status_code == 413
    chunked = client.post("/bridge/webhooks/hunan-zwfw", content=iter([body[:40_000], body[40_000:]]), headers=headers)
    assert chunked.status_code == 413 and "65536" in chunked.json()["detail"][0]["msg"]
    assert bridge.notices == []
