"""`make bench`: N events through the whole pipeline, against the raw broker in the same run.

It starts its own `tongyuan up` (embedded Tansu, free ports, a temporary var dir) and:

1. throughput: produces N CMS publish requests (CloudEvents on tongyuan.cms.v1) as fast
   as kafka-python can, and times until the publisher store, the column store and the
   search index all hold them (polled read-only with sqlite3);
2. latency: M publications over HTTP (POST /v1/publications) paced at R/s, each timed
   from its send until it is live in both the column store and the search index;
3. broker ceiling: the same N payloads produced to a fresh 4-partition topic on the same
   broker and consumed back (aiokafka, no group, no processing);

while sampling every process's RSS and CPU (/proc). It prints the figures next to their
targets and a `BENCH_JSON {...}` line (also written to bench/out/). Not a timed test: a
missed target is reported, never fatal; only events that never arrive are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.machine import describe, parallel_capacity

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
PARTITIONS = 4
CMS_SOURCE = "/cms/bench"

TARGET_EVENTS_PER_S = 1000.0
TARGET_P99_MS = 2000.0
TARGET_RSS_MB = 300.0

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_MB = 1024.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchFailure(Exception):
    """The run could not produce its figures (events lost, the stack did not start …)."""


def failed(results: dict, exc: BenchFailure | KeyboardInterrupt) -> int:
    """Records why a run ended early in its results; the exit code: 1, or 130 when interrupted."""
    if isinstance(exc, KeyboardInterrupt):
        results["failure"] = "interrupted"
        return 130
    results["failure"] = str(exc)
    return 1


# --------------------------------------------------------------------------------------
# Realistic payloads: catalog items × Changsha counties and townships, Chinese text 1–2 KB
# --------------------------------------------------------------------------------------

_PARAGRAPHS = (
    "为进一步做好{item}相关工作，切实保障人民群众的知情权、参与权和监督权，根据《中华人民共和国政府信息公开条例》和上级部门的工作部署，结合{region}实际，现将有关事项公告如下。",
    "一、适用范围。本公告适用于{region}辖区内符合条件的单位和个人。申请人应当如实提交申报材料，并对材料的真实性、完整性负责。",
    "二、办理程序。申请人可通过湖南省政务服务网、“湘易办”移动端或{body}政务服务窗口提出申请，受理部门应当在法定时限内完成审核，并将办理结果及时告知申请人。",
    "三、公开内容。主要包括{content}。相关信息在形成或者变更之日起二十个工作日内予以公开，法律、法规另有规定的从其规定。",
    "四、依据。{basis}。",
    "五、监督管理。有关部门应当加强事中事后监管，对弄虚作假、骗取补助资金等行为依法依规严肃处理，并按规定纳入信用记录，接受社会监督。",
    "六、公示期间。自本公告发布之日起公示七个工作日。公示期间如有异议，请以书面形式向{body}反映，反映情况应当实事求是，并提供必要的联系方式。",
    "七、咨询方式。工作日上午九时至十二时，下午二时三十分至五时三十分，可通过政务服务便民热线12345或者前往{body}综合服务大厅咨询。",
    "八、其他事项。本公告由{body}负责解释，自发布之日起施行。此前有关规定与本公告不一致的，以本公告为准。",
    "附：{item}办理流程图、申报材料清单及相关表格，可在{region}人民政府门户网站“政府信息公开”专栏下载。",
)
_KINDS = ("公告", "通知", "公示", "通告", "情况说明", "工作方案", "实施细则")


@dataclass(frozen=True)
class Draft:
    region_code: str
    domain_code: str
    level1_id: str
    level2_id: str
    title: str
    body_html: str
    publishing_body: str

    def as_body(self) -> dict:
        return {
            "placements": [
                {
                    "region_code": self.region_code,
                    "domain_code": self.domain_code,
                    "level1_id": self.level1_id,
                    "level2_id": self.level2_id,
                }
            ],
            "title": self.title,
            "body_html": self.body_html,
            "formed_at": "2026-03-02",
            "publishing_body": self.publishing_body,
            "attachments": [{"name": "附件1.pdf", "url": "https://example.gov.cn/files/a.pdf"}],
        }


class Payloads:
    """Deterministic drafts from the standard catalog and the Changsha regions."""

    def __init__(self, seed: int = 20260302):
        from contracts.catalog import regions_of_city, standard_catalog

        self.random = random.Random(seed)
        catalog = standard_catalog()
        self.items = [(d, l1, l2) for d in catalog.domains for l1 in d.level1 for l2 in l1.items]
        self.regions = [r for r in regions_of_city("4301") if r.level in ("county", "township")]
        if not self.items or not self.regions:
            raise BenchFailure("the catalog or the regions are empty")

    def draft(self, n: int) -> Draft:
        rnd = self.random
        domain, level1, level2 = rnd.choice(self.items)
        region = rnd.choice(self.regions)
        body = f"{region.name}{rnd.choice(('人民政府', '政务服务中心', '民政办', '社会事务办', '综合执法队'))}"
        fill = {
            "item": level2.name,
            "region": region.name,
            "body": body,
            "content": (level2.content or f"{level1.name}的有关信息").rstrip("。"),
            "basis": (level2.basis or "《中华人民共和国政府信息公开条例》").rstrip("。"),
        }
        target_chars = rnd.randint(380, 620)  # 1.1–1.9 KB of UTF-8 text, plus the envelope
        paragraphs, length = [], 0
        for template in [
            _PARAGRAPHS[0],
            *rnd.sample(_PARAGRAPHS[1:], len(_PARAGRAPHS) - 1),
        ]:
            paragraph = template.format(**fill)
            paragraphs.append(f"<p>{paragraph}</p>")
            length += len(paragraph)
            if length >= target_chars:
                break
        title = f"{region.name}关于{domain.name}{level2.name}的{rnd.choice(_KINDS)}（2026年第{n}号）"[:200]
        return Draft(
            region.code,
            domain.code,
            level1.id,
            level2.id,
            title,
            "".join(paragraphs),
            body,
        )

    def cms_event(self, run_id: str, n: int) -> tuple[bytes, bytes]:
        from contracts.events import CMS_PUBLISH_REQUESTED

        ref = f"bench-{run_id}-{n}"
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": CMS_SOURCE,
            "type": CMS_PUBLISH_REQUESTED,
            "datacontenttype": "application/json",
            "data": {"source_ref": ref, "actor": {"user": "bench-cms", "roles": ["admin"]}, **self.draft(n).as_body()},
        }
        return ref.encode(), json.dumps(event, ensure_ascii=False).encode()


def _crc32c_impl() -> str:
    """kafka-python checksums every record batch in pure Python unless `crc32c` is installed."""
    try:
        from kafka.record import util

        return "c (crc32c package)" if getattr(util, "crc32c_c", None) else "pure python"
    except ImportError:
        return "unknown"


def bench_producer(bootstrap: str):
    from kafka import KafkaProducer

    from services.common.kafka import RELAY_COMPRESSION

    # The relay's settings, minus idempotence (nothing here retries).
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        compression_type=RELAY_COMPRESSION,
    )


def produce_all(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Seconds from the first send until the broker acked the last message."""
    producer = bench_producer(bootstrap)
    try:
        producer.partitions_for(topic)  # metadata outside the timing
        started = time.monotonic()
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush(timeout=300)
        elapsed = time.monotonic() - started
        failed = sum(1 for f in futures if f.failed())
        if failed:
            raise BenchFailure(f"{failed} of {len(messages)} messages to {topic} were not acknowledged")
        return elapsed
    finally:
        producer.close(timeout=10)


# --------------------------------------------------------------------------------------
# Processes: the `tongyuan up` tree, its RSS and CPU from /proc
# --------------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def _ppid_and_cpu(pid: int) -> tuple[int, float] | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    # fields[0] is the state (field 3): ppid is field 4, utime 14, stime 15.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status_kb(pid: int, key: str) -> int | None:
    status = _read(f"/proc/{pid}/status")
    if not status:
        return None
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def _name_of(pid: int) -> str | None:
    raw = _read(f"/proc/{pid}/cmdline")
    if not raw:
        return None
    argv = raw.rstrip("\0").split("\0")
    if "services.cli" in argv:
        i = argv.index("services.cli")
        if argv[i + 1 : i + 2] == ["up"]:
            return "supervisor (up)"
        if argv[i + 1 : i + 2] == ["run"] and len(argv) > i + 2:
            return argv[i + 2]
    if "--listener-url" in argv or "broker" in argv[1:2]:
        return "tansu (broker)"
    return Path(argv[0]).name or None


def descendants(root: int) -> dict[int, str]:
    """pid → name for root and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _ppid_and_cpu(int(entry))
            if info:
                children.setdefault(info[0], []).append(int(entry))
    found, queue = {}, [root]
    while queue:
        pid = queue.pop()
        name = _name_of(pid)
        # A child forked by `up` still carries up's command line until it execs: not a restart of up.
        if name and not (name == "supervisor (up)" and pid != root):
            found[pid] = name
        queue.extend(children.get(pid, []))
    return found


@dataclass
class ProcessStats:
    name: str
    pid: int
    peak_rss_kb: int = 0  # the largest VmRSS sampled
    hwm_kb: int = 0  # VmHWM, the kernel's own peak
    cpu_s: float = 0.0
    restarts: int = 0


class Sampler(threading.Thread):
    """Samples VmRSS, VmHWM and CPU time of the stack's processes (and of this one)."""

    def __init__(self, root_pid: int, interval: float = 0.25):
        super().__init__(name="bench-sampler", daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.processes: dict[str, ProcessStats] = {}
        self.known_pids: dict[int, str] = {}

    def sample(self) -> None:
        tree = descendants(self.root_pid)
        tree[os.getpid()] = "bench (this process)"
        with self.lock:
            for pid, name in tree.items():
                stats = self.processes.get(name)
                if stats is None:
                    stats = self.processes[name] = ProcessStats(name, pid)
                elif stats.pid != pid:
                    if os.path.exists(f"/proc/{stats.pid}"):
                        # The process is still there: this is a child it forked that has not
                        # exec'd yet (Python's platform module runs `file` so), not a restart.
                        continue
                    stats.restarts += 1
                    stats.pid = pid
                self.known_pids[pid] = name
                rss, hwm, info = (
                    _status_kb(pid, "VmRSS"),
                    _status_kb(pid, "VmHWM"),
                    _ppid_and_cpu(pid),
                )
                if rss:
                    stats.peak_rss_kb = max(stats.peak_rss_kb, rss)
                if hwm:
                    stats.hwm_kb = max(stats.hwm_kb, hwm)
                if info:
                    stats.cpu_s = info[1]

    def pids(self) -> dict[str, int]:
        """Each sampled process's current pid, by name."""
        self.sample()
        with self.lock:
            return {name: s.pid for name, s in self.processes.items()}

    def cpu(self) -> dict[str, float]:
        self.sample()
        with self.lock:
            return {name: s.cpu_s for name, s in self.processes.items()}

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.sample()
            except (
                OSError,
                ValueError,
                IndexError,
            ) as exc:  # a process vanished mid-read: next round
                log(f"sampler: {exc!r}")


@dataclass
class Phase:
    name: str
    started: float
    cpu_before: dict[str, float]
    wall_s: float = 0.0
    cpu_percent: dict[str, float] = field(default_factory=dict)
    rss_mb_at_end: dict[str, float] = field(default_factory=dict)

    def end(self, sampler: Sampler) -> None:
        self.wall_s = time.monotonic() - self.started
        after = sampler.cpu()
        with sampler.lock:
            pids = {name: s.pid for name, s in sampler.processes.items()}
        self.rss_mb_at_end = {name: round((_status_kb(pid, "VmRSS") or 0) / PAGE_MB, 1) for name, pid in pids.items()}
        self.cpu_percent = {name: round(100.0 * (after[name] - self.cpu_before.get(name, 0.0)) / self.wall_s, 1) for name in after if self.wall_s > 0}


def begin(name: str, sampler: Sampler) -> Phase:
    return Phase(name, time.monotonic(), sampler.cpu())


def cpu_per_event(results: dict) -> dict[str, float]:
    """CPU milliseconds each process spent per event while the throughput phase ran: the
    figure to shrink, since the stages share the machine's cores."""
    phase = next((p for p in results.get("phases", []) if p["name"] == "throughput"), None)
    events = results.get("throughput", {}).get("events")
    if not phase or not events:
        return {}
    return {name: percent / 100 * phase["wall_s"] * 1000 / events for name, percent in phase["cpu_percent"].items()}


# --------------------------------------------------------------------------------------
# The stack: `python -m services.cli up` on free ports in a temporary var dir
# --------------------------------------------------------------------------------------


class Stack:
    def __init__(self, var_dir: Path):
        from services.common.broker import free_port

        self.var_dir = var_dir
        self.broker_port = free_port()
        self.port = free_port()
        while self.port == self.broker_port:
            self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.seen_pids: dict[int, str] = {}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        """An office (admin) token from the stack's own local key, minted the way `tongyuan token` does."""
        from contracts.identity import Principal
        from services.common.auth import build_verifier
        from services.common.settings import Settings

        settings = Settings(var_dir=self.var_dir, kafka_bootstrap=None)
        _, local = build_verifier(settings)
        token = local.mint(Principal(user="bench", roles=("admin",)), audience=settings.auth_audience)
        return {"Authorization": f"Bearer {token}"}

    @property
    def log_path(self) -> Path:
        return self.var_dir / "up.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TONGYUAN_")}
        env.update(
            TONGYUAN_VAR_DIR=str(self.var_dir),
            TONGYUAN_EMBEDDED_BROKER_PORT=str(self.broker_port),
            TONGYUAN_PORT=str(self.port),
            TONGYUAN_LOG_LEVEL="warning",
            # One client publishing at the measured rate: the per-token write limit is not what is measured.
            TONGYUAN_PORTAL_WRITES_PER_MINUTE="0",
        )
        # A session of its own: a Ctrl-C at the terminal reaches only us, and we stop it.
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def remember_tree(self) -> None:
        if self.alive():
            self.seen_pids.update(descendants(self.process.pid))

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise BenchFailure(f"`tongyuan up` exited with {self.process.returncode}; see {self.log_path}")
                try:
                    response = client.get(f"{self.url}/healthz")
                    if response.status_code == 200:
                        return
                    down = [name for name, check in response.json().get("checks", {}).items() if not check.get("up")]
                    last = f"{response.status_code}, down: {', '.join(down)}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.25)
        raise BenchFailure(f"/healthz did not answer 200 within {timeout:.0f}s (last: {last})")

    def stop(self) -> None:
        if self.process is None:
            return
        self.remember_tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                log("`tongyuan up` did not stop within 30 s; killing it")
                self.process.kill()
                self.process.wait()
        # Anything left behind (the broker has no parent-death signal): end it by pid.
        for pid, name in self.seen_pids.items():
            if pid != self.process.pid and _name_of(pid) == name:
                log(f"{name} (pid {pid}) outlived `tongyuan up`; killing it")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# --------------------------------------------------------------------------------------
# The stores, read-only
# --------------------------------------------------------------------------------------

STORE_COUNTS = {
    "publisher": ("publisher.db", "SELECT count(*) FROM publisher_publications"),
    "column": (
        "column.db",
        "SELECT count(*) FROM column_publications WHERE status = 'published'",
    ),
    "search": (
        "search.db",
        "SELECT count(*) FROM search_documents WHERE status = 'published'",
    ),
}
VISIBLE = {
    "column": (
        "column.db",
        "SELECT publication_id FROM column_publications WHERE status = 'published' AND publication_id IN ({})",
    ),
    "search": (
        "search.db",
        "SELECT publication_id FROM search_documents WHERE status = 'published' AND publication_id IN ({})",
    ),
}


class Stores:
    def __init__(self, var_dir: Path):
        self.var_dir = var_dir
        self.connections: dict[str, sqlite3.Connection] = {}

    def _connection(self, filename: str) -> sqlite3.Connection:
        if filename not in self.connections:
            path = self.var_dir / filename
            if not path.exists():
                raise BenchFailure(f"no store at {path}")
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
            connection.execute("PRAGMA query_only = ON")
            self.connections[filename] = connection
        return self.connections[filename]

    def counts(self, stores: list[str] | None = None) -> dict[str, int]:
        return {
            store: self._connection(filename).execute(query).fetchone()[0]
            for store, (filename, query) in STORE_COUNTS.items()
            if stores is None or store in stores
        }

    def present(self, ids: list[str]) -> dict[str, set[str]]:
        """Per store (column, search): those of `ids` live in it."""
        present: dict[str, set[str]] = {}
        for store, (filename, query) in VISIBLE.items():
            found: set[str] = set()
            connection = self._connection(filename)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found.update(r[0] for r in connection.execute(query.format(",".join("?" * len(chunk))), chunk))
            present[store] = found
        return present

    def visible(self, ids: list[str]) -> set[str]:
        """Those of `ids` live in both the column store and the search index."""
        present = self.present(ids)
        return present["column"] & present["search"]

    def relay_delays_ms(self, ids: list[str]) -> list[float]:
        """Outbox row written → marked sent (broker ack), from the publisher's own timestamps."""
        delays = []
        connection = self._connection("publisher.db")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = connection.execute(
                f"SELECT created_at, sent_at FROM publisher_outbox WHERE sent_at IS NOT NULL AND key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for created, sent in rows:
                delays.append(1000 * (datetime.fromisoformat(sent) - datetime.fromisoformat(created)).total_seconds())
        return delays

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# The phases
# --------------------------------------------------------------------------------------


def warm_up(stack: Stack, stores: Stores, payloads: Payloads, run_id: str) -> None:
    """One publication over HTTP and one over the CMS topic, both visible everywhere: every
    consumer group (publisher, column, indexer) is assigned and has applied an event."""
    with httpx.Client(timeout=30, headers=stack.auth) as client:
        response = client.post(f"{stack.url}/v1/publications", json=payloads.draft(0).as_body())
        if response.status_code != 202:
            raise BenchFailure(f"the warm-up publication got {response.status_code}: {response.text[:500]}")
        http_id = response.json()["publication_id"]
    from contracts.events import TOPIC_CMS

    before = stores.counts()["publisher"]
    produce_all(stack.bootstrap, TOPIC_CMS, [payloads.cms_event(f"{run_id}-warmup", 0)])
    wait_until(
        lambda: stores.counts()["publisher"] > before,
        120,
        "the CMS warm-up event to reach the publisher store",
    )

    def caught_up() -> bool:
        counts = stores.counts()
        return counts["column"] >= counts["publisher"] and counts["search"] >= counts["publisher"]

    wait_until(caught_up, 120, "the warm-ups in the column store and the index")
    if http_id not in stores.visible([http_id]):
        raise BenchFailure("the HTTP warm-up publication is not visible")


@dataclass
class Throughput:
    events: int
    produce_s: float
    store_s: dict[str, float | None]
    final_counts: dict[str, int]
    complete: bool

    @property
    def total_s(self) -> float | None:
        times = list(self.store_s.values())
        return None if any(t is None for t in times) else max(times)  # type: ignore[type-var]

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.total_s if self.total_s else None


def poll_interval(counts: dict[str, int], base: dict[str, int], target: dict[str, int], elapsed: float) -> float:
    """A tenth of a second once the slowest store is about a second from done; up to a
    second while it is far off (judged from its rate so far). The finish is then timed to
    ~0.1 s, and the counting costs a fraction of what polling at 10 Hz did."""
    rates = [(counts[s] - base[s]) / elapsed for s in counts if elapsed > 0]
    left = [(target[s] - counts[s]) for s in counts if counts[s] < target[s]]
    if not left or not rates or min(rates) <= 0:
        return 0.1
    return min(1.0, max(0.1, (max(left) / min(rates) - 1.0) / 4))


def throughput_phase(
    stack: Stack,
    stores: Stores,
    messages: list[tuple[bytes, bytes]],
    timeout: float,
    stall: float,
) -> Throughput:
    from contracts.events import TOPIC_CMS

    n = len(messages)
    base = stores.counts()
    target = {store: count + n for store, count in base.items()}
    reached: dict[str, float | None] = {store: None for store in base}
    started = time.monotonic()
    produce_s = produce_all(stack.bootstrap, TOPIC_CMS, messages)
    log(f"produced {n} CMS events in {produce_s:.2f}s ({n / produce_s:,.0f}/s); waiting for the stores")
    last_progress, last_total, last_report = time.monotonic(), -1, time.monotonic()
    counts = base
    while True:
        # Only the stores still short are counted (a count scans the table), and the poll
        # slows down while the finish is far off: polling fast, the bench's own counting takes
        # a noticeable share of a core from the processes it measures.
        counts = {**counts, **stores.counts([s for s, t in reached.items() if t is None])}
        now = time.monotonic()
        for store, count in counts.items():
            if reached[store] is None and count >= target[store]:
                reached[store] = now - started
        if all(t is not None for t in reached.values()):
            break
        total = sum(counts.values())
        if total != last_total:
            last_total, last_progress = total, now
        if not stack.alive():
            break
        if now - last_progress > stall or now - started > timeout:
            break
        if now - last_report > 5:
            done = {store: counts[store] - base[store] for store in counts}
            log(f"  {now - started:6.1f}s  " + "  ".join(f"{s} {d:,}/{n:,}" for s, d in done.items()))
            last_report = now
        time.sleep(poll_interval(counts, base, target, now - started))
    done = {store: counts[store] - base[store] for store in counts}
    return Throughput(n, produce_s, reached, done, all(t is not None for t in reached.values()))


@dataclass
class Latency:
    rate: float
    sent: int
    visible: int
    send_s: float
    send_lag_max_ms: float
    ack_ms: dict[str, float]
    visible_ms: dict[str, float]
    stages: dict[str, dict[str, float]]
    errors: list[str]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return ordered[max(0, min(len(ordered) - 1, round(p / 100.0 * len(ordered) + 0.5) - 1))]

    return {
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


SENDERS = 32


def latency_phase(
    stack: Stack,
    stores: Stores,
    payloads: Payloads,
    count: int,
    rate: float,
    settle_timeout: float,
) -> Latency:
    lock = threading.Lock()
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    visible: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {"column": {}, "search": {}}
    errors: list[str] = []
    lag = [0.0]
    done_sending = threading.Event()
    stop_polling = threading.Event()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30, headers=headers)
            clients.append(local.client)
        return local.client

    clients: list[httpx.Client] = []
    headers = stack.auth
    bodies = [payloads.draft(100_000 + i).as_body() for i in range(count)]

    def send(body: dict, scheduled: float) -> None:
        t_send = time.monotonic()
        with lock:
            lag[0] = max(lag[0], t_send - scheduled)
        try:
            response = client().post(f"{stack.url}/v1/publications", json=body)
        except httpx.HTTPError as exc:
            with lock:
                errors.append(repr(exc))
            return
        t_ack = time.monotonic()
        if response.status_code != 202:
            with lock:
                errors.append(f"{response.status_code}: {response.text[:200]}")
            return
        publication_id = response.json()["publication_id"]
        with lock:
            # From the scheduled moment, not from when a sender thread got to it: a clerk's
            # clock starts at the click, however busy the other clerks keep the portal.
            sent[publication_id] = scheduled
            acked[publication_id] = t_ack

    def poll() -> None:
        # Every ~20 ms: which of the sent ids are live in both the column and the index.
        while not stop_polling.is_set():
            with lock:
                pending = [pid for pid in sent if pid not in visible]
            if pending:
                try:
                    present = stores.present(pending)
                except sqlite3.Error as exc:
                    log(f"poller: {exc!r}")
                    present = {"column": set(), "search": set()}
                now = time.monotonic()
                with lock:
                    for store, found in present.items():
                        for pid in found:
                            seen[store].setdefault(pid, now)
                    for pid in present["column"] & present["search"]:
                        visible.setdefault(pid, now)
            elif done_sending.is_set():
                with lock:
                    if len(visible) >= len(sent):
                        return
            stop_polling.wait(0.02)

    poller = threading.Thread(target=poll, name="bench-visibility", daemon=True)
    poller.start()
    started = time.monotonic()
    # Enough senders that a slow answer does not hold back the next scheduled publication.
    with ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="bench-http") as pool:
        for i, body in enumerate(bodies):
            scheduled = started + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, body, scheduled)
    send_s = time.monotonic() - started
    done_sending.set()
    deadline = time.monotonic() + settle_timeout
    while poller.is_alive() and time.monotonic() < deadline:
        poller.join(0.1)
    stop_polling.set()
    poller.join(5)
    for c in clients:
        c.close()
    with lock:
        ack_ms = percentiles([1000 * (acked[p] - sent[p]) for p in sent])
        visible_ms = percentiles([1000 * (visible[p] - sent[p]) for p in visible])
        stages = {f"{store}_ms": percentiles([1000 * (t - sent[p]) for p, t in times.items()]) for store, times in seen.items()}
        ids = list(sent)
    try:
        stages = {"relay_ms": percentiles(stores.relay_delays_ms(ids)), **stages}
    except (sqlite3.Error, ValueError) as exc:
        log(f"outbox timestamps: {exc!r}")
    return Latency(
        rate,
        len(sent),
        len(visible),
        send_s,
        1000 * lag[0],
        ack_ms,
        visible_ms,
        stages,
        errors[:10],
    )


@dataclass
class Ceiling:
    events: int
    produce_s: float
    consume_s: float

    @property
    def total_s(self) -> float:
        return self.produce_s + self.consume_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.total_s


def ceiling_phase(
    bootstrap: str,
    run_id: str,
    messages: list[tuple[bytes, bytes]],
    timeout: float,
    client: str = "kafka-python",
) -> Ceiling:
    """Produce (kafka-python, like the CMS side and the relay; or aiokafka, for comparison)
    then consume (aiokafka, no group) the same payloads on a fresh topic; no processing."""
    from services.common.kafka import ensure_topics

    topic = f"bench.ceiling.{run_id}.{client}"
    ensure_topics(bootstrap, PARTITIONS, [topic])

    async def produce_aiokafka() -> float:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        await producer.start()
        try:
            await producer.partitions_for(topic)
            started = time.monotonic()
            futures = [await producer.send(topic, key=key, value=value) for key, value in messages]
            await asyncio.gather(*futures)
            return time.monotonic() - started
        finally:
            await producer.stop()

    async def measure() -> Ceiling:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            if client == "aiokafka":
                produce_s = await produce_aiokafka()
            else:
                produce_s = await asyncio.to_thread(produce_all, bootstrap, topic, messages)
            started = time.monotonic()
            received = 0
            while received < len(messages):
                if time.monotonic() - started > timeout:
                    raise BenchFailure(f"the ceiling consumer got {received} of {len(messages)} messages in {timeout:.0f}s")
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                received += sum(len(records) for records in batches.values())
            return Ceiling(len(messages), produce_s, time.monotonic() - started)
        finally:
            await consumer.stop()

    return asyncio.run(measure())


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "MISS")


def fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def report(results: dict) -> str:
    lines: list[str] = []
    add = lines.append
    env = results["environment"]
    add("")
    add(f"Tongyuan pipeline benchmark  {results['started_at']}  ({env['cpus']} CPUs, Python {env['python']}, {env['platform']})")
    add(f"kafka-python CRC32C: {env.get('kafka_python_crc32c')}; load average at start {' '.join(f'{x:.2f}' for x in env.get('loadavg_at_start', ()))}")
    if env.get("machine"):
        machine = env["machine"]
        add(f"machine: {describe(machine)}; a fixed piece of work took {machine['single_s'] * 1000:,.0f} ms alone (compare runs by it)")
    add(
        f"embedded Tansu, SQLite stores; payloads {results['payload_bytes']['mean']:,.0f} B mean ({results['payload_bytes']['min']:,}–{results['payload_bytes']['max']:,} B)"
    )
    add("")
    t = results.get("throughput")
    if t:
        add(f"Throughput: {t['events']:,} CMS events produced in {t['produce_s']:.2f}s ({t['produce_events_per_s']:,.0f}/s)")
        for store in ("publisher", "column", "search"):
            at = t["store_s"][store]
            add(f"  {store:<10} holds all at  {fmt(at, '.2f', ' s'):>10}   ({t['final_counts'][store]:,}/{t['events']:,})")
        ok = None if t["events_per_s"] is None else t["events_per_s"] >= TARGET_EVENTS_PER_S
        add(f"  pipeline               {fmt(t['events_per_s'], ',.0f', ' events/s'):>18}   target ≥ {TARGET_EVENTS_PER_S:,.0f}   {verdict(ok)}")
    c = results.get("ceiling")
    if c:
        add(
            f"  broker ceiling         {c['events_per_s']:>11,.0f} events/s   (produce {c['produce_s']:.2f}s + consume {c['consume_s']:.2f}s, {PARTITIONS} partitions, no processing)"
        )
        f = results.get("ceiling_aiokafka_producer")
        if f:
            add(
                f"  (same, aiokafka producer {f['events_per_s']:>8,.0f} events/s   (produce {f['produce_s']:.2f}s + consume {f['consume_s']:.2f}s; for comparison only)"
            )
        if t and t["events_per_s"]:
            add(f"  pipeline / ceiling     {results['ratio_pipeline_to_ceiling']:>18.1%}")
    add("")
    lat = results.get("latency")
    if lat:
        v = lat["visible_ms"]
        add(
            f"Latency: {lat['sent']:,} publications over HTTP at {lat['rate']:g}/s (sent in {lat['send_s']:.1f}s, max send lag {lat['send_lag_max_ms']:.0f} ms), {lat['visible']:,} visible"
        )
        a = lat["ack_ms"]
        if a:
            add(f"  publish → 202          p50 {a['p50']:7.0f} ms   p95 {a['p95']:7.0f} ms   p99 {a['p99']:7.0f} ms   max {a['max']:7.0f} ms")
        stages = lat.get("stages", {})
        labels = {
            "relay_ms": "outbox → broker ack",
            "column_ms": "publish → column",
            "search_ms": "publish → search",
        }
        for stage, label in labels.items():
            q = stages.get(stage)
            if q:
                add(f"  {label:<22} p50 {q['p50']:7.0f} ms   p95 {q['p95']:7.0f} ms   p99 {q['p99']:7.0f} ms   max {q['max']:7.0f} ms")
        if v:
            add(f"  publish → visible      p50 {v['p50']:7.0f} ms   p95 {v['p95']:7.0f} ms   p99 {v['p99']:7.0f} ms   max {v['max']:7.0f} ms")
            add(f"  p99 publish → visible  {v['p99']:>10,.0f} ms   target < {TARGET_P99_MS:,.0f} ms at 100/s   {verdict(v['p99'] < TARGET_P99_MS)}")
        for error in lat["errors"]:
            add(f"  error: {error}")
        add("")
    procs = results.get("processes", {})
    if procs:
        phases = [p for p in results.get("phases", [])]
        header = f"{'process':<22}{'peak RSS (VmHWM)':>18}{'target':>10}      " + "".join(f"{'CPU% ' + p['name']:>18}" for p in phases)
        add("Processes")
        add("  " + header)
        for name, p in procs.items():
            ok = None if name.startswith("bench") else p["hwm_mb"] < TARGET_RSS_MB
            cpu = "".join(f"{p_['cpu_percent'].get(name, 0.0):>17.0f}%" for p_ in phases)
            restarts = f"   restarted {p['restarts']}×" if p["restarts"] else ""
            add(f"  {name:<22}{p['hwm_mb']:>15.0f} MB{'< 300 MB' if ok is not None else '':>10}  {verdict(ok)}{cpu}{restarts}")
        add(f"  (CPU% is per process over each phase's wall time; 100% = one core of {env['cpus']})")
        before = next((p for p in phases if p["name"] == "latency"), None) or next((p for p in phases if p["name"] == "throughput"), None)
        if before and "tansu (broker)" in before.get("rss_mb_at_end", {}):
            add(f"  tansu RSS before the ceiling topics: {before['rss_mb_at_end']['tansu (broker)']:.0f} MB (memory storage keeps every message; no retention)")
        per_event = cpu_per_event(results)
        if per_event:
            ours = {k: v for k, v in per_event.items() if not k.startswith(("bench", "supervisor", "portal"))}
            total = sum(ours.values())
            add(
                "  CPU per event in the throughput phase: "
                + ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(ours.items(), key=lambda kv: -kv[1]))
                + f" ms; total {total:.2f} ms → at most {os.cpu_count() * 1000 / total:,.0f} events/s on {os.cpu_count()} cores"
            )
        busiest = results.get("busiest_in_throughput")
        if busiest:
            add(f"  busiest during throughput: {busiest['process']} at {busiest['cpu_percent']:.0f}% of a core")
    if results.get("failure"):
        add("")
        add(f"FAILED: {results['failure']}")
    add("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events",
        type=int,
        default=20_000,
        help="events through the pipeline and through the raw broker (default 20000)",
    )
    parser.add_argument(
        "--latency-events",
        type=int,
        default=1_000,
        help="publications in the latency phase (default 1000; 0 skips it)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="publications per second in the latency phase (default 100)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds for the stores to catch up (default 120 + events/25)",
    )
    parser.add_argument(
        "--keep-var",
        action="store_true",
        help="keep the temporary var dir (stores, logs) and print its path",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.rate <= 0 or args.latency_events < 0:
        parser.error("--events must be ≥ 1, --rate > 0, --latency-events ≥ 0")
    timeout = args.timeout or 120 + args.events / 25

    # SIGTERM ends the run like Ctrl-C does: through the finally below.
    def interrupted(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)

    run_id = uuid.uuid4().hex[:8]
    started_at = datetime.now(UTC)
    var_dir = Path(tempfile.mkdtemp(prefix="tongyuan-bench-"))
    results: dict = {
        "run_id": run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "args": vars(args),
        "environment": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "kafka_python_crc32c": _crc32c_impl(),
            "loadavg_at_start": os.getloadavg(),
            # Measured before the stack starts: this VM's speed moves by a third from one
            # run to the next, so figures from different runs compare only through this.
            "machine": parallel_capacity(),
        },
        "targets": {
            "events_per_s": TARGET_EVENTS_PER_S,
            "p99_visible_ms_at_100_per_s": TARGET_P99_MS,
            "rss_mb": TARGET_RSS_MB,
        },
    }
    phases: list[Phase] = []
    exit_code = 0
    stack = Stack(var_dir)
    stores = Stores(var_dir)
    sampler: Sampler | None = None
    try:
        log(f"generating {args.events:,} payloads")
        payloads = Payloads()
        messages = [payloads.cms_event(run_id, i + 1) for i in range(args.events)]
        sizes = [len(v) for _, v in messages]
        results["payload_bytes"] = {
            "mean": sum(sizes) / len(sizes),
            "min": min(sizes),
            "max": max(sizes),
        }

        log(f"starting `tongyuan up` (broker :{stack.broker_port}, portal :{stack.port}, var {var_dir})")
        stack.start()
        sampler = Sampler(stack.process.pid)
        sampler.start()
        startup = time.monotonic()
        stack.wait_healthy()
        warm_up(stack, stores, payloads, run_id)
        stack.remember_tree()
        results["startup_s"] = round(time.monotonic() - startup, 2)
        log(f"stack up and warm in {results['startup_s']:.1f}s")

        phase = begin("throughput", sampler)
        throughput = throughput_phase(stack, stores, messages, timeout=timeout, stall=120)
        phase.end(sampler)
        phases.append(phase)
        results["throughput"] = {
            "events": throughput.events,
            "produce_s": round(throughput.produce_s, 3),
            "produce_events_per_s": round(throughput.events / throughput.produce_s, 1),
            "store_s": {k: (round(v, 3) if v is not None else None) for k, v in throughput.store_s.items()},
            "final_counts": throughput.final_counts,
            "total_s": round(throughput.total_s, 3) if throughput.total_s else None,
            "events_per_s": round(throughput.events_per_s, 1) if throughput.events_per_s else None,
        }
        if not throughput.complete:
            raise BenchFailure(
                f"not every event arrived within {timeout:.0f}s (or 120 s without progress): "
                + ", ".join(f"{store} {count:,}/{throughput.events:,}" for store, count in throughput.final_counts.items())
                + ("" if stack.alive() else "; `tongyuan up` exited")
            )
        log(f"throughput: {throughput.events_per_s:,.0f} events/s ({throughput.total_s:.2f}s)")

        if args.latency_events:
            log(f"latency: {args.latency_events:,} publications over HTTP at {args.rate:g}/s")
            phase = begin("latency", sampler)
            latency = latency_phase(
                stack,
                stores,
                payloads,
                args.latency_events,
                args.rate,
                settle_timeout=120,
            )
            phase.end(sampler)
            phases.append(phase)
            results["latency"] = {
                "rate": latency.rate,
                "sent": latency.sent,
                "visible": latency.visible,
                "send_s": round(latency.send_s, 2),
                "send_lag_max_ms": round(latency.send_lag_max_ms, 1),
                "ack_ms": {k: round(v, 1) for k, v in latency.ack_ms.items()},
                "visible_ms": {k: round(v, 1) for k, v in latency.visible_ms.items()},
                "stages": {stage: {k: round(v, 1) for k, v in p.items()} for stage, p in latency.stages.items()},
                "errors": latency.errors,
            }
            if latency.visible < args.latency_events:
                raise BenchFailure(
                    f"{args.latency_events - latency.visible} of {args.latency_events} HTTP publications never became visible ({len(latency.errors)} errors)"
                )

        log(f"broker ceiling: {args.events:,} payloads through a fresh {PARTITIONS}-partition topic")
        phase = begin("ceiling", sampler)
        ceiling = ceiling_phase(stack.bootstrap, run_id, messages, timeout=timeout)
        phase.end(sampler)
        phases.append(phase)
        results["ceiling"] = {
            "events": ceiling.events,
            "produce_s": round(ceiling.produce_s, 3),
            "consume_s": round(ceiling.consume_s, 3),
            "events_per_s": round(ceiling.events_per_s, 1),
            "produce_events_per_s": round(ceiling.events / ceiling.produce_s, 1),
            "consume_events_per_s": round(ceiling.events / ceiling.consume_s, 1),
        }
        try:  # for comparison only: the same, produced by aiokafka (C record batches, C CRC)
            fast = ceiling_phase(stack.bootstrap, run_id, messages, timeout=timeout, client="aiokafka")
            results["ceiling_aiokafka_producer"] = {
                "events_per_s": round(fast.events_per_s, 1),
                "produce_s": round(fast.produce_s, 3),
                "consume_s": round(fast.consume_s, 3),
            }
        except Exception as exc:  # noqa: BLE001 (informational: never fails the run)
            log(f"aiokafka ceiling: {exc!r}")
        if throughput.events_per_s:
            results["ratio_pipeline_to_ceiling"] = round(throughput.events_per_s / ceiling.events_per_s, 4)
        results["cpu_ms_per_event"] = {k: round(v, 3) for k, v in cpu_per_event(results).items()}
    except (BenchFailure, KeyboardInterrupt) as exc:
        exit_code = failed(results, exc)
    finally:
        if sampler is not None:
            try:
                sampler.sample()  # the last VmHWM, before anything stops
            except (OSError, ValueError, IndexError) as exc:
                log(f"last sample: {exc!r}")
            sampler.stop_event.set()
        stores.close()
        if sampler is not None:
            with sampler.lock:  # everything ever seen under `up`, even if it already exited
                stack.seen_pids.update({pid: name for pid, name in sampler.known_pids.items() if pid != os.getpid()})
        log("stopping `tongyuan up`")
        stack.stop()
        if args.keep_var or exit_code not in (0, 130):
            log(f"var dir kept: {var_dir} (logs: up.log, broker.log)")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)

    if sampler is not None:
        results["processes"] = {
            name: {
                "pid": p.pid,
                "hwm_mb": round(p.hwm_kb / PAGE_MB, 1),
                "peak_sampled_rss_mb": round(p.peak_rss_kb / PAGE_MB, 1),
                "cpu_s": round(p.cpu_s, 2),
                "restarts": p.restarts,
            }
            for name, p in sorted(
                sampler.processes.items(),
                key=lambda kv: (kv[0].startswith("bench"), kv[0]),
            )
        }
    for p in phases:
        if p.name == "throughput" and p.cpu_percent:
            name, cpu = max(
                ((n, c) for n, c in p.cpu_percent.items() if not n.startswith("bench")),
                key=lambda nc: nc[1],
            )
            results["busiest_in_throughput"] = {"process": name, "cpu_percent": cpu}
    results["phases"] = [
        {
            "name": p.name,
            "wall_s": round(p.wall_s, 2),
            "cpu_percent": p.cpu_percent,
            "rss_mb_at_end": p.rss_mb_at_end,
        }
        for p in phases
    ]
    if exit_code == 1 and stack.log_path.exists():
        tail = stack.log_path.read_text(errors="replace").splitlines()[-20:]
        results["up_log_tail"] = tail
    print(report(results), flush=True)
    if exit_code == 1 and results.get("up_log_tail"):
        print(
            "last lines of up.log:\n  " + "\n  ".join(results["up_log_tail"]),
            file=sys.stderr,
        )
    line = json.dumps(results, ensure_ascii=False, sort_keys=True)
    print(f"BENCH_JSON {line}", flush=True)
    try:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUT_DIR / f"pipeline-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(
            json.dumps(results, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        log(f"wrote {path.relative_to(ROOT)}")
    except OSError as exc:
        log(f"could not write the result file: {exc}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
