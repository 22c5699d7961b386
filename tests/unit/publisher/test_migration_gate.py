"""The migration's gate side on a real SQLite publisher store (no broker): every row through
the gate onto the bulk lane, stable ids, idempotent reruns, interrupted runs resumed exactly,
gate refusals in the reject file, and the relay serving clerks before the bulk lane."""

from __future__ import annotations

import io
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from contracts.events import TOPIC_PUBLICATIONS, TOPIC_PUBLICATIONS_BULK, PublishedEvent
from services.common.db import create_store_engine
from services.migration import Planned, load_config, read_legacy, read_rejects
from services.publisher import store as store_module
from services.publisher.gate import handlers
from services.publisher.gate.migration import (
    CannotResume,
    migrate,
    migration_event_id,
    migration_principal,
    publication_id_for,
)
from services.publisher.relay.store import BULK_ROWS_PER_ROUND
from services.publisher.store import Publisher
from services.publisher.tables import outbox, publications
from tests.conftest import ADMIN, draft

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "migration"
EXPORT, CONFIG = SAMPLES / "changsha-county.csv", SAMPLES / "changsha-county.toml"
SOURCE = "/migration/changsha-county"


@pytest.fixture
def publisher(tmp_path):
    publisher = Publisher(create_store_engine(f"sqlite:///{tmp_path / 'publisher.db'}"))
    publisher.create_tables()
    return publisher


def _planned(directory, export=EXPORT, config=CONFIG) -> list[Planned]:
    site = load_config(config, directory)
    with read_legacy(site, export, principal=migration_principal(site), catalog_directory=directory) as stream:
        return [item for item in stream if isinstance(item, Planned)]


def _run(publisher, directory, tmp_path, export=EXPORT, config=CONFIG, **options):
    return migrate(load_config(config, directory), export, publisher=publisher, directory=lambda: directory, rejects_path=tmp_path / "rejects.csv", **options)


def _held(publisher) -> dict[str, tuple[str, int, dict]]:
    with publisher.engine.connect() as connection:
        rows = connection.execute(
            select(publications.c.source_ref, publications.c.publication_id, publications.c.version, publications.c.document).where(
                publications.c.source == SOURCE
            )
        )
        return {ref: (pid, version, document) for ref, pid, version, document in rows}


def _outbox(publisher) -> list[tuple[str, str]]:
    with publisher.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(select(outbox.c.topic, outbox.c.payload).order_by(outbox.c.id))]


def test_every_planned_row_becomes_a_publication_on_the_bulk_lane(publisher, directory, tmp_path):
    planned = _planned(directory)

    progress = _run(publisher, directory, tmp_path)

    held = _held(publisher)
    assert progress.accepted == len(planned) == len(held) and progress.unchanged == 0
    events = [PublishedEvent.model_validate_json(payload) for topic, payload in _outbox(publisher)]
    assert {topic for topic, _ in _outbox(publisher)} == {TOPIC_PUBLICATIONS_BULK}
    assert {e.data.source_ref.source for e in events} == {SOURCE}
    for row in planned:
        publication_id, version, document = held[row.request.source_ref]
        assert publication_id == publication_id_for(SOURCE, row.request.source_ref, row.request.published_at) and version == 1
        # Original dates and index numbers survive; bodies are sanitised on the way in.
        assert document["published_at"][:10] == row.request.published_at.date().isoformat()
        if row.request.index_number:
            assert document["index_number"] == row.request.index_number
        assert "<script" not in document["body_html"].lower() and "style=" not in document["body_html"]
    assert progress.rejected == len(list(read_rejects(tmp_path / "rejects.csv"))) > 0


def test_the_publication_id_is_derived_from_the_source_row_only():
    day = datetime(2021, 3, 5, 9, 30)
    assert publication_id_for(SOURCE, "row-1", day) == publication_id_for(SOURCE, "row-1", day)
    assert publication_id_for(SOURCE, "row-1", day) == publication_id_for(SOURCE, "row-1", day.replace(tzinfo=timezone.utc))
    assert publication_id_for(SOURCE, "row-1", day) != publication_id_for(SOURCE, "row-2", day)
    assert publication_id_for(SOURCE, "row-1", day) != publication_id_for("/migration/other", "row-1", day)


def test_the_publication_id_sorts_by_the_original_publication_time():
    """A version-7 UUID carrying the old site's date, as the gate's own ids carry their
    creation time: rows in publication order add to the end of every index on the id."""
    days = [datetime(2015, 1, 1) + timedelta(hours=7 * n) for n in range(200)]
    ids = [publication_id_for(SOURCE, f"row-{n}", day) for n, day in zip(range(200, 0, -1), days, strict=True)]
    assert ids == sorted(ids)
    first = uuid.UUID(ids[0])
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first.int >> 80 == int(days[0].replace(tzinfo=timezone.utc).timestamp() * 1000)
    # Dates outside what 48 bits of milliseconds hold still give an id.
    assert uuid.UUID(publication_id_for(SOURCE, "row-1", datetime(1900, 1, 1))).int >> 80 == 0


def test_a_row_whose_date_the_old_site_corrected_keeps_its_publication(publisher, directory, tmp_path):
    """The id carries the date it was first migrated with; found again by its old article id,
    the row is the same publication, in a new version with the new date."""
    export, config, source = SAMPLES / "wangcheng.jsonl", SAMPLES / "wangcheng.toml", "/migration/wangcheng"
    _run(publisher, directory, tmp_path, export=export, config=config)

    def held() -> dict[str, tuple[str, int, str]]:
        with publisher.engine.connect() as connection:
            rows = connection.execute(
                select(publications.c.source_ref, publications.c.publication_id, publications.c.version, publications.c.document).where(
                    publications.c.source == source
                )
            )
            return {ref: (pid, version, document["published_at"][:10]) for ref, pid, version, document in rows}

    before = held()
    assert before["5001"][1:] == (1, "2021-03-05")
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[0].startswith('{"DOCID": 5001,') and '"DOCRELTIME": "2021-03-05 10:00:00"' in lines[0]
    corrected = tmp_path / "wangcheng.jsonl"
    corrected.write_text("".join([lines[0].replace("2021-03-05 10:00:00", "2021-03-08 10:00:00"), *lines[1:]]), encoding="utf-8")

    again = _run(publisher, directory, tmp_path, export=corrected, config=config)

    after = held()
    assert again.accepted == 1 and set(after) == set(before)
    assert after["5001"] == (before["5001"][0], 2, "2021-03-08")
    assert after["5001"][0] != publication_id_for(source, "5001", datetime(2021, 3, 8, 10))
    assert {ref: row for ref, row in after.items() if ref != "5001"} == {ref: row for ref, row in before.items() if ref != "5001"}


def test_a_second_run_creates_nothing_and_a_corrected_row_becomes_a_new_version(publisher, directory, tmp_path):
    _run(publisher, directory, tmp_path)
    before, events = _held(publisher), len(_outbox(publisher))

    again = _run(publisher, directory, tmp_path)

    assert again.accepted == 0 and again.unchanged == len(before)
    assert _held(publisher) == before and len(_outbox(publisher)) == events

    # The old site corrected one title: only that row gets a new version.
    planned = _planned(directory)
    original = planned[0].request.title
    corrected = tmp_path / "corrected.csv"
    text = EXPORT.read_bytes().decode("gb18030")
    assert text.count(original) >= 1
    corrected.write_bytes(text.replace(original, original + "（更正）", 1).encode("gb18030"))
    config = tmp_path / "changsha-county.toml"
    config.write_text(CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copy(SAMPLES / "changsha-county-mapping.csv", tmp_path)

    third = _run(publisher, directory, tmp_path, export=corrected, config=config)

    versions = {ref: version for ref, (_, version, _) in _held(publisher).items()}
    changed = {ref for ref, version in versions.items() if version == 2}
    # Without an id column the ref covers the title, so the corrected row is a new row; with
    # an id column it is the same publication, version 2. Either way exactly one row moved.
    assert third.accepted == 1 and (len(changed) == 1 or len(versions) == len(before) + 1)


class Crash(Exception):
    pass


def test_a_run_interrupted_after_a_commit_resumes_after_it(publisher, directory, tmp_path):
    planned = _planned(directory)
    calls = []

    def crash_after_two(progress):
        calls.append(progress.line)
        if len(calls) == 2:
            raise Crash

    with pytest.raises(Crash):
        _run(publisher, directory, tmp_path, batch_size=4, on_batch=crash_after_two)
    assert 0 < len(_held(publisher)) == 8 < len(planned)

    resumed = _run(publisher, directory, tmp_path, batch_size=4, resume=True)

    held = _held(publisher)
    assert sorted(held) == sorted(p.request.source_ref for p in planned)
    assert all(version == 1 for _, version, _ in held.values())
    rejects = list(read_rejects(tmp_path / "rejects.csv"))
    assert len({r.line for r in rejects}) == len(rejects) == resumed.rejected  # each reject exactly once
    assert resumed.resumed_from == calls[1] and resumed.accepted == len(planned)


def test_a_run_killed_inside_a_batch_leaves_that_batch_to_the_resumed_run(publisher, directory, tmp_path, monkeypatch):
    planned = _planned(directory)
    saves = []

    real_save = store_module.PublisherStore.save_migration_checkpoint

    def dies_on_the_third(self, **checkpoint):
        saves.append(checkpoint["position"])
        if len(saves) == 3:
            raise Crash  # inside the transaction: the batch and its checkpoint roll back together
        return real_save(self, **checkpoint)

    monkeypatch.setattr(store_module.PublisherStore, "save_migration_checkpoint", dies_on_the_third)
    with pytest.raises(Crash):
        _run(publisher, directory, tmp_path, batch_size=4)
    monkeypatch.setattr(store_module.PublisherStore, "save_migration_checkpoint", real_save)
    assert len(_held(publisher)) == 8  # two batches committed, the third rolled back

    _run(publisher, directory, tmp_path, batch_size=4, resume=True)

    assert sorted(_held(publisher)) == sorted(p.request.source_ref for p in planned)
    rejects = list(read_rejects(tmp_path / "rejects.csv"))
    assert len({r.line for r in rejects}) == len(rejects)


def test_resume_refuses_without_an_earlier_run_or_with_another_file(publisher, directory, tmp_path):
    with pytest.raises(CannotResume, match="no earlier run"):
        _run(publisher, directory, tmp_path, resume=True)
    _run(publisher, directory, tmp_path)
    other = tmp_path / "other.csv"
    other.write_bytes(EXPORT.read_bytes() + b"\r\n")
    with pytest.raises(CannotResume, match="not that file"):
        _run(publisher, directory, tmp_path, export=other, resume=True)


def test_rows_the_gate_refuses_go_to_the_reject_file(publisher, directory, tmp_path):
    # The migration acts for 长沙县 only; a rule filing rows under 浏阳市 is refused by the gate.
    config = tmp_path / "changsha-county.toml"
    config.write_text(
        CONFIG.read_text(encoding="utf-8").replace('domain = "社会救助"\nlevel1 = "D14-02"', 'region = "430181"\ndomain = "社会救助"\nlevel1 = "D14-02"', 1),
        encoding="utf-8",
    )
    shutil.copy(SAMPLES / "changsha-county-mapping.csv", tmp_path)
    planned = _planned(directory, config=config)
    elsewhere = [p for p in planned if p.request.placements[0].region_code == "430181"]
    assert elsewhere

    progress = _run(publisher, directory, tmp_path, config=config)

    refused = [r for r in read_rejects(tmp_path / "rejects.csv") if r.reason == "refused_by_gate"]
    assert sorted(r.line for r in refused) == sorted(p.line for p in elsewhere)
    assert all("430181" in r.detail or "actor" in r.detail for r in refused)
    assert progress.accepted == len(planned) - len(elsewhere)


def test_the_relay_serves_a_clerks_publication_before_a_migrations_backlog(publisher, directory, tmp_path):
    _run(publisher, directory, tmp_path)  # bulk rows first in the outbox
    with publisher.transaction() as store:
        for n in range(BULK_ROWS_PER_ROUND + 100):
            store.add_to_outbox(event_id=f"bulk-{n}", topic=TOPIC_PUBLICATIONS_BULK, key="k", payload="{}")
    clerk = handlers.publish(principal=ADMIN, draft=draft(title="后来的公告"), publisher=publisher, directory=directory)

    rows = publisher.unsent(1000)

    assert rows[0][1] == TOPIC_PUBLICATIONS and clerk.publication_id in rows[0][3]
    assert sum(1 for _, topic, *_ in rows if topic == TOPIC_PUBLICATIONS_BULK) == BULK_ROWS_PER_ROUND


def test_without_a_terminal_progress_is_logged_with_rate_and_eta_every_few_seconds(tmp_path, monkeypatch):
    from services.publisher import migration_cli
    from services.publisher.gate.migration import MigrationProgress

    export = tmp_path / "export.csv"
    export.write_text("标题\n" + "一行\n" * 1000, encoding="utf-8")
    ticks = iter([0.0, 5.0, 6.0, 10.0, 10.5])  # start, then a batch at 5 s, 6 s, 10 s and the last at 10.5 s
    monkeypatch.setattr(migration_cli.sys, "stderr", io.StringIO())  # not a terminal

    logged = []
    with migration_cli._Progress(export, clock=lambda: next(ticks), report=lambda event, **fields: logged.append({"event": event, **fields})) as progress:
        for line in (500, 600, 1000, 1001):
            progress.update(MigrationProgress(line=line, accepted=line))

    lines = [entry for entry in logged if entry["event"] == "migration.progress"]
    # Every 5 s at most (the 6 s batch is skipped), and the last one always.
    assert [entry["line"] for entry in lines] == [500, 1000, 1001]
    assert lines[0]["total_lines"] == 1001 and lines[0]["rows_per_s"] == 100 and lines[0]["eta_s"] == 5
    assert lines[1]["rows_per_s"] == 100 and lines[1]["eta_s"] == 0


def _two_column_site(tmp_path: Path) -> tuple[Path, Path]:
    """An old site filing article A1 under two columns (two rows) and A2 under one."""
    config = tmp_path / "site.toml"
    config.write_text(
        "\n".join(
            [
                'site = "two-columns"',
                'region_code = "430121"',
                "[columns]",
                'id = "编号"',
                'title = "标题"',
                'body = "内容"',
                'date = "发布日期"',
                'path = "栏目"',
                "[[rules]]",
                'prefix = "公开/低保"',
                'domain = "D14"',
                'level1 = "D14-02"',
                'level2 = "D14-02-04"',
                "[[rules]]",
                'prefix = "部门/民政"',
                'domain = "D14"',
                'level1 = "D14-02"',
                'level2 = "D14-02-03"',
            ]
        ),
        encoding="utf-8",
    )
    export = tmp_path / "export.csv"
    rows = [
        "编号,标题,内容,发布日期,栏目",
        "A1,低保公示,<p>名单</p>,2021-3-5,公开/低保",
        "A2,低保政策,<p>办法</p>,2021-3-6,公开/低保",
        "A1,低保公示,<p>名单</p>,2021-3-5,部门/民政",
    ]
    export.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return export, config


def test_an_article_in_two_old_columns_is_one_publication_filed_in_both(publisher, directory, tmp_path):
    export, config = _two_column_site(tmp_path)

    _run(publisher, directory, tmp_path, export=export, config=config)
    again = _run(publisher, directory, tmp_path, export=export, config=config)

    with publisher.engine.connect() as connection:
        held = {
            ref: (version, document)
            for ref, version, document in connection.execute(select(publications.c.source_ref, publications.c.version, publications.c.document))
        }
    assert set(held) == {"A1", "A2"}, "one publication per article"
    version, document = held["A1"]
    assert version == 2 and [p["level2_id"] for p in document["placements"]] == ["D14-02-04", "D14-02-03"]
    assert again.accepted == 0, "a second run changes nothing"


def _held_by_ref(publisher) -> dict[str, tuple[str, int]]:
    with publisher.engine.connect() as connection:
        return {
            ref: (pid, version)
            for ref, pid, version in connection.execute(select(publications.c.source_ref, publications.c.publication_id, publications.c.version))
        }


def test_migration_event_ids_follow_the_publication_date():
    """So the inbound ledger's index grows at its end when an export runs in publication order."""
    days = [datetime(2015, 1, 1) + timedelta(days=n) for n in range(0, 3000, 7)]
    ids = [migration_event_id(publication_id_for(SOURCE, f"row-{n}", day), f"{n:064x}") for n, day in enumerate(days)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert migration_event_id("0" * 32, "ab" * 32) == "migration:" + "0" * 32 + ":" + "ab" * 8
