"""Bitso spread monitor as a ``marketpipe run`` service: simulator (optional), collector, sampler, alerts.

Settings: declared once in :data:`SETTINGS` (flag, environment, ``[bitso]`` file key, default).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketpipe import envnames
from marketpipe.alerts.channels import (
    AlertDispatcher,
    Channel,
    LogChannel,
)
from marketpipe.alerts.message import AlertMessage
from marketpipe.alerts.service import (
    AlertingService,
    AlertRelay,
    alert_channels,
    alerts_env,
    webhook_urls,
)
from marketpipe.alerts.sns import SnsChannel
from marketpipe.bitso import wire as bitso
from marketpipe.bitso.collector import BitsoCollector, BitsoSettings
from marketpipe.bitso.processor import (
    DEFAULT_WINDOW_SECONDS,
    SAMPLER_CONN,
    BitsoProcessor,
    Observation,
    SamplerConfig,
    validate_window,
)
from marketpipe.bitso.thresholds import DEFAULT_THRESHOLDS, Crossing, parse_thresholds
from marketpipe.config import ConfigFile, Section, Setting, positive_check
from marketpipe.errors import ConfigError
from marketpipe.records import Emit, RawFrame
from marketpipe.runtime import RunContext

log = logging.getLogger("marketpipe.bitso")


@dataclass
class MonitorSettings:
    """Everything the spread monitor can be told."""

    books: tuple[str, ...] = bitso.DEFAULT_BOOKS
    thresholds: tuple[Decimal, ...] = DEFAULT_THRESHOLDS
    webhooks: tuple[str, ...] = ()
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    silence_limit: float = 5.0
    collector: BitsoSettings = field(default_factory=BitsoSettings)
    sms: bool = True

    def sampler_config(self) -> SamplerConfig:
        return SamplerConfig(self.books, self.window_seconds, int(self.silence_limit * 1000), self.thresholds)


def _books(books: list[str]) -> tuple[str, ...]:
    if not books:
        raise ConfigError("no Bitso books configured")
    return tuple(bitso.validate_book(b) for b in books)


def _window(seconds: int) -> int:
    return validate_window(positive_check(int)(seconds))


def _rest_per_minute(value: int) -> int:
    positive_check(int)(value)
    if value > 60:
        raise ConfigError("Bitso allows at most 60 public requests per minute")
    return value


SETTINGS = Section(
    "bitso",
    "Bitso spread monitor",
    (
        Setting(
            "books",
            list(bitso.DEFAULT_BOOKS),
            "books, comma list",
            kind="strs",
            flag="--bitso-books",
            env=envnames.BITSO_BOOKS,
            dest="opt_bitso_books",
            check=_books,
        ),
        Setting(
            "thresholds",
            [str(t) for t in DEFAULT_THRESHOLDS],
            "alert thresholds in percent",
            kind="numbers",
            flag="--spread-thresholds",
            env=envnames.SPREAD_THRESHOLDS,
            dest="opt_spread_thresholds",
            check=parse_thresholds,
        ),
        Setting(
            "window_seconds",
            DEFAULT_WINDOW_SECONDS,
            "lake file window (minutes dividing an hour)",
            kind="int",
            flag="--bitso-window-seconds",
            env=envnames.BITSO_WINDOW_SECONDS,
            dest="opt_bitso_window_seconds",
            metavar="SECONDS",
            check=_window,
        ),
        Setting(
            "rest_per_minute",
            50,
            "REST budget (Bitso allows 60)",
            kind="int",
            flag="--bitso-rest-per-minute",
            env=envnames.BITSO_REST_PER_MINUTE,
            dest="opt_bitso_rest_per_minute",
            check=_rest_per_minute,
        ),
        Setting(
            "silence_limit",
            5.0,
            "seconds of websocket silence before REST takes over",
            kind="float",
            flag="--bitso-silence-limit",
            env=envnames.BITSO_SILENCE_LIMIT,
            dest="opt_bitso_silence_limit",
            check=positive_check(),
        ),
        Setting(
            "stale_after",
            30.0,
            "seconds of silence before reconnecting",
            kind="float",
            flag="--bitso-stale-after",
            env=envnames.BITSO_STALE_AFTER,
            dest="opt_bitso_stale_after",
            check=positive_check(),
        ),
        Setting(
            "lockout_seconds",
            60.0,
            "pause after an HTTP 420",
            kind="float",
            flag="--bitso-lockout-seconds",
            env=envnames.BITSO_LOCKOUT_SECONDS,
            dest="opt_bitso_lockout_seconds",
            check=positive_check(),
        ),
        Setting("ws_url", bitso.DEFAULT_WS_URL, "websocket endpoint", env=envnames.BITSO_WS_URL),
        Setting("api_url", bitso.DEFAULT_API_URL, "REST endpoint", env=envnames.BITSO_API_URL),
    ),
)
"""Settings: flag > environment > ``[bitso]`` of the config file > default (``marketpipe.config``); the
webhooks come from the shared ``[alerts]`` (``marketpipe.alerts.service.ALERTS``)."""


def settings_from(
    options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None = None
) -> MonitorSettings:
    """The declared :data:`SETTINGS` read and checked; ConfigError for anything unusable."""
    v = SETTINGS.values(options, env, file)
    collector = BitsoSettings(
        ws_url=v["ws_url"],
        api_url=v["api_url"],
        rest_per_minute=v["rest_per_minute"],
        stale_after=v["stale_after"],
        lockout_seconds=v["lockout_seconds"],
    )
    return MonitorSettings(
        books=v["books"],
        thresholds=v["thresholds"],
        webhooks=webhook_urls(options, env, file),
        window_seconds=v["window_seconds"],
        silence_limit=v["silence_limit"],
        collector=collector,
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    SETTINGS.add_arguments(parser, "Bitso spread monitor (--exchanges …,bitso)")


def spread_message(
    crossing: Crossing,
    *,
    exchange: str,
    orderbook_timestamp: str,
    bid: Any,
    ask: Any,
    source: str,
) -> AlertMessage:
    """One crossing -> ``ALERT``/``NOTICE`` text and JSON body (decimals as exact strings)."""
    verb = "rose above" if crossing.is_alert else "fell back below"
    label = "ALERT" if crossing.is_alert else "NOTICE"
    text = (
        f"{label} {exchange} {crossing.book} spread {crossing.spread} % {verb} {crossing.threshold} % "
        f"at {orderbook_timestamp} (bid {bid}, ask {ask}, {source})"
    )
    body = {
        "event": "spread_alert" if crossing.is_alert else "spread_notice",
        "exchange": exchange,
        "book": crossing.book,
        "threshold": str(crossing.threshold),
        "direction": crossing.direction,
        "spread": str(crossing.spread),
        "bid": str(bid),
        "ask": str(ask),
        "source": source,
        "orderbook_timestamp": orderbook_timestamp,
        "text": text,
    }
    raw = f"{exchange}|{crossing.book}|{crossing.threshold}|{crossing.direction}|{crossing.second}"
    return AlertMessage(text, body, hashlib.sha256(raw.encode()).hexdigest()[:32], crossing.is_alert)


def sns_channel(topic_arn: str, client: Any = None) -> SnsChannel:
    """Spread alerts and notices on an SNS topic, filterable by ``event`` and ``book``."""
    return SnsChannel(
        topic_arn,
        subject_alert="Bitso spread alert",
        subject_notice="Bitso spread notice",
        attributes=("event", "book"),
        client=client,
    )


def crossing_message(crossing: Crossing, obs: Observation) -> AlertMessage:
    return spread_message(
        crossing,
        exchange=bitso.EXCHANGE,
        orderbook_timestamp=obs.orderbook_timestamp,
        bid=obs.bid,
        ask=obs.ask,
        source=obs.source,
    )


def create_replayer(emit: Emit, options: Mapping[str, Any] | None = None) -> BitsoProcessor:
    """Replay: the live processor, configured by the capture's own ``config`` record; no alerts sent."""
    return BitsoProcessor(emit)


class BitsoService(AlertingService[BitsoProcessor]):
    name = bitso.EXCHANGE

    def __init__(self, ctx: RunContext, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.settings = settings_from(ctx.config.options, env, ctx.config.file)
        env = alerts_env(ctx.config.options, env, ctx.config.file)
        super().__init__(
            ctx, env, alert_channels(self.settings.webhooks, env, self.settings.sms), crossing_message
        )
        self.collector: BitsoCollector | None = None
        self.processor = BitsoProcessor(ctx.emit, self.settings.sampler_config(), on_crossing=self.relay)

    async def start(self) -> None:
        settings = self.settings
        if self.ctx.config.simulate:
            from marketpipe.bitso.simulator import DEFAULT_SPECS, BitsoSimulator

            # The simulator lists its own books, like the exchange: an unknown book is refused.
            self.simulator = BitsoSimulator(DEFAULT_SPECS)
            await self.simulator.start()
            settings.collector.ws_url, settings.collector.api_url = (
                self.simulator.ws_url,
                self.simulator.api_url,
            )
            log.info("simulated Bitso at %s (REST %s)", self.simulator.ws_url, self.simulator.api_url)
        self.collector = BitsoCollector(
            settings.books, self.processor, self._on_frame, settings.collector, clock=self.ctx.clock
        )
        # The settings go into the capture first, so a replay samples exactly like this run.
        self._on_frame(RawFrame(bitso.EXCHANGE, SAMPLER_CONN, "in", self.ctx.clock(),
                                settings.sampler_config().frame()))  # fmt: skip
        log.info(
            "monitoring Bitso %s spreads: thresholds %s %%, alerts to %s, %d s lake windows",
            ", ".join(settings.books),
            ", ".join(str(t) for t in settings.thresholds),
            self.dispatcher.describe(),
            settings.window_seconds,
        )

    async def run(self, stop: asyncio.Event) -> None:
        assert self.collector is not None, "start() first"
        await self.collector.run(stop)

    def summary(self) -> str:
        text = self.processor.summary()
        if self.collector is not None:
            text += (
                f"; REST requests {self.collector.rest_requests} "
                f"(HTTP 420: {self.collector.rest_rate_limited}), "
                f"websocket connections {self.collector.connections_opened}"
            )
        return text


def create_service(ctx: RunContext) -> BitsoService:
    return BitsoService(ctx)


# ------------------------------------------------------------------------------------------ AWS
# (the Lambda adapter around this is marketpipe.aws.bitso_spreads)
async def sample_span(
    settings: MonitorSettings,
    first_second: int,
    end_second: int,
    *,
    state: dict[str, list[str]] | None = None,
    channels: list[Channel] | None = None,
) -> tuple[list[Observation], dict[str, list[str]]]:
    """Hold the websocket (REST as fallback) and sample seconds ``[first_second, end_second)``.

    What the per-minute Lambda does: the same collector, sampler and alert logic as ``marketpipe run``;
    the threshold state comes in and goes out so crossings stay edge-triggered across invocations.
    """
    from marketpipe.timeutil import MonotonicClock, now_us

    dispatcher = AlertDispatcher(channels if channels is not None else [LogChannel()])
    processor = BitsoProcessor(
        lambda _t, _r: None,
        settings.sampler_config(),
        on_crossing=AlertRelay(dispatcher, crossing_message),
        tracker_state=state,
    )
    processor.keep_observations = True
    collector = BitsoCollector(
        settings.books, processor, processor.process, settings.collector, clock=MonotonicClock()
    )
    collector.next_second = max(first_second, now_us() // 1_000_000)
    stop = asyncio.Event()
    delay = end_second + settings.collector.tick_grace - now_us() / 1_000_000
    asyncio.get_running_loop().call_later(max(delay, 0.0), stop.set)
    try:
        await collector.run(stop)
    finally:
        await asyncio.to_thread(dispatcher.close)
    observations = [o for o in processor.observations if first_second <= o.second < end_second]
    return observations, processor.tracker.export()
