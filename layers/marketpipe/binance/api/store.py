"""Where the read API reads: the SQL database (SQLite locally, RDS MySQL on AWS).

The database, not the lake, because every question is "the newest row of a symbol" or "the last few
minutes": indexed point reads that answer in milliseconds, where Athena would scan files for seconds.
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa

from marketpipe.tables import Kind, Table
from marketpipe.tables.binance import BINANCE_BOOK_METRICS, BINANCE_MINI_TICKERS, BINANCE_PRICE_ALERTS

NamedRow = dict[str, Any]
"""A stored row read back by column name (rows are written as :data:`marketpipe.records.Row` tuples)."""


class ReadStore(Protocol):
    def latest_metrics(self, symbol: str) -> NamedRow | None: ...

    def prices_since(self, symbol: str, since_us: int) -> list[tuple[int, float]]:
        """(received_ts, price) of the metrics rows at or after ``since_us``, oldest first."""

    def latest_ticker(self, symbol: str) -> NamedRow | None: ...

    def recent_alerts(self, symbol: str | None, limit: int) -> list[NamedRow]: ...

    def close(self) -> None: ...


class SqlReadStore:
    """The read queries over SQLAlchemy Core, for SQLite and MySQL alike (timestamps as int µs)."""

    def __init__(self, url: str) -> None:
        from marketpipe.sinks.sql_sink import SqlSink

        self._sink = SqlSink(url, tables=[BINANCE_BOOK_METRICS, BINANCE_MINI_TICKERS, BINANCE_PRICE_ALERTS])
        self._engine = self._sink.engine
        self._t = self._sink.metadata.tables

    def _rows(self, table: Table, query: sa.Select[Any]) -> list[NamedRow]:
        from marketpipe.sinks.sql_sink import naive_to_us

        ts = {c.name for c in table.columns if c.kind in (Kind.TS_MS, Kind.TS_US)}
        with self._engine.connect() as conn:
            result = conn.execute(query).mappings().all()
        return [
            {str(k): naive_to_us(v) if k in ts and v is not None else v for k, v in r.items()} for r in result
        ]

    def _since(self, us: int) -> Any:
        from marketpipe.sinks.sql_sink import us_to_naive

        return us_to_naive(us)

    def latest_metrics(self, symbol: str) -> NamedRow | None:
        t = self._t[BINANCE_BOOK_METRICS.name]
        query = sa.select(t).where(t.c.symbol == symbol).order_by(t.c.received_ts.desc()).limit(1)
        rows = self._rows(BINANCE_BOOK_METRICS, query)
        return rows[0] if rows else None

    def prices_since(self, symbol: str, since_us: int) -> list[tuple[int, float]]:
        t = self._t[BINANCE_BOOK_METRICS.name]
        query = (
            sa.select(t.c.received_ts, t.c.price)
            .where(t.c.symbol == symbol, t.c.received_ts >= self._since(since_us), t.c.price.is_not(None))
            .order_by(t.c.received_ts)
        )
        return [(int(r["received_ts"]), float(r["price"])) for r in self._rows(BINANCE_BOOK_METRICS, query)]

    def latest_ticker(self, symbol: str) -> NamedRow | None:
        t = self._t[BINANCE_MINI_TICKERS.name]
        query = sa.select(t).where(t.c.symbol == symbol).order_by(t.c.event_ts.desc()).limit(1)
        rows = self._rows(BINANCE_MINI_TICKERS, query)
        return rows[0] if rows else None

    def recent_alerts(self, symbol: str | None, limit: int) -> list[NamedRow]:
        t = self._t[BINANCE_PRICE_ALERTS.name]
        query = sa.select(t)
        if symbol is not None:
            query = query.where(t.c.symbol == symbol)
        query = query.order_by(t.c.alert_ts.desc(), t.c.symbol).limit(limit)
        return self._rows(BINANCE_PRICE_ALERTS, query)

    def close(self) -> None:
        self._sink.close()
