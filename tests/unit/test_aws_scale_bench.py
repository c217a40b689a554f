"""The AWS-scale benchmark runs end to end on a tiny session (no timing judged here).

``python -m benchmarks.aws_scale`` feeds a multi-symbol Kinesis-mode session through the book builder
on a local moto server; here 2 symbols for 15 s of session time: the JSON lines have their shape, S3
requests were counted at the server, every generated connection replays cleanly, and the batches are
cut as the event source mapping cuts them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("moto")
pytest.importorskip("boto3")

from benchmarks.aws_scale import Record, lambda_batches, main, write_section
from benchmarks.generate_session import symbol_connection
from benchmarks.run import KEPT_SECTIONS_MARKER

from marketpipe.bitfinex.processor import BitfinexProcessor


def test_prints_one_json_line_per_minute_with_s3_requests_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    assert main(["--symbols", "2", "--minutes", "0.25", "--no-pin", "--results-dir", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    (line,) = lines
    assert set(line) == {"symbols", "minute", "ms_per_1000_frames", "s3_requests_per_batch"}
    assert (line["symbols"], line["minute"]) == (2, 0)
    assert line["ms_per_1000_frames"] > 0
    assert line["s3_requests_per_batch"] > 0
    assert os.environ.get("AWS_ENDPOINT_URL") == endpoint  # the moto endpoint does not leak
    (saved,) = tmp_path.glob("aws-scale-*.json")
    results = json.loads(saved.read_text())
    assert results["runs"][0]["lines"] == lines
    assert results["config"]["lake"] == "iceberg"
    requests = results["runs"][0]["summary"]["median_requests_per_batch"]
    assert requests["glue POST"] > 0  # the Iceberg commits went through the Glue catalog
    # each small file is one PUT (iceberg_io.SinglePutFileIO), not a three-request multipart upload
    assert requests["s3 PUT"] > 0 and not requests.get("s3 POST multipart")


def test_each_symbol_connection_replays_with_no_gap_and_no_checksum_mismatch() -> None:
    for index in (0, 5):
        frames = symbol_connection(index, 20)
        assert {f.conn for f in frames} == {f"bench-s{index:03d}"}
        processor = BitfinexProcessor(lambda _table, _rows: None)
        for frame in frames:
            processor.process(frame)
        processor.finish()
        stats = processor.stats
        assert stats.gaps == stats.checksum_mismatches == stats.invalid_frames == stats.discarded_rows == 0
        assert stats.checksum_ok >= 8
    assert symbol_connection(1, 5) == symbol_connection(1, 5)  # deterministic
    assert symbol_connection(1, 5)[5:] != symbol_connection(2, 5)[5:]  # its own seed


def test_batches_close_at_the_record_limit_or_the_window() -> None:
    records = [Record("k", t, b"", 1) for t in (0, 1, 2, 3, 13, 14)]
    assert [len(b.records) for b in lambda_batches(records, batch_size=3, window_us=10)] == [3, 1, 2]


def test_report_section_is_replaced_below_the_marker(tmp_path: Path) -> None:
    report = tmp_path / "PERFORMANCE.md"
    report.write_text(f"# Performance\n\n{KEPT_SECTIONS_MARKER}\n\n## Binance mini-tickers\n\nkept\n")
    title = "## AWS book builder at scale (baseline before Iceberg)"
    write_section(report, f"{title}\n\nfirst\n")
    write_section(report, f"{title}\n\nsecond\n")
    text = report.read_text()
    assert text.count(title) == 1 and "second" in text and "first" not in text
    assert text.index(KEPT_SECTIONS_MARKER) < text.index(title) < text.index("## Binance")
    assert "kept" in text
