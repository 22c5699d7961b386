"""`make run`'s main job as a user meets it: `tongyuan up` on free ports (embedded Tansu, every
service, the reference catalog and regions), publish over HTTP and from a CMS over Kafka, read
the column, the detail page and search as a citizen would, withdraw, and Ctrl-C — after which
nothing it started is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.common.broker import free_port, port_open

ROOT = Path(__file__).resolve().parents[2]
PLACEMENT = {"region_code": "430102001", "domain_code": "D14", "level1_id": "D14-02", "level2_id": "D14-02-02"}
STARTUP_S, VISIBLE_S = 150.0, 30.0


class Up:
    """A running `tongyuan up` and what a user knows about it: the portal and the broker."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.broker_port, self.port = free_port(), free_port()
        while self.port == self.broker_port:
            self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}
        env.update(
            TONGYUAN_VAR_DIR=str(var_dir), TONGYUAN_EMBEDDED_BROKER_PORT=str(self.broker_port), TONGYUAN_PORT=str(self.port), TONGYUAN_LOG_LEVEL="warning"
        )
        self.log = open(var_dir / "up.log", "wb")  # noqa: SIM115 - closed in stop()
        # A session of its own, like a terminal's: SIGINT reaches `up`, which stops the rest.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started: dict[int, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return (self.var_dir / "up.log").read_text(errors="replace")

    def wait_healthy(self) -> None:
        deadline, last = time.monotonic() + STARTUP_S, "no answer"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"`tongyuan up` exited with {self.process.returncode}:\n{self.output()[-3000:]}"
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=5)
                if response.status_code == 200:
                    self.started = _process_tree(self.process.pid)
                    return
                last = response.text[:500]
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        pytest.fail(f"/healthz was not 200 within {STARTUP_S:.0f} s (last: {last}):\n{self.output()[-3000:]}")

    def second_shell(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """`tongyuan <args>` as a user's second terminal runs it: only the var dir in common with
        the stack (no TONGYUAN_KAFKA_BOOTSTRAP or any other setting)."""
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            cwd=ROOT,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}, "TONGYUAN_VAR_DIR": str(self.var_dir)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def token(self) -> str:
        """An editor's token for the region, from the stack's own local key (as `tongyuan token`)."""
        result = self.second_shell("token", "--region", PLACEMENT["region_code"][:6], "--user", "e2e-clerk", timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def interrupt(self, timeout: float = 45.0) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self.log.close()

    def stop(self) -> None:
        """Teardown: whatever is still running is killed (the test that stops it asserts)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in _alive(self.started):
            os.kill(pid, signal.SIGKILL)
        if not self.log.closed:
            self.log.close()


def _process_tree(root: int) -> dict[int, str]:
    """pid → command line of root and everything under it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, queue = {}, [root]
    while queue:
        pid = queue.pop()
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        queue.extend(children.get(pid, []))
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    """Those of `processes` still running as the same program (a pid may have been reused)."""
    alive = []
    for pid, command in processes.items():
        try:
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            same = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip() == command
        except OSError:
            continue
        if same and status != "Z":
            alive.append(pid)
    return alive


def _eventually(check: Callable[[], object], what: str, timeout: float = VISIBLE_S):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (httpx.HTTPError, AssertionError) as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def up(tmp_path_factory) -> Iterator[Up]:
    stack = Up(tmp_path_factory.mktemp("up"))
    try:
        stack.wait_healthy()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def clerk(up) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {up.token()}"}, timeout=30) as client:
        yield client


def _search(up: Up, query: str) -> str:
    response = httpx.get(f"{up.url}/search", params={"q": query, "region": PLACEMENT["region_code"]}, timeout=10)
    assert response.status_code == 200, response.text[:300]
    return response.text


def test_the_portal_reports_every_part_up(up):
    checks = httpx.get(f"{up.url}/healthz", timeout=10).json()["checks"]
    assert {name.split(":")[0] for name in checks} >= {"broker", "consumer", "store"}
    assert all(check["up"] for check in checks.values()), checks
    assert f"portal: http://127.0.0.1:{up.port}/" in up.output(), "`up` prints the portal's address"
    # … and says when everything answers (it checks /healthz once a second, however long it takes).
    deadline = time.monotonic() + STARTUP_S
    while "ready: every part is up" not in up.output() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ready: every part is up" in up.output(), up.output()[-2000:]


def test_the_cheaper_consumers_run_at_a_lower_cpu_weight(up):
    # /proc/<pid>/stat's 19th field (the 17th after the command) is the nice value.
    niceness = {
        command.split(" run ", 1)[1]: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        for pid, command in up.started.items()
        if " services.cli run " in command
    }
    base = os.getpriority(os.PRIO_PROCESS, up.process.pid)
    assert niceness == {
        "publisher": base,
        "indexer": base,
        "portal": base,
        "column": base + 6,
        "embed": base + 5,
        "supervision": base + 6,
    }, niceness


def test_a_clerks_publication_reaches_the_column_the_detail_page_and_search(up, clerk):
    title = f"文艺路街道城乡低保办事指南（e2e {uuid.uuid4().hex[:6]}）"
    response = clerk.post(
        "/v1/publications",
        json={
            "placements": [PLACEMENT],
            "title": title,
            "body_html": "<p>申请最低生活保障的办理流程。</p><script>alert(1)</script>",
            "formed_at": "2026-11-20",
        },
    )
    assert response.status_code == 202, response.text
    publication_id = response.json()["publication_id"]
    item_page = f"{up.url}/columns/{PLACEMENT['region_code']}/{PLACEMENT['domain_code']}/{PLACEMENT['level2_id']}"

    _eventually(lambda: title in httpx.get(item_page, timeout=10).text, "the item's list page showing it")
    detail = httpx.get(f"{up.url}/publications/{publication_id}", timeout=10)
    assert detail.status_code == 200 and title in detail.text and "办理流程" in detail.text and "<script>alert" not in detail.text
    _eventually(lambda: publication_id in _search(up, "低保办事"), "search finding it by a two-character word")

    withdrawn = clerk.post(f"/v1/publications/{publication_id}/withdraw", json={"type": "withdrawn", "explanation": "信息已更新", "version": 1})
    assert withdrawn.status_code == 202, withdrawn.text
    _eventually(
        lambda: title not in httpx.get(item_page, timeout=10).text and publication_id not in _search(up, "低保办事"),
        "the withdrawal leaving the list and search",
    )
    assert "信息已更新" in httpx.get(f"{up.url}/publications/{publication_id}", timeout=10).text


def test_a_cms_publishes_with_a_plain_kafka_client(up):
    from kafka import KafkaProducer

    title = f"文艺路街道低保审核公示（CMS {uuid.uuid4().hex[:6]}）"
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/cms/e2e",
        "type": "cn.gov.tongyuan.cms.publish-requested.v1",
        "datacontenttype": "application/json",
        "data": {
            "source_ref": f"e2e-{uuid.uuid4().hex[:8]}",
            "actor": {"user": "cms", "roles": ["admin"]},
            "placements": [PLACEMENT],
            "title": title,
            "body_html": "<p>审核公示名单。</p>",
            "formed_at": "2026-11-20",
        },
    }
    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{up.broker_port}")
    try:
        producer.send("tongyuan.cms.v1", key=event["data"]["source_ref"].encode(), value=json.dumps(event, ensure_ascii=False).encode()).get(timeout=30)
    finally:
        producer.close()

    def found() -> bool:
        hits = httpx.get(f"{up.url}/v1/search", params={"q": "审核公示", "region": PLACEMENT["region_code"]}, timeout=10).json()["hits"]
        return any(hit["title"] == title for hit in hits)

    _eventually(found, "the CMS publication in search")


def test_a_command_in_a_second_shell_finds_the_running_stack(up):
    """Only the var dir in common, as a user's second terminal: no TONGYUAN_KAFKA_BOOTSTRAP."""
    assert (up.var_dir / "stack.json").exists()
    result = up.second_shell("dlq", "list", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "dead letter(s) in tongyuan-supervision" in result.stdout


def test_ctrl_c_stops_every_process_it_started(up):
    started = dict(up.started)
    assert len(started) >= 7, f"up, the broker and the services: {started}"
    code = up.interrupt()
    assert code == 0, up.output()[-2000:]
    deadline = time.monotonic() + 10
    while _alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(started), {pid: started[pid] for pid in _alive(started)}
    assert not port_open("127.0.0.1", up.broker_port) and not port_open("127.0.0.1", up.port)
    assert "stopped" in up.output()
    assert not (up.var_dir / "stack.json").exists(), "a clean stop removes the stack's state file"
