"""The book-builder Lambda's logic: Kinesis batches -> verified rows in the S3 lake and MySQL, exactly once.

Per partition key (one book) of a batch, in stream order:

1. load the key's checkpoint (DynamoDB) and skip records at or before its sequence number: they were
   applied by an earlier try of this batch;
2. restore a :class:`BitfinexProcessor` from the checkpoint's state and feed it the records' frames,
   handing the rows it emits to the sinks record by record;
3. flush both sinks, then save the new checkpoint (conditional on the one loaded).

Rows are durable before the checkpoint moves, so a crash in between only re-applies records whose
rows the idempotent sinks already hold. On the first failure processing stops (ordered: no later
record may overtake a failed one): what was applied before it is committed, the other keys still apply
their records that come before it in the shard (and nothing after it), and ``batchItemFailures`` names
the lowest sequence number not applied, so Lambda retries from exactly there.

Frames a producer sent twice (a ``PutRecords`` retry after a timeout that had in fact succeeded) are
dropped by receive time per connection: the collector's clock is strictly increasing per process.
Connections silent for two minutes are closed in the processor, so dead ones do not bloat the state.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketpipe.aws.checkpoints import Checkpoint, CheckpointStore
from marketpipe.aws.metrics import emit_emf
from marketpipe.aws.records import decode_record
from marketpipe.exchanges import bitfinex as bfx
from marketpipe.processing.bitfinex import BitfinexProcessor
from marketpipe.records import RawFrame, Row
from marketpipe.sinks.base import Sink
from marketpipe.tables import Table
from marketpipe.tables.bitfinex import BOOK_DEPTH

log = logging.getLogger(__name__)

ENV_LAKE_URI = "MARKETPIPE_LAKE_URI"
ENV_DB_SECRET_ARN = "MARKETPIPE_DB_SECRET_ARN"
ENV_DB_NAME = "MARKETPIPE_DB_NAME"
ENV_CHECKPOINT_TABLE = "MARKETPIPE_CHECKPOINT_TABLE"

STATE_VERSION = 1
CONNECTION_IDLE_US = 120 * 1_000_000
"""A connection with no frame for this long is dead (the collector gives up after ~30 s)."""

MetricsEmitter = Callable[[list[tuple[str, Mapping[str, str], float]]], None]


def database_url(secret_arn: str, db_name: str | None = None, client: Any = None) -> str:
    """SQLAlchemy URL from an RDS-generated secret (``username``, ``password``, ``host``, ``port``)."""
    from sqlalchemy.engine import URL

    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    secret = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    url = URL.create(
        "mysql+pymysql",
        username=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret.get("port") or 3306),
        database=db_name or secret.get("dbname"),
    )
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    partition_key: str
    sequence_number: str
    data: bytes

    @property
    def position(self) -> int:
        return int(self.sequence_number)


def parse_event(event: Mapping[str, Any]) -> list[KinesisRecord]:
    """The records of a Kinesis event, in stream order."""
    return [
        KinesisRecord(k["partitionKey"], k["sequenceNumber"], base64.b64decode(k["data"]))
        for k in (r["kinesis"] for r in event.get("Records", []))
    ]


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
class _KeyRun:
    """One book's processor during an invocation, with the rows it emitted since the last take."""

    processor: BitfinexProcessor
    frames: FrameFilter
    emitted: list[tuple[Table, list[Row]]] = field(default_factory=list)

    def apply(self, record: KinesisRecord) -> None:
        for frame in decode_record(record.data):
            if frame.exchange == bfx.EXCHANGE and self.frames.accept(frame):
                self.processor.process(frame)
        for conn in self.frames.pop_idle():
            self.processor.connection_closed(conn)

    def take(self) -> list[tuple[Table, list[Row]]]:
        emitted = list(self.emitted)
        self.emitted.clear()
        return emitted

    def export(self, trade_ids_per_symbol: int) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "processor": self.processor.export_state(trade_ids_per_symbol),
            "conns": self.frames.last_ts,
        }


@dataclass
class BatchResult:
    """What one invocation did (logged, turned into metrics, and handy in tests)."""

    records: int = 0
    skipped: int = 0
    applied: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    resyncs: int = 0
    checksum_mismatches: int = 0
    errors: int = 0
    checkpoint_bytes: dict[str, int] = field(default_factory=dict)
    failed_at: str | None = None


class BookBuilder:
    """Holds the warm resources (sinks, checkpoint client) of one Lambda container."""

    def __init__(
        self,
        checkpoints: CheckpointStore,
        open_sinks: Callable[[], Sequence[Sink]],
        *,
        emit_metrics: MetricsEmitter | None = emit_emf,
        depth: int = BOOK_DEPTH,
    ) -> None:
        self.checkpoints = checkpoints
        self._open_sinks = open_sinks
        self._emit_metrics = emit_metrics
        self._depth = depth
        self._sinks: list[Sink] | None = None
        self.last_result = BatchResult()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BookBuilder:
        env = os.environ if env is None else env
        lake_uri, secret_arn = env[ENV_LAKE_URI], env[ENV_DB_SECRET_ARN]
        db_name = env.get(ENV_DB_NAME) or None
        db_url: list[str] = []  # resolved once per container, on first use

        def open_sinks() -> list[Sink]:
            from marketpipe.sinks.lake_sink import LakeSink
            from marketpipe.sinks.sql_sink import SqlSink

            if not db_url:
                db_url.append(database_url(secret_arn, db_name))
            return [LakeSink(lake_uri), SqlSink(db_url[0])]

        return cls(CheckpointStore(env[ENV_CHECKPOINT_TABLE]), open_sinks)

    # ------------------------------------------------------------------ invocation

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Process one Kinesis batch; returns the partial-batch response Lambda expects."""
        started = time.perf_counter()
        records = parse_event(event)
        result = BatchResult(records=len(records))
        groups: dict[str, list[KinesisRecord]] = {}
        for record in records:
            groups.setdefault(record.partition_key, []).append(record)
        unapplied: list[KinesisRecord] = []
        limit: int | None = None  # after a failure, nothing at or beyond it in the shard may run
        for key, group in groups.items():
            if limit is not None:
                group = [r for r in group if r.position < limit]
                if not group:
                    continue
            failed = self._process_key(key, group, result)
            if failed is not None:
                unapplied.append(failed)
                limit = failed.position if limit is None else min(limit, failed.position)
        failures = []
        if unapplied:
            first = min(unapplied, key=lambda r: r.position)
            result.failed_at = first.sequence_number
            failures.append({"itemIdentifier": first.sequence_number})
        self.last_result = result
        self._publish_metrics(result)
        log.info(
            "batch: %d records (%d already applied, %d applied) in %.3f s; rows %s; %s",
            result.records,
            result.skipped,
            result.applied,
            time.perf_counter() - started,
            result.rows or "none",
            f"retry from {result.failed_at}" if result.failed_at else "ok",
        )
        return {"batchItemFailures": failures}

    def _process_key(self, key: str, group: list[KinesisRecord], result: BatchResult) -> KinesisRecord | None:
        """Apply one key's records; returns the first record not applied, or None."""
        if not key.startswith(f"{bfx.EXCHANGE}:"):
            log.error("%s: no book builder for this exchange; %d records ignored", key, len(group))
            return None
        try:
            checkpoint = self.checkpoints.load(key)
            todo = [r for r in group if r.position > checkpoint.position]
            run = self._restore(checkpoint)
        except Exception:
            log.exception("%s: cannot load or restore the checkpoint", key)
            result.errors += 1
            return group[0]
        result.skipped += len(group) - len(todo)
        if not todo:
            return None
        applied = 0
        error: Exception | None = None
        sinks: list[Sink] = []
        rows: dict[str, int] = {}
        try:
            sinks = self._current_sinks()
            for record in todo:
                run.apply(record)
                for table, table_rows in run.take():
                    for sink in sinks:
                        sink.write(table, table_rows)
                    rows[table.name] = rows.get(table.name, 0) + len(table_rows)
                applied += 1
        except Exception as exc:
            error = exc
            result.errors += 1
            log.exception("%s: record %s failed", key, todo[applied].sequence_number)
        if applied:
            if error is not None:  # the processor went past the last good record: rebuild its state
                run = self._restore(checkpoint)
                for record in todo[:applied]:
                    run.apply(record)
                    run.take()
            try:
                for sink in sinks:
                    sink.flush()
                size = self.checkpoints.save(checkpoint, todo[applied - 1].sequence_number, run.export)
            except Exception:
                log.exception("%s: could not commit records up to %s", key, todo[applied - 1].sequence_number)
                result.errors += 1
                self._discard_sinks()
                return todo[0]
            result.applied += applied
            result.checkpoint_bytes[key] = size
            for name, count in rows.items():
                result.rows[name] = result.rows.get(name, 0) + count
            stats = run.processor.stats
            result.resyncs += stats.resyncs
            result.checksum_mismatches += stats.checksum_mismatches
        if error is not None:
            self._discard_sinks()
            return todo[applied]
        return None

    # ------------------------------------------------------------------ helpers

    def _restore(self, checkpoint: Checkpoint) -> _KeyRun:
        emitted: list[tuple[Table, list[Row]]] = []
        processor = BitfinexProcessor(lambda table, rows: emitted.append((table, rows)), depth=self._depth)
        run = _KeyRun(processor, FrameFilter(), emitted)
        state = checkpoint.state
        if state is not None:
            if state.get("version") != STATE_VERSION:
                version = state.get("version")
                raise ValueError(f"{checkpoint.stream_key}: unsupported checkpoint version {version!r}")
            processor.restore_state(state["processor"])
            run.frames = FrameFilter(state["conns"])
        return run

    def _current_sinks(self) -> list[Sink]:
        if self._sinks is None:
            self._sinks = list(self._open_sinks())
        return self._sinks

    def _discard_sinks(self) -> None:
        """Drop sinks with whatever they buffered: the retry rebuilds those rows from the records."""
        sinks, self._sinks = self._sinks or [], None
        for sink in sinks:
            engine = getattr(sink, "engine", None)
            if engine is not None:
                engine.dispose()

    def _publish_metrics(self, result: BatchResult) -> None:
        if self._emit_metrics is None:
            return
        exchange = {"Exchange": bfx.EXCHANGE}
        metrics: list[tuple[str, Mapping[str, str], float]] = [
            ("RowsWritten", {"Table": table}, count) for table, count in sorted(result.rows.items())
        ]
        metrics += [
            ("Resyncs", exchange, result.resyncs),
            ("ChecksumMismatches", exchange, result.checksum_mismatches),
            ("Errors", {}, result.errors),
        ]
        try:
            self._emit_metrics(metrics)
        except Exception:  # metrics never fail a batch
            log.exception("could not emit metrics")


_WARM: BookBuilder | None = None
"""Warm-start cache: the container's BookBuilder (DB URL, SQL connection pool, clients) lives across
invocations. Book state never lives here: it is loaded from the checkpoint on every batch."""


def process_kinesis_event(event: dict[str, Any]) -> dict[str, Any]:
    """Entry point of ``functions/book_builder/handler.py``."""
    global _WARM
    if _WARM is None:
        _WARM = BookBuilder.from_env()
    return _WARM.handle(event)


def reset_warm_start() -> None:
    """Forget the warm-start cache, as a new Lambda container would (tests, config changes)."""
    global _WARM
    _WARM = None
