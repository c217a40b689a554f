"""The per-minute question views in MariaDB/MySQL give the same answers as in SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from marketpipe.execution.coinbase_simulator import SyntheticBooks
from marketpipe.execution.processor import ExecutionProcessor
from marketpipe.execution.queries import DB_VIEWS, create_db_views
from marketpipe.records import RawFrame
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import Table

START = 1_790_000_040_000_000  # a minute start (µs)


def captured_rows() -> dict[Table, list[Any]]:
    books = SyntheticBooks(
        {"BTC-USD": 60_000.0, "BTCUSDT": 60_010.0}, seed=5, thin_probability=0.2, levels=200
    )
    out: dict[Table, list[Any]] = {}
    proc = ExecutionProcessor(lambda t, r: out.setdefault(t, []).extend(r))
    for minute in range(3):
        for i, (conn, name) in enumerate(
            (("rest:coinbase:/products/BTC-USD/book?level=2", "BTC-USD"),
             ("rest:binance:/api/v3/depth?symbol=BTCUSDT&limit=200", "BTCUSDT"))
        ):  # fmt: skip
            bids, asks, seq = books.book(name)
            body = orjson.dumps({"lastUpdateId": seq, "bids": bids, "asks": asks}).decode()
            proc.process(RawFrame("execution", conn, "in", START + minute * 60_000_000 + i * 1000, body))
    return out


def view_rows(sink: SqlSink, name: str) -> list[tuple[Any, ...]]:
    with sink.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY 1, 2, 3, 4"))]


@pytest.mark.mysql
def test_views_agree_between_mysql_and_sqlite(mysql_url: str, tmp_path: Path) -> None:
    data = captured_rows()
    answers = []
    for url in (mysql_url, f"sqlite:///{tmp_path / 'v.db'}"):
        sink = SqlSink(url)
        try:
            for table, rows in data.items():
                sink.write(table, rows)
            sink.flush()
            assert create_db_views(sink) == list(DB_VIEWS)
            create_db_views(sink)  # idempotent
            answers.append({name: view_rows(sink, name) for name in DB_VIEWS})
        finally:
            sink.close()
    mysql, sqlite = answers
    for name in DB_VIEWS:
        assert len(mysql[name]) == len(sqlite[name]) > 0
        for a, b in zip(mysql[name], sqlite[name], strict=True):
            assert list(a) == [x if x is None or isinstance(x, str) else pytest.approx(x) for x in b]
    assert {r[4] for r in sqlite["v_execution_preferred_exchange"]} <= {"coinbase", "binance"}
