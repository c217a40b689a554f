"""Binance on AWS: the metrics Lambda over Kinesis batches (DynamoDB checkpoints and SNS via moto), and
the collector's Kinesis partitions."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from marketpipe.alerts.message import AlertMessage
from marketpipe.aws.binance_metrics import MetricsFunction
from marketpipe.aws.checkpoints import CheckpointStore
from marketpipe.aws.records import encode_record
from marketpipe.binance import wire as binance
from marketpipe.binance.collector import BinanceCollector
from marketpipe.binance.processor import BinanceProcessor
from marketpipe.records import RawFrame, Row
from marketpipe.tables import Table
from tests.unit.test_binance_metrics import session_frames


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    from moto import mock_aws

    with mock_aws():
        import boto3

        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName="ckpt", KeySchema=[{"AttributeName": "stream_key", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "stream_key", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")  # fmt: skip
        yield boto3


class MemorySink:
    """Keeps rows by natural key, like the real stores (a rewrite replaces, never duplicates)."""

    name = "memory"

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[Any, ...], Row]] = {}
        self.fail_writes = 0

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise OSError("store unavailable")
        stored = self.tables.setdefault(table.name, {})
        for row in rows:
            stored[tuple(row[table.index[k]] for k in table.key)] = row

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def rows(self) -> dict[str, list[Row]]:
        return {name: sorted(rows.values(), key=repr) for name, rows in self.tables.items()}


class Inbox:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def deliver(self, message: AlertMessage) -> None:
        self.texts.append(message.text)

    def describe(self) -> str:
        return "inbox"

    def close(self) -> None:
        pass


def kinesis_event(frames: list[RawFrame], key: str = "binance:shard-0", first_seq: int = 1) -> dict[str, Any]:
    """One record per frame (the publisher micro-batches; one per frame is the harder case)."""
    records = []
    for i, frame in enumerate(frames):
        data = encode_record([frame.to_line()])
        records.append({"kinesis": {"partitionKey": key, "sequenceNumber": str(first_seq + i),
                                    "data": base64.b64encode(data).decode()}})  # fmt: skip
    return {"Records": records}


def expected_rows() -> dict[str, list[Row]]:
    sink = MemorySink()
    processor = BinanceProcessor(sink.write)
    for frame in session_frames():
        processor.process(frame)
    return sink.rows()


def test_batches_continue_averages_and_alerts_exactly_once_across_invocations(aws: Any) -> None:
    sink, inbox = MemorySink(), Inbox()
    function = MetricsFunction(lambda: [sink], CheckpointStore("ckpt"), [inbox])
    frames = session_frames()
    first, second = kinesis_event(frames[:6]), kinesis_event(frames[6:], first_seq=7)
    assert function.handle(first) == {"batchItemFailures": []}
    assert function.handle(first) == {"batchItemFailures": []}  # redelivered: nothing applied twice
    assert function.last_result.skipped == 6 and function.last_result.applied == 0
    sink.fail_writes = 1
    failed = function.handle(second)
    assert failed == {"batchItemFailures": [{"itemIdentifier": "7"}]}
    assert function.handle(second) == {"batchItemFailures": []}  # the retry from the checkpoint
    assert sink.rows() == expected_rows()  # averages continued exactly from the checkpointed samples
    assert [t.split(" ", 1)[1] for t in inbox.texts] == [
        "BTCUSDT price has gone above 43680 Last price: 43700",
        "BTCUSDT price has gone below 43600 Last price: 43590",
        "BTCUSDT price has gone above 43680 Last price: 43690",
    ]
    other = kinesis_event(frames[:2], key="bitfinex:BTC-USD", first_seq=50)
    assert function.handle(other) == {"batchItemFailures": []} and function.last_result.applied == 0


def test_a_failing_checkpoint_store_fails_the_batch_at_its_first_record(aws: Any) -> None:
    sink = MemorySink()
    function = MetricsFunction(lambda: [sink], CheckpointStore("missing-table"), [])
    event = kinesis_event(session_frames()[:3], first_seq=10)
    assert function.handle(event) == {"batchItemFailures": [{"itemIdentifier": "10"}]}
    assert function.last_result.errors == 1


def test_from_env_writes_the_lake_and_publishes_alerts_to_sns(aws: Any, tmp_path: Any) -> None:
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="q")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    env = {"MARKETPIPE_LAKE_URI": str(tmp_path / "lake"), "MARKETPIPE_CHECKPOINT_TABLE": "ckpt",
           "MARKETPIPE_ALERT_TOPIC_ARN": topic}  # fmt: skip
    function = MetricsFunction.from_env(env)
    assert function.handle(kinesis_event(session_frames())) == {"batchItemFailures": []}
    files = list((tmp_path / "lake" / "binance_book_metrics").glob("dt=*/hour=*/*.parquet"))
    assert files
    bodies = [json.loads(json.loads(m["Body"])["Message"])
              for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]]  # fmt: skip
    assert sorted(b["direction"] for b in bodies) == ["above", "above", "below"]
    assert all(b["event"] == "price_level_alert" and b["symbol"] == "BTCUSDT" for b in bodies)


def test_collector_frames_map_to_shard_partitions() -> None:
    streams = binance.streams_for(["BTCUSDT", "ETHUSDT", "BNBUSDT"])
    collector = BinanceCollector(streams, lambda f: None)
    collector.settings.streams_per_connection = 2
    collector.shards = binance.shard_streams(streams, 2)
    assert collector.partitions_of(f"{collector.run_id}-s1-7") == ["shard-1"]
    assert collector.partitions_of("config") == ["shard-0", "shard-1"]
    assert collector.partitions_of("someone-else") == [] and collector.partitions_of("x-s1-1") == []


def test_kinesis_transport_routes_binance_frames_to_their_shard() -> None:
    from types import SimpleNamespace

    from marketpipe.aws.transport import KinesisTransport
    from marketpipe.binance.service import BinanceService

    collector = BinanceCollector(binance.streams_for(["BTCUSDT"]), lambda f: None)
    transport = KinesisTransport(None, None, None)  # type: ignore[arg-type]
    service = SimpleNamespace(name="binance", collector=collector)
    service.partitions = lambda frame: BinanceService.partitions(service, frame)  # type: ignore[arg-type]
    service.all_partitions = lambda: BinanceService.all_partitions(service)  # type: ignore[arg-type]
    transport.attach([service])
    frame = RawFrame("binance", f"{collector.run_id}-s0-1", "in", 1, "{}")
    assert transport.keys_of(frame) == ["binance:shard-0"]
    assert transport.keys_of(RawFrame("binance", "someone-else", "in", 1, "{}")) == ["binance:_"]


def test_the_settings_record_reaches_every_shard_partition_on_kinesis() -> None:
    """Through the real transport: the collector's watch list must reach the Lambda of every shard."""
    import asyncio

    from marketpipe.aws.transport import KinesisTransport
    from marketpipe.binance.service import BinanceService
    from marketpipe.config import RunConfig
    from marketpipe.runtime import RunContext
    from marketpipe.timeutil import MonotonicClock

    published: list[tuple[str, bytes]] = []

    class Publisher:
        def publish(self, key: str, line: bytes) -> None:
            published.append((key, line))

    class Archive:
        def write_line(self, exchange: str, ts: int, line: bytes) -> None:
            pass

    options = {"opt_binance_watch": ["BTCUSDT>1"], "opt_binance_streams_per_connection": 2}
    config = RunConfig(exchanges=["binance"], simulate=True, options=options)
    transport = KinesisTransport(Publisher(), Archive(), None)  # type: ignore[arg-type]

    async def scenario() -> None:
        service = BinanceService(
            RunContext(config, lambda t, r: None, transport.write, [], MonotonicClock()), env={}
        )
        await service.start()
        transport.attach([service])
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        try:
            await service.run(stop)
        finally:
            await service.close()

    asyncio.run(scenario())
    config_keys = [k for k, line in published if b'"conn":"config"' in line]
    assert config_keys == ["binance:shard-0", "binance:shard-1"]  # 4 streams, 2 per connection
    assert {k for k, _ in published} == {"binance:shard-0", "binance:shard-1"} and transport.unrouted == 0
