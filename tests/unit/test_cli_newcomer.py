"""The `tongyuan` command as a new user meets it: tokens the portal accepts, a simulator URL
that works as TONGYUAN_BRIDGE_PLATFORM_URL, and help text that reads as prose."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from services.cli import cli
from services.common.kafka import CONSUMER_GROUPS
from services.common.settings import get_settings
from tests.conftest import settings_under


@pytest.fixture
def var(tmp_path, monkeypatch):
    with settings_under(monkeypatch, tmp_path, unset=("TONGYUAN_AUTH_JWKS_URL",)) as var_dir:
        yield var_dir


def test_a_token_needs_the_portals_key_and_does_not_make_one_silently(var):
    refused = CliRunner().invoke(cli, ["token", "--region", "430102"])
    assert refused.exit_code == 2
    assert "no signing key" in refused.output and "--create-key" in refused.output and len(refused.output.strip().splitlines()) == 1
    assert not (var / "auth").exists()


def test_the_token_made_with_a_new_key_is_accepted_by_the_portal_of_that_var_dir(var):
    from services.bootstrap import Composition

    made = CliRunner().invoke(cli, ["token", "--region", "430102", "--user", "clerk-1", "--create-key"])
    assert made.exit_code == 0, made.output
    verifier = Composition(get_settings()).verifier  # what the portal checks tokens with
    assert verifier.verify(made.output.strip()).user == "clerk-1"
    again = CliRunner().invoke(cli, ["token", "--region", "430102"])  # the key exists now
    assert again.exit_code == 0 and verifier.verify(again.output.strip()).user == "clerk"


def test_the_simulator_prints_a_url_the_bridge_can_use_as_its_platform_url(monkeypatch):
    import uvicorn

    from devtools.platform_simulator import Served
    from services.bridge.app import build_client
    from services.common.broker import free_port
    from services.common.settings import BridgeSettings

    served: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **_: served.update(app=app, host=host, port=port))
    port = free_port()
    result = CliRunner().invoke(cli, ["bridge", "simulate", "--port", str(port), "--items", "12"])
    assert result.exit_code == 0, result.output
    url = re.search(r"TONGYUAN_BRIDGE_PLATFORM_URL=(\S+)", result.output).group(1)
    with Served(served["app"], host=served["host"], port=served["port"]):
        client = build_client(BridgeSettings(platform_url=url))
        try:
            listing = client.list_changes(None)
        finally:
            client.close()
    assert len(listing.summaries) == 12


def _commands(command: Any, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_has_no_type_placeholders_and_reflows_its_paragraphs():
    root = typer.main.get_command(cli)
    runner = CliRunner()
    for path, _ in _commands(root):
        text = runner.invoke(cli, [*path, "--help"], terminal_width=100).output
        assert "<bool>" not in text and "FileBinary" not in text, (path, text)
        description = text.split("\n\n", 1)[1].split("Arguments:")[0].split("Options:")[0]
        for paragraph in description.strip().split("\n\n"):
            lines = paragraph.splitlines()
            # A paragraph broken where the docstring was, rather than filled: a short line inside it.
            assert all(len(line) > 50 for line in lines[:-1]), (path, paragraph)


def test_dlq_help_names_every_consumer_group():
    from services.operations_cli import GROUPS

    assert GROUPS == CONSUMER_GROUPS
    text = CliRunner().invoke(cli, ["dlq", "list", "--help"], terminal_width=200).output
    for group in CONSUMER_GROUPS:
        assert group in text
