"""One Settings object for every Tongyuan process (TONGYUAN_* environment variables).

Bad configuration fails at start-up, not at the first request.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

STORES = ("publisher", "column", "search", "embed", "supervision", "bridge")


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

    search_backend: Literal["embedded", "elasticsearch"] = "embedded"
    elasticsearch_url: str | None = None
    elasticsearch_index_prefix: str = Field("tongyuan", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    elasticsearch_analyzer: Literal["smartcn", "ik_max_word", "cjk"] = "smartcn"

    consumer_batch_size: int = Field(500, ge=1, le=10_000)
    consumer_batch_within: float = Field(0.05, gt=0, le=10)
    # The search index pays a segment commit per batch (measured: 1.5 ms a document in
    # batches of 20, 0.33 ms in batches of 500), so the indexer waits a little longer to fill one.
    indexer_batch_within: float = Field(0.25, gt=0, le=10)
    # Events per batch on the bulk lane (a migration), where nobody waits on a row: what a store
    # pays per batch (the index's segment commit and merges, the supervision's and the embed's
    # per-batch queries) is paid less often. In-process, migrated events at 500 → 2,000 a batch:
    # indexer 559–633 → 431–496 µs CPU each, supervision 105–114 → 74–80, embed 128 → 101–106,
    # column ~105 either way. A clerk's batch waits for one part of a batch's writing
    # (db.write_in_turns), not the whole batch. 5,000 was tried (bench/README, 2026-11-29): at
    # 200,000 rows 15% fewer bytes written and CPU within noise, but at a million rows two runs
    # took 1.55 ms of CPU per row against 1.45 before, so 2,000 stays until a same-VM A/B says.
    consumer_bulk_batch_size: int = Field(2000, ge=1, le=20_000)
    # The indexer's bulk batches: at 5,000 its peak RSS went 404 → 636–691 MB (a batch's events
    # and built documents are held at once) for 0.32 → 0.30 ms of CPU per row.
    indexer_bulk_batch_size: int = Field(2000, ge=1, le=20_000)
    # Against Tansu a consumer group joins after about half the session timeout.
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
        if store not in STORES:
            raise ValueError(f"unknown store {store!r}")
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / f'{store}.db').resolve()}"

    @property
    def bootstrap(self) -> str:
        if not self.kafka_bootstrap:
            raise RuntimeError(
                "TONGYUAN_KAFKA_BOOTSTRAP is not set; start the stack with `tongyuan up`, which runs the embedded broker, or point it at a Kafka broker"
            )
        return self.kafka_bootstrap


@lru_cache
def get_settings() -> Settings:
    return Settings()
