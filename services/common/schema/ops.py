"""What the revisions under versions/ use to say which store an operation belongs to."""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import inspect


def wants(store: str) -> bool:
    """Whether this upgrade is `store`'s: each revision runs once per store, and does only that
    store's part (in a SQLite file the other stores' tables do not belong)."""
    return bool(context.config.attributes["store"] == store)


def missing(table: str) -> bool:
    """The table is not there yet. The first revision creates only the missing tables: a
    database made by create_all before migrations existed keeps its tables (same models) and
    is adopted. Offline (`--sql`) the database is taken to be empty."""
    if context.is_offline_mode():
        return True
    return not inspect(op.get_bind()).has_table(table)
