"""Binance as a ``marketpipe run`` service, and the standalone ``marketpipe watch`` command.

Settings: declared once in :data:`SETTINGS` (flag, environment, ``[binance]`` file key, default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from marketpipe import envnames
from marketpipe.alerts.channels import AlertDispatcher, Channel
from marketpipe.alerts.message import AlertMessage
from marketpipe.alerts.service import (
    AlertingService,
    AlertRelay,
    alert_channels,
    alerts_env,
    webhook_urls,
)
from marketpipe.alerts.sns import SnsChannel
from marketpipe.binance import wire as binance
from marketpipe.binance.collector import BinanceCollector, BinanceSettings
from marketpipe.binance.price_levels import PriceAlert, Watch, make_watch, parse_watch_list
from marketpipe.binance.processor import (
    CONFIG_CONN,
    AverageConfig,
    BinanceProcessor,
    config_frame,
)
from marketpipe.config import ConfigFile, Section, Setting, positive_check
from marketpipe.errors import ConfigError
from marketpipe.records import Emit, RawFrame
from marketpipe.runtime import RunContext
from marketpipe.timeutil import MonotonicClock, us_to_iso

log = logging.getLogger("marketpipe.binance")


@dataclass
class BinanceRunSettings:
    symbols: tuple[str, ...] = binance.DEFAULT_SYMBOLS
    watches: tuple[Watch, ...] = ()
    webhooks: tuple[str, ...] = ()
    averages: AverageConfig = field(default_factory=AverageConfig)
    collector: BinanceSettings = field(default_factory=BinanceSettings)
    sms: bool = True


def _symbols(symbols: list[str]) -> tuple[str, ...]:
    checked = tuple(dict.fromkeys(binance.validate_symbol(x) for x in symbols))
    if not checked:
        raise ConfigError("no Binance symbols configured")
    return checked


def _streams_per_connection(value: int) -> int:
    positive_check(int)(value)
    binance.shard_streams([], value)  # validates the 1,024 limit
    return value


def _max_connection_age(value: float) -> float:
    positive_check()(value)
    if value >= 24 * 3600:
        raise ConfigError("Binance cuts connections at 24 h; use less")
    return value


SETTINGS = Section(
    "binance",
    "Binance mini-tickers, depth20 and price-level alerts",
    (
        Setting(
            "symbols",
            list(binance.DEFAULT_SYMBOLS),
            "depth20 symbols, comma list",
            kind="strs",
            flag="--binance-symbols",
            env=envnames.BINANCE_SYMBOLS,
            dest="opt_binance_symbols",
            check=_symbols,
        ),
        Setting(
            "watch",
            [],
            "price-level alerts, e.g. BTCUSDT>43680 or ETHUSDT<2000 (repeatable)",
            kind="strs",
            flag="--binance-watch",
            env=envnames.BINANCE_WATCH,
            dest="opt_binance_watch",
            metavar="SPEC",
            repeatable=True,
            check=parse_watch_list,
        ),
        Setting(
            "streams_per_connection",
            200,
            "streams per websocket (Binance allows 1024)",
            kind="int",
            flag="--binance-streams-per-connection",
            env=envnames.BINANCE_STREAMS_PER_CONNECTION,
            dest="opt_binance_streams_per_connection",
            check=_streams_per_connection,
        ),
        Setting(
            "max_connection_age",
            23 * 3600.0,
            "seconds before a connection is replaced",
            kind="float",
            flag="--binance-max-connection-age",
            env=envnames.BINANCE_MAX_CONNECTION_AGE,
            dest="opt_binance_max_connection_age",
            check=_max_connection_age,
        ),
        Setting(
            "max_hold_ms",
            AverageConfig().max_hold_ms,
            "longest time one book price counts in the averages",
            kind="int",
            flag="--binance-max-hold-ms",
            env=envnames.BINANCE_MAX_HOLD_MS,
            dest="opt_binance_max_hold_ms",
            metavar="MS",
            check=positive_check(int),
        ),
        Setting("ws_url", binance.DEFAULT_WS_URL, "websocket endpoint", env=envnames.BINANCE_WS_URL),
    ),
)
"""Settings: flag > environment > ``[binance]`` of the config file > default (``marketpipe.config``); the
webhooks come from the shared ``[alerts]``."""


def settings_from(
    options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None = None
) -> BinanceRunSettings:
    """The declared :data:`SETTINGS` read and checked; ConfigError for anything unusable."""
    v = SETTINGS.values(options, env, file)
    s = BinanceRunSettings(
        symbols=v["symbols"], watches=v["watch"], webhooks=webhook_urls(options, env, file)
    )
    s.averages = AverageConfig(s.averages.windows_s, v["max_hold_ms"])
    s.collector.streams_per_connection = v["streams_per_connection"]
    s.collector.max_connection_age = v["max_connection_age"]
    s.collector.ws_url = v["ws_url"]
    return s


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    SETTINGS.add_arguments(parser, "Binance (--exchanges …,binance)")


def build_channels(webhooks: Sequence[str], env: Mapping[str, str], sms: bool = True) -> list[Channel]:
    """Log always; webhooks as configured; SMS with Plivo credentials; SNS with a topic (AWS)."""
    channels = alert_channels(webhooks, env, sms)
    if env.get(envnames.ALERT_TOPIC_ARN):
        channels.append(sns_channel(env[envnames.ALERT_TOPIC_ARN]))
    return channels


def sns_channel(topic_arn: str, client: Any = None) -> SnsChannel:
    """Binance price-level alerts on an SNS topic, filterable by ``event`` and ``symbol``."""
    subject = "Binance price alert"
    return SnsChannel(
        topic_arn,
        subject_alert=subject,
        subject_notice=subject,
        attributes=("event", "symbol"),
        client=client,
    )


def alert_message(alert: PriceAlert) -> AlertMessage:
    return alert.message(binance.EXCHANGE)


def create_replayer(emit: Emit, options: Mapping[str, Any] | None = None) -> BinanceProcessor:
    """Replay: the live processor, configured by the capture's own ``config`` record; no alerts sent."""
    return BinanceProcessor(emit)


class BinanceService(AlertingService[BinanceProcessor]):
    name = binance.EXCHANGE

    def __init__(self, ctx: RunContext, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.settings = settings_from(ctx.config.options, env, ctx.config.file)
        env = alerts_env(ctx.config.options, env, ctx.config.file)
        super().__init__(
            ctx, env, build_channels(self.settings.webhooks, env, self.settings.sms), alert_message
        )
        self.collector: BinanceCollector | None = None
        self.processor = BinanceProcessor(
            ctx.emit, self.settings.watches, self.settings.averages, on_alert=self.relay
        )

    async def start(self) -> None:
        s = self.settings
        if self.ctx.config.simulate:
            from marketpipe.binance.simulator import DEFAULT_PRICES, BinanceSimulator

            self.simulator = BinanceSimulator(dict.fromkeys([*DEFAULT_PRICES, *s.symbols]))
            await self.simulator.start()
            s.collector.ws_url = self.simulator.ws_url
            log.info("simulated Binance at %s", self.simulator.ws_url)
        self.collector = BinanceCollector(
            binance.streams_for(s.symbols), self._on_frame, s.collector, clock=self.ctx.clock
        )
        log.info("streaming Binance mini-tickers and depth20 of %s over %d connection(s); watching %s; "
                 "alerts to %s", ", ".join(s.symbols), len(self.collector.shards),
                 ", ".join(w.spec() for w in s.watches) or "nothing", self.dispatcher.describe())  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        assert self.collector is not None, "start() first"
        # The settings go into the capture before any frame, so a replay (or the AWS Lambda) alerts and
        # averages exactly like this run. Written here, not in start(): the Kinesis transport learns the
        # shard partitions from the started collector, and this record goes to every one of them.
        s = self.settings
        self._on_frame(RawFrame(binance.EXCHANGE, CONFIG_CONN, "in", self.ctx.clock(),
                                config_frame(s.watches, s.averages)))  # fmt: skip
        await self.collector.run(stop)

    def partitions(self, frame: RawFrame) -> list[str]:
        """Kinesis partitions: the frame's connection's shard (the settings record: every shard)."""
        return self.collector.partitions_of(frame.conn) if self.collector is not None else []

    def all_partitions(self) -> list[str]:
        """A frame of a connection no shard owns gets a partition of its own: no shard's processor
        sees a stranger's frames."""
        return ["_"]

    def summary(self) -> str:
        text = self.processor.summary()
        if self.collector is not None:
            c = self.collector
            text += (f"; connections {c.connections_opened} (age rotations {c.rotations}, serverShutdown "
                     f"{c.shutdown_notices}, reconnects {c.reconnects})")  # fmt: skip
        return text


def create_service(ctx: RunContext) -> BinanceService:
    return BinanceService(ctx)


# ------------------------------------------------------------------------------------------ watch
async def watch(
    watches: Sequence[Watch],
    *,
    ws_url: str,
    stop: asyncio.Event,
    channels: Sequence[Channel],
    out: TextIO | None = None,
    settings: BinanceSettings | None = None,
) -> list[str]:
    """Stream the watched symbols' mini-tickers, print each price, alert on crossings; returns alert texts."""
    dispatcher = AlertDispatcher(channels)
    relay = AlertRelay(dispatcher, alert_message)

    def show(ticker: binance.MiniTicker) -> None:
        line = f"{us_to_iso(ticker.event_ms * 1000, millis=True)} {ticker.symbol} {ticker.close}"
        print(line, file=out or sys.stdout, flush=True)

    processor = BinanceProcessor(lambda _t, _r: None, watches, on_alert=relay, on_ticker=show)
    symbols = dict.fromkeys(w.symbol for w in watches)
    collector_settings = settings or BinanceSettings()
    collector_settings.ws_url = ws_url
    collector = BinanceCollector([binance.mini_ticker_stream(s) for s in symbols], processor.handle,
                                 collector_settings, clock=MonotonicClock())  # fmt: skip
    try:
        await collector.run(stop)
    finally:
        await asyncio.to_thread(dispatcher.close)
    return relay.sent


def _cmd_watch(args: argparse.Namespace) -> int:
    env = os.environ
    watches: list[Watch] = []
    for level in args.above or []:
        watches.append(make_watch(args.symbol, level, "above"))
    for level in args.below or []:
        watches.append(make_watch(args.symbol, level, "below"))
    watches += parse_watch_list(args.also or [])
    if not watches:
        raise ConfigError("nothing to watch: give --above LEVEL and/or --below LEVEL")
    channels = build_channels(webhook_urls({"opt_webhooks": args.webhooks}, env), env)

    async def main() -> None:
        stop = asyncio.Event()
        simulator: Any = None
        ws_url = env.get(envnames.BINANCE_WS_URL) or binance.DEFAULT_WS_URL
        if args.simulate:
            from marketpipe.binance.simulator import DEFAULT_PRICES, BinanceSimulator

            simulator = BinanceSimulator(dict.fromkeys([*DEFAULT_PRICES, *(w.symbol for w in watches)]))
            await simulator.start()
            ws_url = simulator.ws_url
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        try:
            await watch(watches, ws_url=ws_url, stop=stop, channels=channels)
        finally:
            if simulator is not None:
                await simulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def register_watch(sub: Any) -> None:
    """``marketpipe watch BTCUSDT --above 43680``: live prices and price-level alerts, standalone."""
    p = sub.add_parser("watch", help="print a Binance symbol's live price and alert when it crosses levels")
    p.add_argument("symbol", help="Binance symbol, e.g. BTCUSDT")
    p.add_argument("--above", action="append", metavar="LEVEL", help="alert when the price goes above")
    p.add_argument("--below", action="append", metavar="LEVEL", help="alert when the price goes below")
    p.add_argument("--also", action="append", metavar="SPEC", help="more watches, e.g. ETHUSDT<2000")
    p.add_argument("--webhook", dest="webhooks", action="append", metavar="URL", help="POST alerts as JSON")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--simulate", action="store_true", help="watch the built-in simulator (offline)")
    p.set_defaults(handler=_cmd_watch)
