"""The execution-price star schema: two facts, four dimensions, the same in CSV, SQL and the lake.

* ``execution_snapshots`` — one row per book snapshot (grain: exchange × market × received_ts):
  top of book, mid, spread, visible depth, crossed flag, level counts.
* ``execution_quotes`` — one row per snapshot × side × notional: what a market order would cost.
* ``execution_dim_exchange``, ``execution_dim_market`` — static reference rows (type-1, keyed by name);
  the market carries base and quote currency and how its quote compares with USD.
* ``execution_dim_date`` (one row per UTC day) and ``execution_dim_minute`` (one row per minute of the
  day, 0…1439) — facts carry ``date_key`` and ``minute_of_day`` (and the readable ``minute_key``).

Facts are partitioned by ``exchange`` and the hour of ``received_ts``; the static dimensions are filed
under their ``valid_from`` (``MODEL_EPOCH`` of :mod:`marketpipe.execution.model`), so every sink sees one
row per key.
"""

from __future__ import annotations

from marketpipe.tables.schema import Column, Kind, Table

_S, _I, _F, _T = Kind.STR, Kind.INT, Kind.FLOAT, Kind.TS_US


def _cols(*spec: tuple[str, Kind, bool]) -> tuple[Column, ...]:
    return tuple(Column(name, kind, nullable) for name, kind, nullable in spec)


EXECUTION_LAKE_WINDOW_SECONDS = 3600
"""One lake file per venue and hour: the facts are one row per market per minute, a few hundred an hour."""

EXECUTION_SNAPSHOTS = Table(
    name="execution_snapshots",
    columns=_cols(
        ("exchange", _S, False),
        ("market", _S, False),
        ("base", _S, False),
        ("quote", _S, False),
        ("received_ts", _T, False),
        ("exchange_ts", _T, True),
        ("date_key", _S, False),
        ("minute_of_day", _I, False),
        ("minute_key", _S, False),
        ("sequence", _I, True),
        ("bid_levels", _I, False),
        ("ask_levels", _I, False),
        ("best_bid", _F, True),
        ("best_ask", _F, True),
        ("mid", _F, True),
        ("spread_bps", _F, True),
        ("crossed", _I, False),
        ("auction_mode", _I, False),
        ("bid_depth_quote", _F, False),
        ("ask_depth_quote", _F, False),
        ("dropped_levels", _I, False),
        ("raw_bytes", _I, False),
    ),
    key=("exchange", "market", "received_ts"),
    order_by="received_ts",
    partitions=("exchange",),
    lake_window_seconds=EXECUTION_LAKE_WINDOW_SECONDS,
)

EXECUTION_QUOTES = Table(
    name="execution_quotes",
    columns=_cols(
        ("exchange", _S, False),
        ("market", _S, False),
        ("base", _S, False),
        ("quote", _S, False),
        ("received_ts", _T, False),
        ("date_key", _S, False),
        ("minute_of_day", _I, False),
        ("minute_key", _S, False),
        ("side", _S, False),
        ("notional", _F, False),
        ("avg_price", _F, True),
        ("worst_price", _F, True),
        ("base_filled", _F, False),
        ("quote_spent", _F, False),
        ("shortfall_quote", _F, False),
        ("mid", _F, True),
        ("slippage_bps", _F, True),
        ("deep_enough", _I, False),
        ("levels_used", _I, False),
        ("crossed", _I, False),
    ),
    key=("exchange", "market", "received_ts", "side", "notional"),
    order_by="received_ts",
    partitions=("exchange",),
    lake_window_seconds=EXECUTION_LAKE_WINDOW_SECONDS,
)


def _dimension(name: str, key: tuple[str, ...], *columns: tuple[str, Kind]) -> Table:
    """A dimension table: no nullable column, ordered and filed under its last (timestamp) column."""
    ts = columns[-1][0]
    cols = _cols(*((column, kind, False) for column, kind in columns))
    return Table(
        name=name,
        columns=cols,
        key=key,
        order_by=ts,
        partition_ts=ts,
        partitions=(),
        lake_window_seconds=EXECUTION_LAKE_WINDOW_SECONDS,
    )


EXECUTION_DIM_EXCHANGE = _dimension(
    "execution_dim_exchange",
    ("exchange",),
    ("exchange", _S),
    ("exchange_name", _S),
    ("book_endpoint", _S),
    ("book_depth", _S),
    ("rate_limit", _S),
    ("valid_from", _T),
)

EXECUTION_DIM_MARKET = _dimension(
    "execution_dim_market",
    ("exchange", "market"),
    ("exchange", _S),
    ("market", _S),
    ("exchange_symbol", _S),
    ("base", _S),
    ("quote", _S),
    ("usd_comparison", _S),
    ("valid_from", _T),
)

EXECUTION_DIM_DATE = _dimension(
    "execution_dim_date",
    ("date_key",),
    ("date_key", _S),
    ("year", _I),
    ("quarter", _I),
    ("month", _I),
    ("day", _I),
    ("day_of_week", _I),
    ("day_name", _S),
    ("iso_week", _I),
    ("is_weekend", _I),
    ("date_ts", _T),
)

EXECUTION_DIM_MINUTE = _dimension(
    "execution_dim_minute",
    ("minute_of_day",),
    ("minute_of_day", _I),
    ("hhmm", _S),
    ("hour", _I),
    ("minute", _I),
    ("session", _S),
    ("valid_from", _T),
)

FACT_TABLES = (EXECUTION_SNAPSHOTS, EXECUTION_QUOTES)
DIM_TABLES = (EXECUTION_DIM_EXCHANGE, EXECUTION_DIM_MARKET, EXECUTION_DIM_DATE, EXECUTION_DIM_MINUTE)
EXECUTION_TABLES = FACT_TABLES + DIM_TABLES
