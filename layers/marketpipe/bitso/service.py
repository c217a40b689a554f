"""Bitso spread monitor as a ``marketpipe run`` service: simulator (optional), collector, sampler, alerts.

Settings: flags (``add_run_arguments``) over environment variables over defaults::

    --bitso-books LIST            MARKETPIPE_BITSO_BOOKS          btc_mxn,usd_mxn
    --spread-thresholds LIST      MARKETPIPE_SPREAD_THRESHOLDS    1.0,0.5,0.1   (percent)
    --webhook URL (repeatable)    MARKETPIPE_WEBHOOK_URLS         (comma list)
    --bitso-window-seconds N      MARKETPIPE_BITSO_WINDOW_SECONDS 600
    --bitso-rest-per-minute N     MARKETPIPE_BITSO_REST_PER_MINUTE 50
    --bitso-silence-limit S       MARKETPIPE_BITSO_SILENCE_LIMIT  5 (seconds without a frame before REST)
    --bitso-stale-after S         MARKETPIPE_BITSO_STALE_AFTER    30 (seconds before reconnecting)
    --bitso-lockout-seconds S     MARKETPIPE_BITSO_LOCKOUT_SECONDS 60
    endpoints: MARKETPIPE_BITSO_WS_URL, MARKETPIPE_BITSO_API_URL; SMS: the Plivo variables (optional)
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
from marketpipe.config import option_reader, positive, split_list
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


def settings_from(options: Mapping[str, Any], env: Mapping[str, str]) -> MonitorSettings:
    """Flags (``opt_*``) over environment over defaults; ConfigError for anything unusable."""
    pick = option_reader(options, env)
    settings = MonitorSettings()
    books = pick("opt_bitso_books", envnames.BITSO_BOOKS)
    if books is not None:
        settings.books = tuple(bitso.validate_book(b) for b in split_list(books))
        if not settings.books:
            raise ConfigError("no Bitso books configured")
    thresholds = pick("opt_spread_thresholds", envnames.SPREAD_THRESHOLDS)
    if thresholds is not None:
        settings.thresholds = parse_thresholds(thresholds)
    settings.webhooks = webhook_urls(options, env)
    window = pick("opt_bitso_window_seconds", envnames.BITSO_WINDOW_SECONDS)
    if window is not None:
        settings.window_seconds = validate_window(positive(window, "--bitso-window-seconds", int))
    silence = pick("opt_bitso_silence_limit", envnames.BITSO_SILENCE_LIMIT)
    if silence is not None:
        settings.silence_limit = positive(silence, "--bitso-silence-limit")
    c = settings.collector
    c.ws_url = env.get(envnames.BITSO_WS_URL) or c.ws_url
    c.api_url = env.get(envnames.BITSO_API_URL) or c.api_url
    per_minute = pick("opt_bitso_rest_per_minute", envnames.BITSO_REST_PER_MINUTE)
    if per_minute is not None:
        c.rest_per_minute = positive(per_minute, "--bitso-rest-per-minute", int)
        if c.rest_per_minute > 60:
            raise ConfigError("--bitso-rest-per-minute: Bitso allows at most 60 public requests per minute")
    stale = pick("opt_bitso_stale_after", envnames.BITSO_STALE_AFTER)
    if stale is not None:
        c.stale_after = positive(stale, "--bitso-stale-after")
    lockout = pick("opt_bitso_lockout_seconds", envnames.BITSO_LOCKOUT_SECONDS)
    if lockout is not None:
        c.lockout_seconds = positive(lockout, "--bitso-lockout-seconds")
    return settings


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Bitso spread monitor (--exchanges …,bitso)")
    group.add_argument("--bitso-books", dest="opt_bitso_books", metavar="LIST",
                       help="comma list (default btc_mxn,usd_mxn)")  # fmt: skip
    group.add_argument(
        "--spread-thresholds",
        dest="opt_spread_thresholds",
        metavar="LIST",
        help="alert thresholds in %% (default 1.0,0.5,0.1)",
    )
    group.add_argument("--webhook", dest="opt_webhooks", action="append", metavar="URL",
                       help="POST each alert as JSON to URL (repeatable)")  # fmt: skip
    group.add_argument("--bitso-window-seconds", dest="opt_bitso_window_seconds", type=int, metavar="SECONDS",
                       help="lake file window (default 600)")  # fmt: skip
    group.add_argument("--bitso-rest-per-minute", dest="opt_bitso_rest_per_minute", type=int, metavar="N",
                       help="REST budget (default 50; Bitso allows 60)")  # fmt: skip
    group.add_argument("--bitso-silence-limit", dest="opt_bitso_silence_limit", type=float, metavar="SECONDS",
                       help="seconds of websocket silence before REST takes over (default 5)")  # fmt: skip
    group.add_argument("--bitso-stale-after", dest="opt_bitso_stale_after", type=float, metavar="SECONDS",
                       help="seconds of silence before reconnecting (default 30)")  # fmt: skip
    group.add_argument("--bitso-lockout-seconds", dest="opt_bitso_lockout_seconds", type=float,
                       metavar="SECONDS", help="pause after an HTTP 420 (default 60)")  # fmt: skip


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
        self.settings = settings_from(ctx.config.options, env)
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
