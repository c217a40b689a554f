"""The Binance metrics Lambda: Kinesis -> mini-tickers, depth20, book metrics and price-level alerts.

The Fargate collector puts every Binance frame on the partition of its connection's shard
(``binance:shard-0``…, see :meth:`BinanceCollector.partitions_of`). The batch loop, checkpoints and failure
rule are :class:`~marketpipe.aws.kinesis_consumer.KinesisConsumer`'s; each partition key is one
:class:`BinanceProcessor` (the very processor ``marketpipe run`` uses) restored from the checkpoint
(average samples of the last minute, fired watches, settings), and its rows go to the lake and RDS.
Averages therefore continue exactly across invocations and retries. Alerts go out (log, SNS, webhooks)
only once the checkpoint covering their record is written; their message key is stable, so a receiver
can drop the duplicate a retry after a lost checkpoint write may cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketpipe import envnames
from marketpipe.alerts.channels import AlertDispatcher, Channel
from marketpipe.aws.checkpoints import Checkpoint, CheckpointStore
from marketpipe.aws.kinesis_consumer import BatchResult, Emitted, KeyRun, KinesisConsumer, KinesisRecord
from marketpipe.aws.records import decode_record
from marketpipe.aws.secrets import database_url
from marketpipe.aws.warm import Warm
from marketpipe.binance import wire as binance
from marketpipe.binance.price_levels import PriceAlert
from marketpipe.binance.processor import BinanceProcessor
from marketpipe.sinks.base import Sink

log = logging.getLogger(__name__)

KEY_PREFIX = f"{binance.EXCHANGE}:"


@dataclass
class BinanceRun:
    """One connection shard's processor during an invocation, with the alerts of the records it applied."""

    processor: BinanceProcessor
    emitted: Emitted
    alerts: list[PriceAlert] = field(default_factory=list)

    def apply(self, record: KinesisRecord) -> Emitted:
        self.emitted.clear()  # the same list the processor's emit appends to
        for frame in decode_record(record.data):
            if frame.exchange == binance.EXCHANGE:
                self.processor.process(frame)
        emitted = list(self.emitted)
        self.emitted.clear()
        return emitted

    def export(self, history: int) -> dict[str, Any]:
        return dict(self.processor.export_state())


class MetricsFunction(KinesisConsumer):
    """The consumer of the ``binance:*`` partition keys; one per Lambda container."""

    name = "binance"

    def __init__(
        self,
        open_sinks: Callable[[], Sequence[Sink]],
        checkpoints: CheckpointStore,
        channels: Sequence[Channel],
    ) -> None:
        super().__init__(checkpoints, open_sinks)
        self.channels = list(channels)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MetricsFunction:
        from marketpipe.binance.service import build_channels

        lake_uri, secret_arn = env[envnames.LAKE_URI], env.get(envnames.DB_SECRET_ARN)

        def open_sinks() -> list[Sink]:
            from marketpipe.sinks.lake_sink import LakeSink

            sinks: list[Sink] = [LakeSink(lake_uri)]
            if secret_arn:
                from marketpipe.sinks.sql_sink import SqlSink

                sinks.append(SqlSink(database_url(secret_arn, env.get(envnames.DB_NAME))))
            return sinks

        return cls(
            open_sinks, CheckpointStore(env[envnames.CHECKPOINT_TABLE]), build_channels((), env, sms=False)
        )

    def accepts(self, key: str) -> bool:
        return key.startswith(KEY_PREFIX)

    def restore(self, checkpoint: Checkpoint) -> BinanceRun:
        emitted: Emitted = []
        alerts: list[PriceAlert] = []
        processor = BinanceProcessor(
            lambda table, rows: emitted.append((table, list(rows))), on_alert=alerts.append
        )
        if checkpoint.state is not None:
            processor.restore_state(checkpoint.state)
        return BinanceRun(processor, emitted, alerts)

    def committed(self, key: str, run: KeyRun, result: BatchResult) -> None:
        """Send the alerts of the records just committed (a rebuilt run holds only theirs)."""
        assert isinstance(run, BinanceRun)
        if not run.alerts:
            return
        dispatcher = AlertDispatcher(self.channels)
        for alert in run.alerts:
            message = alert.message(binance.EXCHANGE)
            log.info("%s: %s", key, message.text)
            dispatcher.dispatch(message)
        result.count("alerts", len(run.alerts))
        dispatcher.close()  # waits for delivery; log and SNS channels hold nothing to close


WARM: Warm[MetricsFunction] = Warm(
    (envnames.LAKE_URI, envnames.DB_SECRET_ARN, envnames.DB_NAME, envnames.CHECKPOINT_TABLE,
     envnames.ALERT_TOPIC_ARN),
    MetricsFunction.from_env,
)  # fmt: skip
"""Sinks (SQL pool), DynamoDB and SNS clients live across invocations; the processor state never does."""


def handle(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Kinesis batch -> the partial-batch response (``batchItemFailures``) the event source expects."""
    return WARM.get(env).handle(event)
