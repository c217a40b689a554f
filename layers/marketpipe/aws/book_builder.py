"""The book-builder Lambda: Kinesis batches of Bitfinex frames -> verified rows in the lake and MySQL.

The lake is the Iceberg tables of ``MARKETPIPE_ICEBERG_CATALOG`` (appends, exactly once per record:
:mod:`marketpipe.sinks.iceberg_sink`), or without it the Parquet layout under ``MARKETPIPE_LAKE_URI``.

The batch loop, checkpoints and failure rule are :class:`~marketpipe.aws.kinesis_consumer.KinesisConsumer`'s
(stop at the first failed record, commit what came before it). This module supplies the per-key part:
each ``bitfinex:slot-NNN`` partition key (the books of one collector connection, ``bitfinex.slots``) is
one :class:`BitfinexProcessor`, restored from the key's checkpoint and fed the frames of each record;
the rows it emits (verified against checksums) go to the lake and MySQL.

Frames a producer sent twice (a ``PutRecords`` retry after a timeout that had in fact succeeded) are
dropped by receive time per connection: the collector's clock is strictly increasing per process.
Connections silent for two minutes are closed in the processor, so dead ones do not bloat the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketpipe import envnames
from marketpipe.aws.checkpoints import Checkpoint, CheckpointStore
from marketpipe.aws.kinesis_consumer import BatchResult, Emitted, KeyRun, KinesisConsumer, KinesisRecord
from marketpipe.aws.metrics import emit_emf
from marketpipe.aws.records import decode_record
from marketpipe.aws.secrets import database_url
from marketpipe.aws.warm import Warm
from marketpipe.bitfinex import wire as bfx
from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.records import RawFrame
from marketpipe.sinks.base import Sink
from marketpipe.tables.bitfinex import BITFINEX_TABLES, BOOK_DEPTH

log = logging.getLogger(__name__)

STATE_VERSION = 1
CONNECTION_IDLE_US = 120 * 1_000_000
"""A connection with no frame for this long is dead (the collector gives up after ~30 s)."""
KEY_PREFIX = f"{bfx.EXCHANGE}:"

MetricsEmitter = Callable[[list[tuple[str, Mapping[str, str], float]]], None]


class FrameFilter:
    """Newest receive time per connection: drops frames a producer sent twice, finds dead connections."""

    def __init__(self, last_ts: Mapping[str, int] | None = None) -> None:
        self.last_ts: dict[str, int] = dict(last_ts or {})
        self.newest = max(self.last_ts.values(), default=0)
        self.duplicates = 0

    def accept(self, frame: RawFrame) -> bool:
        last = self.last_ts.get(frame.conn)
        if last is not None and frame.received_ts <= last:
            self.duplicates += 1
            return False
        self.last_ts[frame.conn] = frame.received_ts
        if frame.received_ts > self.newest:
            self.newest = frame.received_ts
        return True

    def pop_idle(self) -> list[str]:
        """Connections silent for :data:`CONNECTION_IDLE_US` (forgotten here; the caller closes them)."""
        idle = [c for c, ts in self.last_ts.items() if ts < self.newest - CONNECTION_IDLE_US]
        for conn in idle:
            del self.last_ts[conn]
        return idle


@dataclass
class BookRun:
    """One key's processor (a slot's books) during an invocation, with the rows it emitted for the
    current record."""

    processor: BitfinexProcessor
    frames: FrameFilter
    emitted: Emitted = field(default_factory=list)

    def apply(self, record: KinesisRecord) -> Emitted:
        self.emitted.clear()  # the same list the processor's emit appends to
        for frame in decode_record(record.data):
            if frame.exchange == bfx.EXCHANGE and self.frames.accept(frame):
                self.processor.process(frame)
        for conn in self.frames.pop_idle():
            self.processor.connection_closed(conn)
        emitted = list(self.emitted)
        self.emitted.clear()
        return emitted

    def export(self, history: int) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "processor": self.processor.export_state(trade_ids_per_symbol=history),
            "conns": self.frames.last_ts,
        }


class BookBuilder(KinesisConsumer):
    """The consumer of the ``bitfinex:*`` partition keys; one per Lambda container."""

    name = "book builder"

    def __init__(
        self,
        checkpoints: CheckpointStore,
        open_sinks: Callable[[], Sequence[Sink]],
        *,
        emit_metrics: MetricsEmitter | None = emit_emf,
        depth: int = BOOK_DEPTH,
    ) -> None:
        super().__init__(checkpoints, open_sinks)
        self._emit_metrics = emit_metrics
        self._depth = depth

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BookBuilder:
        from marketpipe.sinks.scoped import ScopedSink, parse_scope

        lake_uri, secret_arn = env[envnames.LAKE_URI], env[envnames.DB_SECRET_ARN]
        iceberg_catalog = env.get(envnames.ICEBERG_CATALOG) or None
        db_name = env.get(envnames.DB_NAME) or None
        known = [t.name for t in BITFINEX_TABLES]
        sql_tables = parse_scope(env.get(envnames.SQL_TABLES), envnames.SQL_TABLES, known)
        sql_symbols = parse_scope(env.get(envnames.SQL_SYMBOLS), envnames.SQL_SYMBOLS)

        def open_sinks() -> list[Sink]:
            """The lake gets every row; SQL what the deployment scoped to it (docs/AWS.md)."""
            from marketpipe.sinks.sql_sink import SqlSink

            lake: Sink
            if iceberg_catalog:
                from marketpipe.sinks.iceberg_sink import IcebergSink

                lake = IcebergSink(iceberg_catalog, BITFINEX_TABLES, env=env, create_tables=False)
            else:
                from marketpipe.sinks.lake_sink import LakeSink

                lake = LakeSink(lake_uri)
            sql = SqlSink(database_url(secret_arn, db_name))
            return [lake, ScopedSink(sql, sql_tables, sql_symbols)]

        return cls(CheckpointStore(env[envnames.CHECKPOINT_TABLE]), open_sinks)

    def accepts(self, key: str) -> bool:
        return key.startswith(KEY_PREFIX)

    def restore(self, checkpoint: Checkpoint) -> BookRun:
        emitted: Emitted = []
        processor = BitfinexProcessor(lambda table, rows: emitted.append((table, rows)), depth=self._depth)
        run = BookRun(processor, FrameFilter(), emitted)
        state = checkpoint.state
        if state is not None:
            if state.get("version") != STATE_VERSION:
                version = state.get("version")
                raise ValueError(f"{checkpoint.stream_key}: unsupported checkpoint version {version!r}")
            run.processor.restore_state(state["processor"])
            run.frames = FrameFilter(state["conns"])
        return run

    def committed(self, key: str, run: KeyRun, result: BatchResult) -> None:
        assert isinstance(run, BookRun)
        stats = run.processor.stats
        result.count("resyncs", stats.resyncs)
        result.count("checksum_mismatches", stats.checksum_mismatches)

    def finished(self, result: BatchResult) -> None:
        if self._emit_metrics is None:
            return
        exchange = {"Exchange": bfx.EXCHANGE}
        metrics: list[tuple[str, Mapping[str, str], float]] = [
            ("RowsWritten", {"Table": table}, count) for table, count in sorted(result.rows.items())
        ]
        metrics += [
            ("Resyncs", exchange, result.counters.get("resyncs", 0)),
            ("ChecksumMismatches", exchange, result.counters.get("checksum_mismatches", 0)),
            ("Errors", {}, result.errors),
        ]
        try:
            self._emit_metrics(metrics)
        except Exception:  # metrics never fail a batch
            log.exception("could not emit metrics")


WARM: Warm[BookBuilder] = Warm(
    (
        envnames.LAKE_URI,
        envnames.ICEBERG_CATALOG,
        envnames.DB_SECRET_ARN,
        envnames.DB_NAME,
        envnames.CHECKPOINT_TABLE,
    ),
    BookBuilder.from_env,
)
"""The container's BookBuilder (DB URL, SQL connection pool, clients) lives across invocations. Book
state never lives here: it is loaded from the checkpoint on every batch."""


def handle(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Kinesis batch -> the partial-batch response (``batchItemFailures``) the event source expects."""
    return WARM.get(env).handle(event)
