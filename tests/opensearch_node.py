"""A live OpenSearch node for the tests that take one (pytest plugin, listed in tests/conftest.py).

TONGYUAN_TEST_OPENSEARCH_URL=http://host:port   use that node;
TONGYUAN_TEST_OPENSEARCH=start                  start one with deploy/local/opensearch before
                                                collection (the live tests decide at import
                                                whether to run), stop it at the end.

The started node lives in var/test-opensearch (not under pytest's tmp: its user, not root,
must reach it; under /var/tmp when the checkout itself is out of that user's reach, as under
/root) on TONGYUAN_OPENSEARCH_PORT (default 9201, apart from a developer's 9200).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "local" / "opensearch"
URL_VARIABLE = "TONGYUAN_TEST_OPENSEARCH_URL"
_started: dict[str, str] = {}


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can walk down to `path` (the node runs as one)."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents if parent.exists())


def _var_dir() -> str:
    if os.environ.get("TONGYUAN_TEST_OPENSEARCH_VAR_DIR"):
        return os.environ["TONGYUAN_TEST_OPENSEARCH_VAR_DIR"]
    inside = ROOT / "var" / "test-opensearch"
    if _reachable_by_others(inside):
        return str(inside)
    return f"/var/tmp/tongyuan-test-opensearch-{hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]}"


def _node_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.setdefault("TONGYUAN_OPENSEARCH_PORT", "9201")
    environment["TONGYUAN_VAR_DIR"] = _var_dir()
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
