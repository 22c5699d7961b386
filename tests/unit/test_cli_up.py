"""What `tongyuan up` tells the person who ran it about /healthz (a real HTTP server on a free port)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.cli import _Readiness


@pytest.fixture
def healthz():
    state = {"status": 503, "checks": {"broker": {"up": True}, "consumer:tongyuan-column": {"up": False}}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps({"checks": state["checks"]}).encode()
            self.send_response(state["status"])
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/healthz", state
    server.shutdown()


def lines(readiness: _Readiness) -> list[tuple[str, bool]]:
    said: list[tuple[str, bool]] = []
    readiness.last_check = 0.0  # no waiting for the once-a-second pace
    readiness.report(lambda text, err=False: said.append((text, err)))
    return said


def test_up_says_ready_once_healthz_answers_200(healthz):
    url, state = healthz
    readiness = _Readiness(url)
    assert lines(readiness) == []  # 503 within the minute: nothing yet
    state["status"] = 200
    (said,) = lines(readiness)
    assert said[0].startswith("ready: every part is up") and not said[1]
    assert lines(readiness) == []  # said once


def test_after_a_minute_up_names_the_parts_still_down(healthz):
    url, _ = healthz
    readiness = _Readiness(url)
    readiness.started -= readiness.PATIENCE + 1
    (said,) = lines(readiness)
    assert said == (f"not ready after 60 s; down: consumer:tongyuan-column (see {url} and var/)", True)


def test_a_portal_not_listening_yet_is_named(healthz):
    readiness = _Readiness("http://127.0.0.1:9/healthz")
    readiness.started -= readiness.PATIENCE + 1
    ((text, err),) = lines(readiness)
    assert "down: portal" in text and err


def test_a_slow_start_is_still_announced_when_it_comes(healthz):
    url, state = healthz
    readiness = _Readiness(url)
    readiness.started -= readiness.PATIENCE + 1
    assert len(lines(readiness)) == 1  # the warning, once
    assert lines(readiness) == []
    state["status"] = 200
    (said,) = lines(readiness)
    assert said[0].startswith("ready: every part is up")
