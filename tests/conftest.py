from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from contracts.catalog import regions_of_city, standard_catalog
from contracts.events import PlacementRef, PublicationDraft
from contracts.identity import Principal
from services.publisher.gate.domain import Directory
from services.publisher.store import Publisher

# A live OpenSearch for the tests that take one (TONGYUAN_TEST_OPENSEARCH=start starts it).
pytest_plugins = ["tests.opensearch_node"]

# A township of 芙蓉区 and the county itself, both real 2023 codes.
TOWNSHIP = "430102001"
COUNTY = "430102"
OTHER_COUNTY = "430103"


# A 芙蓉区 editor (publishes for the county and its townships) and an administrator.
EDITOR = Principal(user="furong-clerk", roles=("editor",), regions=(COUNTY,))
ADMIN = Principal(user="office", roles=("admin",))


@pytest.fixture(scope="session")
def directory() -> Directory:
    return Directory.single(standard_catalog(), {r.code: r for r in regions_of_city("4301")})


def placement(region: str = TOWNSHIP, level2: str = "D14-02-02") -> PlacementRef:
    domain, level1 = level2[:3], level2[:6]
    return PlacementRef(region_code=region, domain_code=domain, level1_id=level1, level2_id=level2)


def draft(**overrides) -> PublicationDraft:
    values = dict(
        placements=[placement()],
        title="关于2026年最低生活保障标准调整的公告",
        body_html="<p>根据有关规定，我区城乡低保标准调整如下。</p>",
        formed_at=date(2026, 3, 2),
        published_at=datetime(2026, 3, 5, 9, 0, tzinfo=timezone.utc),
    )
    values.update(overrides)
    return PublicationDraft(**values)


def store_backends() -> list[str]:
    """SQLite always; PostgreSQL too when TONGYUAN_TEST_PG_URL is set (CI sets it)."""
    return ["sqlite", "postgresql"] if os.environ.get("TONGYUAN_TEST_PG_URL") else ["sqlite"]


def fresh_postgres_database(base_url: str | None = None, prefix: str = "tongyuan_t") -> tuple[str, Callable[[], None]]:
    """A new, empty database on the test server: its URL and a function that drops it."""
    url = make_url(base_url or os.environ["TONGYUAN_TEST_PG_URL"])
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@contextmanager
def store_engine(backend: str, tmp_path, name: str) -> Iterator[Engine]:
    """An engine on `backend` (a store_backends() param): a SQLite file under tmp_path, or a
    fresh PostgreSQL database dropped afterwards, upgraded as `tongyuan db upgrade` would (on
    PostgreSQL a store only checks its schema at start): the store `name`'s tables, or every
    shared store's when `name` is not a store."""
    from services.common import schema
    from services.common.db import create_store_engine
    from services.common.settings import SHARED_STORES

    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
    else:
        url, drop = fresh_postgres_database(prefix=f"tongyuan_{name[:8]}")
    engine = create_store_engine(url)
    if drop:
        for store in [name] if name in SHARED_STORES else SHARED_STORES:
            schema.upgrade(engine, store)
    try:
        yield engine
    finally:
        engine.dispose()
        if drop:
            drop()


@contextmanager
def publisher_on(backend: str, tmp_path) -> Iterator[Publisher]:
    """The publisher's store, its tables made, on `backend` (a store_backends() param)."""
    with store_engine(backend, tmp_path, "publisher") as engine:
        publisher = Publisher(engine)
        publisher.create_tables()
        yield publisher


@contextmanager
def settings_under(monkeypatch: pytest.MonkeyPatch, var_dir: Path, *, unset: tuple[str, ...] = ("TONGYUAN_DATABASE_URL",)) -> Iterator[Path]:
    """What the CLI reads through get_settings(), made afresh from this environment: the var dir
    `var_dir`, none of `unset` (the developer's own database, say); cached settings dropped
    before and after."""
    from services.common.settings import get_settings

    monkeypatch.setenv("TONGYUAN_VAR_DIR", str(var_dir))
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        yield var_dir
    finally:
        get_settings.cache_clear()


@contextmanager
def cli_under(monkeypatch: pytest.MonkeyPatch, var_dir: Path, app: typer.Typer) -> Iterator[Callable[..., Result]]:
    """`run("catalog", "export", …)`: the typer app invoked as an office would, its settings
    from `var_dir` (settings_under); exceptions are raised, not turned into an exit code."""
    runner = CliRunner()
    with settings_under(monkeypatch, var_dir):
        yield lambda *args: runner.invoke(app, list(args), catch_exceptions=False)
