"""``marketpipe run --transport kinesis``: the collector's frames go to Kinesis and the S3 raw archive.

It takes the place of the local raw capture writer (same ``write``/``flush``/``close``): every frame,
in and out, is written as a raw-capture line to the S3 archive and to the Kinesis partition the
service names for it (Bitfinex: the slot of its connection). The partition is resolved on the event
loop when the frame arrives, then the line is queued for the publisher thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from marketpipe import envnames
from marketpipe.aws.kinesis_publisher import KinesisPublisher
from marketpipe.aws.metrics import CollectorMetrics
from marketpipe.aws.raw_archive import S3RawArchive
from marketpipe.aws.records import stream_key
from marketpipe.config import RunConfig
from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame
from marketpipe.runtime import Partitioned

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 45.0
"""ECS gives the task 60 s after SIGTERM (stop_timeout): leave time for the rest of the shutdown."""


class KinesisTransport:
    """Raw archive + Kinesis publisher + collector metrics behind the raw-capture writer's interface."""

    def __init__(
        self,
        publisher: KinesisPublisher,
        archive: S3RawArchive,
        metrics: CollectorMetrics | None,
    ) -> None:
        self.publisher = publisher
        self.archive = archive
        self.metrics = metrics
        self._services: dict[str, Partitioned] = {}
        self.unrouted = 0

    @classmethod
    def from_env(cls, config: RunConfig, env: Mapping[str, str] | None = None) -> KinesisTransport:
        env = os.environ if env is None else env
        stream, raw_uri = env.get(envnames.KINESIS_STREAM), env.get(envnames.RAW_URI)
        if not stream or not raw_uri:
            raise ConfigError(
                f"--transport kinesis needs {envnames.KINESIS_STREAM} and {envnames.RAW_URI} (s3://bucket/raw)"
            )
        import boto3
        from botocore.config import Config

        retries = Config(retries={"mode": "standard", "max_attempts": 3})
        archive = S3RawArchive(boto3.client("s3", config=retries), raw_uri)
        publisher = KinesisPublisher(boto3.client("kinesis", config=retries), stream)
        metrics = CollectorMetrics(boto3.client("cloudwatch", config=retries), config.exchanges)
        log.info("publishing to Kinesis stream %s; raw archive %s/…/%s-*", stream, raw_uri, archive.run_id)
        return cls(publisher, archive, metrics)

    def attach(self, services: Sequence[Any]) -> None:
        """Route each started service's frames by its own partitions (``runtime.Partitioned``)."""
        for service in services:
            if isinstance(service, Partitioned):
                self._services[service.name] = service

    def keys_of(self, frame: RawFrame) -> list[str]:
        service = self._services.get(frame.exchange)
        if service is None:  # a capability without partitions of its own: one partition for all
            return [stream_key(frame.exchange, "_")]
        partitions = service.partitions(frame)
        if not partitions:  # a connection the collector no longer knows: every partition keeps the frame
            self.unrouted += 1
            partitions = service.all_partitions()
        return [stream_key(frame.exchange, partition) for partition in partitions]

    def write(self, frame: RawFrame) -> None:
        line = frame.to_line()
        self.archive.write_line(frame.exchange, frame.received_ts, line)
        keys = self.keys_of(frame)
        for key in keys:
            self.publisher.publish(key, line)
        if self.metrics is not None and frame.direction == "in":
            self.metrics.frame_in(frame.exchange, [key.split(":", 1)[1] for key in keys])

    def flush(self) -> None:
        """Start the minute's raw archive upload when due (Kinesis batches flush on their own)."""
        self.archive.flush()

    def close(self) -> None:
        """Send every frame received, upload the archive, publish the last metrics."""
        sent = self.publisher.close(timeout=CLOSE_TIMEOUT)
        archived = self.archive.close(timeout=CLOSE_TIMEOUT / 3)
        if self.metrics is not None:
            if not (sent and archived):
                self.metrics.count("Errors")
            self.metrics.close()
        stats = self.publisher.stats
        log.info(
            "Kinesis: %d frames in %d records (%d calls, %d throttled entries); raw archive: %d objects",
            stats.frames_sent,
            stats.records_sent,
            stats.calls,
            stats.throttled_entries,
            self.archive.objects_uploaded,
        )
