"""The AWS data path at 24 symbols, on loopback: collector -> Kinesis -> book builder -> Iceberg + MySQL.

The real collector (``--transport kinesis``) streams 24 symbols from the Bitfinex simulator into a moto
Kinesis stream, in connection slots of up to 12 symbols. The records are then delivered to two
book-builder "containers" at once, as two shards' Lambdas would be (each slot's records to one of
them, in stream order), writing the Iceberg tables in moto's Glue catalog and S3 (with Glue's
``VersionId`` check restored, so concurrent commits can conflict) and MySQL on a real MariaDB. One
batch fails after its rows are committed but before its checkpoint moves, and is delivered again.
What is read back must equal, row for row, a local ``marketpipe replay`` of the S3 raw archive.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

pytest.importorskip("pyiceberg")

from marketpipe.aws import lake_tables
from marketpipe.aws.book_builder import BookBuilder
from marketpipe.aws.checkpoints import CheckpointStore
from marketpipe.config import RunConfig
from marketpipe.replay import replay
from marketpipe.sinks.iceberg_sink import CatalogSpec, IcebergSink, watermarks
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables.bitfinex import BITFINEX_TABLES
from tests.e2e.conftest import (
    Capture,
    create_bucket,
    create_checkpoint_table,
    create_stream,
    download_prefix,
    lambda_event,
    read_stream,
    run_collectors,
    unique,
)
from tests.e2e.test_aws_pipeline import _empty_database, _rds_secret, _sorted_rows
from tests.support.moto_glue import enforce_glue_table_versions

SYMBOLS_24 = tuple(
    f"t{base}USD"
    for base in (
        "BTC", "ETH", "LTC", "XRP", "SOL", "ADA", "DOT", "EOS", "XLM", "TRX", "NEO", "ZEC",
        "XMR", "ETC", "IOT", "DSH", "OMG", "BAT", "ZRX", "UNI", "AVA", "FIL", "APT", "LNK",
    )
)  # fmt: skip


@pytest.fixture(scope="module")
def capture24(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """One collector, 24 symbols, 6 s, with a dropped connection (reconnect + REST backfill)."""
    stream, bucket = unique("frames"), create_bucket(unique("data"))
    arn = create_stream(stream)
    faults = [(2.0, "close", {})]
    (stats,) = asyncio.run(
        run_collectors(
            stream, bucket, producers=[(0.0, 6.0)], faults=faults, symbols=SYMBOLS_24, updates_per_second=60
        )
    )
    raw_dir = tmp_path_factory.mktemp("synced24") / "raw"
    download_prefix(bucket, "raw", raw_dir)
    return Capture(stream, arn, bucket, read_stream(stream), raw_dir, stats)


class CrashBeforeCheckpoint(CheckpointStore):
    """The checkpoint store of a Lambda that dies once after its rows are committed (a timeout)."""

    def __init__(self, table_name: str, crash_at_call: int) -> None:
        super().__init__(table_name)
        self.calls = 0
        self.crash_at_call = crash_at_call
        self.crashed = False

    def save(self, previous: Any, sequence_number: str, export: Any) -> int:
        self.calls += 1
        if self.calls == self.crash_at_call:
            self.crashed = True
            raise TimeoutError("Lambda timed out before the checkpoint was written")
        return super().save(previous, sequence_number, export)


@pytest.mark.mysql
def test_24_symbols_two_lambdas_and_a_retried_batch_equal_a_local_replay(
    capture24: Capture, mysql_url: str, tmp_path: Path
) -> None:
    enforce_glue_table_versions()
    keys = sorted({r["PartitionKey"] for r in capture24.records})
    assert len(keys) >= 2, f"24 symbols should span at least two connection slots: {keys}"

    _empty_database(mysql_url)
    secret_arn = _rds_secret(mysql_url)
    database = sa.engine.make_url(mysql_url).database
    assert database
    catalog = f"glue://{unique('lake').replace('-', '_')}?warehouse=s3://{capture24.bucket}/iceberg"
    env = {  # the Lambda's environment: the AWS variables (moto's endpoint) and the stack's
        **os.environ,
        "MARKETPIPE_LAKE_URI": f"s3://{capture24.bucket}/lake",
        "MARKETPIPE_ICEBERG_CATALOG": catalog,
        "MARKETPIPE_DB_SECRET_ARN": secret_arn,
        "MARKETPIPE_DB_NAME": database,
        "MARKETPIPE_CHECKPOINT_TABLE": create_checkpoint_table(unique("checkpoints")),
    }
    # two shards: each slot's records, in stream order, go to one of two containers
    shards: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in capture24.records:
        shards[keys.index(record["PartitionKey"]) % 2].append(record)
    retried: list[int] = []
    errors: list[BaseException] = []

    # deploy: the custom resource creates the Iceberg tables (the book builder may not create them)
    lake_tables.handle_deploy({"RequestType": "Create", "ResourceProperties": {}}, env)
    builders = [BookBuilder.from_env(env) for _ in (0, 1)]
    crashing = CrashBeforeCheckpoint(env["MARKETPIPE_CHECKPOINT_TABLE"], crash_at_call=1)
    builders[0].checkpoints = crashing
    for builder in builders:  # boto3 clients are created here: creating them is not thread-safe
        builder._current_sinks()

    def lambda_container(shard: int) -> None:
        builder = builders[shard]
        try:
            pending = list(shards[shard])
            while pending:
                batch, pending = pending[:50], pending[50:]
                response = builder.handle(lambda_event(batch, capture24.stream_arn))
                failures = response["batchItemFailures"]
                if failures:  # Lambda re-delivers the shard from the reported record
                    retried.append(shard)
                    sequences = [r["SequenceNumber"] for r in batch]
                    pending = batch[sequences.index(failures[0]["itemIdentifier"]) :] + pending
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=lambda_container, args=(shard,)) for shard in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert crashing.crashed and retried == [0], "the crash was not exercised"
    retry_lake = builders[0]._current_sinks()[0]
    assert isinstance(retry_lake, IcebergSink)
    assert retry_lake.stats.rows_already_committed > 0, "the retry's rows were not dropped by the watermark"

    local = tmp_path / "local"
    replay([capture24.raw_dir], RunConfig(data_dir=local, sinks=["db", "lake"]))
    local_db, aws_db = SqlSink(f"sqlite:///{local / 'marketpipe.db'}"), SqlSink(mysql_url)
    local_lake = LakeSink(str(local / "lake"))
    spec = CatalogSpec.parse(catalog)
    iceberg = IcebergSink(catalog, BITFINEX_TABLES).catalog
    try:
        symbols_seen = set()
        for table in BITFINEX_TABLES:
            expected = local_lake.read_table(table.name).to_pylist()
            assert expected, f"the local replay stored no {table.name} rows"
            stored = iceberg.load_table((spec.namespace, table.name)).scan().to_arrow()
            assert sorted(stored.to_pylist(), key=repr) == sorted(expected, key=repr), f"Iceberg {table.name}"
            assert _sorted_rows(aws_db.read_rows(table.name)) == _sorted_rows(local_db.read_rows(table.name))
            symbols_seen |= set(stored.column("symbol").to_pylist())
            marks = watermarks(iceberg.load_table((spec.namespace, table.name)).properties)
            assert marks and set(marks) <= set(keys)
        assert len(symbols_seen) == 24
    finally:
        local_db.close()
        aws_db.close()
