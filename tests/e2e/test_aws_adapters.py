"""The AWS adapters on their own: Kinesis throttling, the S3 raw archive, metrics, checkpoints, config.

Throttling is the fault that matters most here: Kinesis refuses whole calls or single entries when a
shard is over its limit, and the collector must neither drop nor reorder a frame because of it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from marketpipe.aws.book_builder import BookBuilder, FrameFilter
from marketpipe.aws.checkpoints import (
    Checkpoint,
    CheckpointConflict,
    CheckpointStore,
    CheckpointTooLarge,
)
from marketpipe.aws.kinesis_publisher import KinesisPublisher
from marketpipe.aws.metrics import CollectorMetrics, emit_emf
from marketpipe.aws.raw_archive import S3RawArchive, parse_s3_uri
from marketpipe.aws.records import decode_record, encode_record
from marketpipe.aws.secrets import database_url
from marketpipe.aws.transport import KinesisTransport
from marketpipe.bitfinex.wire import wire_of_backfill_conn
from marketpipe.cli import main
from marketpipe.config import RunConfig
from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame
from marketpipe.sinks.raw_capture import iter_raw_frames
from marketpipe.timeutil import iso_to_us
from tests.e2e.conftest import (
    Capture,
    client,
    create_bucket,
    create_checkpoint_table,
    create_stream,
    download_prefix,
    read_stream,
    unique,
)

THROTTLED = "ProvisionedThroughputExceededException"


class ThrottlingKinesis:
    """Wraps a real (moto) Kinesis client; refuses whole calls and single entries like a hot shard."""

    def __init__(self, inner: Any, seed: int = 3) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if self.calls % 4 == 1:
            raise ClientError({"Error": {"Code": THROTTLED, "Message": "Rate exceeded"}}, "PutRecords")
        refused = {i for i in range(len(Records)) if self.rng.random() < 0.4}
        accepted = [r for i, r in enumerate(Records) if i not in refused]
        results = iter(
            self.inner.put_records(StreamName=StreamName, Records=accepted)["Records"] if accepted else []
        )
        out = [
            {"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"}
            if i in refused
            else next(results)
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": len(refused), "Records": out}


def test_kinesis_throttling_loses_and_reorders_no_frame(capture: Capture) -> None:
    stream = unique("throttled")
    create_stream(stream)
    sent: dict[str, list[bytes]] = defaultdict(list)
    kinesis = ThrottlingKinesis(client("kinesis"))
    publisher = KinesisPublisher(
        kinesis, stream, linger=0.01, max_record_bytes=4_000, max_queued_frames=20, backoff_initial=0.001,
        backoff_cap=0.01,
    )  # fmt: skip
    for record in capture.records:  # the frames of the live run, each to its partition, in order
        for frame in decode_record(record["Data"]):
            line = frame.to_line()
            publisher.publish(record["PartitionKey"], line)
            sent[record["PartitionKey"]].append(line)
    assert publisher.close(timeout=60)
    assert publisher.stats.throttled_entries > 0 and publisher.stats.backpressure_waits > 0
    received: dict[str, list[bytes]] = defaultdict(list)
    for record in read_stream(stream):
        assert len(record["Data"]) <= 4_000
        received[record["PartitionKey"]].extend(f.to_line() for f in decode_record(record["Data"]))
    assert received == sent
    assert publisher.stats.frames_sent == sum(len(v) for v in sent.values())


def test_publisher_retries_calls_that_fail_for_other_reasons() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls: list[list[dict[str, Any]]] = []

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            self.calls.append(Records)
            if len(self.calls) == 1:
                raise ConnectionError("connection reset")
            return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1"} for _ in Records]}

    flaky = Flaky()
    publisher = KinesisPublisher(flaky, "s", linger=0.01, backoff_initial=0.001)
    publisher.publish("a", b"x")
    assert publisher.flush(timeout=10)
    assert publisher.stats.failed_calls == 1 and publisher.stats.records_sent == 1
    assert publisher.close(timeout=10) and publisher.close()
    with pytest.raises(RuntimeError):
        publisher.publish("a", b"y")


def test_publisher_close_reports_frames_it_could_not_send(caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def put_records(self, **_: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": THROTTLED, "Message": "x"}}, "PutRecords")

    publisher = KinesisPublisher(Down(), "s", linger=0.0, backoff_initial=0.001, backoff_cap=0.005)
    publisher.publish("a", b"x")
    assert not publisher.close(timeout=0.2)
    assert "1 frame(s) unsent" in caplog.text


def test_records_are_raw_capture_lines_gzipped_only_when_too_large() -> None:
    frames = [
        RawFrame("bitfinex", "c1", "in", 1_795_000_000_000_000 + i, "[1," + "2" * 300 + "]")
        for i in range(20)
    ]
    lines = [f.to_line() for f in frames]
    plain = encode_record(lines, max_bytes=100_000)
    assert plain.startswith(b'{"exchange":"bitfinex"') and decode_record(plain) == frames
    packed = encode_record(lines, max_bytes=2_000)
    assert packed[:2] == b"\x1f\x8b" and len(packed) <= 2_000 and decode_record(packed) == frames
    with pytest.raises(ValueError, match="do not fit"):
        encode_record([bytes(random.Random(1).randbytes(5_000)).hex().encode()], max_bytes=2_000)
    assert decode_record(b"\x1f\x8b garbage") == []
    assert decode_record(plain + b"not json\n" + b'{"exchange": 1}\n' + b"[]\n") == frames


def test_partition_keys_are_the_slot_of_the_connection_or_of_the_backfilled_symbol() -> None:
    from marketpipe.bitfinex.service import BitfinexService
    from marketpipe.runtime import RunContext

    symbols = ",".join(f"S{i:03d}-USD" for i in range(8))  # 8 symbols: slots of 6 and 2
    config = RunConfig(transport="kinesis", options={"opt_symbols": symbols})
    service = BitfinexService(RunContext(config, lambda t, r: None, lambda f: None, [], lambda: 0), env={})
    assert service.all_partitions() == ["slot-000", "slot-001"]
    asyncio.run(service.start())  # builds the collector; nothing connects before run()
    assert service.collector is not None and service.all_partitions() == ["slot-000", "slot-001"]
    run_id = service.collector.run_id
    ws = RawFrame("bitfinex", f"{run_id}-bitfinex-1-3", "in", 1, "{}")
    rest = RawFrame("bitfinex", "rest:/v2/trades/tS007:USD/hist?start=1&end=2", "in", 1, "[]")
    assert service.partitions(ws) == ["slot-001"] and service.partitions(rest) == ["slot-001"]
    assert service.partitions(RawFrame("bitfinex", "rest:/v2/trades/tS002:USD/hist", "in", 1, "[]")) == [
        "slot-000"
    ]
    assert service.partitions(RawFrame("bitfinex", "elsewhere-bitfinex-0-1", "in", 1, "{}")) == []
    assert wire_of_backfill_conn("rest:/v2/book/tBTCUSD/P0") is None and wire_of_backfill_conn("c") is None


def test_transport_routes_unknown_connections_to_every_partition() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.items: list[tuple[str, bytes]] = []

        def publish(self, key: str, line: bytes) -> None:
            self.items.append((key, line))

    class Collector:
        def partition_of(self, conn: str) -> str | None:
            return "slot-000" if conn == "known" else None

        def partitions(self) -> list[str]:
            return ["slot-000", "slot-001"]

    from marketpipe.bitfinex.service import BitfinexService
    from marketpipe.runtime import RunContext

    service = BitfinexService(
        RunContext(RunConfig(), lambda t, r: None, lambda f: None, [], lambda: 0), env={}
    )
    service.collector = Collector()  # type: ignore[assignment]

    archive_lines: list[bytes] = []

    class Archive:
        def write_line(self, exchange: str, ts: int, line: bytes) -> None:
            archive_lines.append(line)

    publisher = Recorder()
    metrics = CollectorMetrics(None, ["bitfinex"], start=False)
    transport = KinesisTransport(publisher, Archive(), metrics)  # type: ignore[arg-type]
    transport.attach([service])
    transport.write(RawFrame("bitfinex", "known", "in", 1, "{}"))
    transport.write(RawFrame("bitfinex", "gone", "out", 2, "{}"))
    assert [k for k, _ in publisher.items] == ["bitfinex:slot-000", "bitfinex:slot-000", "bitfinex:slot-001"]
    assert transport.unrouted == 1 and len(archive_lines) == 2
    assert metrics._counts == {
        ("FramesIn", (("Exchange", "bitfinex"),)): 1,
        ("FramesIn", (("Exchange", "bitfinex"), ("Partition", "slot-000"))): 1,
    }


def test_kinesis_transport_needs_its_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="MARKETPIPE_KINESIS_STREAM"):
        KinesisTransport.from_env(RunConfig(), env={})
    env_free = {"MARKETPIPE_KINESIS_STREAM": "", "MARKETPIPE_RAW_URI": ""}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with pytest.MonkeyPatch.context() as env:
        for key, value in env_free.items():
            env.setenv(key, value)
        try:
            code = main(["run", "--transport", "kinesis", "--data-dir", str(tmp_path), "--duration", "1"])
        finally:  # the CLI installs its own stderr handler: give pytest's back
            root.handlers[:] = handlers
            root.setLevel(level)
    assert code == 2
    assert "needs MARKETPIPE_KINESIS_STREAM and MARKETPIPE_RAW_URI" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown transport"):
        RunConfig(transport="carrier-pigeon").validate()


def test_raw_archive_uploads_hourly_parts_that_replay_reads(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = create_bucket(unique("archive"))
    now = [0.0]
    failures = [1]

    class FlakyS3:
        def __init__(self) -> None:
            self.inner = client("s3")

        def put_object(self, **kwargs: Any) -> Any:
            if failures[0]:
                failures[0] -= 1
                raise ConnectionError("injected")
            return self.inner.put_object(**kwargs)

    archive = S3RawArchive(
        FlakyS3(), f"s3://{bucket}/raw", upload_every=60, clock=lambda: now[0], backoff_initial=0.001
    )
    hour = 3_600_000_000
    t0 = iso_to_us("2026-11-22T00:00:00Z")
    frames = [
        RawFrame("bitfinex", "c", "in", t0 + 1, '[1,"hb"]'),
        RawFrame("bitfinex", "c", "out", t0 + 2, '{"event":"ping"}'),
        RawFrame("bitfinex", "c", "in", t0 + hour + 3, "[1,[2,3,4]]"),
    ]
    for frame in frames[:2]:
        archive.write_line(frame.exchange, frame.received_ts, frame.to_line())
    now[0] = 61.0
    archive.write_line(frames[2].exchange, frames[2].received_ts, frames[2].to_line())  # triggers upload
    archive.flush()
    assert archive.close(timeout=10)
    keys = [o["Key"] for o in client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [
        f"raw/bitfinex/2026-11-22/00/{archive.run_id}-000001.jsonl.gz",
        f"raw/bitfinex/2026-11-22/01/{archive.run_id}-000002.jsonl.gz",
    ]
    download_prefix(bucket, "raw", tmp_path / "raw")
    assert list(iter_raw_frames([tmp_path / "raw"])) == frames
    body = client("s3").get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert gzip.decompress(body).splitlines()[0] == frames[0].to_line()
    assert parse_s3_uri("s3://b") == ("b", "")
    with pytest.raises(ConfigError):
        parse_s3_uri("/local/raw")


def test_lake_location_on_s3_reaches_moto_through_aws_endpoint_url(moto_endpoint: str) -> None:
    from marketpipe.lake import open_location

    bucket = create_bucket(unique("lake"))
    lake = open_location(f"s3://{bucket}/lake/")
    target = lake.child("t", "x.txt")
    lake.fs.create_dir(lake.child("t").path, recursive=True)
    with lake.fs.open_output_stream(target.path) as out:
        out.write(b"hello")
    assert client("s3").get_object(Bucket=bucket, Key="lake/t/x.txt")["Body"].read() == b"hello"
    assert target.uri() == f"s3://{bucket}/lake/t/x.txt"


def test_lake_writes_on_s3_put_no_directory_markers(moto_endpoint: str) -> None:
    """A folder on S3 is a key prefix: only the data files are stored (markers were 5 extra PUTs per
    rewrite), and the window file is still read back and merged at the next write."""
    from marketpipe.sinks.lake_sink import LakeSink
    from marketpipe.tables import BITFINEX_TRADES

    bucket = create_bucket(unique("lake"))
    trade = ("BTC-USD", 1, 1_767_225_600_000, 100.0, 0.5, "buy", 1_767_225_600_000_000)
    for rows in ([trade], [trade, (*trade[:1], 2, *trade[2:])]):
        sink = LakeSink(f"s3://{bucket}/lake")
        sink.write(BITFINEX_TRADES, rows)
        sink.close()
    keys = [o["Key"] for o in client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].endswith(".parquet") and not any(k.endswith("/") for k in keys)
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    s3 = pafs.S3FileSystem(endpoint_override=moto_endpoint, region="us-east-1")
    assert pq.read_table(f"{bucket}/{keys[0]}", filesystem=s3).column("trade_id").to_pylist() == [1, 2]


def test_raw_archive_close_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def put_object(self, **_: Any) -> Any:
            raise ConnectionError("down")

    archive = S3RawArchive(Down(), "s3://b/raw", backoff_initial=0.001, backoff_cap=0.01)
    archive.write_line("bitfinex", 1, b"{}")
    assert not archive.close(timeout=0.2)
    assert "raw archive upload did not finish" in caplog.text


def test_collector_metrics_send_counts_and_a_heartbeat_every_interval(moto_endpoint: str) -> None:
    cloudwatch = client("cloudwatch")
    metrics = CollectorMetrics(cloudwatch, ["bitfinex"], interval=0.05, namespace="marketpipe-test")
    metrics.frame_in("bitfinex", ["slot-000"])
    metrics.count("Errors")
    deadline = threading.Event()
    for _ in range(100):
        if metrics.published >= 3:
            break
        deadline.wait(0.05)
    metrics.close()
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="marketpipe-test")["Metrics"]}
    assert names == {"FramesIn", "Errors", "CollectorHeartbeat"}

    class Broken:
        def put_metric_data(self, **_: Any) -> None:
            raise ConnectionError("down")

    offline = CollectorMetrics(Broken(), ["bitfinex"], start=False)
    offline.frame_in("bitfinex", ["slot-001"])
    assert offline.publish() == 0
    assert offline._counts == {
        ("FramesIn", (("Exchange", "bitfinex"),)): 1,
        ("FramesIn", (("Exchange", "bitfinex"), ("Partition", "slot-001"))): 1,
    }


def test_book_builder_metrics_are_emf_lines_with_the_dashboard_dimensions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "book-builder")
    emit_emf(
        [
            ("RowsWritten", {"Table": "bitfinex_book"}, 3),
            ("Errors", {}, 0),
            ("Resyncs", {"Exchange": "bitfinex"}, 1),
        ]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    dims = {tuple(x["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for x in lines}
    assert dims == {("Table",), (), ("Exchange",)}, "no extra 'service' dimension"
    assert all(x["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "marketpipe" for x in lines)


def test_checkpoints_are_conditional_and_bounded(moto_endpoint: str) -> None:
    store = CheckpointStore(create_checkpoint_table(unique("cp")))
    empty = store.load("bitfinex:BTC-USD")
    assert empty == Checkpoint("bitfinex:BTC-USD", None, None) and empty.position == -1
    assert store.save(empty, "100", lambda n: {"ids": list(range(n))}) > 0
    first = store.load("bitfinex:BTC-USD")
    assert first.sequence_number == "100" and first.state == {"ids": list(range(2_000))}
    with pytest.raises(CheckpointConflict):
        store.save(empty, "200", lambda n: {})  # someone created it since
    with pytest.raises(CheckpointConflict):
        store.save(first, "100", lambda n: {})  # not forward
    noise = random.Random(5).randbytes(400_000).hex()
    with pytest.raises(CheckpointTooLarge):
        store.save(first, "300", lambda n: {"noise": noise})
    trimmed = store.save(first, "300", lambda n: {"noise": noise[: 200 * n]})
    assert trimmed <= 350_000 and store.load("bitfinex:BTC-USD").sequence_number == "300"


def test_frame_filter_drops_repeats_and_forgets_dead_connections() -> None:
    frames = FrameFilter()
    assert frames.accept(RawFrame("bitfinex", "a", "in", 10, ""))
    assert not frames.accept(RawFrame("bitfinex", "a", "in", 10, ""))
    assert frames.accept(RawFrame("bitfinex", "b", "in", 5, ""))  # another producer's clock
    assert frames.accept(RawFrame("bitfinex", "b", "in", 200_000_000, ""))
    assert frames.pop_idle() == ["a"] and frames.duplicates == 1


def test_database_url_comes_from_the_rds_secret(moto_endpoint: str) -> None:
    secret = {
        "username": "admin",
        "password": "p@ss:/word",
        "host": "db.internal",
        "port": 3306,
        "dbname": "x",
    }
    arn = client("secretsmanager").create_secret(Name=unique("s"), SecretString=json.dumps(secret))["ARN"]
    url = database_url(arn, "marketpipe")
    assert url == "mysql+pymysql://admin:p%40ss%3A%2Fword@db.internal:3306/marketpipe"
    assert database_url(arn).endswith("/x")


def test_book_builder_reports_the_first_record_when_storage_is_unreachable(moto_endpoint: str) -> None:
    def no_database() -> list[Any]:
        raise ConfigError("cannot connect to database")

    builder = BookBuilder(
        CheckpointStore(create_checkpoint_table(unique("cp"))), no_database, emit_metrics=None
    )
    data = RawFrame("bitfinex", "c", "in", 1, '{"event":"info","version":2}').to_line() + b"\n"
    event = {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": key,
                    "sequenceNumber": seq,
                    "data": __import__("base64").b64encode(data).decode(),
                }
            }
            for key, seq in (
                ("bitfinex:BTC-USD", "5"),
                ("bitfinex:ETH-USD", "6"),
                ("bitfinex:BTC-USD", "7"),
                ("binance:X", "8"),
            )
        ]
    }
    assert builder.handle(event) == {"batchItemFailures": [{"itemIdentifier": "5"}]}
    assert builder.last_result.errors == 1 and builder.last_result.failed_at == "5"
