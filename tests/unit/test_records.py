"""The raw-capture line and the REST capture conn: one definition, exact bytes, exact round trips."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketpipe.records import RawFrame, is_rest_conn, parse_rest_conn, rest_conn
from marketpipe.sinks.raw_capture import RawCaptureWriter, iter_raw_frames
from marketpipe.timeutil import iso_to_us

# any text a websocket or HTTP body can carry: every code point but lone surrogates (not UTF-8)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
# 1000-01-01 .. 9999-12-31 (four-digit years), as microseconds since the epoch
RECEIVED_TS = st.integers(min_value=-30_610_224_000_000_000, max_value=253_402_300_799_999_999)
FRAMES = st.builds(RawFrame, TEXT, TEXT, st.sampled_from(["in", "out"]), RECEIVED_TS, TEXT)


@given(FRAMES)
def test_line_round_trip(frame: RawFrame) -> None:
    line = frame.to_line()
    assert b"\n" not in line  # one line per frame, whatever the frame holds
    assert RawFrame.from_line(line) == frame
    assert RawFrame.from_line(line.decode()) == frame


@given(FRAMES)
def test_line_is_the_documented_json_object_in_key_order(frame: RawFrame) -> None:
    obj = orjson.loads(frame.to_line())
    assert list(obj) == ["exchange", "conn", "dir", "received_ts", "frame"]
    assert obj["received_ts"].endswith("Z") and iso_to_us(obj["received_ts"]) == frame.received_ts


def test_exact_bytes() -> None:
    frame = RawFrame(
        "bitfinex", "c1", "in", iso_to_us("2026-11-22T04:10:26.123457Z"), '[17470,"te",[1,2,0.005,7245.3]]'
    )
    assert frame.to_line() == (
        b'{"exchange":"bitfinex","conn":"c1","dir":"in","received_ts":"2026-11-22T04:10:26.123457Z",'
        b'"frame":"[17470,\\"te\\",[1,2,0.005,7245.3]]"}'
    )


def test_every_writer_writes_the_same_line(tmp_path: Path) -> None:
    """Local capture files, Kinesis records and execution snapshots all hold ``to_line`` bytes."""
    from marketpipe.aws.records import decode_record, encode_record
    from marketpipe.execution.archive import write_snapshot

    frame = RawFrame(
        "execution", "rest:coinbase:/products/BTC-USD/book?level=2", "in", 1_700_000_000_000_001, "{}"
    )
    writer = RawCaptureWriter(tmp_path)
    writer.write(frame)
    writer.close()
    (local,) = (tmp_path / "raw").rglob("*.jsonl")
    assert local.read_bytes() == frame.to_line() + b"\n"
    assert list(iter_raw_frames([local])) == [frame]
    assert encode_record([frame.to_line()]) == frame.to_line() + b"\n"
    assert decode_record(frame.to_line() + b"\n") == [frame]
    path = write_snapshot(str(tmp_path / "lake"), "coinbase", "BTC-USD", frame, [])
    assert gzip.decompress(Path(path).read_bytes()).splitlines()[1] == frame.to_line()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "line 1 column 1"),
        (b"[]", "not a JSON object"),
        (b'{"exchange":"x","conn":"c","dir":"in","frame":"f"}', "missing key 'received_ts'"),
        (b'{"exchange":1,"conn":"c","dir":"in","received_ts":"2026-01-01T00:00:00Z","frame":"f"}', "strings"),
        (b'{"exchange":"x","conn":"c","dir":"up","received_ts":"2026-01-01T00:00:00Z","frame":"f"}', "dir"),
        (b'{"exchange":"x","conn":"c","dir":"in","received_ts":5,"frame":"f"}', "ISO 8601"),
        (b'{"exchange":"x","conn":"c","dir":"in","received_ts":"yesterday","frame":"f"}', "isoformat"),
    ],
)
def test_a_malformed_line_is_a_value_error(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        RawFrame.from_line(line)


# ------------------------------------------------------------------------------------------ REST conns
def test_rest_conns_of_each_capability() -> None:
    assert rest_conn("/v2/trades/tBTCUSD/hist?start=1") == "rest:/v2/trades/tBTCUSD/hist?start=1"
    assert rest_conn("/products/BTC-USD/book?level=2", venue="coinbase") == (
        "rest:coinbase:/products/BTC-USD/book?level=2"
    )
    assert parse_rest_conn("rest:/v3/order_book/?book=btc_mxn") == (None, "/v3/order_book/?book=btc_mxn")
    assert parse_rest_conn("rest:binance:/api/v3/depth?symbol=BTCUSDT&limit=5") == (
        "binance",
        "/api/v3/depth?symbol=BTCUSDT&limit=5",
    )
    assert parse_rest_conn("3f2a-c1") is None and parse_rest_conn("config") is None
    assert is_rest_conn("rest:/v2/x") and not is_rest_conn("bitfinex-1")


@pytest.mark.parametrize(("path", "venue"), [("v2/trades", None), ("/x", ""), ("/x", "a:b"), ("/x", "a/b")])
def test_rest_conn_refuses_what_it_could_not_parse_back(path: str, venue: str | None) -> None:
    with pytest.raises(ValueError):
        rest_conn(path, venue)


VENUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=":/"), min_size=1)


@given(path=TEXT.map(lambda t: "/" + t), venue=st.none() | VENUES)
def test_rest_conn_round_trip(path: str, venue: str | None) -> None:
    conn = rest_conn(path, venue)
    assert is_rest_conn(conn)
    assert parse_rest_conn(conn) == (venue, path)


def test_exchange_helpers_use_the_shared_conn() -> None:
    from marketpipe.bitfinex.wire import wire_of_backfill_conn
    from marketpipe.bitso import wire as bitso
    from marketpipe.execution.processor import market_of_conn

    assert bitso.book_of_rest_conn(bitso.rest_conn("usd_mxn")) == "usd_mxn"
    assert bitso.book_of_rest_conn("rest:coinbase:/v3/order_book/?book=usd_mxn") is None
    assert wire_of_backfill_conn(rest_conn("/v2/trades/tETHUSD/hist?start=1")) == "tETHUSD"
    assert wire_of_backfill_conn(rest_conn("/v2/trades/tETHUSD/hist", venue="coinbase")) is None
    ref = market_of_conn(rest_conn("/api/v3/depth?symbol=ETHUSDT&limit=1000", venue="binance"))
    assert ref is not None and ref.market == "ETH-USDT"
    assert market_of_conn(rest_conn("/products/BTC-USD/book")) is None
