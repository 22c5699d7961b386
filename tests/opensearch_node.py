"""A live OpenSearch node for the tests that take one (pytest plugin, listed in tests/conftest.py).

TONGYUAN_TEST_OPENSEARCH_URL=http://host:port   use that node;
TONGYUAN_TEST_OPENSEARCH=start                  start one with deploy/local/opensearch before
                                                collection (the live tests decide at import
                                                whether to run), stop it at the end.

The started node lives in var/test-opensearch (not under pytest's tmp: its user, not root,
must reach it) on TONGYUAN_OPENSEARCH_PORT (default 9201, apart from a developer's 9200).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "local" / "opensearch"
URL_VARIABLE = "TONGYUAN_TEST_OPENSEARCH_URL"
_started: dict[str, str] = {}


def _node_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.setdefault("TONGYUAN_OPENSEARCH_PORT", "9201")
    environment["TONGYUAN_VAR_DIR"] = os.environ.get("TONGYUAN_TEST_OPENSEARCH_VAR_DIR", str(ROOT / "var" / "test-opensearch"))
    return environment


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(URL_VARIABLE) or os.environ.get("TONGYUAN_TEST_OPENSEARCH") != "start":
        return
    if hasattr(config, "workerinput"):  # an xdist worker: the controller started it
        return
    environment = _node_environment()
    done = subprocess.run([str(SCRIPT), "start"], env=environment, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise pytest.UsageError(f"TONGYUAN_TEST_OPENSEARCH=start: deploy/local/opensearch did not start a node:\n{done.stderr[-2000:]}")
    os.environ[URL_VARIABLE] = done.stdout.strip().splitlines()[-1]
    _started["var_dir"] = environment["TONGYUAN_VAR_DIR"]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _started.pop("var_dir", None) is not None and not os.environ.get("TONGYUAN_TEST_OPENSEARCH_KEEP"):
        subprocess.run([str(SCRIPT), "stop"], env=_node_environment(), capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """The live node's URL; the test is skipped without one."""
    url = os.environ.get(URL_VARIABLE)
    if not url:
        pytest.skip(f"{URL_VARIABLE} is not set (or TONGYUAN_TEST_OPENSEARCH=start): no OpenSearch to test against")
    return url
