"""SNS alert channel: market alerts (Bitso spreads, Binance price levels) published to a topic.

It implements :class:`marketpipe.alerts.channels.Channel`. The message body is the alert's JSON plus its
stable ``key``; message attributes named by the capability (``event`` and the book or symbol) let
subscribers filter. ``boto3`` is imported only when no client is given, so nothing else pays for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from marketpipe.alerts.message import AlertMessage


class SnsChannel:
    """One capability's alerts and notices on an SNS topic, with its own subjects and attributes."""

    def __init__(
        self,
        topic_arn: str,
        *,
        subject_alert: str,
        subject_notice: str,
        attributes: Sequence[str],
        client: Any = None,
    ) -> None:
        self.topic_arn = topic_arn
        self.subject_alert, self.subject_notice = subject_alert, subject_notice
        self.attributes = tuple(attributes)
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
