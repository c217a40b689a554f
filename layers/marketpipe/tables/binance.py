"""The Binance tables: all-market mini-tickers, depth20 books, book metrics and price-level alerts."""

from __future__ import annotations

from marketpipe.tables.schema import Column, Kind, Table

DEPTH_LEVELS = 20
"""Levels per side of the partial-depth stream (``<symbol>@depth20@100ms``) and of a depth20 row."""

# Lake layout: every Binance table is ``<table>/dt=…/hour=…``, without a symbol level. Mini-tickers cover
# every market (~2,000 symbols: a level per symbol and hour would make tiny files); depth and metrics rows
# of a few symbols share hourly files that Athena prunes by hour and filters by the ``symbol`` column.
# (The ``symbol=`` level stays the Bitfinex layout of DESIGN.md, which the lake construct catalogues.)


def _levels(depth: int) -> tuple[Column, ...]:
    cols: list[Column] = []
    for side in ("bid", "ask"):
        for level in range(1, depth + 1):
            cols.append(Column(f"{side}_{level}_price", Kind.FLOAT))
            cols.append(Column(f"{side}_{level}_size", Kind.FLOAT))
    return tuple(cols)


BINANCE_MINI_TICKERS = Table(
    name="binance_mini_tickers",
    columns=(
        Column("event_ts", Kind.TS_MS, nullable=False),
        Column("symbol", Kind.STR, nullable=False),
        Column("close", Kind.FLOAT, nullable=False),
        Column("open", Kind.FLOAT, nullable=False),
        Column("high", Kind.FLOAT, nullable=False),
        Column("low", Kind.FLOAT, nullable=False),
        Column("base_volume", Kind.FLOAT, nullable=False),
        Column("quote_volume", Kind.FLOAT, nullable=False),
        Column("received_ts", Kind.TS_US, nullable=False),
    ),
    key=("symbol", "event_ts"),
    order_by="received_ts",
    # Every market (~2,000 symbols): one lake partition per symbol and hour would be tiny files.
    partitions=(),
)

BINANCE_DEPTH20 = Table(
    name="binance_depth20",
    columns=(
        Column("symbol", Kind.STR, nullable=False),
        Column("last_update_id", Kind.INT, nullable=False),
        Column("received_ts", Kind.TS_US, nullable=False),
        *_levels(DEPTH_LEVELS),
    ),
    key=("symbol", "received_ts"),
    order_by="received_ts",
    partitions=(),  # see the lake layout note above
)

BINANCE_BOOK_METRICS = Table(
    name="binance_book_metrics",
    columns=(
        Column("symbol", Kind.STR, nullable=False),
        Column("received_ts", Kind.TS_US, nullable=False),
        Column("last_update_id", Kind.INT, nullable=False),
        Column("best_bid", Kind.FLOAT),
        Column("best_ask", Kind.FLOAT),
        Column("spread", Kind.FLOAT),
        Column("spread_pct", Kind.FLOAT),
        Column("bid_vwap", Kind.FLOAT),
        Column("ask_vwap", Kind.FLOAT),
        Column("price", Kind.FLOAT),
        Column("avg_price_30s", Kind.FLOAT),
        Column("avg_price_1m", Kind.FLOAT),
    ),
    key=("symbol", "received_ts"),
    order_by="received_ts",
    partitions=(),  # see the lake layout note above
)

BINANCE_PRICE_ALERTS = Table(
    name="binance_price_alerts",
    columns=(
        Column("alert_ts", Kind.TS_MS, nullable=False),
        Column("symbol", Kind.STR, nullable=False),
        Column("level", Kind.FLOAT, nullable=False),
        Column("direction", Kind.STR, nullable=False),
        Column("last_price", Kind.FLOAT, nullable=False),
        Column("received_ts", Kind.TS_US, nullable=False),
    ),
    key=("symbol", "alert_ts", "level", "direction"),
    order_by="received_ts",
    partitions=(),  # a handful of rows a day
)

BINANCE_TABLES = (BINANCE_MINI_TICKERS, BINANCE_DEPTH20, BINANCE_BOOK_METRICS, BINANCE_PRICE_ALERTS)
