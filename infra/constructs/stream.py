"""The Kinesis data stream between the collector and the book builder.

Provisioned capacity (not on-demand): one shard is ~$11/month and carries 1 MB/s, while on-demand
bills per stream-hour at several times that. Encrypted with the AWS-managed ``aws/kinesis`` key so
neither producer nor consumer needs KMS permissions (and cdk-nag KDS3 is satisfied).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kinesis as kinesis

from constructs import Construct
from infra.config import MarketpipeConfig


class MarketStream(Construct):
    """Raw exchange frames, partitioned by ``<exchange>:<symbol>`` so each book stays in order."""

    def __init__(self, scope: Construct, construct_id: str, *, config: MarketpipeConfig) -> None:
        super().__init__(scope, construct_id)
        self.stream = kinesis.Stream(
            self,
            "Stream",
            shard_count=config.shard_count,
            stream_mode=kinesis.StreamMode.PROVISIONED,
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=Duration.hours(config.stream_retention_hours),
        )
