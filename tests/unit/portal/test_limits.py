"""What one client may take of the portal: writes per token subject and searches per client
address answer 429 with Retry-After past their limits, others carry on; and a client that
trickles its request head is cut off (a real uvicorn server, a raw socket)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from contracts.identity import Principal
from services.common.auth import build_verifier
from services.common.settings import Settings
from services.portal.app import create_app
from services.portal.limits import head_deadline_protocol
from tests.conftest import EDITOR

PLACEMENT = {"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}
OTHER_EDITOR = Principal(user="furong-clerk-2", roles=("editor",), regions=("430102",))


def body(n: int) -> dict:
    return {"placements": [PLACEMENT], "title": f"低保公告{n}", "formed_at": "2026-03-02"}


@pytest.fixture
def portal(tmp_path):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None, portal_writes_per_minute=3, portal_searches_per_minute=2)
    app = create_app(settings)
    _, local = build_verifier(settings)

    def client(principal: Principal | None = None, address: str = "203.0.113.7", token: str | None = None) -> TestClient:
        if principal is not None:
            token = local.mint(principal, audience=settings.auth_audience)
        return TestClient(app, client=(address, 40000), headers={"Authorization": f"Bearer {token}"} if token else {})

    return client


def assert_too_many(response, what: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert what in (response.json()["detail"] if response.headers["content-type"].startswith("application/json") else response.text)


def test_writes_are_limited_per_token_subject(portal):
    clerk = portal(EDITOR)
    assert [clerk.post("/v1/publications", json=body(n)).status_code for n in range(3)] == [202, 202, 202]
    refused = clerk.post("/v1/publications", json=body(3))
    assert_too_many(refused, "提交过于频繁")
    assert refused.json()["retry_after"] == int(refused.headers["retry-after"])
    # The same subject from another address is the same token holder; another subject is not.
    assert portal(EDITOR, address="198.51.100.9").post("/v1/publications", json=body(4)).status_code == 429
    assert portal(OTHER_EDITOR).post("/v1/publications", json=body(5)).status_code == 202
    # Reading is not writing.
    assert clerk.get("/openapi.json").status_code == 200


def test_made_up_subjects_in_unsigned_tokens_are_counted_by_address(portal):
    def forged(subject: str) -> str:
        part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        return f"{part({'alg': 'none'})}.{part({'sub': subject, 'roles': ['admin']})}."

    statuses = [portal(token=forged(f"nobody-{n}")).post("/v1/publications", json=body(n)).status_code for n in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert portal(EDITOR).post("/v1/publications", json=body(9)).status_code == 202, "a real token from that address has its own count"
    assert portal(token=forged("x"), address="198.51.100.9").post("/v1/publications", json=body(10)).status_code == 401


def test_searches_are_limited_per_client_address(portal):
    citizen = portal()
    assert [citizen.get("/v1/search", params={"q": "低保"}).status_code for _ in range(2)] == [200, 200]
    assert_too_many(citizen.get("/v1/search", params={"q": "低保"}), "搜索过于频繁")
    page = citizen.get("/search", params={"q": "低保"})
    assert_too_many(page, "搜索过于频繁")
    assert page.headers["content-type"].startswith("text/html") and "请" in page.text
    assert portal(address="198.51.100.9").get("/search", params={"q": "低保"}).status_code == 200, "another client is not affected"
    assert citizen.get("/openapi.json").status_code == 200, "only searches are counted"


def test_a_limit_of_zero_is_off(tmp_path):
    settings = Settings(var_dir=tmp_path, kafka_bootstrap=None, portal_writes_per_minute=0, portal_searches_per_minute=0)
    client = TestClient(create_app(settings))
    assert all(client.get("/v1/search", params={"q": "低保"}).status_code == 200 for _ in range(30))


def test_the_defaults_serve_a_county_office():
    settings = Settings(kafka_bootstrap=None)
    assert settings.portal_writes_per_minute >= 600 and settings.portal_searches_per_minute >= 600
    assert 0 < settings.portal_header_timeout <= 60


# --- the request head's deadline against a real server ---------------------------------------

DEADLINE = 0.5
PATIENCE = 30.0  # far beyond the deadline: a loaded machine still converges well within it


async def slow_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(DEADLINE * 4)  # a slow answer is not a slow head
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=[HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])
def server(request):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(slow_app, http=head_deadline_protocol(DEADLINE, request.param), lifespan="off", log_level="warning", timeout_keep_alive=60)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(PATIENCE)
    sock.close()


def closed_by_server(conn: socket.socket, trickle: bytes | None) -> bool:
    """Keep trickling `trickle` (or stay silent) until the server closes, or PATIENCE runs out."""
    conn.settimeout(0.2)
    until = time.monotonic() + PATIENCE
    while time.monotonic() < until:
        try:
            if trickle:
                conn.sendall(trickle)
            if conn.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def test_a_trickled_request_head_is_cut_off(server):
    with socket.create_connection(server) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: portal\r\n")
        assert closed_by_server(conn, b"X-Slow: 1\r\n")


def test_a_connection_that_sends_nothing_is_cut_off(server):
    with socket.create_connection(server) as conn:
        assert closed_by_server(conn, None)


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_head(server):
    with socket.create_connection(server) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: portal\r\n\r\n")
        assert read_response(conn).endswith(b"ok")
        conn.sendall(b"GET / HTTP/1.1\r\n")
        assert closed_by_server(conn, b"X-Slow: 1\r\n")


def test_a_prompt_head_with_a_slow_answer_is_served(server):
    with socket.create_connection(server) as conn:
        conn.sendall(b"GET /slow HTTP/1.1\r\nHost: portal\r\n\r\n")
        assert read_response(conn).startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET / HTTP/1.1\r\nHost: portal\r\n\r\n")  # and the connection lives on
        assert read_response(conn).endswith(b"ok")


def read_response(conn: socket.socket) -> bytes:
    conn.settimeout(PATIENCE)
    data = b""
    while not data.endswith(b"ok"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
