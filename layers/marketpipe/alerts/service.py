"""What the alerting services (Bitso spreads, Binance price levels) share: settings helpers, the alert
channels, the relay from processor events to the dispatcher, and the live service's frame path and close.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from marketpipe import envnames
from marketpipe.alerts.channels import (
    AlertDispatcher,
    Channel,
    LogChannel,
    WebhookChannel,
    sms_channel_from_env,
)
from marketpipe.alerts.message import AlertMessage
from marketpipe.alerts.notifiers import mask_number
from marketpipe.alerts.webhook import Webhook, validate_url
from marketpipe.config import ConfigFile, Section, Setting
from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame
from marketpipe.runtime import RunContext

_NUMBER = re.compile(r"^\+?[1-9]\d{6,14}$")
_SENDER = re.compile(r"^(\+?[1-9]\d{6,14}|[A-Za-z0-9 ]{1,11})$")
"""As ``marketpipe.alerts.sms`` checks them (that module, and the Plivo SDK, load only when SMS is on)."""


def _destinations(value: str) -> str:
    if value and not all(_NUMBER.match(n.strip()) for n in value.split("<")):
        raise ConfigError("expected E.164 numbers such as +15551234567 (several joined with '<')")
    return value


def _sender(value: str) -> str:
    if value and not _SENDER.match(value):
        raise ConfigError("expected a phone number (E.164) or an alphanumeric sender id")
    return value


def _masked(numbers: str) -> str:
    return "<".join(mask_number(n.strip()) for n in numbers.split("<"))


ALERTS = Section(
    "alerts",
    "Alert channels (Bitso spreads, Binance price levels; SMS also for the liveness check)",
    (
        Setting(
            "webhooks",
            [],
            "POST each alert as JSON to URL (repeatable)",
            kind="strs",
            flag="--webhook",
            env=envnames.WEBHOOK_URLS,
            dest="opt_webhooks",
            metavar="URL",
            repeatable=True,
            check=lambda urls: tuple(validate_url(u) for u in urls),
        ),
        Setting(
            "sms_to",
            "",
            "SMS destination number(s); the Plivo credentials stay in the environment",
            env=envnames.ALERT_SMS_TO,
            check=_destinations,
            mask=_masked,
        ),
        Setting(
            "sms_from",
            "",
            "SMS source number (Plivo)",
            env=envnames.ALERT_SMS_FROM,
            check=_sender,
            mask=_masked,
        ),
    ),
)
"""Where alerts go. Secrets (Plivo credentials) are never file settings: they stay in the environment
(Secrets Manager on AWS)."""


def webhook_urls(
    options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None = None
) -> tuple[str, ...]:
    """``--webhook`` URLs, else ``MARKETPIPE_WEBHOOK_URLS``, else the file's ``alerts.webhooks``."""
    urls: tuple[str, ...] = ALERTS.values(options, env, file)["webhooks"]
    return urls


def alerts_env(options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None) -> dict[str, str]:
    """The environment with the SMS numbers filled in from the file where the environment has none."""
    values = ALERTS.values(options, env, file)
    out = dict(env)
    for key, name in (("sms_to", envnames.ALERT_SMS_TO), ("sms_from", envnames.ALERT_SMS_FROM)):
        if values[key]:
            out[name] = values[key]
    return out


def alert_channels(webhooks: Sequence[str], env: Mapping[str, str], sms: bool = True) -> list[Channel]:
    """Log always; webhooks as configured; SMS when Plivo credentials are in the environment."""
    channels: list[Channel] = [LogChannel()]
    channels += [WebhookChannel(Webhook(url)) for url in webhooks]
    if sms:
        channel = sms_channel_from_env(env)
        if channel is not None:
            channels.append(channel)
    return channels


class AlertRelay:
    """Processor alert events -> messages -> channels (live only; a replay re-sends nothing)."""

    def __init__(self, dispatcher: AlertDispatcher, to_message: Callable[..., AlertMessage]) -> None:
        self.dispatcher = dispatcher
        self.to_message = to_message
        self.sent: list[str] = []

    def __call__(self, *event: Any) -> None:
        message = self.to_message(*event)
        self.sent.append(message.text)
        self.dispatcher.dispatch(message)


class _Processor(Protocol):
    def process(self, frame: RawFrame) -> object: ...

    def finish(self) -> None: ...

    @property
    def stats(self) -> Any: ...


P = TypeVar("P", bound=_Processor)


class AlertingService(Generic[P]):
    """The live part of an alerting exchange service: every frame to the capture, then the processor;
    alerts through one dispatcher; on close the processor finishes, the channels drain and the
    simulator (``--simulate``) stops. Subclasses create ``processor`` with ``self.relay`` as its alert
    callback and implement ``start``, ``run`` and ``summary``."""

    name: str
    processor: P

    def __init__(
        self,
        ctx: RunContext,
        env: Mapping[str, str],
        channels: list[Channel],
        to_message: Callable[..., AlertMessage],
    ) -> None:
        self.ctx = ctx
        self.env = env
        self.simulator: Any = None
        self.dispatcher = AlertDispatcher(channels)
        self.relay = AlertRelay(self.dispatcher, to_message)

    def _on_frame(self, frame: RawFrame) -> None:
        self.ctx.capture(frame)
        self.processor.process(frame)

    async def close(self) -> None:
        self.processor.finish()
        await asyncio.to_thread(self.dispatcher.close)
        if self.simulator is not None:
            await self.simulator.stop()

    def stats(self) -> Any:
        return self.processor.stats
