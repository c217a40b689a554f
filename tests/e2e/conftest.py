"""AWS on loopback: a moto server, the real collector publishing to it, and Lambda events read back.

moto runs as a ``ThreadedMotoServer`` because pyarrow's S3 client (the lake) and the collector's
threads must reach it over HTTP; every boto3 client and pyarrow find it through ``AWS_ENDPOINT_URL``.
The environment is set for this package only and restored afterwards, so other test packages never
see the fake endpoint. One live collector run is shared by every test here (it is the slow part).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from moto.server import ThreadedMotoServer  # moto before any boto3 client

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# Eight symbols: two Kinesis slots (six books on one connection and key, two on another)
SYMBOLS = ("tBTCUSD", "tETHUSD", "tADAUSD", "tAVAX:USD", "tDOGE:USD", "tLTCUSD", "tSOLUSD", "tXRPUSD")
SLOT_KEYS = ("bitfinex:slot-000", "bitfinex:slot-001")
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    """A moto server for the package, with fake credentials and ``AWS_ENDPOINT_URL`` pointing at it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per moto request otherwise
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_CREDENTIALS.items():
            env.setenv(key, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        try:
            yield endpoint
        finally:
            server.stop()


def client(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_stream(name: str) -> str:
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    return str(kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"])


def create_bucket(name: str) -> str:
    client("s3").create_bucket(Bucket=name)
    return name


def create_checkpoint_table(name: str) -> str:
    client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "stream_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "stream_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def read_stream(stream: str) -> list[dict[str, Any]]:
    """Every record of every shard, in shard order (what the event source mapping would read)."""
    kinesis = client("kinesis")
    records: list[dict[str, Any]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                records.append({**record, "ShardId": shard["ShardId"]})
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def lambda_event(records: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """A Kinesis event exactly as Lambda delivers it (base64 data, eventID, sequence numbers)."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{r['ShardId']}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/book-builder",
                "awsRegion": REGION,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }


def batches(records: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def load_handler(function: str) -> ModuleType:
    """``functions/<function>/handler.py`` as Lambda loads it (a top-level module named ``handler``)."""
    path = REPO_ROOT / "functions" / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"{function}_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def download_prefix(bucket: str, prefix: str, dest: Path) -> list[Path]:
    """``aws s3 sync s3://bucket/prefix dest`` for the test: keys keep their relative paths."""
    s3 = client("s3")
    paths = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            paths.append(target)
    return sorted(paths)


# ---------------------------------------------------------------------------------------------- a live run


@dataclass
class Capture:
    """What one live collector run left in moto: the stream's records and the raw archive."""

    stream: str
    stream_arn: str
    bucket: str
    records: list[dict[str, Any]]
    raw_dir: Path
    stats: Any


async def run_collectors(
    stream: str,
    bucket: str,
    *,
    producers: list[tuple[float, float]],
    faults: list[tuple[float, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    symbols: tuple[str, ...] = SYMBOLS,
    updates_per_second: float = 100,
) -> list[Any]:
    """Run one collector per ``(start delay, duration)`` against one simulator, all to one stream."""
    from marketpipe.bitfinex.simulator import BitfinexSimulator
    from marketpipe.config import RunConfig
    from marketpipe.pipeline import run_live

    sim = BitfinexSimulator(
        symbols,
        seed=11,
        updates_per_second=updates_per_second,
        trades_per_second=4,
        heartbeat_interval=0.5,
        checksum_interval=0.3,
    )
    await sim.start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MARKETPIPE_KINESIS_STREAM", stream)
        env.setenv("MARKETPIPE_RAW_URI", f"s3://{bucket}/raw")

        async def collector(delay: float, duration: float) -> Any:
            await asyncio.sleep(delay)
            config = RunConfig(
                transport="kinesis",
                duration=duration,
                options={
                    "bitfinex_ws_url": sim.ws_url,
                    "bitfinex_api_url": sim.api_url,
                    "opt_symbols": ",".join(symbols),
                },
                stale_after=3.0,
                drain_timeout=2.0,
                subscription_retry=0.3,
                flush_interval=0.2,
            )
            return (await run_live(config))["bitfinex"]

        async def inject() -> None:
            for at, fault, args in faults:
                await asyncio.sleep(at)
                sim.inject(fault, **args)

        injector = asyncio.create_task(inject())
        try:
            return list(await asyncio.gather(*(collector(d, t) for d, t in producers)))
        finally:
            injector.cancel()
            await sim.stop()


@pytest.fixture(scope="package")
def capture(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """One collector, 5 s, with a dropped connection (reconnect + REST backfill) and a bad checksum."""
    stream, bucket = unique("frames"), create_bucket(unique("data"))
    arn = create_stream(stream)
    # corrupt the established connection, then drop it: after the drop a randomised backoff decides when the
    # new subscription exists, so a fault aimed after it could find no subscription and never fire
    faults = [(1.5, "corrupt_level", {"symbol": "tETHUSD"}), (0.5, "close", {})]
    (stats,) = asyncio.run(run_collectors(stream, bucket, producers=[(0.0, 5.0)], faults=faults))
    raw_dir = tmp_path_factory.mktemp("synced") / "raw"
    download_prefix(bucket, "raw", raw_dir)
    return Capture(stream, arn, bucket, read_stream(stream), raw_dir, stats)


def set_env(env: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        env.setenv(key, value)


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Each test starts like a new Lambda container."""
    from marketpipe.aws import book_builder, secrets

    book_builder.WARM.reset()
    secrets.forget_secrets()
    yield monkeypatch
    book_builder.WARM.reset()
    secrets.forget_secrets()
