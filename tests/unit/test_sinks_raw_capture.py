"""Raw capture: exact JSON lines, hourly files, gzip members across restarts, forgiving reader."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame
from marketpipe.sinks.raw_capture import RawCaptureWriter, iter_raw_frames
from marketpipe.timeutil import iso_to_us

T0 = iso_to_us("2026-11-22T04:10:26.123456Z")
HOUR = 3_600_000_000
FRAME = '[17470,"te",[401597395,1574694478808,0.005,7245.3]]'


def frames() -> list[RawFrame]:
    return [
        RawFrame("bitfinex", "c1", "out", T0, '{"event":"subscribe","channel":"trades","symbol":"tBTCUSD"}'),
        RawFrame("bitfinex", "c1", "in", T0 + 1, FRAME),
        RawFrame("bitfinex", "c1", "in", T0 + HOUR, '[17470,"hb"]'),
        RawFrame("bitso", "c2", "in", T0 + 2, '{"type":"ka"}'),
    ]


def test_exact_line_format_and_hourly_files(tmp_path: Path) -> None:
    writer = RawCaptureWriter(tmp_path)
    for f in frames():
        writer.write(f)
    writer.close()
    path = tmp_path / "raw" / "bitfinex" / "2026-11-22" / "04.jsonl"
    lines = path.read_text().splitlines()
    assert lines[1] == (
        '{"exchange":"bitfinex","conn":"c1","dir":"in","received_ts":"2026-11-22T04:10:26.123457Z",'
        '"frame":"[17470,\\"te\\",[401597395,1574694478808,0.005,7245.3]]"}'
    )
    assert (tmp_path / "raw" / "bitfinex" / "2026-11-22" / "05.jsonl").exists()
    assert (tmp_path / "raw" / "bitso" / "2026-11-22" / "04.jsonl").exists()


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_and_append_across_restarts(tmp_path: Path, compress: bool) -> None:
    first, second = frames()[:2], frames()[2:]
    for batch in (first, second):
        writer = RawCaptureWriter(tmp_path, compress=compress)
        for f in batch:
            writer.write(f)
        writer.flush()
        writer.close()
    # again into the same hour file: appended, not replaced
    writer = RawCaptureWriter(tmp_path, compress=compress)
    writer.write(RawFrame("bitfinex", "c9", "in", T0 + 5, FRAME))
    writer.close()
    got = list(iter_raw_frames([tmp_path / "raw"]))
    # directories are read sorted by path: bitfinex/04, bitfinex/05, bitso/04
    expected = [*frames()[:2], RawFrame("bitfinex", "c9", "in", T0 + 5, FRAME), frames()[2], frames()[3]]
    assert got == expected
    suffix = ".jsonl.gz" if compress else ".jsonl"
    assert sorted(p.name for p in (tmp_path / "raw" / "bitfinex" / "2026-11-22").iterdir()) == [
        f"04{suffix}",
        f"05{suffix}",
    ]


def test_flush_makes_frames_readable_while_the_file_is_open(tmp_path: Path) -> None:
    writer = RawCaptureWriter(tmp_path, compress=True)
    writer.write(frames()[1])
    writer.flush()
    path = writer.path_for("bitfinex", T0)
    with gzip.open(path, "rb") as gz:
        assert b'"frame"' in gz.read1(1 << 16)  # decodable up to the sync point
    writer.close()
    assert list(iter_raw_frames([path])) == [frames()[1]]


def test_bad_lines_are_logged_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = RawCaptureWriter(tmp_path)
    writer.write(frames()[1])
    writer.close()
    path = writer.path_for("bitfinex", T0)
    with open(path, "a") as f:
        f.write("not json at all " + "x" * 500 + "\n")
        f.write('{"exchange":"bitfinex","conn":"c1","dir":"in","frame":"[1]"}\n')  # no received_ts
        f.write(
            '{"exchange":"bitfinex","conn":"c1","dir":"sideways","received_ts":"2026-11-22T04:10:26Z",'
            '"frame":"[1]"}\n'
        )
        f.write("\n")
        f.write(
            '{"exchange":"bitfinex","conn":"c1","dir":"in","received_ts":"2026-11-22T04:10:27.000001Z",'
            '"frame":"[2]"}\n'
        )
        f.write('{"exchange":"bitfinex","conn"')  # torn last line (crash while writing)
    with caplog.at_level(logging.WARNING):
        got = list(iter_raw_frames([path]))
    assert got == [
        frames()[1],
        RawFrame("bitfinex", "c1", "in", iso_to_us("2026-11-22T04:10:27.000001Z"), "[2]"),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert f"{path}:2:" in messages[0]
    assert len(messages[0]) < 400  # text truncated
    assert f"{path}:3:" in messages[1] and "received_ts" in messages[1]
    assert f"{path}:7:" in messages[3]


def test_truncated_gzip_keeps_what_was_readable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = RawCaptureWriter(tmp_path, compress=True)
    for i in range(100):
        writer.write(RawFrame("bitfinex", "c1", "in", T0 + i, FRAME))
    writer.flush()  # sync point, then "crash": no gzip trailer
    path = writer.path_for("bitfinex", T0)
    data = path.read_bytes()
    writer.close()
    crashed = tmp_path / "crashed.jsonl.gz"
    crashed.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        got = list(iter_raw_frames([crashed]))
    assert len(got) == 100
    assert "damaged" in caplog.text


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        iter_raw_frames([tmp_path / "nope.jsonl"])
