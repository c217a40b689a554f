"""The Iceberg lake sink on pyiceberg's SQL catalog: values, hidden partitions, exactly once, conflicts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pyiceberg")

from marketpipe.errors import ConfigError
from marketpipe.sinks.base import PositionedSink
from marketpipe.sinks.iceberg_sink import CatalogSpec, IcebergSink, watermarks
from marketpipe.tables.bitfinex import BITFINEX_BOOK, BITFINEX_QUOTES, BITFINEX_TABLES, BITFINEX_TRADES

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in µs


def quote(i: int, symbol: str = "BTC-USD") -> tuple[object, ...]:
    return (symbol, T0 + i * 1000 if i % 3 else None, T0 + i, i, "bid", 100.0 + i, 1, 0.5, "add")


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}?warehouse=file://{tmp_path / 'warehouse'}"


def stored(sink: IcebergSink, name: str) -> list[tuple[object, ...]]:
    table = sink.catalog.load_table(("marketpipe", name))
    rows = table.scan().to_arrow().to_pylist()
    return sorted((tuple(r.values()) for r in rows), key=repr)


def as_tuples(sink: IcebergSink, name: str, rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """What the rows read back as (timestamps come back as datetimes)."""
    from marketpipe.sinks.iceberg_sink import to_arrow

    table = sink.tables[name]
    return sorted((tuple(r.values()) for r in to_arrow(table, rows).to_pylist()), key=repr)


def test_rows_read_back_equal_with_day_and_symbol_bucket_partitions(uri: str, tmp_path: Path) -> None:
    sink = IcebergSink(uri, BITFINEX_TABLES)
    assert isinstance(sink, PositionedSink)
    quotes = [quote(i, s) for i in range(50) for s in ("BTC-USD", "ETH-USD", "SOL-USD")]
    book = [("BTC-USD", None, T0 + 7, 3, *([1.5] * 200), *([None] * 200))]
    trades = [("ETH-USD", 42, T0, 2000.5, -0.25, "sell", T0 + 9)]
    sink.write_at("bitfinex:slot-0", 10, BITFINEX_QUOTES, quotes)
    sink.write_at("bitfinex:slot-0", 10, BITFINEX_BOOK, book)
    sink.write_at("bitfinex:slot-0", 11, BITFINEX_TRADES, trades)
    sink.close()
    assert stored(sink, "bitfinex_quotes") == as_tuples(sink, "bitfinex_quotes", quotes)
    assert stored(sink, "bitfinex_book") == as_tuples(sink, "bitfinex_book", book)
    assert stored(sink, "bitfinex_trades") == as_tuples(sink, "bitfinex_trades", trades)
    table = sink.catalog.load_table(("marketpipe", "bitfinex_quotes"))
    assert [str(f.transform) for f in table.spec().fields] == ["day", "bucket[8]"]
    sorted_by = [table.schema().find_column_name(f.source_id) for f in table.sort_order().fields]
    assert sorted_by == ["symbol", "received_ts"]
    files = [t.file.file_path for t in table.scan().plan_files()]
    assert files and all("received_ts_day=2023-11-14/symbol_bucket=" in f for f in files)
    assert "commit.retry.num-retries" not in table.properties  # other engines (compaction) keep retrying
    assert watermarks(table.properties) == {"bitfinex:slot-0": 10}
    assert table.current_snapshot().summary["marketpipe.keys"] == "bitfinex:slot-0=10..10"


def test_a_retried_batch_adds_only_the_records_after_the_watermark(uri: str) -> None:
    first = IcebergSink(uri, [BITFINEX_QUOTES])
    first.write_at("bitfinex:a", 5, BITFINEX_QUOTES, [quote(1), quote(2)])
    first.write_at("bitfinex:b", 6, BITFINEX_QUOTES, [quote(3, "ETH-USD")])
    first.flush()  # crash here: the checkpoint never moved, Lambda delivers the records again, and more
    retry = IcebergSink(uri, [BITFINEX_QUOTES])
    retry.write_at("bitfinex:a", 5, BITFINEX_QUOTES, [quote(1), quote(2)])
    retry.write_at("bitfinex:b", 6, BITFINEX_QUOTES, [quote(3, "ETH-USD")])
    retry.write_at("bitfinex:a", 8, BITFINEX_QUOTES, [quote(4)])
    retry.flush()
    assert retry.stats.rows_already_committed == 3 and retry.stats.rows_appended == 1
    assert len(stored(retry, "bitfinex_quotes")) == 4
    table = retry.catalog.load_table(("marketpipe", "bitfinex_quotes"))
    assert watermarks(table.properties) == {"bitfinex:a": 8, "bitfinex:b": 6}
    again = IcebergSink(uri, [BITFINEX_QUOTES])
    again.write_at("bitfinex:a", 8, BITFINEX_QUOTES, [quote(4)])
    again.flush()
    assert again.stats.commits == 0 and again.stats.rows_already_committed == 1
    assert len(stored(again, "bitfinex_quotes")) == 4


def test_concurrent_writers_lose_nothing_and_duplicates_commit_once(uri: str) -> None:
    IcebergSink(uri, [BITFINEX_QUOTES]).flush()
    setup = IcebergSink(uri, [BITFINEX_QUOTES])
    setup.write_at("bitfinex:setup", 0, BITFINEX_QUOTES, [quote(0, "X-USD")])
    setup.flush()
    errors: list[BaseException] = []
    sinks: list[IcebergSink] = []

    def writer(key: str, start: int) -> None:
        sink = IcebergSink(uri, [BITFINEX_QUOTES], sleep=lambda s: None)
        sinks.append(sink)
        try:
            for batch in range(6):
                sink.write_at(key, batch, BITFINEX_QUOTES, [quote(start + batch * 10 + i) for i in range(10)])
                sink.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # two shards' Lambdas on different keys, and a duplicate delivery of one of them
    threads = [
        threading.Thread(target=writer, args=("bitfinex:a", 1_000)),
        threading.Thread(target=writer, args=("bitfinex:b", 2_000)),
        threading.Thread(target=writer, args=("bitfinex:a", 1_000)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    rows = stored(setup, "bitfinex_quotes")
    assert len(rows) == 1 + 60 + 60 and len(set(rows)) == len(rows)
    assert sum(s.stats.conflicts for s in sinks) > 0, "the writers never raced; the test proves nothing"


def test_catalog_uris_are_checked(uri: str) -> None:
    assert CatalogSpec.parse("glue://marketpipe?warehouse=s3://lake/iceberg/") == CatalogSpec(
        "glue", "marketpipe", "s3://lake/iceberg"
    )
    for bad, message in [
        ("glue://marketpipe", "warehouse"),
        ("glue://?warehouse=s3://b/p", "glue://<database>"),
        ("hive://x?warehouse=s3://b/p", "expected glue"),
    ]:
        with pytest.raises(ConfigError, match=message):
            CatalogSpec.parse(bad)
    with pytest.raises(ValueError, match="not an Iceberg table"):
        IcebergSink(uri, [BITFINEX_BOOK]).write(BITFINEX_QUOTES, [])


def test_expiry_keeps_the_current_snapshot_the_rows_and_the_watermarks(uri: str) -> None:
    from marketpipe.sinks.iceberg_sink import expire_snapshots

    sink = IcebergSink(uri, [BITFINEX_QUOTES])
    for position in range(4):
        sink.write_at("bitfinex:a", position, BITFINEX_QUOTES, [quote(position)])
        sink.flush()
    table = sink.catalog.load_table(("marketpipe", "bitfinex_quotes"))
    assert len(table.metadata.snapshots) == 4
    assert expire_snapshots(sink.catalog, "marketpipe", ["bitfinex_quotes"], 3600) == {"bitfinex_quotes": 0}
    assert expire_snapshots(sink.catalog, "marketpipe", ["bitfinex_quotes"], 0, now=time.time() + 1) == {
        "bitfinex_quotes": 3
    }
    table = sink.catalog.load_table(("marketpipe", "bitfinex_quotes"))
    assert len(table.metadata.snapshots) == 1
    assert len(stored(sink, "bitfinex_quotes")) == 4
    retry = IcebergSink(uri, [BITFINEX_QUOTES])  # the watermark outlives the snapshots it came with
    retry.write_at("bitfinex:a", 3, BITFINEX_QUOTES, [quote(3)])
    retry.flush()
    assert retry.stats.commits == 0 and len(stored(retry, "bitfinex_quotes")) == 4


def test_rows_of_a_record_that_failed_in_another_sink_are_not_committed(uri: str) -> None:
    """A record whose SQL write fails is retried later: the lake must not keep its rows meanwhile
    (if it is never applied, the lake would hold rows no checkpoint and no other store has)."""
    import base64

    from marketpipe.aws.checkpoints import Checkpoint
    from marketpipe.aws.kinesis_consumer import Emitted, KinesisConsumer, KinesisRecord
    from tests.unit.test_kinesis_consumer import MemoryCheckpoints

    class RowRun:
        def apply(self, record: KinesisRecord) -> Emitted:
            return [(BITFINEX_QUOTES, [quote(record.position)])]

        def export(self, history: int) -> dict[str, object]:
            return {}

    class FailingSql:
        name = "sql"

        def write(self, table: object, rows: list[tuple[object, ...]]) -> None:
            if rows[0][3] == 3:  # the seq column of record 3's row
                raise OSError("MySQL went away")

        def flush(self) -> None: ...

        def close(self) -> None: ...

    class Rows(KinesisConsumer):
        def accepts(self, key: str) -> bool:
            return True

        def restore(self, checkpoint: Checkpoint) -> RowRun:
            return RowRun()

    lake = IcebergSink(uri, [BITFINEX_QUOTES])
    consumer = Rows(MemoryCheckpoints(), lambda: [lake, FailingSql()])
    records = [
        {"kinesis": {"partitionKey": "k", "sequenceNumber": str(n), "data": base64.b64encode(b"x").decode()}}
        for n in (1, 2, 3, 4)
    ]
    assert consumer.handle({"Records": records}) == {"batchItemFailures": [{"itemIdentifier": "3"}]}
    assert [row[3] for row in stored(lake, "bitfinex_quotes")] == [1, 2]
    table = lake.catalog.load_table(("marketpipe", "bitfinex_quotes"))
    assert watermarks(table.properties) == {"k": 2}


def test_deploying_a_changed_table_evolves_it_or_fails_with_the_reason(uri: str) -> None:
    from marketpipe.sinks.iceberg_sink import CatalogSpec, ensure_tables
    from marketpipe.tables import Column, Kind, Table

    spec = CatalogSpec.parse(uri)
    catalog = IcebergSink(uri, [BITFINEX_TRADES]).catalog
    assert ensure_tables(catalog, spec.namespace, spec.warehouse, [BITFINEX_TRADES]) == ["bitfinex_trades"]
    assert ensure_tables(catalog, spec.namespace, spec.warehouse, [BITFINEX_TRADES]) == []  # nothing to do
    grown = Table(
        name=BITFINEX_TRADES.name,
        columns=(*BITFINEX_TRADES.columns, Column("venue_fee", Kind.FLOAT)),
        key=BITFINEX_TRADES.key,
        order_by=BITFINEX_TRADES.order_by,
    )
    ensure_tables(catalog, spec.namespace, spec.warehouse, [grown])
    table = catalog.load_table((spec.namespace, "bitfinex_trades"))
    assert table.schema().find_field("venue_fee").required is False
    regrouped = Table(
        name=BITFINEX_TRADES.name,
        columns=grown.columns,
        key=grown.key,
        order_by=grown.order_by,
        partitions=("side",),
    )
    with pytest.raises(ValueError, match="partition spec changed"):
        ensure_tables(catalog, spec.namespace, spec.warehouse, [regrouped])
