"""Where market alerts go (Bitso spreads, Binance price levels): the log, webhooks, SMS (Plivo,
optional) and, on AWS, an SNS topic (``marketpipe.alerts.sns``).

An :class:`AlertMessage` is one text and one JSON body (each capability builds its own); the
:class:`AlertDispatcher` hands each message to every channel from a worker thread, so a slow or failing
receiver never stalls the sampler, and one channel's failure never keeps the message from the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from marketpipe.alerts.message import AlertMessage

log = logging.getLogger("marketpipe.alerts")


class Channel(Protocol):
    def deliver(self, message: AlertMessage) -> None:
        """Deliver or raise."""

    def describe(self) -> str: ...

    def close(self) -> None: ...


class LogChannel:
    """Always on: one log line per alert (WARNING) or notice (INFO)."""

    def deliver(self, message: AlertMessage) -> None:
        log.log(logging.WARNING if message.is_alert else logging.INFO, "%s", message.text)

    def describe(self) -> str:
        return "log"

    def close(self) -> None:
        pass


class WebhookChannel:
    def __init__(self, webhook: Any) -> None:
        self.webhook = webhook

    def deliver(self, message: AlertMessage) -> None:
        self.webhook.post(message.body, message.key)

    def describe(self) -> str:
        return str(self.webhook.describe())

    def close(self) -> None:
        self.webhook.close()


class SmsChannel:
    """Plivo SMS through ``marketpipe.alerts.sms`` (it never retries a send that may have gone out)."""

    def __init__(self, sms: Any) -> None:
        self.sms = sms

    def deliver(self, message: AlertMessage) -> None:
        self.sms.send(message.text)

    def describe(self) -> str:
        return f"SMS ({self.sms.describe()})"

    def close(self) -> None:
        pass


def sms_channel_from_env(env: Mapping[str, str] | None = None) -> SmsChannel | None:
    """The Plivo channel when its credentials are set; None (SMS off) when they are not.

    Imported lazily: the SMS adapter and its SDK are optional for the spread monitor.
    """
    env = os.environ if env is None else env
    try:
        from marketpipe.alerts import sms
    except ImportError as exc:
        log.info("SMS alerts unavailable (%s)", exc)
        return None
    notifier = sms.sms_from_env(env)
    return SmsChannel(notifier) if notifier is not None else None


class AlertDispatcher:
    """Fan a message out to every channel off the caller's thread; ``close`` waits for delivery."""

    def __init__(self, channels: Sequence[Channel], workers: int = 2) -> None:
        self.channels = list(channels)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="alerts")
        self._pending: list[Future[None]] = []
        self.delivered = 0
        self.failed = 0

    def describe(self) -> str:
        return ", ".join(c.describe() for c in self.channels)

    def dispatch(self, message: AlertMessage) -> None:
        self._pending = [f for f in self._pending if not f.done()]
        for channel in self.channels:
            self._pending.append(self._pool.submit(self._deliver, channel, message))

    def _deliver(self, channel: Channel, message: AlertMessage) -> None:
        try:
            channel.deliver(message)
        except Exception as exc:  # one channel failing must not stop the others
            self.failed += 1
            log.error("alert not delivered to %s: %s: %s", channel.describe(), type(exc).__name__, exc)
        else:
            self.delivered += 1

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for channel in self.channels:
            channel.close()
