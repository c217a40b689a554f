"""SqlSink against SQLite and a real MariaDB server: the same tests, both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import BITFINEX_BOOK, BITFINEX_QUOTES, BITFINEX_TRADES
from marketpipe.timeutil import iso_to_us

T0 = iso_to_us("2026-11-22T04:10:26.123456Z")
EX0 = iso_to_us("2026-11-22T04:10:26.120Z")


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'marketpipe.db'}"
        return
    url = request.getfixturevalue("mysql_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # each test starts from an empty database
        for name in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f"DROP TABLE `{name}`"))
    engine.dispose()
    yield url


def trade(trade_id: int, price: float = 7255.5) -> tuple:
    return ("BTC-USD", trade_id, EX0 + trade_id * 1000, price, 0.00005, "buy", T0 + trade_id)


def test_rows_round_trip_with_exact_values(db_url: str) -> None:
    sink = SqlSink(db_url)
    rows = [trade(i) for i in range(1, 4)]
    sink.write(BITFINEX_TRADES, rows)
    sink.close()
    reader = SqlSink(db_url)
    got = reader.read_rows("bitfinex_trades")
    assert [tuple(r.values()) for r in got] == rows
    assert list(got[0]) == list(BITFINEX_TRADES.column_names)
    assert reader.read_rows("bitfinex_trades", where={"trade_id": 2}) == [got[1]]
    assert reader.read_rows("bitfinex_trades", where={"received_ts": T0 + 3}) == [got[2]]
    assert reader.latest("bitfinex_trades", "received_ts") == T0 + 3
    assert reader.latest("bitfinex_trades", "trade_id") == 3
    assert reader.latest("bitfinex_quotes", "received_ts") is None
    reader.close()


def test_same_rows_twice_and_after_restart_are_stored_once(db_url: str) -> None:
    rows = [trade(i) for i in range(1, 51)]
    sink = SqlSink(db_url)
    sink.write(BITFINEX_TRADES, rows[:30])
    sink.write(BITFINEX_TRADES, rows[:30])  # same buffer, same transaction
    sink.flush()
    sink.write(BITFINEX_TRADES, list(reversed(rows)))  # out of order, overlapping
    sink.close()
    again = SqlSink(db_url)
    again.write(BITFINEX_TRADES, rows)  # replay after restart
    again.close()
    assert again.count("bitfinex_trades") == 50
    assert [r["trade_id"] for r in again.read_rows("bitfinex_trades")] == list(range(1, 51))


def test_unique_key_rejects_a_second_row_with_the_same_key(db_url: str) -> None:
    sink = SqlSink(db_url)
    sink.write(BITFINEX_TRADES, [trade(1, price=100.0)])
    sink.flush()
    sink.write(BITFINEX_TRADES, [trade(1, price=200.0)])  # same (symbol, trade_id): ignored
    sink.close()
    engine = sa.create_engine(db_url)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO bitfinex_trades VALUES "
                "('BTC-USD', 1, '2026-11-22 04:10:26', 1, 1, 'buy', '2026-11-22 04:10:26')"
            )
        )
    engine.dispose()
    assert [r["price"] for r in sink.read_rows("bitfinex_trades")] == [100.0]


def test_wide_book_rows_and_nulls(db_url: str) -> None:
    levels: list[float | None] = [None] * 400
    levels[0], levels[1], levels[200], levels[201] = 43210.5, 1.25, 43211.0, 3e-7
    rows = [("BTC-USD", None, T0 + i, i, *levels) for i in range(300)]
    sink = SqlSink(db_url)
    sink.write(BITFINEX_BOOK, rows)
    sink.write(BITFINEX_BOOK, rows)
    sink.close()
    got = sink.read_rows("bitfinex_book")
    assert len(got) == 300
    assert tuple(got[7].values()) == rows[7]
    assert got[0]["ask_1_size"] == 3e-7


def test_quotes_key_with_float_columns(db_url: str) -> None:
    rows = [("BTC-USD", EX0, T0, 5, "bid", 100.0 + i / 10, 1, 0.1 * i, "snapshot") for i in range(20)]
    sink = SqlSink(db_url)
    sink.write(BITFINEX_QUOTES, rows + rows[:5])
    sink.close()
    assert sink.count("bitfinex_quotes") == 20


def test_mariadb_columns_keep_microseconds_and_doubles(db_url: str) -> None:
    sink = SqlSink(db_url)
    sink.close()
    engine = sa.create_engine(db_url)
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("bitfinex_trades")}
    engine.dispose()
    if engine.dialect.name == "sqlite":
        assert str(columns["received_ts"]["type"]) == "DATETIME"
    else:
        assert str(columns["received_ts"]["type"]) == "DATETIME"
        assert getattr(columns["received_ts"]["type"], "fsp", None) == 6
        assert str(columns["price"]["type"]) == "DOUBLE"
        assert str(columns["trade_id"]["type"]) == "BIGINT"
    assert columns["price"]["nullable"] is False
