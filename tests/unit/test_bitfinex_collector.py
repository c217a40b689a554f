"""Bitfinex session sharding, Kinesis slots, the pair list and the REST trades backfill (backoff and
limiter: test_net.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from marketpipe.bitfinex import collector as collector_module
from marketpipe.bitfinex import wire as bfx
from marketpipe.bitfinex.collector import BitfinexCollector, TradesBackfill, listed_symbols
from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.bitfinex.slots import SYMBOLS_PER_SLOT, slot_count, slot_name, slot_symbols
from marketpipe.errors import ConfigError
from marketpipe.net.ratelimit import RateLimiter
from marketpipe.records import rest_conn


def _collector(wires: list[str], slot_size: int | None = None) -> BitfinexCollector:
    settings = collector_module.CollectorSettings(slot_size=slot_size)
    return BitfinexCollector(wires, BitfinexProcessor(lambda t, r: None), lambda f: None, settings)


def test_symbols_are_sharded_at_most_25_subscriptions_per_connection() -> None:
    wires = [f"tA{i:02d}USD" for i in range(30)][::-1]
    local = _collector(wires)
    assert [len(s.wires) for s in local.sessions] == [12, 12, 6]  # 2 channels each -> 24 per connection
    assert local.sessions[0].wires == wires[:12], "local runs pack in the order given"
    one_each = _collector(wires[:3], slot_size=1)
    assert [s.wires for s in one_each.sessions] == [[w] for w in sorted(wires[:3])]
    assert _collector(wires, slot_size=40).sessions[0].wires == sorted(wires)[:12], "never over 25 channels"
    with pytest.raises(ConfigError):
        BitfinexCollector([], BitfinexProcessor(lambda t, r: None), lambda f: None)


def test_slots_are_sorted_chunks_the_same_for_the_same_list_in_any_order() -> None:
    wires = [f"tS{i:03d}:USD" for i in range(20)]
    shuffled = wires[7:] + wires[:7] + wires[:3]  # another order, with duplicates
    assert slot_symbols(shuffled, 6) == slot_symbols(wires, 6) == [
        wires[0:6], wires[6:12], wires[12:18], wires[18:20]
    ]  # fmt: skip
    assert [s.wires for s in _collector(shuffled, 6).sessions] == slot_symbols(wires, 6)
    assert slot_count(20, 6) == 4 and slot_count(18, 6) == 3 and slot_count(1) == 1
    assert [slot_name(i) for i in (0, 7, 123)] == ["slot-000", "slot-007", "slot-123"]
    with pytest.raises(ConfigError):
        slot_symbols(wires, 0)


def test_a_slot_is_planned_within_the_checkpoint_limit_and_the_channel_cap() -> None:
    from marketpipe.aws.checkpoints import MAX_STATE_BYTES
    from marketpipe.bitfinex import slots

    assert slots.SLOT_STATE_BUDGET <= 0.8 * MAX_STATE_BYTES
    assert SYMBOLS_PER_SLOT * slots.BUSY_BOOK_STATE_BYTES <= slots.SLOT_STATE_BUDGET
    assert SYMBOLS_PER_SLOT * slots.CHANNELS_PER_SYMBOL <= bfx.MAX_SUBSCRIPTIONS_PER_CONNECTION
    assert SYMBOLS_PER_SLOT == 6


def test_300_symbols_make_50_slots_of_at_most_12_channels() -> None:
    wires = [f"tS{i:03d}:USD" for i in range(300)]
    collector = _collector(wires, SYMBOLS_PER_SLOT)
    assert len(collector.sessions) == 50 == slot_count(300)
    assert max(len(s.wires) * 2 for s in collector.sessions) == 12 <= bfx.MAX_SUBSCRIPTIONS_PER_CONNECTION
    assert sorted(w for s in collector.sessions for w in s.wires) == wires
    assert collector.partitions() == [f"slot-{i:03d}" for i in range(50)]


def test_frames_are_routed_to_the_slot_of_their_connection_or_backfilled_symbol() -> None:
    wires = ["tETHUSD", "tBTCUSD", "tAVAX:USD", "tXRPUSD"]
    collector = _collector(wires, slot_size=2)  # slots: [tAVAX:USD, tBTCUSD], [tETHUSD, tXRPUSD]
    run = collector.run_id
    assert collector.partition_of(f"{run}-bitfinex-0-1") == "slot-000"
    assert collector.partition_of(f"{run}-bitfinex-1-17") == "slot-001"
    backfill = rest_conn(f"{bfx.trades_hist_path('tXRPUSD')}?start=1&end=2&limit=10000&sort=1")
    assert collector.partition_of(backfill) == "slot-001"
    assert collector.partition_of(rest_conn(f"{bfx.trades_hist_path('tAVAX:USD')}?start=1")) == "slot-000"
    for stranger in (
        f"{run}-bitfinex-2-1",  # no such slot
        f"{run}-bitfinex-x-1",
        "otherrun-bitfinex-0-1",  # another process's connection
        rest_conn(f"{bfx.trades_hist_path('tLTCUSD')}?start=1"),  # a symbol not collected
        rest_conn("/v2/book/tBTCUSD/P0"),
    ):
        assert collector.partition_of(stranger) is None, stranger


def test_the_pair_list_gives_sorted_wire_symbols_and_skips_what_is_no_pair() -> None:
    body = '[["ETHUSD","BTCUSD","AVAX:USD","BTCUST","BTCF0:USTF0","X","BTCUSD",7]]'
    wires, skipped = bfx.parse_pair_list(body)
    assert wires == ["tAVAX:USD", "tBTCF0:USTF0", "tBTCUSD", "tBTCUST", "tETHUSD"]
    assert skipped == ["X", "7"]
    for bad in ('["error",10020,"symbol: invalid"]', "<html>", "[]", '{"a":1}'):
        with pytest.raises(ConfigError, match="unexpected answer"):
            bfx.parse_pair_list(bad)
    assert bfx.pair_list_url("https://api-pub.bitfinex.com/v2/") == (
        "https://api-pub.bitfinex.com/v2/conf/pub:list:pair:exchange"
    )


def test_all_symbols_are_listed_by_the_simulator_and_unreachable_lists_fail_clearly() -> None:
    async def go() -> list[str]:
        sim = BitfinexSimulator(("tETHUSD", "tBTCUSD", "tAVAX:USD"), seed=5)
        await sim.start()
        try:
            return await listed_symbols(sim.api_url)
        finally:
            await sim.stop()

    assert asyncio.run(go()) == ["tAVAX:USD", "tBTCUSD", "tETHUSD"]
    with pytest.raises(ConfigError, match="could not list the Bitfinex pairs"):
        asyncio.run(listed_symbols("http://127.0.0.1:9", timeout=0.5, retry_initial=0.01))


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
