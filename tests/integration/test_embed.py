"""Through the real broker: a township's 重大民生信息 reaches its fragment and feeds, its county's
aggregate, and leaves every one of them when withdrawn. One test: the stack is expensive."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from contracts.catalog import regions_of_city
from services.embed import routes
from services.embed.app import build_store
from services.embed.caching import Renders
from tests.integration.conftest import ROOT, wait_for
from tests.integration.test_pipeline import body, unique
from tests.processes import interrupt
from tests.wired import directory_of, mounted

TOWNSHIP, COUNTY = "430102001", "430102"


@pytest.fixture(scope="module")
def embed(stack):
    """The embed consumer: the stack's own once it runs one, else a worker for this module."""
    process = None
    if "embed" not in stack.processes:
        log = open(stack.settings.var_dir / "embed.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "embed"], env=stack.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    store = build_store(stack.settings)
    loader = ChoiceLoader([FileSystemLoader(str(ROOT / "services/portal/templates")), FileSystemLoader(str(ROOT / "services/embed/templates"))])
    regions = {r.code: r for r in regions_of_city("4301")}
    app = mounted(
        routes.router,
        embed_store=store,
        templates=Jinja2Templates(env=Environment(loader=loader, autoescape=select_autoescape(default=True))),
        directory=directory_of(regions),
        embed_renders=Renders(),
        public_base_url=None,
    )
    try:
        yield TestClient(app)
    finally:
        if process is not None:
            interrupt([process])


def test_a_livelihood_publication_reaches_every_feed_and_a_withdrawal_takes_it_out(stack, embed):
    tag = unique("embed")
    pid = stack.publish(body(f"临时救助审批结果公示 {tag}", level2="D14-02-03"))["publication_id"]
    paths = [
        f"/embed/{TOWNSHIP}/fragment",
        f"/embed/{TOWNSHIP}",
        f"/embed/{TOWNSHIP}/atom.xml",
        f"/embed/{TOWNSHIP}/D14/feed.json",
        f"/embed/{COUNTY}/feed.json",
    ]
    wait_for(lambda: all(tag in embed.get(path).text for path in paths), timeout=90, what="the publication in every embed feed")
    etag = embed.get(f"/embed/{TOWNSHIP}/atom.xml").headers["etag"]
    assert embed.get(f"/embed/{TOWNSHIP}/atom.xml", headers={"If-None-Match": etag}).status_code == 304
    item = next(i for i in json.loads(embed.get(f"/embed/{COUNTY}/feed.json").content)["items"] if tag in i["title"])
    assert item["id"] == f"urn:tongyuan:publication:{pid}"

    response = stack.client.post(f"/v1/publications/{pid}/withdraw", json={"type": "withdrawn", "explanation": "公示期已满"})
    assert response.status_code in (200, 202), response.text
    wait_for(lambda: all(tag not in embed.get(path).text for path in paths), timeout=60, what="the withdrawal in every embed feed")
    assert embed.get(f"/embed/{TOWNSHIP}/atom.xml", headers={"If-None-Match": etag}).status_code == 200
