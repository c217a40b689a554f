"""LakeSink: Hive layout, Arrow types, one file per window, merge-on-write, restart idempotency."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketpipe.errors import ConfigError
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.tables import BITFINEX_BOOK, BITFINEX_TRADES
from marketpipe.timeutil import iso_to_us

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


def test_book_rows_round_trip_with_nulls(tmp_path: Path) -> None:
    levels: list[float | None] = [None] * 400
    levels[0], levels[1] = 43210.5, 1.25
    rows = [("BTC-USD", None, T0 + i, i, *levels) for i in range(5000)]  # > one Arrow chunk
    sink = LakeSink(str(tmp_path))
    sink.write(BITFINEX_BOOK, rows)
    sink.close()
    table = sink.read_table("bitfinex_book")
    assert table.num_rows == 5000
    assert table.column("seq").to_pylist() == list(range(5000))
    assert table.column("bid_1_price")[0].as_py() == 43210.5
    assert table.column("bid_2_price").null_count == 5000
    assert table.column("exchange_ts").null_count == 5000


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
