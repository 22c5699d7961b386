"""Draft a schema revision: `python -m devtools.schema_revision STORE "what changes and why"`.

Autogenerate compares STORE's models with a scratch SQLite database upgraded to head and
writes services/common/schema/versions/<next>_<slug>.py with the differences. Review it by
hand before committing: put the operations under `wants(STORE)` (the template does), check
indexes, defaults and types on PostgreSQL too; tests/unit/common/test_schema_migrations.py
then proves the migrated schema equals the models.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from alembic import command

from devtools.store_tables import metadata_of
from services.common import schema
from services.common.db import create_store_engine


def draft(store: str, message: str) -> Path:
    next_id = f"{int(schema.head()) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_store_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        schema.upgrade(engine, store)
        with engine.connect() as connection:
            config = schema.config(store, connection=connection, metadata=metadata_of(store))
            script = command.revision(config, message=message, autogenerate=True, rev_id=next_id)
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    path = Path(script.path)
    path.write_text(path.read_text(encoding="utf-8").replace('wants("STORE")', f"wants({store!r})"), encoding="utf-8")
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "change"
    return path.rename(path.with_name(f"{next_id}_{slug}.py"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(draft(sys.argv[1], sys.argv[2]))
