"""The parser's and log-extractor's SQL on SQLite, the local stack's default database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rbr_log_extractor.store import ExtractState
from rbr_parser.formats import PARSED_COLUMNS
from rbr_parser.store import LogRows
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade


def test_rows_and_extract_state_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rbr.db'}"
    upgrade(url)
    engine = make_engine(url)
    rows = LogRows(engine)
    old = datetime.now(UTC) - timedelta(days=100)
    created_at = rows.object_created_at("rb", "b" * 64, datetime.now(UTC))
    # Parsed again later, the object's rows carry the first parse's moment.
    later = datetime.now(UTC) + timedelta(hours=1)
    assert rows.object_created_at("rb", "b" * 64, later) == created_at
    batch = [
        dict.fromkeys(PARSED_COLUMNS)
        | {
            "log_format": "unknown",
            "event_type": "unparsed",
            "name": "rb",
            "ip_address": "203.0.113.5",
            "log": "it's \\ raw",
            "log_size": 11,
            "source_key": "raw/rb/x.log",
            "source_sha256": "b" * 64,
            "record_no": number,
            "event_time": old,
            "created_at": created_at,
        }
        for number in range(30)
    ]
    assert rows.insert(batch) == 30
    assert rows.insert(batch) == 0
    assert rows.count_for_object("rb", "b" * 64) == 30
    # The same content from another bucket is that bucket's rows, stored once too.
    other_created_at = rows.object_created_at("rb-2", "b" * 64, later)
    assert other_created_at == later
    other = [
        row | {"name": "rb-2", "source_key": "raw/rb-2/x.log", "created_at": other_created_at}
        for row in batch
    ]
    assert rows.insert(other) == 30
    assert rows.insert(other) == 0
    assert rows.count_for_object("rb-2", "b" * 64) == 30
    assert rows.count_for_object("rb", "b" * 64) == 30
    assert rows.insert([]) == 0
    assert sum(rows.delete_older_than(later + timedelta(seconds=5), 7)) == 60
    assert rows.delete_objects_older_than(later + timedelta(seconds=5)) == 2

    state = ExtractState(engine, "me")
    lease = timedelta(minutes=5)
    assert state.claim_slot("rb", 10, lease)
    assert not ExtractState(engine, "other").take_lease("rb", 10, lease)  # leased
    state.release("rb", give_back_slot=10)
    assert state.state("rb").last_extract_slot == 9
    assert state.claim_slot("rb", 10, lease)
    state.store_extraction("rb", cursor="42", pending_event="{}")
    state.clear_pending("rb", "{}")
    assert state.state("rb").pending_event is None
    state.record_outcome("rb", "boom")
    state.release("rb")
    assert state.state("rb") == state.state("rb").__class__("42", None, 10)
    assert not state.claim_slot("rb", 10, lease)  # done already
    state.record_copy(
        "rb",
        source_uri="s3://b/k",
        source_etag='"e"',
        size_bytes=3,
        source_sha256="a" * 64,
        target_key="t",
    )
    assert set(state.copied("rb", ["s3://b/k", "s3://b/other"])) == {"s3://b/k"}
    # A newer version of the source replaces the ledger row (an upsert on SQLite too).
    state.record_copy(
        "rb",
        source_uri="s3://b/k",
        source_etag='"f"',
        size_bytes=5,
        source_sha256="b" * 64,
        target_key="t2",
    )
    entry = state.copied("rb", ["s3://b/k"])["s3://b/k"]
    assert (entry.source_etag, entry.size_bytes, entry.source_sha256, entry.target_key) == (
        '"f"',
        5,
        "b" * 64,
        "t2",
    )
    # A copy's ledger row and its pending event go together.
    state.record_copy(
        "rb",
        source_uri="s3://b/k2",
        source_etag='"g"',
        size_bytes=1,
        source_sha256="c" * 64,
        target_key="t3",
        pending_event='{"copy": 1}',
    )
    assert state.state("rb").pending_event == '{"copy": 1}'
    engine.dispose()
