"""Bitfinex as a ``marketpipe run`` service: simulator (optional), collector, verified processor.

Settings: declared once in :data:`SETTINGS` (flag, environment, ``[bitfinex]`` file key, default).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marketpipe import envnames
from marketpipe.bitfinex import wire as bfx
from marketpipe.bitfinex.collector import BitfinexCollector, CollectorSettings, listed_symbols
from marketpipe.bitfinex.processor import BitfinexProcessor, Signal, Stats
from marketpipe.bitfinex.slots import SYMBOLS_PER_SLOT, slot_count, slot_name
from marketpipe.config import ConfigFile, Section, Setting
from marketpipe.errors import ConfigError
from marketpipe.records import Emit, RawFrame
from marketpipe.runtime import RunContext
from marketpipe.sinks.base import Sink
from marketpipe.tables import BITFINEX_TRADES

log = logging.getLogger("marketpipe.bitfinex")

DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD")
ALL_SYMBOLS = "all"
"""``--symbols all``: every pair the exchange lists, resolved when the collector starts."""


@dataclass
class BitfinexSettings:
    """What the Bitfinex service can be told (the generic run knobs stay in ``RunConfig``)."""

    symbols: list[str] = field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    all_symbols: bool = False
    """``--symbols all``: ``symbols`` is filled from the exchange's pair list at start."""
    ws_url: str = bfx.DEFAULT_WS_URL
    api_url: str = bfx.DEFAULT_API_URL

    def wire_symbols(self) -> list[str]:
        return [bfx.wire_symbol(s) for s in self.symbols]


def _symbols(symbols: list[str]) -> list[str]:
    if not symbols:
        raise ConfigError("no symbols configured")
    if any(s.strip().lower() == ALL_SYMBOLS for s in symbols):
        if len(symbols) > 1:
            raise ConfigError(f"'{ALL_SYMBOLS}' stands alone, not in a list of symbols")
        return [ALL_SYMBOLS]
    for symbol in symbols:
        bfx.wire_symbol(symbol)  # ConfigError for a malformed symbol, before anything starts
    return symbols


SETTINGS = Section(
    "bitfinex",
    "Bitfinex books and trades",
    (
        Setting(
            "symbols",
            list(DEFAULT_SYMBOLS),
            f"comma list, or '{ALL_SYMBOLS}' for every pair the exchange lists",
            kind="strs",
            flag="--symbols",
            env=envnames.SYMBOLS,
            dest="opt_symbols",
            check=_symbols,
        ),
        Setting(
            "ws_url",
            bfx.DEFAULT_WS_URL,
            "websocket endpoint",
            env=envnames.BITFINEX_WS_URL,
            dest="bitfinex_ws_url",
        ),
        Setting(
            "api_url",
            bfx.DEFAULT_API_URL,
            "REST endpoint (trades history, pair list)",
            env=envnames.BITFINEX_API_URL,
            dest="bitfinex_api_url",
        ),
    ),
)
"""Settings: flag > environment > ``[bitfinex]`` of the config file > default (``marketpipe.config``).
Code may set the option keys ``bitfinex_ws_url`` / ``bitfinex_api_url`` (tests: a simulator of their own)."""


def settings_from(
    options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None = None
) -> BitfinexSettings:
    """The declared :data:`SETTINGS` read and checked; ConfigError for a malformed symbol."""
    values = SETTINGS.values(options, env, file)
    settings = BitfinexSettings(ws_url=values["ws_url"], api_url=values["api_url"])
    if values["symbols"] == [ALL_SYMBOLS]:
        settings.symbols, settings.all_symbols = [], True
    else:
        settings.symbols = list(values["symbols"])
    return settings


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    SETTINGS.add_arguments(parser, "Bitfinex books and trades (--exchanges bitfinex,…)")


def create_replayer(emit: Emit, options: Mapping[str, Any] | None = None) -> BitfinexProcessor:
    """Replay: the same processor as the live service, without anyone to act on its signals."""
    return BitfinexProcessor(emit)


class BitfinexService:
    name = bfx.EXCHANGE

    def __init__(self, ctx: RunContext, env: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self.settings = settings_from(ctx.config.options, os.environ if env is None else env, ctx.config.file)
        self.simulator: Any = None
        self.collector: BitfinexCollector | None = None
        self.processor = BitfinexProcessor(ctx.emit, on_signal=self._on_signal)

    def _on_signal(self, signal: Signal) -> None:
        if self.collector is not None:
            self.collector.handle_signal(signal)

    def _on_frame(self, frame: RawFrame) -> None:
        self.ctx.capture(frame)
        self.processor.process(frame)

    async def start(self) -> None:
        config, own = self.ctx.config, self.settings
        if config.simulate:
            from marketpipe.bitfinex.simulator import BitfinexSimulator

            if own.all_symbols:  # the simulator's own pairs, which its pair list then reports
                self.simulator = BitfinexSimulator()
            else:
                self.simulator = BitfinexSimulator(tuple(own.wire_symbols()))
            await self.simulator.start()
            own.ws_url, own.api_url = self.simulator.ws_url, self.simulator.api_url
            log.info("simulated Bitfinex at %s (REST %s)", self.simulator.ws_url, self.simulator.api_url)
        if own.all_symbols:
            listed = await listed_symbols(own.api_url)
            own.symbols = [bfx.normalize_symbol(w) for w in listed]
            log.info("--symbols all: the exchange lists %d trading pairs", len(listed))
        wires = own.wire_symbols()
        kinesis = config.transport == "kinesis"
        settings = CollectorSettings(
            ws_url=own.ws_url,
            api_url=own.api_url,
            stale_after=config.stale_after,
            drain_timeout=config.drain_timeout,
            subscription_retry=config.subscription_retry,
            # Kinesis: fixed slots of a few symbols, one connection and one partition key each, because
            # Bitfinex numbers frames (SEQ_ALL) per connection and a partition must hold a complete,
            # gap-checkable sequence for the book builder (docs/AWS.md).
            slot_size=SYMBOLS_PER_SLOT if kinesis else None,
            drop_refused_symbols=own.all_symbols,
        )
        resume = await asyncio.to_thread(latest_trade_times, self.ctx.sinks, wires)
        self.collector = BitfinexCollector(
            wires, self.processor, self._on_frame, settings, clock=self.ctx.clock, resume_trades_from=resume
        )
        shown = ", ".join(own.symbols[:24])
        if len(own.symbols) > 24:
            shown += f" … ({len(own.symbols)} symbols)"
        log.info(
            "streaming Bitfinex %s over %d connection(s)%s",
            shown,
            len(self.collector.sessions),
            f", Kinesis slots of {SYMBOLS_PER_SLOT} symbols" if kinesis else "",
        )

    async def run(self, stop: asyncio.Event) -> None:
        assert self.collector is not None, "start() first"
        await self.collector.run(stop)

    async def close(self) -> None:
        self.processor.finish()
        if self.simulator is not None:
            await self.simulator.stop()

    def summary(self) -> str:
        return self.processor.summary()

    def partitions(self, frame: RawFrame) -> list[str]:
        """Kinesis partition: the slot of the frame's connection, or of its REST backfill's symbol."""
        slot = self.collector.partition_of(frame.conn) if self.collector is not None else None
        return [slot] if slot is not None else []

    def all_partitions(self) -> list[str]:
        """Every slot (before start: the slots the configured symbols will have; ``all``: none yet)."""
        if self.collector is not None:
            return self.collector.partitions()
        count = slot_count(len(set(self.settings.wire_symbols())))
        return [slot_name(index) for index in range(count)]

    def stats(self) -> Stats:
        return self.processor.stats


def create_service(ctx: RunContext) -> BitfinexService:
    return BitfinexService(ctx)


def latest_trade_times(sinks: Sequence[Sink], wires: Sequence[str]) -> dict[str, int]:
    """Newest stored trade (ms) per wire symbol, so a restart backfills what was missed while down."""
    for sink in sinks:
        latest_by = getattr(sink, "latest_by", None)
        if latest_by is None:
            continue
        try:
            found: dict[str, Any] = latest_by(BITFINEX_TRADES.name, "exchange_ts", "symbol")
        except Exception as exc:  # a new, empty or unreadable store just means nothing to resume
            log.debug("no stored trades to resume from: %s", exc)
            return {}
        resume = {}
        for wire in wires:
            stored = found.get(bfx.normalize_symbol(wire))
            if stored is not None:
                resume[wire] = int(stored) // 1000
        return resume
    return {}
