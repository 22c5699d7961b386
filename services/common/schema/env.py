"""Alembic's environment: one store's upgrade, over the connection (or, offline, the URL) the
caller put in the config's attributes (services.common.schema.upgrade / upgrade_sql)."""

from __future__ import annotations

from alembic import context

from services.common.schema import version_table

config = context.config
attributes = config.attributes
if context.is_offline_mode():
    context.configure(
        url=attributes["url"],
        literal_binds=True,
        version_table=version_table(attributes["store"]),
        transactional_ddl=True,
    )
else:
    context.configure(
        connection=attributes["connection"],
        version_table=version_table(attributes["store"]),
        # SQLite runs DDL in transactions too: an upgrade that fails half-way leaves nothing behind.
        transactional_ddl=True,
        target_metadata=attributes.get("metadata"),
        render_as_batch=True,  # SQLite alters a table by copying it: autogenerate writes batch operations
    )
with context.begin_transaction():
    context.run_migrations()
