"""SNS alert channels: the Bitso spread and Binance price alerts published to a topic.

They implement :class:`marketpipe.alerts.channels.Channel`; this module is where ``boto3`` comes in,
so the alert code itself needs no AWS SDK. The message body is the alert's JSON plus its stable
``key``; two message attributes (``event`` and the book or symbol) let subscribers filter.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from marketpipe.alerts.channels import AlertMessage


class SnsChannel:
    """Bitso spread alerts and notices on an SNS topic."""

    subject_alert: ClassVar[str] = "Bitso spread alert"
    subject_notice: ClassVar[str] = "Bitso spread notice"
    attributes: ClassVar[tuple[str, ...]] = ("event", "book")

    def __init__(self, topic_arn: str, client: Any = None) -> None:
        self.topic_arn = topic_arn
        if client is None:
            import boto3

            client = boto3.client("sns")
        self._client = client

    def deliver(self, message: AlertMessage) -> None:
        subject = self.subject_alert if message.is_alert else self.subject_notice
        self._client.publish(
            TopicArn=self.topic_arn,
            Subject=subject[:100],
            Message=orjson.dumps({**message.body, "key": message.key}).decode(),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": str(message.body[name])}
                for name in self.attributes
            },
        )

    def describe(self) -> str:
        return f"SNS {self.topic_arn.rsplit(':', 1)[-1]}"

    def close(self) -> None:
        pass


class PriceSnsChannel(SnsChannel):
    """Binance price-level alerts on an SNS topic."""

    subject_alert = subject_notice = "Binance price alert"
    attributes = ("event", "symbol")
