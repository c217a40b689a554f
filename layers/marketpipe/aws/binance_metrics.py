"""Kinesis -> Binance processor on Lambda: mini-tickers, depth20, book metrics and price-level alerts.

The Fargate collector puts every Binance frame on the partition of its connection's shard
(``binance:shard-0``…, see :meth:`BinanceCollector.symbols_of`). For each partition in a batch this
function loads the DynamoDB checkpoint (last applied sequence number + the processor's state: average
samples of the last minute, fired watches, settings), applies the newer records with the very processor
``marketpipe run`` uses, writes the rows to the lake and RDS (idempotent), then moves the checkpoint.
A failure stops the partition at its first unapplied record (``batchItemFailures``); its retry starts
from the checkpoint, so rows are never lost and never duplicated (natural keys), and averages continue
exactly. Alerts go out (log, SNS, webhooks) only for records applied for the first time; their message
key is stable, so a receiver can drop the duplicate a retry after a lost checkpoint write may cause.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketpipe.alerts.channels import AlertDispatcher, Channel
from marketpipe.alerts.price_levels import PriceAlert
from marketpipe.aws.book_builder import KinesisRecord, parse_event
from marketpipe.aws.checkpoints import Checkpoint, CheckpointStore
from marketpipe.aws.records import decode_record
from marketpipe.exchanges import binance
from marketpipe.processing.binance import BinanceProcessor
from marketpipe.sinks.base import Sink
from marketpipe.tables import Table

log = logging.getLogger(__name__)

ENV_LAKE_URI = "MARKETPIPE_LAKE_URI"
ENV_DB_SECRET_ARN = "MARKETPIPE_DB_SECRET_ARN"
ENV_DB_NAME = "MARKETPIPE_DB_NAME"
ENV_CHECKPOINT_TABLE = "MARKETPIPE_CHECKPOINT_TABLE"
KEY_PREFIX = f"{binance.EXCHANGE}:"


@dataclass
class BatchResult:
    records: int = 0
    applied: int = 0
    skipped: int = 0
    errors: int = 0
    alerts: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)


class MetricsFunction:
    """One per Lambda container: sinks, checkpoint store and alert channels survive warm invocations."""

    def __init__(
        self,
        open_sinks: Callable[[], Sequence[Sink]],
        checkpoints: CheckpointStore,
        channels: Sequence[Channel],
    ) -> None:
        self._open_sinks = open_sinks
        self._sinks: list[Sink] | None = None
        self.checkpoints = checkpoints
        self.channels = list(channels)
        self.last_result = BatchResult()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MetricsFunction:
        env = os.environ if env is None else env
        from marketpipe.services.binance import build_channels

        lake_uri, secret_arn = env[ENV_LAKE_URI], env.get(ENV_DB_SECRET_ARN)

        def open_sinks() -> list[Sink]:
            from marketpipe.sinks.lake_sink import LakeSink

            sinks: list[Sink] = [LakeSink(lake_uri)]
            if secret_arn:
                from marketpipe.aws.book_builder import database_url
                from marketpipe.sinks.sql_sink import SqlSink

                sinks.append(SqlSink(database_url(secret_arn, env.get(ENV_DB_NAME))))
            return sinks

        return cls(open_sinks, CheckpointStore(env[ENV_CHECKPOINT_TABLE]), build_channels((), env, sms=False))

    def _current_sinks(self) -> list[Sink]:
        if self._sinks is None:
            self._sinks = list(self._open_sinks())
        return self._sinks

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """One Kinesis batch -> the partial-batch response (the first unapplied record, if any)."""
        records = parse_event(event)
        result = BatchResult(records=len(records))
        groups: dict[str, list[KinesisRecord]] = {}
        for record in records:
            groups.setdefault(record.partition_key, []).append(record)
        failed: list[KinesisRecord] = []
        limit: int | None = None
        for key, group in groups.items():
            if not key.startswith(KEY_PREFIX):
                continue  # other exchanges' partitions have their own consumers
            if limit is not None:
                group = [r for r in group if r.position < limit]
            first_failed = self._process_key(key, group, result) if group else None
            if first_failed is not None:
                failed.append(first_failed)
                limit = first_failed.position if limit is None else min(limit, first_failed.position)
        self.last_result = result
        log.info("binance batch: %d records, %d applied, %d already applied, rows %s, alerts %d, errors %d",
                 result.records, result.applied, result.skipped, result.rows or "none", len(result.alerts),
                 result.errors)  # fmt: skip
        if not failed:
            return {"batchItemFailures": []}
        first = min(failed, key=lambda r: r.position)
        return {"batchItemFailures": [{"itemIdentifier": first.sequence_number}]}

    def _process_key(self, key: str, group: list[KinesisRecord], result: BatchResult) -> KinesisRecord | None:
        pending: dict[Table, list[tuple[object, ...]]] = {}

        def emit(table: Table, rows: list[tuple[object, ...]]) -> None:
            pending.setdefault(table, []).extend(rows)

        alerts: list[PriceAlert] = []
        try:
            checkpoint: Checkpoint = self.checkpoints.load(key)
            todo = [r for r in group if r.position > checkpoint.position]
            result.skipped += len(group) - len(todo)
            if not todo:
                return None
            processor = BinanceProcessor(emit, on_alert=alerts.append)
            if checkpoint.state is not None:
                processor.restore_state(checkpoint.state)
            for record in todo:
                for frame in decode_record(record.data):
                    if frame.exchange == binance.EXCHANGE:
                        processor.process(frame)
            sinks = self._current_sinks()
            for table, rows in pending.items():
                for sink in sinks:
                    sink.write(table, rows)
            for sink in sinks:
                sink.flush()
            state = processor.export_state()
            self.checkpoints.save(checkpoint, todo[-1].sequence_number, lambda _ids: state)
        except Exception:
            log.exception("%s: batch not applied; retrying from the checkpoint", key)
            result.errors += 1
            self._sinks = None  # reopen: a sink may hold half a batch
            return group[0]
        result.applied += len(todo)
        for table, rows in pending.items():
            result.rows[table.name] = result.rows.get(table.name, 0) + len(rows)
        if alerts:
            dispatcher = AlertDispatcher(self.channels)
            for alert in alerts:
                message = alert.message(binance.EXCHANGE)
                result.alerts.append(message.text)
                dispatcher.dispatch(message)
            dispatcher.close()  # waits for delivery; log and SNS channels hold nothing to close
        return None


_WARM: MetricsFunction | None = None
"""Warm-start cache: sinks (SQL pool), DynamoDB and SNS clients live across invocations. The processor
state never lives here: it is loaded from the checkpoint on every batch."""


def process_kinesis_event(event: dict[str, Any]) -> dict[str, Any]:
    """Entry point of ``functions/binance_metrics/handler.py``."""
    global _WARM
    if _WARM is None:
        _WARM = MetricsFunction.from_env()
    return _WARM.handle(event)
