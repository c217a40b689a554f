"""The AWS data path end to end, on loopback: what a user would check after ``cdk deploy``.

The real collector (``marketpipe run --transport kinesis``) streams from the Bitfinex simulator into
Kinesis on a moto server; the records read back from the stream are delivered to the book-builder
handler as Lambda would (batches of base64 records); it writes the lake to moto S3 and MySQL to a real
MariaDB. The stored rows must equal, table by table and row by row, what a local ``marketpipe replay``
of the S3 raw archive writes, and the archive must hold exactly the frames the stream carried.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from marketpipe.aws.records import decode_record
from marketpipe.config import RunConfig
from marketpipe.replay import replay
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.sinks.raw_capture import iter_raw_frames
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import TABLES
from tests.e2e.conftest import (
    SLOT_KEYS,
    Capture,
    batches,
    client,
    create_checkpoint_table,
    lambda_event,
    load_handler,
    unique,
)

BITFINEX_TABLES = ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")


def _empty_database(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f"DROP TABLE `{name}`"))
    engine.dispose()


def _rds_secret(mysql_url: str) -> str:
    """A secret shaped like the one RDS generates, pointing at the test MariaDB."""
    url = sa.engine.make_url(mysql_url)
    secret = {
        "engine": "mysql",
        "username": url.username,
        "password": url.password,
        "host": url.host,
        "port": url.port,
        "dbname": "not-this-one",  # MARKETPIPE_DB_NAME wins, as in the stack
    }
    return str(
        client("secretsmanager").create_secret(Name=unique("db"), SecretString=json.dumps(secret))["ARN"]
    )


def _sorted_rows(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((tuple(r.values()) for r in rows), key=repr)


def test_stream_carries_every_archived_frame_in_order_one_connection_slot_per_partition(
    capture: Capture,
) -> None:
    by_key: dict[str, list[bytes]] = defaultdict(list)
    conns_of_key: dict[str, set[str]] = defaultdict(set)
    symbols_of_key: dict[str, set[str]] = defaultdict(set)
    backfilled: dict[str, set[str]] = defaultdict(set)
    for record in capture.records:
        key = record["PartitionKey"]
        for frame in decode_record(record["Data"]):
            by_key[key].append(frame.to_line())
            if frame.conn.startswith("rest:"):
                backfilled[key].add(frame.conn.split("/")[3])
            else:
                conns_of_key[key].add(frame.conn)
            if frame.direction == "out" and '"subscribe"' in frame.frame:
                symbols_of_key[key].add(json.loads(frame.frame)["symbol"])
        assert len(record["Data"]) <= 1_000_000
    assert sorted(by_key) == list(SLOT_KEYS)
    # slots of six sorted symbols, each the only connection (and so SEQ_ALL numbering) of its key
    assert symbols_of_key == {
        SLOT_KEYS[0]: {"tADAUSD", "tAVAX:USD", "tBTCUSD", "tDOGE:USD", "tETHUSD", "tLTCUSD"},
        SLOT_KEYS[1]: {"tSOLUSD", "tXRPUSD"},
    }
    assert not conns_of_key[SLOT_KEYS[0]] & conns_of_key[SLOT_KEYS[1]]
    assert len(conns_of_key[SLOT_KEYS[0]]) >= 2, "the injected close should have caused a reconnect"
    # REST backfill bodies went to the slot of their symbol
    assert backfilled[SLOT_KEYS[0]] <= symbols_of_key[SLOT_KEYS[0]]
    assert backfilled[SLOT_KEYS[1]] <= symbols_of_key[SLOT_KEYS[1]]
    assert backfilled[SLOT_KEYS[0]] or backfilled[SLOT_KEYS[1]], "no REST backfill captured"
    archived = list(iter_raw_frames([capture.raw_dir]))
    streamed = sorted(line for lines in by_key.values() for line in lines)
    assert streamed == sorted(f.to_line() for f in archived), "stream and archive hold different frames"
    for key, lines in by_key.items():  # per partition, the stream keeps the capture order
        assert lines == [f.to_line() for f in archived if f.to_line() in set(lines)], key
    assert capture.stats.checksum_mismatches >= 1


def test_collector_publishes_frame_counts_to_cloudwatch(capture: Capture) -> None:
    metrics = client("cloudwatch").list_metrics(Namespace="marketpipe", MetricName="FramesIn")["Metrics"]
    dimensions = {tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in metrics}
    assert (("Exchange", "bitfinex"),) in dimensions  # what the liveness alarm watches
    assert (("Exchange", "bitfinex"), ("Partition", "slot-000")) in dimensions
    assert (("Exchange", "bitfinex"), ("Partition", "slot-001")) in dimensions


@pytest.mark.mysql
def test_book_builder_writes_the_same_rows_as_a_local_replay(
    capture: Capture,
    mysql_url: str,
    handler_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _empty_database(mysql_url)
    secret_arn = _rds_secret(mysql_url)
    database = sa.engine.make_url(mysql_url).database
    assert database
    handler_env.setenv("MARKETPIPE_DB_SECRET_ARN", secret_arn)
    handler_env.setenv("MARKETPIPE_DB_NAME", database)

    # deploy: the schema migration custom resource creates every table
    migration = load_handler("db_migrate").handler({"RequestType": "Create", "ResourceProperties": {}}, None)
    assert migration == {"PhysicalResourceId": "marketpipe-mysql-schema"}
    engine = sa.create_engine(mysql_url)
    assert set(TABLES) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()

    handler_env.setenv("MARKETPIPE_LAKE_URI", f"s3://{capture.bucket}/lake")
    handler_env.setenv("MARKETPIPE_CHECKPOINT_TABLE", create_checkpoint_table(unique("checkpoints")))
    book_builder = load_handler("book_builder")
    for batch in batches(capture.records, 20):
        response = book_builder.handler(lambda_event(batch, capture.stream_arn), None)
        assert response == {"batchItemFailures": []}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    rows_metric = sum(m.get("RowsWritten", [0])[0] for m in emf if m.get("Table") == "bitfinex_book")
    assert rows_metric > 0

    local = tmp_path / "local"
    replay([capture.raw_dir], RunConfig(data_dir=local, sinks=["db", "lake"]))

    aws_db, local_db = SqlSink(mysql_url), SqlSink(f"sqlite:///{local / 'marketpipe.db'}")
    aws_lake, local_lake = LakeSink(f"s3://{capture.bucket}/lake"), LakeSink(str(local / "lake"))
    try:
        for table in BITFINEX_TABLES:
            expected = _sorted_rows(local_db.read_rows(table))
            assert expected, f"the local replay stored no {table} rows"
            assert _sorted_rows(aws_db.read_rows(table)) == expected, f"MySQL {table} differs"
            stored = aws_lake.read_table(table).to_pylist()
            assert stored == local_lake.read_table(table).to_pylist(), f"S3 lake {table} differs"
        assert rows_metric == len(expected)  # the last table is bitfinex_book
    finally:
        aws_db.close()
        local_db.close()
    objects = client("s3").list_objects_v2(Bucket=capture.bucket, Prefix="lake/bitfinex_book/")["Contents"]
    files = [o["Key"] for o in objects if o["Key"].endswith(".parquet")]
    assert files and all(re.search(r"/symbol=[A-Z]+-USD/dt=\d{4}-\d\d-\d\d/hour=\d\d/", k) for k in files)
