"""Bitfinex as a ``marketpipe run`` service: simulator (optional), collector, verified processor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from marketpipe.bitfinex import wire as bfx
from marketpipe.bitfinex.collector import BitfinexCollector, CollectorSettings
from marketpipe.bitfinex.processor import BitfinexProcessor, Signal, Stats
from marketpipe.records import Emit, RawFrame
from marketpipe.services import RunContext
from marketpipe.sinks.base import Sink
from marketpipe.tables import BITFINEX_TRADES

log = logging.getLogger("marketpipe.bitfinex")


def create_replayer(emit: Emit) -> BitfinexProcessor:
    """Replay: the same processor as the live service, without anyone to act on its signals."""
    return BitfinexProcessor(emit)


class BitfinexService:
    name = bfx.EXCHANGE

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
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
        config = self.ctx.config
        wires = config.bitfinex_wire_symbols()
        if config.simulate:
            from marketpipe.bitfinex.simulator import BitfinexSimulator

            self.simulator = BitfinexSimulator(tuple(wires))
            await self.simulator.start()
            config.bitfinex_ws_url, config.bitfinex_api_url = self.simulator.ws_url, self.simulator.api_url
            log.info("simulated Bitfinex at %s (REST %s)", self.simulator.ws_url, self.simulator.api_url)
        settings = CollectorSettings(
            ws_url=config.bitfinex_ws_url,
            api_url=config.bitfinex_api_url,
            stale_after=config.stale_after,
            drain_timeout=config.drain_timeout,
            subscription_retry=config.subscription_retry,
            symbols_per_connection=config.symbols_per_connection,
        )
        resume = await asyncio.to_thread(latest_trade_times, self.ctx.sinks, wires)
        self.collector = BitfinexCollector(
            wires, self.processor, self._on_frame, settings, clock=self.ctx.clock, resume_trades_from=resume
        )
        log.info("streaming Bitfinex %s", ", ".join(config.bitfinex_symbols))

    async def run(self, stop: asyncio.Event) -> None:
        assert self.collector is not None, "start() first"
        await self.collector.run(stop)

    async def close(self) -> None:
        self.processor.finish()
        if self.simulator is not None:
            await self.simulator.stop()

    def summary(self) -> str:
        return self.processor.summary()

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
