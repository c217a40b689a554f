"""The Bitfinex tables (the contract in README.md, "What you get"): trades, every book event, and a
top-100 book row per change."""

from __future__ import annotations

from marketpipe.tables.schema import Column, Kind, Table

BOOK_DEPTH = 100
"""Levels per side stored in a ``bitfinex_book`` row."""


def _book_level_columns() -> tuple[Column, ...]:
    cols: list[Column] = []
    for side in ("bid", "ask"):
        for level in range(1, BOOK_DEPTH + 1):
            cols.append(Column(f"{side}_{level}_price", Kind.FLOAT))
            cols.append(Column(f"{side}_{level}_size", Kind.FLOAT))
    return tuple(cols)


BITFINEX_LAKE_WINDOW_SECONDS = 600
"""Ten-minute lake files for the Bitfinex tables. Parquet pays ~20 µs per column chunk and a book row
has 404 columns, so one-minute files (~1,200 book rows) were mostly overhead: on the 1M-frame benchmark
session the lake went from 2,124 files and 235 MiB to 216 files and 144 MiB. Fewer, larger files are
also what Athena scans best."""


BITFINEX_TRADES = Table(
    name="bitfinex_trades",
    columns=(
        Column("symbol", Kind.STR, nullable=False),
        Column("trade_id", Kind.INT, nullable=False),
        Column("exchange_ts", Kind.TS_MS, nullable=False),
        Column("price", Kind.FLOAT, nullable=False),
        Column("amount", Kind.FLOAT, nullable=False),
        Column("side", Kind.STR, nullable=False),
        Column("received_ts", Kind.TS_US, nullable=False),
    ),
    key=("symbol", "trade_id"),
    order_by="trade_id",
    lake_window_seconds=BITFINEX_LAKE_WINDOW_SECONDS,
)

BITFINEX_QUOTES = Table(
    name="bitfinex_quotes",
    columns=(
        Column("symbol", Kind.STR, nullable=False),
        Column("exchange_ts", Kind.TS_MS),
        Column("received_ts", Kind.TS_US, nullable=False),
        Column("seq", Kind.INT),
        Column("side", Kind.STR, nullable=False),
        Column("price", Kind.FLOAT, nullable=False),
        Column("count", Kind.INT, nullable=False),
        Column("size", Kind.FLOAT, nullable=False),
        Column("action", Kind.STR, nullable=False),
    ),
    # received_ts is unique per frame (the collector makes it strictly increasing); within a frame a
    # level is identified by side, price and what was set there.
    key=("symbol", "received_ts", "side", "price", "count", "size"),
    order_by="received_ts",
    lake_window_seconds=BITFINEX_LAKE_WINDOW_SECONDS,
)

BITFINEX_BOOK = Table(
    name="bitfinex_book",
    columns=(
        Column("symbol", Kind.STR, nullable=False),
        Column("exchange_ts", Kind.TS_MS),
        Column("received_ts", Kind.TS_US, nullable=False),
        Column("seq", Kind.INT),
        *_book_level_columns(),
    ),
    key=("symbol", "received_ts"),
    order_by="received_ts",
    lake_window_seconds=BITFINEX_LAKE_WINDOW_SECONDS,
)

BITFINEX_TABLES = (BITFINEX_TRADES, BITFINEX_QUOTES, BITFINEX_BOOK)
