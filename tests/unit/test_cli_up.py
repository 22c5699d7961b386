"""What `tongyuan up` tells the person who ran it about /healthz (a real HTTP server on a free port)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.stack import Readiness as _Readiness


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


class _Broker:
    """Exits when told; `start` fails while the port is still taken."""

    bootstrap = "127.0.0.1:9"

    def __init__(self, taken: int = 0):
        self.process, self.taken, self.starts = _Process(), taken, 0

    def start(self):
        if self.taken:
            self.taken -= 1
            raise RuntimeError("port 9 is already in use")
        self.starts += 1
        self.process = _Process()
        return self


class _Process:
    returncode = None

    def poll(self):
        return self.returncode


class _Publisher:
    def __init__(self):
        self.requests = 0

    def request_reemission(self):
        self.requests += 1


def test_up_restarts_a_broker_that_died_and_asks_for_a_reemission(monkeypatch):
    from services.common import kafka
    from services.common.settings import Settings
    from services.stack import BrokerKeeper as _BrokerKeeper

    monkeypatch.setattr(kafka, "ensure_topics", lambda *args: None)
    broker, publisher, said = _Broker(taken=1), _Publisher(), []
    keeper = _BrokerKeeper(broker, Settings(kafka_bootstrap=broker.bootstrap), publisher)
    echo = lambda text, err=False: said.append(text)  # noqa: E731
    assert not keeper.keep(echo) and publisher.requests == 0, "a running broker is left alone"
    broker.process.returncode = -9
    assert not keeper.keep(echo) and "did not come back" in said[-1], "the port is still taken"
    assert not keeper.keep(echo) and len(said) == 2, "it waits before trying again"
    keeper.next_try = 0.0
    assert keeper.keep(echo) and broker.starts == 1 and publisher.requests == 1
    assert "exited with -9; restarting it on 127.0.0.1:9" in said[-1]
    assert not keeper.keep(echo) and keeper.restarts == 1
