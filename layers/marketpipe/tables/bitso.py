"""The Bitso table: one spread observation per book per UTC second, filed by its sampling window."""

from __future__ import annotations

from marketpipe.tables.schema import Column, Kind, Table

BITSO_SPREADS = Table(
    name="bitso_spreads",
    columns=(
        Column("orderbook_timestamp", Kind.STR, nullable=False),
        Column("book", Kind.STR, nullable=False),
        Column("bid", Kind.FLOAT),
        Column("ask", Kind.FLOAT),
        Column("spread", Kind.FLOAT),
        Column("source", Kind.STR, nullable=False),
        Column("age_ms", Kind.INT),
        Column("window_start", Kind.TS_US, nullable=False),
    ),
    key=("book", "orderbook_timestamp"),
    order_by="orderbook_timestamp",
    # The lake file of a row is chosen by its window start: one file per book per window.
    partition_ts="window_start",
    partitions=("book",),
)
"""One row per book per UTC second. ``window_start`` (helper column) is the start of the lake window
the second belongs to, so every sink files a window's rows together."""

BITSO_TABLES = (BITSO_SPREADS,)
