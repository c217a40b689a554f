"""Measure the book builder: records/s and frames/s through ``BookBuilder.handle``, and checkpoint size.

Not a test (no assertions): ``python -m tests.e2e.measure_book_builder [--frames N]``. It cuts the
deterministic benchmark session (benchmarks/generate_session.py: a 100-level BTC and ETH book on one
connection, checksums every 2.5 s) into 200 ms records as the collector's publisher would, feeds them
in batches of 500 (the stack's default) to a book builder writing SQLite + a local lake, with the
checkpoints in DynamoDB on a local moto server, and prints the figures quoted in docs/AWS.md.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
)
from moto.server import ThreadedMotoServer  # after the fake credentials, before any client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--linger-ms", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    import boto3
    from benchmarks.generate_session import ensure_session

    from marketpipe.aws.book_builder import BookBuilder
    from marketpipe.aws.checkpoints import CheckpointStore
    from marketpipe.aws.records import encode_record
    from marketpipe.sinks.lake_sink import LakeSink
    from marketpipe.sinks.raw_capture import iter_raw_frames
    from marketpipe.sinks.sql_sink import SqlSink

    frames = list(iter_raw_frames([ensure_session(args.frames)]))
    records: list[bytes] = []
    lines: list[bytes] = []
    window_end = 0
    for frame in frames:
        if frame.received_ts >= window_end and lines:
            records.append(encode_record(lines))
            lines = []
        if not lines:
            window_end = frame.received_ts + args.linger_ms * 1000
        lines.append(frame.to_line())
    records.append(encode_record(lines))

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="cp",
        KeySchema=[{"AttributeName": "stream_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "stream_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        builder = BookBuilder(
            CheckpointStore("cp", dynamodb),
            lambda: [LakeSink(str(root / "lake")), SqlSink(f"sqlite:///{root / 'db.sqlite'}")],
            emit_metrics=None,
        )
        durations: list[tuple[float, int]] = []
        sizes: list[int] = []
        for start in range(0, len(records), args.batch):
            batch = records[start : start + args.batch]
            event = {
                "Records": [
                    {
                        "kinesis": {
                            "partitionKey": "bitfinex:BTC-USD",
                            "sequenceNumber": str(10**40 + start + i),
                            "data": base64.b64encode(data).decode(),
                        }
                    }
                    for i, data in enumerate(batch)
                ]
            }
            began = time.perf_counter()
            assert builder.handle(event) == {"batchItemFailures": []}
            durations.append((time.perf_counter() - began, len(batch)))
            sizes.extend(builder.last_result.checkpoint_bytes.values())
    server.stop()
    seconds = sum(d for d, _ in durations)
    print(f"frames {len(frames)}, records {len(records)} ({len(frames) / len(records):.1f} frames/record)")
    print(f"batches {len(durations)} of <= {args.batch}: {seconds:.2f} s total")
    print(f"throughput: {len(records) / seconds:,.0f} records/s, {len(frames) / seconds:,.0f} frames/s")
    print(f"median batch: {statistics.median(d for d, _ in durations) * 1000:.0f} ms")
    print(f"checkpoint: median {statistics.median(sizes) / 1024:.1f} KiB, max {max(sizes) / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
