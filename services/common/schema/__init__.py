"""Schema migrations: one Alembic history for every store, applied store by store.

The history lives here (env.py, versions/), inside the package, so an installed tree can
upgrade its databases without a checkout. Each revision tags its operations with the store
they belong to (`ops.wants`); an upgrade runs for one store at a time, applies only that
store's operations and records the revision in the store's own version table
(`<store>_alembic_version`). So a SQLite file of the embedded profile gets only its store's
tables, the shared PostgreSQL database gets every store's, and each store there is tracked
apart (a deployment that never runs the bridge may leave the bridge's tables out).

Two processes may upgrade at once (`tongyuan up` starts several): the upgrade runs in one
transaction that holds the store's write lock first (SQLite: BEGIN IMMEDIATE) or an advisory
lock (PostgreSQL), and reads the version only then, so the second finds the work done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text

from services.common.db import writing
from services.common.settings import SHARED_STORES, Settings

HERE = Path(__file__).parent
# pg_advisory_xact_lock's key for schema upgrades ("tong" in ASCII): one upgrade at a time per database.
PG_LOCK_KEY = 0x746F6E67
UPGRADE_HINT = "run `tongyuan db upgrade`"


class SchemaNotCurrent(RuntimeError):
    """A store's schema is not the one this code needs (production: nothing creates it at start)."""


def version_table(store: str) -> str:
    return f"{store.replace('-', '_')}_alembic_version"


@cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory(str(HERE))


def head() -> str:
    revision = scripts().get_current_head()
    if revision is None:  # an empty history: a broken install, not a state to run in
        raise RuntimeError(f"no schema revisions under {HERE / 'versions'}")
    return revision


def config(store: str, **attributes: object) -> Config:
    """Alembic's configuration for one store's upgrade (no alembic.ini: everything is here)."""
    result = Config()
    result.set_main_option("script_location", str(HERE))
    result.attributes.update(store=store, **attributes)
    return result


def current(engine: Engine, store: str) -> str | None:
    """The revision `store`'s schema is at in this database (None: never migrated)."""
    with engine.connect() as connection:
        return _current(connection, store)


def _current(connection: Connection, store: str) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": version_table(store)}).get_current_revision()


def upgrade(engine: Engine, store: str, revision: str = "head") -> None:
    """Bring `store`'s tables in this database to `revision`, in one locked transaction.

    Tables made before migrations existed (by create_all, from the same models) are kept
    and adopted by the first revision."""
    with _locked(engine) as connection:
        command.upgrade(config(store, connection=connection), revision)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    # writing(): BEGIN IMMEDIATE on SQLite, so a second process waits at BEGIN for the first
    # to commit. Alembic runs inside this transaction (it sees one open and leaves it to us).
    with writing(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        yield connection


def downgrade(engine: Engine, store: str, revision: str) -> None:
    """Take `store`'s tables back to `revision` (an operator's way back from a bad release)."""
    with _locked(engine) as connection:
        command.downgrade(config(store, connection=connection), revision)


def ensure(engine: Engine, store: str) -> None:
    """What a process does with `store`'s schema at start: on SQLite (the embedded profile)
    upgrade it; on PostgreSQL (production, where `tongyuan db upgrade` is an operator's
    step) refuse to start on a schema other than head, in one line."""
    at = current(engine, store)
    if at == head():
        return
    if at is not None and not _known(at):  # a newer release upgraded it: upgrading cannot help
        raise SchemaNotCurrent(f"the {store} store's schema is at {at}, which this code does not know (a newer release's?); it needs {head()}")
    if engine.dialect.name == "sqlite":
        upgrade(engine, store)
        return
    raise SchemaNotCurrent(f"the {store} store's schema is at {at or 'nothing'}, this code needs {head()}: {UPGRADE_HINT}")


def _known(revision: str) -> bool:
    try:
        return scripts().get_revision(revision) is not None
    except CommandError:
        return False


def stores_of(settings: Settings) -> tuple[str, ...]:
    """The stores this configuration keeps: the shared ones and the search ledger (or, beside
    Elasticsearch, the indexer's heartbeat file)."""
    return (*SHARED_STORES, "search-heartbeat" if settings.search_backend == "elasticsearch" else "search")


def upgrade_all(settings: Settings) -> dict[str, tuple[str | None, str]]:
    """Upgrade every store of this configuration to head: store → (revision before, after)."""
    from services.common.db import create_store_engine

    moved = {}
    for store in stores_of(settings):
        engine = create_store_engine(settings.store_url(store))
        try:
            before = current(engine, store)
            upgrade(engine, store)
            moved[store] = (before, head())
        finally:
            engine.dispose()
    return moved


def upgrade_sql(settings: Settings, output: TextIO) -> None:
    """The SQL `upgrade_all` would run on empty databases, store by store (`--sql`)."""
    for store in stores_of(settings):
        url = settings.store_url(store)
        output.write(f"-- the {store} store ({url.split('://', 1)[0]})\n")
        migration = config(store, url=url)
        migration.output_buffer = output
        command.upgrade(migration, "head", sql=True)
