"""SqlSink on SQLite: schema, pragmas and user-facing errors (shared behaviour: integration tests)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from marketpipe.errors import ConfigError
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import BITFINEX_TRADES
from marketpipe.timeutil import iso_to_us

T0 = iso_to_us("2026-11-22T04:10:26.123456Z")


def test_creates_tables_with_unique_key_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "dir" / "marketpipe.db"  # parent folders are created
    sink = SqlSink(f"sqlite:///{db}")
    sink.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"bitfinex_trades", "bitfinex_quotes", "bitfinex_book"} <= names
    ddl = con.execute("SELECT sql FROM sqlite_master WHERE name='bitfinex_trades'").fetchone()[0]
    assert "UNIQUE (symbol, trade_id)" in ddl
    assert "price DOUBLE NOT NULL" in ddl
    assert "exchange_ts DATETIME NOT NULL" in ddl
    assert "symbol VARCHAR(64) NOT NULL" in ddl
    book = con.execute("SELECT sql FROM sqlite_master WHERE name='bitfinex_book'").fetchone()[0]
    assert "exchange_ts DATETIME," in book  # nullable per column


def test_timestamps_stored_as_naive_utc(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    sink = SqlSink(f"sqlite:///{db}", tables=[BITFINEX_TRADES])
    sink.write(BITFINEX_TRADES, [("BTC-USD", 1, T0 - 456, 1.5, 2.0, "buy", T0)])
    sink.close()
    row = sqlite3.connect(db).execute("SELECT exchange_ts, received_ts FROM bitfinex_trades").fetchone()
    assert row == ("2026-11-22 04:10:26.123000", "2026-11-22 04:10:26.123456")


def test_unreachable_database_is_one_line_config_error_without_password() -> None:
    with pytest.raises(ConfigError) as info:
        SqlSink("mysql+pymysql://user:s3cret-pw@127.0.0.1:1/marketpipe?connect_timeout=2")
    message = str(info.value)
    assert message.startswith("cannot connect to database mysql+pymysql://user:***@127.0.0.1:1/marketpipe")
    assert "s3cret-pw" not in message
    assert "\n" not in message


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://x/y", "mysql+nosuchdriver://u:pw@h/db"])
def test_bad_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        SqlSink(url)
    assert "pw" not in str(info.value)
    assert "\n" not in str(info.value)


def test_unwritable_sqlite_location_is_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError):
        SqlSink(f"sqlite:///{blocker}/sub/m.db")


def _trades(count: int) -> list[tuple[object, ...]]:
    return [("BTC-USD", i, T0 + i * 1000, 1.5, 2.0, "buy", T0 + i * 1000 + 7) for i in range(count)]


def test_bulk_load_writes_through_a_rollback_journal_and_leaves_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    SqlSink(f"sqlite:///{db}", tables=[BITFINEX_TRADES]).close()  # an existing file in WAL mode
    sink = SqlSink(f"sqlite:///{db}", tables=[BITFINEX_TRADES], bulk_load=True)
    sink.write(BITFINEX_TRADES, _trades(500))
    sink.flush()
    with sink.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "truncate"
    wal = tmp_path / "m.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # rows went to the file once, not via the WAL
    sink.write(BITFINEX_TRADES, _trades(600))  # the first 500 again: ignored
    sink.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(*), MAX(trade_id) FROM bitfinex_trades").fetchone() == (600, 599)


def test_bulk_load_into_a_new_file_uses_large_pages(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    sink = SqlSink(f"sqlite:///{db}", tables=[BITFINEX_TRADES], bulk_load=True)
    sink.write(BITFINEX_TRADES, _trades(10))
    sink.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA page_size").fetchone()[0] == 16384
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bulk_load_keeps_wal_while_another_connection_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "m.db"
    SqlSink(f"sqlite:///{db}", tables=[BITFINEX_TRADES]).close()
    reader = sqlite3.connect(db)
    reader.execute("SELECT COUNT(*) FROM bitfinex_trades").fetchone()  # holds the WAL open
    with caplog.at_level("INFO", logger="marketpipe.sinks.sql_sink"):
        sink = SqlSink(f"sqlite:///{db}", tables=[BITFINEX_TRADES], bulk_load=True)
        sink.write(BITFINEX_TRADES, _trades(50))
        sink.close()
    assert "database is locked; the bulk load keeps the WAL while other connections are open" in caplog.text
    assert reader.execute("SELECT COUNT(*) FROM bitfinex_trades").fetchone() == (50,)
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
