"""Township embedding throughput: what polling township portals cost the portal.

Populates an embed store through its own apply() with 170 townships × 32 domains of realistic
publications, serves the embed router (plus the portal's static files) with uvicorn in a
subprocess on a free port, and measures requests/s with a concurrent HTTP client (`wrk` when
installed, else httpx on asyncio) for:

- a conditional GET answered 304 (fragment and Atom), target ≥ 1,000 req/s;
- a full fragment (200 with the body), target ≥ 300 req/s: one township, all townships in turn,
  and with the render cache switched off (every request queries and renders);
- a full Atom feed;
- the baseline, measured in the same run: a static file from the same server (and, to show
  what the framework itself costs, a constant async endpoint).

    .venv/bin/python -m bench.embed [--townships 170] [--per-domain 2] [--duration 8] [--connections 16] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx

from contracts.catalog import regions_of_city, standard_catalog
from contracts.events import Placement, PublicationData, PublishedEvent, SourceRef, new_event_id
from services.common.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).with_name("out")
TARGETS = {"304": 1000.0, "full fragment": 300.0}
DB_ENV, CACHE_ENV = "TONGYUAN_BENCH_EMBED_DB", "TONGYUAN_BENCH_EMBED_CACHE"
PARAGRAPH = (
    "根据《社会救助暂行办法》和省、市有关规定，经街道审核、区民政局审批，现将本期{item}有关情况予以公示。"
    "公示期为7个工作日，公示期间如有异议，请向街道社会事务办或区民政局反映，监督电话：0731-8xxxxxxx。"
)


# --- the app uvicorn serves (imported by the subprocess) ---------------------------------------
def bench_app():
    from fastapi import FastAPI, Response
    from fastapi.staticfiles import StaticFiles
    from fastapi.templating import Jinja2Templates
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

    from services.common.db import create_store_engine
    from services.embed import routes
    from services.embed.caching import Renders
    from services.embed.store import EmbedStore

    store = EmbedStore(create_store_engine(os.environ[DB_ENV]))
    loader = ChoiceLoader([FileSystemLoader(str(ROOT / "services/portal/templates")), FileSystemLoader(str(ROOT / "services/embed/templates"))])
    templates = Jinja2Templates(env=Environment(loader=loader, autoescape=select_autoescape(default=True)))
    regions = {r.code: r for r in regions_of_city("4301")}
    app = FastAPI()

    @app.get("/floor")
    async def floor():  # the framework's own floor: no I/O, a constant body
        return Response(b"ok", media_type="text/plain")

    app.mount("/static", StaticFiles(directory=str(ROOT / "services/portal/static")), name="static")
    directory = SimpleNamespace(regions=regions)
    app.state.embed_store, app.state.templates, app.state.directory = store, templates, lambda: directory
    app.state.embed_renders, app.state.public_base_url = Renders(int(os.environ.get(CACHE_ENV, "1024"))), None
    app.include_router(routes.router)
    return app


# --- populating the store ------------------------------------------------------------------------
def events(townships: list, per_domain: int) -> list[PublishedEvent]:
    catalog = standard_catalog()
    regions = {r.code: r for r in regions_of_city("4301")}
    start = datetime(2025, 1, 6, 1, 30, tzinfo=timezone.utc)
    made, n = [], 0
    for township in townships:
        county = regions[township.parent_code]
        for domain in catalog.domains:
            leaves = [(l1, l2) for l1 in domain.level1 for l2 in l1.items] or [(None, None)]
            for k in range(per_domain):
                level1, level2 = leaves[(n + k) % len(leaves)]
                placement = Placement(
                    region_code=township.code,
                    domain_code=domain.code,
                    level1_id=level1.id if level1 else f"{domain.code}-01",
                    level2_id=level2.id if level2 else f"{domain.code}-01-01",
                    region_name=township.name,
                    domain_name=domain.name,
                    level1_name=level1.name if level1 else domain.name,
                    level2_name=level2.name if level2 else "其他",
                )
                item = placement.level2_name
                published_at = start + timedelta(hours=7 * n)
                data = PublicationData(
                    publication_id=f"bench-{township.code}-{domain.code}-{k}",
                    version=1,
                    placements=(placement,),
                    title=f"{county.name}{township.name}{domain.name}{item}公示（{published_at:%Y}年第{k + 1}期）",
                    body_html="".join(f"<p>{PARAGRAPH.format(item=item)}</p>" for _ in range(4)),
                    index_number=f"{township.code}/{published_at:%Y}-{n % 100000:05d}",
                    publishing_body=f"{township.name}办事处",
                    formed_at=date(published_at.year, published_at.month, published_at.day),
                    published_at=published_at,
                    source_ref=SourceRef(source="/bench"),
                )
                made.append(PublishedEvent(id=new_event_id(), source="/publisher", subject=data.publication_id, time=published_at, data=data))
                n += 1
    return made


def populate(db_url: str, townships: list, per_domain: int, batch: int = 500) -> dict:
    from services.common.db import create_store_engine
    from services.embed.store import EmbedStore

    store = EmbedStore(create_store_engine(db_url))
    store.create()
    made = events(townships, per_domain)
    began = time.perf_counter()
    for start in range(0, len(made), batch):
        store.apply(made[start : start + batch])
    seconds = time.perf_counter() - began
    store.engine.dispose()
    return {"events": len(made), "seconds": round(seconds, 2), "events_per_s": round(len(made) / seconds)}


# --- serving and measuring -----------------------------------------------------------------------
class Server:
    def __init__(self, db_url: str, workers: int, cache: int):
        self.port = free_port()
        env = {**os.environ, DB_ENV: db_url, CACHE_ENV: str(cache), "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "uvicorn", "bench.embed:bench_app", "--factory", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/static/site.css", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.process.stderr.read().decode()[-2000:] if self.process.stderr else ''}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wrk(base: str, paths: list[str], headers: dict, duration: float, connections: int, workdir: Path) -> dict:
    script = workdir / f"paths-{abs(hash(tuple(paths)))}.lua"
    quoted = ", ".join(json.dumps(p) for p in paths)
    header_lines = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    script.write_text(
        f"{header_lines}local paths = {{{quoted}}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n"
    )
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script), base]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    latency = {q: _ms(re.search(rf"\s{q}%\s+([\d.]+\w+)", text).group(1)) for q in ("50", "99")}
    return {"req_per_s": rate, "p50_ms": latency["50"], "p99_ms": latency["99"], "errors": int(errors.group(1)) if errors else 0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def httpx_load(base: str, paths: list[str], headers: dict, duration: float, connections: int, _workdir: Path) -> dict:
    async def run() -> dict:
        samples: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=10) as client:
            stop = time.perf_counter() + duration

            async def worker(offset: int) -> None:
                nonlocal errors
                i = offset
                while time.perf_counter() < stop:
                    began = time.perf_counter()
                    response = await client.get(paths[i % len(paths)])
                    samples.append(time.perf_counter() - began)
                    errors += response.status_code >= 400
                    i += 1

            began = time.perf_counter()
            await asyncio.gather(*(worker(n) for n in range(connections)))
            elapsed = time.perf_counter() - began
        samples.sort()
        return {
            "req_per_s": len(samples) / elapsed,
            "p50_ms": samples[len(samples) // 2] * 1000,
            "p99_ms": samples[int(len(samples) * 0.99)] * 1000,
            "errors": errors,
        }

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--townships", type=int, default=170)
    parser.add_argument("--per-domain", type=int, default=2, help="publications per township and domain")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    args = parser.parse_args()
    client_name = "wrk" if args.client == "wrk" or (args.client == "auto" and shutil.which("wrk")) else "httpx"
    load = wrk if client_name == "wrk" else httpx_load

    workdir = Path(tempfile.mkdtemp(prefix="tongyuan-bench-embed-"))
    db_url = f"sqlite:///{workdir / 'embed.db'}"
    townships = sorted((r for r in regions_of_city("4301") if r.level == "township"), key=lambda r: r.code)[: args.townships]
    load_average = os.getloadavg()
    print(
        f"embed benchmark: {len(townships)} townships × 32 domains × {args.per_domain}; client {client_name}, {args.connections} connections, "
        f"{args.workers} uvicorn worker(s), {os.cpu_count()} cores, load average at start {load_average[0]:.2f}"
    )
    filled = populate(db_url, townships, args.per_domain)
    print(f"populated {filled['events']} publications through apply() in {filled['seconds']} s ({filled['events_per_s']}/s)")

    township = townships[0].code
    county = townships[0].parent_code
    every_fragment = [f"/embed/{t.code}/fragment" for t in townships]
    rows: dict[str, dict] = {}
    servers = []
    try:
        server = Server(db_url, args.workers, cache=1024)
        servers.append(server)
        server.wait()
        with httpx.Client(base_url=server.base) as http:
            fragment_etag = http.get(f"/embed/{township}/fragment").headers["etag"]
            atom_etag = http.get(f"/embed/{township}/atom.xml").headers["etag"]
            size = len(http.get(f"/embed/{township}/fragment").content)
            county_size = len(http.get(f"/embed/{county}/atom.xml").content)
            for path in every_fragment:
                http.get(path)  # the render cache holds every township once, as after the first poll
        plan = [
            ("baseline: static file", ["/static/site.css"], {}, None),
            ("floor: constant async endpoint", ["/floor"], {}, None),
            ("304 fragment (If-None-Match)", [f"/embed/{township}/fragment"], {"If-None-Match": fragment_etag}, "304"),
            ("304 Atom (If-None-Match)", [f"/embed/{township}/atom.xml"], {"If-None-Match": atom_etag}, "304"),
            ("full fragment, one township", [f"/embed/{township}/fragment"], {}, "full fragment"),
            (f"full fragment, {len(townships)} townships in turn", every_fragment, {}, "full fragment"),
            ("full Atom, county aggregate", [f"/embed/{county}/atom.xml"], {}, None),
        ]
        for name, paths, headers, _ in plan:
            load(server.base, paths, headers, 1.0, args.connections, workdir)  # warm-up
            rows[name] = load(server.base, paths, headers, args.duration, args.connections, workdir)
        server.stop()
        cold = Server(db_url, args.workers, cache=0)
        servers.append(cold)
        cold.wait()
        name = f"full fragment, no render cache ({len(townships)} in turn)"
        load(cold.base, every_fragment, {}, 1.0, args.connections, workdir)
        rows[name] = load(cold.base, every_fragment, {}, args.duration, args.connections, workdir)
        plan.append((name, every_fragment, {}, "full fragment"))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    floor = rows["baseline: static file"]["req_per_s"]
    print(f"fragment {size} bytes; county Atom {county_size} bytes")
    print(f"{'request':<48}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'÷ static':>10}  target")
    verdicts = {}
    for name, _, _, target in plan:
        row = rows[name]
        verdict = ""
        if target:
            ok = row["req_per_s"] >= TARGETS[target] and not row["errors"]
            verdict = f"≥ {TARGETS[target]:,.0f} req/s {'PASS' if ok else 'MISS'}"
            verdicts[name] = ok
        errors = f"  ({row['errors']} errors)" if row["errors"] else ""
        print(f"{name:<48}{row['req_per_s']:>9.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['req_per_s'] / floor:>10.2f}  {verdict}{errors}")
    result = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "client": client_name,
        "connections": args.connections,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "load_average_at_start": load_average[0],
        "townships": len(townships),
        "per_domain": args.per_domain,
        "populate": filled,
        "fragment_bytes": size,
        "rows": rows,
        "pass": verdicts,
    }
    print("BENCH_JSON " + json.dumps(result, ensure_ascii=False))
    OUT.mkdir(exist_ok=True)
    (OUT / f"embed-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
