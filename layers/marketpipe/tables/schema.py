"""The schema vocabulary every table is written in: one schema, three stores (CSV, SQL, Parquet lake).

Rows travel as plain tuples in column order (cheap to build on the hot path). Value types:
``str``, ``int``, ``float`` or ``None``; timestamps are ``int`` microseconds since the Unix epoch, UTC.
The tables themselves are defined in this package's capability modules and listed in
:data:`marketpipe.tables.TABLES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
