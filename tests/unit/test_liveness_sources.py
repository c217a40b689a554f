"""Newest-data readers over real stores (SqlSink, LakeSink, RawCaptureWriter) and the verdict."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from marketpipe.liveness.sources import EXPECTED_LAG_S, Reading, assess, read_db, read_lake, read_raw
from marketpipe.records import RawFrame
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.sinks.raw_capture import RawCaptureWriter
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import BITFINEX_QUOTES, BITFINEX_TRADES

S = 1_000_000
HOUR = 3600 * S
T0 = 1_795_839_026_000_000  # 2026-11-28 04:10:26Z


def trade(trade_id: int, received: int, symbol: str = "BTC-USD") -> tuple[object, ...]:
    return (symbol, trade_id, received - 5_000, 60000.5, 0.1, "buy", received)


def quote(received: int, symbol: str = "ETH-USD") -> tuple[object, ...]:
    return (symbol, received - 1_000, received, 7, "bid", 3000.0, 1, 2.0, "update")


def test_db_newest_per_table_without_creating_anything(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'marketpipe.db'}"
    assert read_db(url, None) == []  # no database file: nothing watched, nothing created
    assert not (tmp_path / "marketpipe.db").exists()
    assert read_db(url, ["bitfinex_trades"]) == [
        Reading("db", "bitfinex_trades", None, f"database file {tmp_path / 'marketpipe.db'} does not exist")
    ]
    sink = SqlSink(url, tables=[BITFINEX_TRADES])
    sink.write(BITFINEX_TRADES, [trade(1, T0), trade(2, T0 + 3 * S), trade(3, T0 + S, "ETH-USD")])
    sink.close()
    assert read_db(url, None) == [Reading("db", "bitfinex_trades", T0 + 3 * S)]  # empty tables skipped
    assert read_db(url, ["bitfinex_trades", "bitfinex_book"]) == [
        Reading("db", "bitfinex_trades", T0 + 3 * S),
        Reading("db", "bitfinex_book", None),
    ]
    import sqlite3

    with sqlite3.connect(tmp_path / "marketpipe.db") as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"bitfinex_trades"}


def test_lake_newest_reads_only_the_newest_partition(tmp_path: Path) -> None:
    lake = LakeSink(str(tmp_path / "lake"))
    lake.write(BITFINEX_TRADES, [trade(1, T0 - 30 * HOUR), trade(2, T0 - 2 * HOUR), trade(3, T0, "ETH-USD")])
    lake.write(BITFINEX_QUOTES, [quote(T0 - HOUR), quote(T0 + 7 * S, "BTC-USD")])
    lake.flush()
    assert read_lake(str(tmp_path / "lake"), None) == [
        Reading("lake", "bitfinex_trades", T0),
        Reading("lake", "bitfinex_quotes", T0 + 7 * S),
    ]
    # A damaged newest file in the newest hour: the previous file of that hour is used.
    hour_dir = Path(lake.partition_dir(BITFINEX_QUOTES, ("BTC-USD",), T0 + 7 * S))
    (hour_dir / "bitfinex_quotes-29991231T235959.parquet").write_bytes(b"not parquet")
    assert read_lake(str(tmp_path / "lake"), ["bitfinex_quotes", "bitfinex_book"]) == [
        Reading("lake", "bitfinex_quotes", T0 + 7 * S),
        Reading("lake", "bitfinex_book", None),
    ]
    assert read_lake(str(tmp_path / "nowhere"), None) == []


def _frame(ts: int, direction: str = "in", text: str = '[1,"hb"]') -> RawFrame:
    return RawFrame("bitfinex", "c1", direction, ts, text)  # type: ignore[arg-type]


def test_raw_newest_incoming_frame_from_the_file_tail(tmp_path: Path) -> None:
    writer = RawCaptureWriter(tmp_path)
    big = "[" + "1," * 50_000 + "1]"  # lines longer than one 64 KiB tail step
    for k in range(20):
        writer.write(_frame(T0 - HOUR + k * S, text=big))
    writer.write(_frame(T0 + 5 * S, text=big))
    writer.write(_frame(T0 + 6 * S, direction="out", text='{"event":"ping"}'))  # outgoing: not data
    writer.close()
    with open(writer.path_for("bitfinex", T0), "ab") as f:
        f.write(b'{"exchange": "bitfinex", "half a line')  # a write in progress
    assert read_raw(tmp_path, None) == [Reading("raw", "bitfinex", T0 + 5 * S)]
    assert read_raw(tmp_path, ["bitfinex", "binance"]) == [
        Reading("raw", "bitfinex", T0 + 5 * S),
        Reading("raw", "binance", None),
    ]
    assert read_raw(tmp_path / "empty", None) == []


def test_raw_gzip_capture_and_fallback_to_the_previous_hour(tmp_path: Path) -> None:
    writer = RawCaptureWriter(tmp_path, compress=True)
    writer.write(_frame(T0 - HOUR))
    writer.write(_frame(T0 - HOUR + 2 * S))
    writer.close()
    newest_hour = writer.path_for("bitfinex", T0)
    newest_hour.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(newest_hour, "wb") as f:
        f.write(b"garbage\n")  # only damaged lines in the newest file
    assert read_raw(tmp_path, None) == [Reading("raw", "bitfinex", T0 - HOUR + 2 * S)]


def _readings(raw: int | None, *tables: int | None) -> list[Reading]:
    names = ["bitfinex_trades", "bitfinex_quotes", "bitfinex_book"]
    out = [Reading("db", name, ts) for name, ts in zip(names, tables, strict=False)]
    return [*out, Reading("raw", "bitfinex", raw)]


NOW = T0 + 100 * S


def test_assess_healthy_when_everything_is_fresh() -> None:
    obs = assess(_readings(NOW - S, NOW - 2 * S, NOW - 3 * S, NOW - S), NOW, 60)
    assert (
        obs.healthy
        and obs.what == ""
        and obs.last_data_us == NOW - S
        and obs.last_data == "bitfinex_book (db)"
    )


@pytest.mark.parametrize(
    ("readings", "what", "since"),
    [
        (
            _readings(NOW - 90 * S, NOW - 95 * S, NOW - 91 * S, NOW - 92 * S),
            "bitfinex stream stopped (no frames since 04:10:36Z; no new rows)",
            NOW - 90 * S,
        ),
        (
            _readings(NOW - S, NOW - 95 * S, NOW - 91 * S, NOW - 92 * S),
            "bitfinex connected but saving nothing (frames arrive, no new rows in bitfinex_book, "
            "bitfinex_quotes, bitfinex_trades)",
            NOW - 91 * S,
        ),
        (
            _readings(NOW - S, NOW - 2 * S, NOW - 91 * S, NOW - 2 * S),
            "bitfinex connected but not saving bitfinex_quotes",
            NOW - 91 * S,
        ),
        (
            _readings(NOW - 91 * S, NOW - 2 * S, NOW - 2 * S, NOW - 2 * S),
            "bitfinex raw capture stopped while rows are still saved",
            NOW - 91 * S,
        ),
        (
            [Reading("db", "bitfinex_trades", None), Reading("db", "bitfinex_book", NOW - 75 * S)],
            "bitfinex not saving: bitfinex_trades (db) silent never, bitfinex_book (db) silent for 1m15s",
            NOW - 75 * S,
        ),
        ([Reading("raw", "bitfinex", None)], "bitfinex stream stopped (no frames ever)", None),
        (
            [Reading("db", "db", None, "cannot connect"), Reading("raw", "bitfinex", NOW)],
            "cannot read db: cannot connect",
            None,
        ),
        ([], "no data to watch: no table rows and no raw capture found", None),
    ],
)
def test_assess_says_what_stopped(readings: list[Reading], what: str, since: int | None) -> None:
    obs = assess(readings, NOW, 60)
    assert not obs.healthy
    assert obs.what == what
    assert obs.stopped_since_us == since


def test_tables_without_received_ts_use_their_partition_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpipe.tables import TABLES, Column, Kind, Table

    ticks = Table(
        name="demo_ticks",
        columns=(Column("book", Kind.STR), Column("ts", Kind.TS_US), Column("spread", Kind.FLOAT)),
        key=("book", "ts"),
        order_by="ts",
        partition_ts="ts",
        partitions=("book",),
    )
    monkeypatch.setitem(TABLES, "demo_ticks", ticks)
    url = f"sqlite:///{tmp_path / 'marketpipe.db'}"
    sink, lake = SqlSink(url, tables=[ticks]), LakeSink(str(tmp_path / "lake"))
    for store in (sink, lake):
        store.write(ticks, [("btc_mxn", T0, 0.1), ("usd_mxn", T0 + 2 * S, 0.2)])
        store.close()
    assert read_db(url, ["demo_ticks"]) == [Reading("db", "demo_ticks", T0 + 2 * S)]
    assert read_lake(str(tmp_path / "lake"), ["demo_ticks"]) == [Reading("lake", "demo_ticks", T0 + 2 * S)]
    assert Reading("db", "demo_ticks", T0).exchange == "demo"


LAKE_TABLES = ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")


def _with_lake(raw: int | None, db: int | None, lake: int | None) -> list[Reading]:
    return [
        *(Reading("db", name, db) for name in LAKE_TABLES),
        *(Reading("lake", name, lake) for name in LAKE_TABLES),
        Reading("raw", "bitfinex", raw),
    ]


def test_a_source_s_expected_lag_is_part_of_its_threshold() -> None:
    assert EXPECTED_LAG_S["lake"] >= 10  # a live run rewrites its open lake files every 10 s
    lag = EXPECTED_LAG_S["lake"]
    # Raw capture and database fresh, the lake past the threshold but within threshold + lag: healthy.
    assert assess(_with_lake(NOW - S, NOW - S, NOW - 65 * S), NOW, 60).healthy
    assert assess(_with_lake(NOW - S, NOW - S, NOW - int((60 + lag - 1) * S)), NOW, 60).healthy
    # Beyond threshold + lag while frames and database rows keep coming: the lake really is stuck.
    obs = assess(_with_lake(NOW - S, NOW - S, NOW - int((60 + lag + 5) * S)), NOW, 60)
    assert not obs.healthy
    assert obs.what == "bitfinex connected but not saving bitfinex_book, bitfinex_quotes, bitfinex_trades"
    # A lag of 0 (e.g. a lake written at every flush) leaves the lake the plain threshold.
    assert not assess(_with_lake(NOW - S, NOW - S, NOW - 65 * S), NOW, 60, {"lake": 0.0}).healthy


@pytest.mark.parametrize(
    ("lake_behind_s", "lags"),
    [
        (10.5, EXPECTED_LAG_S),  # the incident: the lake's last rewrite 10.5 s before the end
        (10.5, {}),  # a checker not told the lake's lag: the freshest evidence alone decides
        (25.0, EXPECTED_LAG_S),  # a lake further behind than expected (a slow rewrite)
        (0.0, EXPECTED_LAG_S),
    ],
)
def test_exchange_gone_the_first_verdict_names_the_stream(
    lake_behind_s: float, lags: dict[str, float]
) -> None:
    """The exchange disappears at ``gone``: no frame, no row after it. The database holds rows up to
    the last frames, the lake only up to its last rewrite. Checked every half second from then on, the
    first failing verdict (the one that is texted) and every later one name the stream, never a
    "connected but not saving" that would blame the lake for trailing the stream by design."""
    gone = T0
    readings = _with_lake(gone, gone - 50_000, gone - int(lake_behind_s * S))
    verdicts = [assess(readings, gone + k * S // 2, 60, lags) for k in range(0, 400)]
    failing = [v for v in verdicts if not v.healthy]
    assert failing, "never failed"
    first = failing[0]
    assert first.what == "bitfinex stream stopped (no frames since 04:10:26Z; no new rows)"
    assert first.stopped_since_us == gone
    assert first.at_us - gone <= 61 * S  # no later than the raw capture crossing the threshold
    assert {v.what for v in failing} == {first.what}


def test_tables_that_stopped_with_the_frames_blame_the_stream_even_while_frames_look_fresh() -> None:
    """The raw capture is inside its threshold, but its newest frame is no newer than the silent table's
    newest row (beyond the table's lag): nothing arrived after the table stopped, the stream is stopping."""
    readings = [Reading("db", "bitfinex_trades", NOW - 62 * S), Reading("raw", "bitfinex", NOW - 58 * S)]
    obs = assess(readings, NOW, 60)
    assert obs.what == "bitfinex stream stopped (no frames since 04:11:08Z; no new rows)"
    assert obs.stopped_since_us == NOW - 58 * S
    # Frames kept arriving long after the table's newest row: the table is what stopped.
    readings = [Reading("db", "bitfinex_trades", NOW - 62 * S), Reading("raw", "bitfinex", NOW - 20 * S)]
    assert (
        assess(readings, NOW, 60).what
        == "bitfinex connected but saving nothing (frames arrive, no new rows in bitfinex_trades)"
    )
