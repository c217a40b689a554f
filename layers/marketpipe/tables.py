"""Table definitions shared by every sink: one schema, three stores (CSV, SQL, Parquet lake).

Rows travel as plain tuples in column order (cheap to build on the hot path). Value types:
``str``, ``int``, ``float`` or ``None``; timestamps are ``int`` microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

BOOK_DEPTH = 100
"""Levels per side stored in a ``bitfinex_book`` row."""


class Kind(StrEnum):
    """Logical column type; each sink maps it to its own physical type."""

    STR = "str"
    INT = "int"
    FLOAT = "float"
    TS_MS = "ts_ms"  # exchange time: millisecond precision, stored as int microseconds
    TS_US = "ts_us"  # local receive time: microsecond precision


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = True


def divides_an_hour(seconds: int) -> bool:
    """A lake window must tile each ``hour=`` partition exactly, so no file spans two of them."""
    return seconds > 0 and 3600 % seconds == 0


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    """A table's columns plus what every sink needs to write it idempotently.

    ``key`` is the natural key (unique index in SQL, dedupe key for CSV and lake merges).
    ``order_by`` names a column that grows as rows arrive (CSV appends only check older rows).
    ``partition_ts`` is the timestamp that picks the CSV day file and the lake ``dt``/``hour``;
    ``partitions`` are data columns used as leading lake partitions (not stored inside the files).
    ``lake_window_seconds`` is the time span of one lake file. It belongs to the table, not to a
    writer, because every writer of a lake (run, replay, the Lambdas) must file a row in the same
    window, or a merge would miss it and keep it twice. It may grow between versions (a writer
    merges the shorter files it finds inside its window) but never shrink.

    Tables compare and hash by identity (``eq=False``): each is defined once, and hashing 404 column
    definitions on every dict lookup cost 60 µs per batch hand-off.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    order_by: str
    partition_ts: str = "received_ts"
    partitions: tuple[str, ...] = ("symbol",)
    lake_window_seconds: int = 60
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {c.name: i for i, c in enumerate(self.columns)})
        for name in (*self.key, self.order_by, self.partition_ts, *self.partitions):
            if name not in self.index:
                raise ValueError(f"{self.name}: unknown column {name!r}")
        if not divides_an_hour(self.lake_window_seconds):
            raise ValueError(
                f"{self.name}: a lake window of {self.lake_window_seconds}s does not divide an hour"
            )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


WIDE_FLOAT_RUN = 32
"""A run of at least this many FLOAT columns (a book row's 400 levels) gets the sinks' bulk paths: CSV
formats it by difference from the stream's previous row, the lake converts it to Arrow in C."""


def float_runs(table: Table, skip: tuple[str, ...] = ()) -> list[tuple[int, int]]:
    """(start, stop) column indices of each run of consecutive FLOAT columns, ``skip`` breaking runs."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, column in enumerate([*table.columns, None]):
        if column is not None and column.kind is Kind.FLOAT and column.name not in skip:
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i))
            start = None
    return runs


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

TABLES: dict[str, Table] = {t.name: t for t in (BITFINEX_TRADES, BITFINEX_QUOTES, BITFINEX_BOOK)}
"""Every table marketpipe writes, by name. Later capabilities register theirs here."""


def register(table: Table) -> Table:
    """Add a table to :data:`TABLES` (idempotent for the same definition)."""
    existing = TABLES.get(table.name)
    if existing is not None and existing.columns != table.columns:
        raise ValueError(f"table {table.name} already registered with another definition")
    TABLES[table.name] = table
    return table
