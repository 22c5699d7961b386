import pytest
import yaml
from pydantic import ValidationError

from contracts import events, schemas
from contracts.catalog import regions_of_city, standard_catalog
from contracts.events import BULK_EVENTS_PER_MESSAGE
from services.common.settings import Settings


def test_generated_schemas_are_current():
    assert schemas.stale() == [], "run `make schemas`"


def test_asyncapi_names_every_topic_and_schema():
    document = yaml.safe_load(open(schemas.SCHEMA_DIR.parent / "asyncapi.yaml", encoding="utf-8"))
    channels = set(document["channels"])
    assert {"tongyuan.publications.v1", "tongyuan.cms.v1", "tongyuan.rejections.v1"} <= channels

    def refs(node) -> set[str]:
        if isinstance(node, dict):
            return ({node["$ref"].split("/")[-1]} if "$ref" in node else set()).union(*(refs(v) for v in node.values()))
        return set().union(*(refs(v) for v in node)) if isinstance(node, list) else set()

    referenced = set().union(*(refs(m["payload"]) for m in document["components"]["messages"].values()))
    assert referenced == set(schemas.rendered())
    batch = document["components"]["messages"]["publicationBatch"]
    assert batch["contentType"] == "application/cloudevents-batch+json" and batch["payload"]["maxItems"] == BULK_EVENTS_PER_MESSAGE
    sent = {m["$ref"].split("/")[-1] for m in document["operations"]["publishBulkPublications"]["messages"]}
    assert sent == {"publicationBatch"}
    from services.common.kafka import CONSUMER_GROUPS

    assert document["channels"]["tongyuan.publications.dlq.{group}"]["parameters"]["group"]["enum"] == list(CONSUMER_GROUPS)


def test_catalog_has_all_32_domains_with_stable_codes():
    catalog = standard_catalog()
    assert len(catalog.domains) == 32
    assert catalog.domains[0].code == "D01" and catalog.domains[-1].name == "新闻出版版权"
    assert sum(d.added_2022 for d in catalog.domains) == 6
    assert catalog.resolve_domain("医疗卫生").name == "卫生健康"
    assert catalog.resolve_domain("就业创业").code == catalog.resolve_domain("就业").code


def test_changsha_regions():
    regions = regions_of_city("4301")
    levels = [r.level for r in regions]
    assert levels.count("county") == 10 and levels.count("township") == 172
    assert any(r.code == "4301GX" and r.name == "长沙高新区" for r in regions)


@pytest.mark.parametrize(
    ("field", "value"),
    [("database_url", "mysql://x"), ("kafka_bootstrap", "localhost"), ("port", "0"), ("search_backend", "solr"), ("log_level", "loud")],
)
def test_bad_configuration_fails_at_start(field, value, monkeypatch):
    monkeypatch.setenv(f"TONGYUAN_{field.upper()}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_plain_postgresql_urls_use_psycopg3():
    assert Settings(database_url="postgresql://u@h/db").store_url("column") == "postgresql+psycopg://u@h/db"


def test_event_ids_are_version_7_uuids_in_the_order_they_were_made(monkeypatch):
    """Stores index event and publication ids: an id made in a later millisecond sorts later
    (an index grows at its end), and ids stay unique within a millisecond."""
    import time
    import uuid

    monkeypatch.setattr(events, "_STDLIB_UUID7", None)  # our own, also where Python has one
    first = events.new_event_id()
    time.sleep(0.002)
    made = [events.new_event_id() for _ in range(20_000)]
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in made[:100])
    assert len(set(made)) == len(made)
    assert all(first < later for later in made)
    # Milliseconds first: the timestamp of each id is when it was made.
    assert abs(int(made[-1].replace("-", "")[:12], 16) - time.time_ns() // 1_000_000) < 5_000
