"""The sink port: every store implements these three calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from marketpipe.records import Row
from marketpipe.tables import Table


class Sink(Protocol):
    """A store of table rows.

    ``write`` may buffer; ``flush`` makes everything written so far durable; ``close`` flushes and
    releases resources. Writes are idempotent: a row whose natural key (``Table.key``) is already
    stored is skipped, so replays and restarts never duplicate rows.
    """

    name: str

    def write(self, table: Table, rows: Sequence[Row]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class PositionedSink(Sink, Protocol):
    """A sink that is idempotent only when told where rows come from (an append-only table).

    Stream consumers call ``write_at`` with the partition key and the position (Kinesis sequence
    number) of the record that produced the rows, instead of ``write``.
    """

    def write_at(self, key: str, position: int, table: Table, rows: Sequence[Row]) -> None: ...

    def discard(self, key: str, position: int) -> None:
        """Forget what the record at ``position`` of ``key`` wrote: it failed, and will be retried."""
        ...
