"""Bitfinex session sharding and the REST trades backfill (backoff and limiter: test_net.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from marketpipe.bitfinex import collector as collector_module
from marketpipe.bitfinex.collector import BitfinexCollector, TradesBackfill
from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.errors import ConfigError
from marketpipe.net.ratelimit import RateLimiter


def test_symbols_are_sharded_at_most_25_subscriptions_per_connection() -> None:
    wires = [f"tA{i:02d}USD" for i in range(30)]
    collector = BitfinexCollector(wires, BitfinexProcessor(lambda t, r: None), lambda f: None)
    sizes = [len(s.wires) for s in collector.sessions]
    assert sizes == [12, 12, 6]  # 2 channels per symbol -> 24 subscriptions per connection
    one_each = BitfinexCollector(
        wires[:3],
        BitfinexProcessor(lambda t, r: None),
        lambda f: None,
        collector_module.CollectorSettings(symbols_per_connection=1),
    )
    assert [s.wires for s in one_each.sessions] == [[w] for w in wires[:3]]
    with pytest.raises(ConfigError):
        BitfinexCollector([], BitfinexProcessor(lambda t, r: None), lambda f: None)


def test_backfill_pages_through_history(monkeypatch: Any) -> None:
    monkeypatch.setattr(collector_module, "BACKFILL_PAGE_LIMIT", 40)

    async def go() -> tuple[list[tuple[str, str]], list[Any]]:
        sim = BitfinexSimulator(
            ("tBTCUSD",), seed=5, trades_per_second=150, updates_per_second=0, rest_rate_limit_per_minute=1000
        )  # after a stall the simulator catches up with at most 150 * 0.25 = 37 trades in one millisecond,
        # fewer than a page holds
        await sim.start()
        try:
            await asyncio.sleep(0.3)
            history = sim.trades("tBTCUSD")
            backfill = TradesBackfill(sim.api_url, RateLimiter(100, 60), retry_initial=0.05)
            pages = await backfill.fetch("tBTCUSD", history[0][1], history[-1][1])
            backfill.close()
            return pages, history
        finally:
            await sim.stop()

    pages, history = asyncio.run(go())
    import orjson

    fetched = {t[0] for _, body in pages for t in orjson.loads(body)}
    assert {t[0] for t in history} <= fetched
    assert len(pages) >= 3
    assert all(conn.startswith("rest:/v2/trades/tBTCUSD/hist?start=") for conn, _ in pages)


def test_backfill_gives_up_with_a_clear_error(caplog: Any) -> None:
    async def go() -> None:
        sim = BitfinexSimulator(("tBTCUSD",), seed=5)
        await sim.start()
        try:
            backfill = TradesBackfill(sim.api_url, RateLimiter(100, 60), retry_initial=0.01)
            await backfill.fetch("tNOPEUSD", 0, 1)
        finally:
            await sim.stop()

    with pytest.raises(RuntimeError, match="HTTP 500"):
        asyncio.run(go())


def test_backfill_waits_out_a_rate_limit_block(caplog: Any) -> None:
    async def go() -> None:
        sim = BitfinexSimulator(("tBTCUSD",), seed=5, rest_rate_limit_per_minute=1)
        await sim.start()
        try:
            backfill = TradesBackfill(sim.api_url, RateLimiter(100, 60), rate_limit_block=0.05)
            await backfill.fetch("tBTCUSD", 0, 1)
            await backfill.fetch("tBTCUSD", 0, 1)  # over the simulator's 1/minute
        finally:
            await sim.stop()

    with pytest.raises(RuntimeError, match="HTTP 429"):
        asyncio.run(go())
    assert caplog.text.count("retrying in 0.1 s") == 3
    assert "HTTP 429" in caplog.text
