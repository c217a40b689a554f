"""What reaches SQL at scale: only the scoped tables and symbols; the lake keeps everything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from marketpipe.errors import ConfigError
from marketpipe.records import Row
from marketpipe.sinks.scoped import ScopedSink, parse_scope
from marketpipe.tables import BITFINEX_BOOK, BITFINEX_TRADES, Table
from marketpipe.tables.execution import EXECUTION_DIM_EXCHANGE


class Recorder:
    name = "db"

    def __init__(self) -> None:
        self.rows: list[tuple[str, Row]] = []
        self.flushed = self.closed = 0

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        self.rows += [(table.name, row) for row in rows]

    def flush(self) -> None:
        self.flushed += 1

    def close(self) -> None:
        self.closed += 1


def trade(symbol: str, trade_id: int) -> Row:
    return (symbol, trade_id, 1_000, 100.0, 0.5, "buy", 1_000_000)


def test_only_scoped_tables_and_symbols_are_written() -> None:
    store = Recorder()
    sink = ScopedSink(store, frozenset({"bitfinex_trades"}), frozenset({"BTC-USD"}))
    sink.write(BITFINEX_TRADES, [trade("BTC-USD", 1), trade("SOL-USD", 2), trade("BTC-USD", 3)])
    sink.write(BITFINEX_BOOK, [("BTC-USD", None, 1, None)])  # not a scoped table
    sink.flush()
    sink.close()
    assert store.rows == [("bitfinex_trades", trade("BTC-USD", 1)), ("bitfinex_trades", trade("BTC-USD", 3))]
    assert (store.flushed, store.closed, sink.name) == (1, 1, "db")


def test_no_scope_keeps_everything_and_tables_without_symbols_pass_whole() -> None:
    store = Recorder()
    sink = ScopedSink(store, None, frozenset({"BTC-USD"}))
    sink.write(BITFINEX_TRADES, [trade("ETH-USD", 1)])
    sink.write(EXECUTION_DIM_EXCHANGE, [("coinbase", "Coinbase")])
    assert [name for name, _ in store.rows] == [EXECUTION_DIM_EXCHANGE.name]


def test_scope_text() -> None:
    assert (
        parse_scope(None, "X") is None and parse_scope(" all ", "X") is None and parse_scope("", "X") is None
    )
    assert parse_scope("BTC-USD, ETH-USD", "X") == {"BTC-USD", "ETH-USD"}
    with pytest.raises(ConfigError, match="MARKETPIPE_SQL_TABLES: unknown nope"):
        parse_scope("bitfinex_book,nope", "MARKETPIPE_SQL_TABLES", ["bitfinex_book"])


def test_the_book_builder_scopes_only_its_sql_sink(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Deployed with MARKETPIPE_SQL_TABLES / _SYMBOLS, the lake still gets every row."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from marketpipe.aws import book_builder
    from marketpipe.sinks.lake_sink import LakeSink

    monkeypatch.setattr(book_builder, "database_url", lambda arn, name: f"sqlite:///{tmp_path / 'db.sqlite'}")
    env = {
        "MARKETPIPE_LAKE_URI": str(tmp_path / "lake"),
        "MARKETPIPE_DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
        "MARKETPIPE_CHECKPOINT_TABLE": "checkpoints",
        "MARKETPIPE_SQL_TABLES": "bitfinex_trades,bitfinex_book",
        "MARKETPIPE_SQL_SYMBOLS": "BTC-USD",
    }
    lake, sql = book_builder.BookBuilder.from_env(env)._open_sinks()
    assert isinstance(lake, LakeSink)
    assert isinstance(sql, ScopedSink) and sql.name == "db"
    assert sql.tables == {"bitfinex_trades", "bitfinex_book"} and sql.symbols == {"BTC-USD"}
    assert sql.engine is sql.sink.engine  # a failed batch disposes of the SQL pool through the scope
    sql.close()
    with pytest.raises(ConfigError, match="MARKETPIPE_SQL_TABLES: unknown binance_depth20"):
        book_builder.BookBuilder.from_env({**env, "MARKETPIPE_SQL_TABLES": "binance_depth20"})
