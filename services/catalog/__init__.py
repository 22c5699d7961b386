"""Catalog editions (derive, localise, Excel import/export, publish) and the picker API.

The editions live in the publisher's database: publishing one writes its event and the
re-issued publications through the publisher's outbox in the same transaction."""
