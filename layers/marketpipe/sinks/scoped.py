"""A sink that stores only some tables and some symbols: what SQL users need, while the lake gets all.

At scale the SQL database cannot absorb every book row of hundreds of symbols (a ``bitfinex_book`` row
has 404 columns); the deployment states which tables and which symbols go to SQL, and the book builder
wraps its SQL sink in a :class:`ScopedSink`. Rows outside the scope are dropped before the store sees
them, so writes stay idempotent and the scope can change between deployments without a migration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from marketpipe.errors import ConfigError
from marketpipe.records import Row
from marketpipe.sinks.base import Sink
from marketpipe.tables import Table

ALL = "all"
"""The scope value that keeps everything (tables or symbols)."""


def parse_scope(text: str | None, what: str, known: Iterable[str] | None = None) -> frozenset[str] | None:
    """``"a,b"`` -> {a, b}; empty, missing or ``all`` -> None (no restriction); unknown names refused."""
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not names or names == [ALL]:
        return None
    if known is not None:
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ConfigError(f"{what}: unknown {', '.join(unknown)}")
    return frozenset(names)


class ScopedSink:
    """Writes to ``sink`` only the rows of ``tables`` (None: every table) whose ``symbol`` is in
    ``symbols`` (None: every symbol; tables without a symbol column pass whole).

    Everything else is the wrapped sink's: other attributes are looked up on it, so code that reaches
    for a store's extras (the Kinesis consumer disposing of a SQL engine after a failed batch, a
    ``latest_by`` read) sees the same store with or without a scope.
    """

    def __init__(self, sink: Sink, tables: frozenset[str] | None, symbols: frozenset[str] | None) -> None:
        self.sink = sink
        self.name = sink.name
        self.tables = tables
        self.symbols = symbols

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        if self.tables is not None and table.name not in self.tables:
            return
        column = table.index.get("symbol")
        if self.symbols is not None and column is not None:
            rows = [row for row in rows if row[column] in self.symbols]
        if rows:
            self.sink.write(table, rows)

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        self.sink.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)
