"""Fault tests of the book builder: retries, cold starts, stale invocations and two producers.

Every test replays the records of the shared live run (``capture``) through the book builder with one
fault, and compares what a user would query (SQL rows and lake rows, table by table) with a clean run
of the same records: a fault may delay rows, never duplicate, lose or corrupt them. The stores are
SQLite and a local lake (the sink port is the same as MySQL/S3, which the e2e test covers); the
checkpoints live in DynamoDB on the moto server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marketpipe.aws.book_builder import BookBuilder
from marketpipe.aws.checkpoints import Checkpoint, CheckpointConflict, CheckpointStore
from marketpipe.aws.kinesis_consumer import KinesisRecord
from marketpipe.aws.records import decode_record
from marketpipe.records import Row
from marketpipe.sinks.base import Sink
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import BITFINEX_BOOK, Table
from tests.e2e.conftest import (
    SLOT_KEYS,
    Capture,
    batches,
    client,
    create_bucket,
    create_checkpoint_table,
    create_stream,
    lambda_event,
    read_stream,
    run_collectors,
    unique,
)
from tests.support.reference_bitfinex import judge

TABLES = ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")
BATCH = 8  # the shared run has ~45 records: several batches per test
OK: dict[str, Any] = {"batchItemFailures": []}


@dataclass
class Stores:
    """A SQLite database and a lake folder: what one run of the book builder wrote."""

    root: Path

    def open(self) -> list[Sink]:
        return [LakeSink(str(self.root / "lake")), SqlSink(f"sqlite:///{self.root / 'db.sqlite'}")]

    def contents(self) -> dict[str, tuple[list[tuple[Any, ...]], list[dict[str, Any]]]]:
        sql = SqlSink(f"sqlite:///{self.root / 'db.sqlite'}")
        lake = LakeSink(str(self.root / "lake"))
        try:
            return {
                t: ([tuple(r.values()) for r in sql.read_rows(t)], lake.read_table(t).to_pylist())
                for t in TABLES
            }
        finally:
            sql.close()


def new_builder(stores: Stores, table: str, *, open_sinks: Any = None, store: Any = None) -> BookBuilder:
    """A book builder as a fresh Lambda container would create it (new clients, new sinks)."""
    return BookBuilder(
        store or CheckpointStore(table, client("dynamodb")), open_sinks or stores.open, emit_metrics=None
    )


def run_all(builder: BookBuilder, records: Sequence[dict[str, Any]], arn: str) -> None:
    for batch in batches(list(records), BATCH):
        assert builder.handle(lambda_event(batch, arn)) == OK


@pytest.fixture(scope="module")
def clean(capture: Capture, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference: every record once, in order, no fault."""
    stores = Stores(tmp_path_factory.mktemp("clean"))
    run_all(new_builder(stores, create_checkpoint_table(unique("cp"))), capture.records, capture.stream_arn)
    contents = stores.contents()
    for table in TABLES:
        assert contents[table][0], f"clean run stored no {table} rows"
        assert len(contents[table][0]) == len(contents[table][1])
    return contents


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    return Stores(tmp_path)


@pytest.fixture
def table() -> str:
    return create_checkpoint_table(unique("cp"))


class FailOnce:
    """A sink that raises once when it is handed a row received at ``received_ts`` (a crash mid-batch)."""

    def __init__(self, inner: Sink, received_ts: int, fired: list[bool]) -> None:
        self.inner, self.received_ts, self.fired = inner, received_ts, fired
        self.name = inner.name

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        position = table.index["received_ts"]
        if not self.fired[0] and any(r[position] == self.received_ts for r in rows):
            self.fired[0] = True
            raise ConnectionError("injected: database went away")
        self.inner.write(table, rows)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


def test_batch_failing_midway_resumes_at_the_failed_record(
    capture: Capture, clean: dict[str, Any], stores: Stores, table: str
) -> None:
    records = capture.records
    # record k: a mid-batch record whose frames make trade rows (so a sink write happens for it)
    frames_ts = [
        (i, f.received_ts)
        for i, r in enumerate(records)
        for f in decode_record(r["Data"])
        if '"te"' in f.frame and i % BATCH > 1
    ]
    k, received_ts = frames_ts[len(frames_ts) // 2]
    fired = [False]

    def open_sinks() -> list[Sink]:
        return [FailOnce(sink, received_ts, fired) for sink in stores.open()]

    builder = new_builder(stores, table, open_sinks=open_sinks)
    start = k - k % BATCH
    run_all(builder, records[:start], capture.stream_arn)
    batch = records[start : start + BATCH]
    response = builder.handle(lambda_event(batch, capture.stream_arn))
    assert fired[0]
    assert response == {"batchItemFailures": [{"itemIdentifier": records[k]["SequenceNumber"]}]}
    # the records of that key before k were committed: the checkpoint is at the last of them
    key = records[k]["PartitionKey"]
    before = [r for r in batch[: k - start] if r["PartitionKey"] == key]
    checkpoint = CheckpointStore(table, client("dynamodb")).load(key)
    if before:
        assert checkpoint.sequence_number == before[-1]["SequenceNumber"]
    assert checkpoint.position < int(records[k]["SequenceNumber"])
    for other in {r["PartitionKey"] for r in batch[: k - start]} - {key}:  # other books kept going
        applied = [r for r in batch[: k - start] if r["PartitionKey"] == other][-1]
        other_checkpoint = CheckpointStore(table, client("dynamodb")).load(other)
        assert other_checkpoint.position >= int(applied["SequenceNumber"])
    # Lambda re-delivers from the failed record on; then the stream goes on
    assert builder.handle(lambda_event(records[k : start + BATCH], capture.stream_arn)) == OK
    run_all(builder, records[start + BATCH :], capture.stream_arn)
    assert stores.contents() == clean


class CrashBeforeCheckpoint(CheckpointStore):
    """Rows are flushed, then the process dies before the checkpoint is written (once)."""

    crashed = False

    def save(self, previous: Checkpoint, sequence_number: str, export: Any) -> int:
        if not self.crashed:
            self.crashed = True
            raise TimeoutError("injected: Lambda timed out after flushing the sinks")
        return super().save(previous, sequence_number, export)


def test_crash_between_flush_and_checkpoint_reapplies_without_duplicates(
    capture: Capture, clean: dict[str, Any], stores: Stores, table: str
) -> None:
    records = capture.records
    store = CrashBeforeCheckpoint(table, client("dynamodb"))
    builder = new_builder(stores, table, store=store)
    first = records[:BATCH]
    response = builder.handle(lambda_event(first, capture.stream_arn))
    assert response == {"batchItemFailures": [{"itemIdentifier": first[0]["SequenceNumber"]}]}
    assert builder.handle(lambda_event(first, capture.stream_arn)) == OK  # Lambda's retry
    run_all(builder, records[BATCH:], capture.stream_arn)
    assert stores.contents() == clean


def test_cold_start_resumes_from_the_checkpoint(
    capture: Capture, clean: dict[str, Any], stores: Stores, table: str
) -> None:
    records = capture.records
    half = len(records) // 2
    warm = new_builder(stores, table)
    run_all(warm, records[:half], capture.stream_arn)
    sizes = warm.last_result.checkpoint_bytes
    assert sizes and max(sizes.values()) < 400_000, f"checkpoint too large for DynamoDB: {sizes}"
    del warm  # the container is gone: nothing in memory survives
    cold = new_builder(stores, table)
    run_all(cold, records[half:], capture.stream_arn)
    assert cold.last_result.skipped == 0
    assert stores.contents() == clean
    for key in SLOT_KEYS:  # one of six books, one of two: the restored slots went on as if never stopped
        last = [r["SequenceNumber"] for r in records if r["PartitionKey"] == key][-1]
        assert CheckpointStore(table, client("dynamodb")).load(key).sequence_number == last


def test_duplicate_and_stale_invocations_cannot_move_the_checkpoint_back(
    capture: Capture, clean: dict[str, Any], stores: Stores, table: str
) -> None:
    records = capture.records
    store = CheckpointStore(table, client("dynamodb"))
    builder = new_builder(stores, table)
    run_all(builder, records[: 2 * BATCH], capture.stream_arn)
    key = records[2 * BATCH]["PartitionKey"]
    stale = store.load(key)

    # a duplicate delivery of an applied batch: everything skipped, nothing written twice
    assert builder.handle(lambda_event(records[:BATCH], capture.stream_arn)) == OK
    assert builder.last_result.skipped == BATCH and builder.last_result.applied == 0

    run_all(builder, records[2 * BATCH : 3 * BATCH], capture.stream_arn)
    newer = store.load(key)
    assert newer.position > stale.position

    # a stale invocation that loaded the checkpoint before the last batch tries to commit
    class StaleLoads(CheckpointStore):
        def load(self, stream_key: str) -> Checkpoint:
            return stale if stream_key == key else super().load(stream_key)

    late = new_builder(stores, table, store=StaleLoads(table, client("dynamodb")))
    replayed = [r for r in records[2 * BATCH : 3 * BATCH] if r["PartitionKey"] == key]
    response = late.handle(lambda_event(replayed, capture.stream_arn))
    assert response == {"batchItemFailures": [{"itemIdentifier": replayed[0]["SequenceNumber"]}]}
    assert store.load(key).sequence_number == newer.sequence_number, "the checkpoint moved"
    with pytest.raises(CheckpointConflict):
        store.save(newer, stale.sequence_number or "0", lambda n: {})  # backwards, directly
    run_all(builder, records[3 * BATCH :], capture.stream_arn)
    assert stores.contents() == clean


def test_a_record_published_twice_is_applied_once(
    capture: Capture, clean: dict[str, Any], stores: Stores, table: str
) -> None:
    """A PutRecords retry after a lost response puts the same frames twice: the second copy is dropped."""
    # real-looking sequence numbers (Kinesis' have ~56 digits), with room between them
    base = 49_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    records = [dict(r, SequenceNumber=str(base + i * 1000)) for i, r in enumerate(capture.records)]
    copy = dict(records[10], SequenceNumber=str(base + 14 * 1000 + 500))  # lands right after record 14
    records.insert(15, copy)
    builder = new_builder(stores, table)
    run_all(builder, records, capture.stream_arn)
    assert stores.contents() == clean


def test_kinesis_record_numbers_compare_as_integers() -> None:
    small = KinesisRecord("k", "9" * 20, b"")
    large = KinesisRecord("k", "1" + "0" * 20, b"")
    assert small.position < large.position and small.sequence_number > large.sequence_number


# ---------------------------------------------------------------------------------------------- two producers


def test_two_producers_on_one_partition_key_never_corrupt_a_book(moto_endpoint: str, stores: Stores) -> None:
    """An ECS deployment: the new task starts, both publish for a while, then the old task stops."""
    stream, bucket = unique("frames"), create_bucket(unique("data"))
    arn = create_stream(stream)
    old, new = asyncio.run(run_collectors(stream, bucket, producers=[(0.0, 3.0), (1.5, 3.5)]))
    assert old.checksum_ok and new.checksum_ok
    records = read_stream(stream)
    builder = new_builder(stores, create_checkpoint_table(unique("cp")))
    run_all(builder, records, arn)

    frames = [f for r in records for f in decode_record(r["Data"])]  # the interleaved partitions
    runs = {f.conn.split("-")[0] for f in frames if not f.conn.startswith("rest:")}
    assert len(runs) == 2, "both producers should have published"
    judgement = judge(frames)
    contents = stores.contents()
    book_rows = contents["bitfinex_book"][0]
    assert book_rows
    keys = [(row[0], row[2]) for row in book_rows]  # (symbol, received_ts µs)
    assert len(keys) == len(set(keys)), "a book state was stored twice"
    for key, row in zip(keys, book_rows, strict=True):
        assert key not in judgement.refuted, f"stored a refuted state {key}"
        assert judgement.confirmed.get(key) == tuple(row[4:]), f"stored an unconfirmed state {key}"
    # rows from before the second task started and after the first one stopped: the book kept flowing
    first = min(f.received_ts for f in frames)
    for symbol in ("BTC-USD", "ETH-USD"):
        times = [ts - first for s, ts in keys if s == symbol]
        assert min(times) < 1_500_000 and max(times) > 3_500_000, symbol
    trades = contents["bitfinex_trades"][0]
    trade_keys = [(t[0], t[1]) for t in trades]
    assert len(trade_keys) == len(set(trade_keys))
    lake_trades = [(t["symbol"], t["trade_id"]) for t in contents["bitfinex_trades"][1]]
    assert sorted(lake_trades) == sorted(trade_keys)
    assert len(contents["bitfinex_book"][1]) == len(book_rows)


assert BITFINEX_BOOK.column_names[:4] == ("symbol", "exchange_ts", "received_ts", "seq")
