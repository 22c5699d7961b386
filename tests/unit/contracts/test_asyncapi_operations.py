"""AsyncAPI says who sends and who receives on every channel, so a third party reading the
document knows each topic's producers and readers."""

from pathlib import Path

import yaml

ASYNCAPI = Path(__file__).resolve().parents[3] / "contracts" / "asyncapi.yaml"


def document() -> dict:
    return yaml.safe_load(ASYNCAPI.read_text("utf-8"))


def channel_of(operation: dict) -> str:
    ref = operation["channel"]["$ref"]
    assert ref.startswith("#/channels/"), ref
    return ref.removeprefix("#/channels/").replace("~1", "/").replace("~0", "~")


def test_every_operation_names_a_channel_there_is():
    doc = document()
    for name, operation in doc["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        assert channel_of(operation) in doc["channels"], name


def test_every_channel_has_operations():
    """Operations are the project's view: it sends where it writes, receives where it reads
    (the CMS's topic only the latter)."""
    doc = document()
    actions = {(channel_of(op), op["action"]) for op in doc["operations"].values()}
    assert {channel for channel, _ in actions} == set(doc["channels"])
    # The bridge writes the service items and the gate reads them; every consumer group writes
    # its dead letters and `tongyuan dlq` reads them.
    for channel in ("tongyuan.service-items.v1", "tongyuan.publications.dlq.{group}"):
        assert {(channel, "send"), (channel, "receive")} <= actions, channel
