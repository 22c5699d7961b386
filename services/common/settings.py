"""One Settings tree for every Tongyuan process (TONGYUAN_* environment variables).

Bad configuration fails at start-up, not at the first request. The bridge's part
(`settings.bridge`) is read from TONGYUAN_BRIDGE_*; where every store lives follows one rule,
`Settings.store_url(name)`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .stack_state import running_stack

# The stores in a shared database (TONGYUAN_DATABASE_URL), each in tables prefixed by its name.
SHARED_STORES = ("publisher", "column", "embed", "supervision", "bridge")
# Always a SQLite file under var_dir: the embedded index's ledger lives beside its text index
# (search-index/), and with Elasticsearch or OpenSearch the indexer's heartbeats get a file of their own.
FILE_STORES = ("search", "search-heartbeat")
STORES = SHARED_STORES + FILE_STORES


class BridgeSettings(BaseSettings):
    """The government-service platform bridge (TONGYUAN_BRIDGE_*)."""

    model_config = SettingsConfigDict(env_prefix="TONGYUAN_BRIDGE_", extra="ignore")

    platform: str = Field("hunan-zwfw", pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    # The platform's base address: the client appends /api/v1/items.
    platform_url: str = "http://127.0.0.1:8700"
    # Empty: webhooks are refused (polling still works). During a rotation set both.
    webhook_secret: str = ""
    webhook_previous_secret: str = ""
    webhook_window: float = Field(300.0, gt=0, le=3600)
    poll_interval: float = Field(5.0, gt=0, le=3600)
    reconcile_interval: float = Field(3600.0, gt=0)
    timeout: float = Field(3.0, gt=0, le=120)
    attempts: int = Field(6, ge=1, le=20)
    page_size: int = Field(100, ge=1, le=500)
    concurrency: int = Field(8, ge=1, le=64)
    overlap_seconds: float = Field(2.0, ge=0, le=3600)
    # Which regions items may be filed under: a city (4 digits) or a province (2 digits).
    regions: str = Field("4301", pattern=r"^\d{2}(\d{2})?$")
    # The relay is nudged by this process's own commits; this is the delay for everyone else's.
    relay_interval: float = Field(0.1, gt=0, le=10)

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.webhook_secret, self.webhook_previous_secret) if s]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TONGYUAN_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    var_dir: Path = Path("var")
    # Absolute links in feeds and fragments that township portals include; unset: the request's own.
    public_base_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")

    # None: `tongyuan up` starts the embedded Tansu broker and fills this in for its children.
    kafka_bootstrap: str | None = None
    embedded_broker_port: int = Field(9092, ge=1, le=65535)
    topic_partitions: int = Field(4, ge=1, le=256)

    # None: one SQLite file per store under var_dir (each consumer owns its store).
    # A PostgreSQL URL: every store in that database, in tables prefixed by the store's name.
    database_url: str | None = None

    # opensearch: the production engine (deploy/local/opensearch); it shares the index prefix
    # and analyzer settings below with elasticsearch.
    search_backend: Literal["embedded", "elasticsearch", "opensearch"] = "embedded"
    elasticsearch_url: str | None = None
    opensearch_url: str | None = Field(None, pattern=r"^https?://[^\s/]+/?$")
    elasticsearch_index_prefix: str = Field("tongyuan", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    elasticsearch_analyzer: Literal["smartcn", "ik_max_word", "cjk"] = "smartcn"

    consumer_batch_size: int = Field(500, ge=1, le=10_000)
    consumer_batch_within: float = Field(0.05, gt=0, le=10)
    # The search index pays a segment commit per batch, so the indexer waits a little longer
    # to fill one.
    indexer_batch_within: float = Field(0.25, gt=0, le=10)
    # Events per batch on the bulk lane (a migration), where nobody waits on a row: what a store
    # pays per batch (the index's segment commit, the supervision's and the embed's per-batch
    # queries) is paid less often. A clerk's batch waits for one part of a batch's writing
    # (db.write_in_turns), not the whole batch. Larger batches cost memory for no clear gain.
    consumer_bulk_batch_size: int = Field(2000, ge=1, le=20_000)
    # The indexer holds a batch's events and built documents at once: its memory grows with it.
    indexer_bulk_batch_size: int = Field(2000, ge=1, le=20_000)
    # How long a dead member holds its partitions. Against Tansu a consumer group also joins
    # only after about half of it, every time; Apache Kafka (group.initial.rebalance.delay.ms=0)
    # in well under a second once its offsets topic exists.
    consumer_session_timeout: float = Field(10.0, ge=2, le=300)
    store_retry_max_seconds: float = Field(30.0, gt=0)
    relay_interval: float = Field(0.02, gt=0, le=10)
    relay_batch_size: int = Field(1000, ge=1, le=50_000)
    heartbeat_interval: float = Field(2.0, gt=0, le=60)

    # /readyz answers 503 while a consumer group is further behind than this.
    ready_max_lag: int = Field(10_000, ge=0)
    # Consumers (which have no web server) expose Prometheus metrics here; unset: not served.
    metrics_port: int | None = Field(None, ge=1, le=65535)

    # Bearer tokens: the identity provider's JWKS in production; unset, a local key under
    # var/auth signs tokens minted by `tongyuan token`.
    auth_jwks_url: str | None = None
    auth_issuer: str = "tongyuan-local"
    auth_audience: str = "tongyuan"
    auth_leeway: float = Field(30.0, ge=0, le=300)

    max_request_bytes: int = Field(2_000_000, ge=1024)
    # Uploaded workbooks (catalog import, bridge mapping): see services/common/workbooks.py. A
    # county's catalog or mapping is a few thousand rows; an .xlsx of 150 KB can hold a million.
    workbook_max_bytes: int = Field(2_000_000, ge=1024)
    workbook_max_uncompressed_bytes: int = Field(40_000_000, ge=1024)
    workbook_max_ratio: int = Field(100, ge=2)
    workbook_max_sheets: int = Field(100, ge=1)
    workbook_max_rows: int = Field(20_000, ge=10)
    workbook_max_columns: int = Field(200, ge=10, le=16_384)
    workbook_max_cells: int = Field(300_000, ge=100)
    workbook_max_shared_strings: int = Field(200_000, ge=10)
    workbook_max_shared_strings_bytes: int = Field(20_000_000, ge=1024)
    workbook_parse_seconds: float = Field(60.0, gt=0, le=600)
    # What one client may take of the portal (services/portal/limits.py); 0 turns a limit off.
    # Writes per token subject: a clerk publishes a few an hour, a CMS pushing over HTTP at
    # 10/s is still served. Searches per client address: 10/s leaves room for an office behind
    # one NAT address and for a page polling search. The request head must be complete within
    # the timeout (slowloris).
    portal_writes_per_minute: int = Field(600, ge=0)
    portal_searches_per_minute: int = Field(600, ge=0)
    portal_header_timeout: float = Field(10.0, gt=0, le=300)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # JSON lines when the logs go to a file or a collector; key/value lines on a terminal.
    log_json: bool | None = None

    # Read from its own TONGYUAN_BRIDGE_* variables when Settings is.
    bridge: BridgeSettings = Field(default_factory=lambda: BridgeSettings())

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("TONGYUAN_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        if value.startswith("postgresql://"):
            # SQLAlchemy would pick psycopg2, which we do not ship; psycopg 3 is installed.
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @model_validator(mode="after")
    def _elasticsearch_needs_a_url(self) -> "Settings":
        if self.search_backend == "elasticsearch" and not self.elasticsearch_url:
            raise ValueError("TONGYUAN_SEARCH_BACKEND=elasticsearch needs TONGYUAN_ELASTICSEARCH_URL")
        if self.search_backend == "opensearch" and not self.opensearch_url:
            raise ValueError("TONGYUAN_SEARCH_BACKEND=opensearch needs TONGYUAN_OPENSEARCH_URL")
        return self

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str | None) -> str | None:
        if not value:
            return None
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"bootstrap server {server!r} must be host:port")
        return value

    def store_url(self, store: str) -> str:
        """Where a store lives: its own SQLite file under var_dir, or the shared database."""
        if store not in STORES:
            raise ValueError(f"unknown store {store!r}")
        if self.database_url and store in SHARED_STORES:
            return self.database_url
        return f"sqlite:///{(self.var_dir / f'{store}.db').resolve()}"

    @property
    def bootstrap(self) -> str:
        """The Kafka bootstrap servers: configured, or those of the `tongyuan up` running on
        this var dir (its state file); else NoBroker, saying what is wrong in one line."""
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return running_stack(self.var_dir).kafka_bootstrap


@lru_cache
def get_settings() -> Settings:
    return Settings()
