"""LakeSink: Hive layout, Arrow types, one file per window, merge-on-write, restart idempotency."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpipe.errors import ConfigError
from marketpipe.sinks import lake_sink
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.tables import BITFINEX_BOOK, BITFINEX_TRADES, Table
from marketpipe.timeutil import iso_to_us
from tests.support.compiled import IMPLEMENTATIONS, use_implementation

T0 = iso_to_us("2026-11-22T04:10:00Z")
S = 1_000_000


def trade(trade_id: int, received: int, symbol: str = "BTC-USD") -> tuple:
    return (symbol, trade_id, received - received % 1000, 7255.5, 0.25, "buy", received)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_layout_types_and_partition_columns_in_path_only(tmp_path: Path) -> None:
    sink = LakeSink(str(tmp_path))
    sink.write(BITFINEX_TRADES, [trade(1, T0 + 5 * S), trade(2, T0 + 6 * S, "ETH-USD")])
    sink.close()
    assert files(tmp_path) == [
        "bitfinex_trades/symbol=BTC-USD/dt=2026-11-22/hour=04/bitfinex_trades-20261122T041000.parquet",
        "bitfinex_trades/symbol=ETH-USD/dt=2026-11-22/hour=04/bitfinex_trades-20261122T041000.parquet",
    ]
    stored = pq.read_table(tmp_path / files(tmp_path)[0])
    assert stored.schema.names == ["trade_id", "exchange_ts", "price", "amount", "side", "received_ts"]
    assert stored.schema.field("exchange_ts").type == pa.timestamp("us", tz="UTC")
    assert stored.schema.field("received_ts").type == pa.timestamp("us", tz="UTC")
    assert stored.schema.field("trade_id").type == pa.int64()
    assert stored.schema.field("price").type == pa.float64()
    assert stored.schema.field("side").type == pa.string()
    assert stored.column("received_ts")[0].value == T0 + 5 * S


def test_window_is_written_when_a_newer_window_appears(tmp_path: Path) -> None:
    sink = LakeSink(str(tmp_path), window_seconds=60)
    sink.write(BITFINEX_TRADES, [trade(1, T0 + S), trade(2, T0 + 59 * S)])
    assert files(tmp_path) == []  # still buffered
    sink.write(BITFINEX_TRADES, [trade(3, T0 + 61 * S)])
    assert [f.rsplit("/", 1)[1] for f in files(tmp_path)] == ["bitfinex_trades-20261122T041000.parquet"]
    sink.flush()
    assert [f.rsplit("/", 1)[1] for f in files(tmp_path)] == [
        "bitfinex_trades-20261122T041000.parquet",
        "bitfinex_trades-20261122T041100.parquet",
    ]


def test_merge_on_write_across_flushes_restarts_and_late_rows(tmp_path: Path) -> None:
    rows = [trade(i, T0 + i * S) for i in range(1, 11)]
    sink = LakeSink(str(tmp_path))
    sink.write(BITFINEX_TRADES, rows[:4])
    sink.flush()
    sink.write(BITFINEX_TRADES, rows[2:7])  # overlaps the flushed part of the same window
    sink.flush()
    sink.close()
    restarted = LakeSink(str(tmp_path))
    restarted.write(BITFINEX_TRADES, list(reversed(rows)))  # replay, out of order
    restarted.write(BITFINEX_TRADES, rows)
    restarted.close()
    assert len(files(tmp_path)) == 1
    table = restarted.read_table("bitfinex_trades")
    assert table.column("trade_id").to_pylist() == list(range(1, 11))  # deduped and sorted
    assert table.column_names == list(BITFINEX_TRADES.column_names)
    assert table.column("symbol").to_pylist() == ["BTC-USD"] * 10
    assert [ts.value for ts in table.column("received_ts")] == [r[6] for r in rows]
    assert table.schema.field("received_ts").type == pa.timestamp("us", tz="UTC")
    assert not list(tmp_path.rglob("*.tmp"))


def test_late_row_for_an_already_written_window(tmp_path: Path) -> None:
    sink = LakeSink(str(tmp_path), window_seconds=60)
    sink.write(BITFINEX_TRADES, [trade(1, T0 + S), trade(3, T0 + 70 * S)])
    sink.write(BITFINEX_TRADES, [trade(2, T0 + 2 * S)])  # belongs to the first (written) window
    sink.close()
    assert len(files(tmp_path)) == 2
    assert sink.read_table("bitfinex_trades").column("trade_id").to_pylist() == [1, 2, 3]


def names(root: Path) -> list[str]:
    return [f.rsplit("/", 1)[1] for f in files(root)]


def test_each_table_has_its_own_window(tmp_path: Path) -> None:
    """Bitfinex tables: ten-minute files, for every writer (no ``window_seconds`` given)."""
    sink = LakeSink(str(tmp_path))
    sink.write(BITFINEX_TRADES, [trade(1, T0), trade(2, T0 + 599 * S), trade(3, T0 + 600 * S)])
    sink.close()
    assert BITFINEX_TRADES.lake_window_seconds == BITFINEX_BOOK.lake_window_seconds == 600
    assert names(tmp_path) == [
        "bitfinex_trades-20261122T041000.parquet",
        "bitfinex_trades-20261122T042000.parquet",
    ]
    assert sink.read_table("bitfinex_trades").column("trade_id").to_pylist() == [1, 2, 3]


def test_a_window_that_does_not_divide_an_hour_is_refused() -> None:
    with pytest.raises(ValueError, match="bad: a lake window of 420s does not divide an hour"):
        Table("bad", BITFINEX_TRADES.columns, ("trade_id",), "trade_id", lake_window_seconds=420)


def test_open_windows_are_rewritten_at_most_every_open_window_seconds(tmp_path: Path) -> None:
    now = [100.0]
    sink = LakeSink(str(tmp_path), open_window_seconds=10, clock=lambda: now[0])
    sink.write(BITFINEX_TRADES, [trade(1, T0 + S)])
    sink.flush()
    assert files(tmp_path) == []  # a live run's 1 s flush does not rewrite the open window
    now[0] += 10
    sink.flush()
    assert sink.read_table("bitfinex_trades").column("trade_id").to_pylist() == [1]
    sink.write(BITFINEX_TRADES, [trade(2, T0 + 2 * S)])
    now[0] += 9.9
    sink.flush()
    assert sink.read_table("bitfinex_trades").column("trade_id").to_pylist() == [1]
    sink.write(BITFINEX_TRADES, [trade(3, T0 + 600 * S)])  # a closed window is written at once
    assert sink.read_table("bitfinex_trades").column("trade_id").to_pylist() == [1, 2]
    sink.close()  # and everything at a clean stop, whatever the clock says
    assert sink.read_table("bitfinex_trades").column("trade_id").to_pylist() == [1, 2, 3]


def test_files_of_a_shorter_window_are_merged_into_the_longer_one(tmp_path: Path) -> None:
    """A lake written while the table had one-minute windows, then replayed with ten-minute ones."""
    old = LakeSink(str(tmp_path), window_seconds=60)
    old.write(BITFINEX_TRADES, [trade(i, T0 + i * 60 * S) for i in range(5)])  # 04:10 ... 04:14
    old.write(BITFINEX_TRADES, [trade(99, T0 + 11 * 60 * S)])  # 04:21, the next ten minutes
    old.close()
    assert len(files(tmp_path)) == 6
    unrelated = tmp_path / "bitfinex_trades/symbol=BTC-USD/dt=2026-11-22/hour=04/bitfinex_trades-notes.txt"
    unrelated.write_bytes(b"not ours")
    new = LakeSink(str(tmp_path))
    new.write(BITFINEX_TRADES, [trade(i, T0 + i * 60 * S) for i in range(2, 8)])  # 2-4 again, 5-7 new
    new.close()
    assert names(tmp_path) == [
        "bitfinex_trades-20261122T041000.parquet",
        "bitfinex_trades-20261122T042100.parquet",  # outside the rewritten window: untouched
    ]
    assert unrelated.read_bytes() == b"not ours"
    unrelated.unlink()  # (the dataset reader would take it for Parquet)
    assert new.read_table("bitfinex_trades").column("trade_id").to_pylist() == [*range(8), 99]


def test_a_file_reaching_beyond_the_window_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    quarter = LakeSink(str(tmp_path), window_seconds=900)  # 04:15-04:30 overlaps 04:10-04:20 and 04:20-04:30
    quarter.write(BITFINEX_TRADES, [trade(1, T0 + 6 * 60 * S), trade(2, T0 + 12 * 60 * S)])
    quarter.close()
    ten = LakeSink(str(tmp_path))
    ten.write(BITFINEX_TRADES, [trade(3, T0 + S)])
    ten.flush()
    ten.write(BITFINEX_TRADES, [trade(4, T0 + 2 * S)])  # the window is written again: no second warning
    ten.close()
    assert names(tmp_path) == [
        "bitfinex_trades-20261122T041000.parquet",
        "bitfinex_trades-20261122T041500.parquet",
    ]
    assert caplog.text.count("bitfinex_trades-20261122T041500.parquet starts inside the window of") == 1
    assert "left as it is" in caplog.text
    assert ten.read_table("bitfinex_trades").column("trade_id").to_pylist() == [1, 2, 3, 4]  # none lost


@pytest.fixture(params=IMPLEMENTATIONS)
def level_converter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Book levels to Arrow through the compiled ``float_columns`` and through ``pa.array``."""
    return use_implementation(request, monkeypatch, lake_sink, "float_columns")


def test_book_rows_round_trip_with_nulls(tmp_path: Path, level_converter: str) -> None:
    levels: list[float | int | None] = [None] * 400
    levels[0], levels[1] = 43210.5, 1.25
    levels[200], levels[201] = 43211, 3  # integral wire numbers arrive as ints
    rows = [("BTC-USD", None, T0 + i, i, *levels) for i in range(5000)]  # > one Arrow chunk
    rows[7] = (*rows[7][:4], float("nan"), -0.0, *rows[7][6:])
    sink = LakeSink(str(tmp_path))
    sink.write(BITFINEX_BOOK, rows)
    sink.close()
    table = sink.read_table("bitfinex_book")
    assert table.num_rows == 5000
    assert table.column("seq").to_pylist() == list(range(5000))
    assert table.column("bid_1_price")[0].as_py() == 43210.5
    assert table.column("bid_2_price").null_count == 5000
    assert table.column("exchange_ts").null_count == 5000
    assert table.column("ask_1_price").to_pylist()[:2] == [43211.0, 43211.0]
    assert table.column("ask_1_size").type == pa.float64()
    assert table.column("ask_2_size").null_count == 5000
    seventh = table.slice(7, 1).to_pylist()[0]
    assert seventh["bid_1_price"] != seventh["bid_1_price"] and str(seventh["bid_1_size"]) == "-0.0"


_CELLS = st.one_of(
    st.none(),
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0.0, -0.0, float("inf"), 2**53 + 1]),
)


@pytest.mark.skipif(lake_sink.float_columns is None, reason="the compiled book was not built")
@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(_CELLS, min_size=5, max_size=5), min_size=0, max_size=80), as_tuples=st.booleans()
)
def test_compiled_float_columns_equal_pyarrow_conversion(rows: list, as_tuples: bool) -> None:
    """Property: each column built from the compiled buffers equals ``pa.array(column, pa.float64())``."""
    assert lake_sink.float_columns is not None and lake_sink.bitmap_bytes is not None
    given_rows = [("x", *row) if as_tuples else ["x", *row] for row in rows]
    try:
        expected = [pa.array([row[j] for row in rows], pa.float64()) for j in range(4)]
    except pa.ArrowInvalid:  # an int beyond 2**53: refused by both
        with pytest.raises(ValueError, match="not exactly representable"):
            lake_sink.float_columns(given_rows, 1, 4)
        return
    values, validity, null_counts = lake_sink.float_columns(given_rows, 1, 4)
    count, stride = len(rows), lake_sink.bitmap_bytes(len(rows))
    for j in range(4):
        column = pa.Array.from_buffers(
            pa.float64(),
            count,
            [
                pa.py_buffer(validity).slice(j * stride, stride),
                pa.py_buffer(values).slice(j * count * 8, count * 8),
            ],
            null_count=null_counts[j],
        )
        assert column.equals(expected[j])


@pytest.mark.skipif(lake_sink.float_columns is None, reason="the compiled book was not built")
def test_compiled_float_columns_refuse_what_pyarrow_refuses() -> None:
    assert lake_sink.float_columns is not None
    with pytest.raises(TypeError, match=r"expected a number or None, got str: '1\.5'"):
        lake_sink.float_columns([(1.0, "1.5")], 0, 2)
    with pytest.raises(ValueError, match="row has 2 values, the columns need 3"):
        lake_sink.float_columns([(1.0, 2.0)], 0, 3)


def test_hour_partition_follows_the_partition_timestamp(tmp_path: Path) -> None:
    sink = LakeSink(str(tmp_path), window_seconds=3600)
    sink.write(
        BITFINEX_TRADES,
        [trade(1, iso_to_us("2026-11-22T23:59:59Z")), trade(2, iso_to_us("2026-11-23T00:00:01Z"))],
    )
    sink.close()
    assert [f.split("/", 2)[2] for f in files(tmp_path)] == [
        "dt=2026-11-22/hour=23/bitfinex_trades-20261122T230000.parquet",
        "dt=2026-11-23/hour=00/bitfinex_trades-20261123T000000.parquet",
    ]


def test_read_table_of_an_empty_lake(tmp_path: Path) -> None:
    table = LakeSink(str(tmp_path)).read_table("bitfinex_trades")
    assert table.num_rows == 0
    assert table.column_names == list(BITFINEX_TRADES.column_names)


def test_file_uri_works(tmp_path: Path) -> None:
    sink = LakeSink(tmp_path.as_uri())
    sink.write(BITFINEX_TRADES, [trade(1, T0)])
    sink.close()
    assert len(files(tmp_path)) == 1


@pytest.mark.parametrize("seconds", [0, 7, 7200])
def test_window_must_divide_an_hour(tmp_path: Path, seconds: int) -> None:
    with pytest.raises(ConfigError, match="divide an hour"):
        LakeSink(str(tmp_path), window_seconds=seconds)


def test_bad_uri_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid lake URI"):
        LakeSink("nosuchscheme://bucket/prefix")
