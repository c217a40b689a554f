"""Hundreds of Bitfinex books from one collector (Kinesis mode) against the loopback simulator.

``--symbols all`` is resolved from the simulator's pair list, the symbols are cut into slots of
:data:`SYMBOLS_PER_SLOT`, and every slot opens one connection within Bitfinex's limits: at most 25
channels on a connection (the simulator refuses the 26th with error 10305, like the exchange) and at
most 20 new connections a minute (here a minute scaled down to one second, so the test is quick).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from marketpipe.bitfinex import wire as bfx
from marketpipe.bitfinex.service import BitfinexService
from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.bitfinex.slots import SYMBOLS_PER_SLOT
from marketpipe.config import RunConfig
from marketpipe.net.ratelimit import RateLimiter
from marketpipe.records import RawFrame
from marketpipe.runtime import RunContext

SYMBOL_COUNT = 300
SCALED_MINUTE = 1.0


class RecordingLimiter(RateLimiter):
    """The collector's connection limiter, noting when each connection attempt was let through."""

    def __init__(self, limit: int, period: float) -> None:
        super().__init__(limit, period)
        self.granted: list[float] = []

    async def acquire(self) -> float:
        waited = await super().acquire()
        self.granted.append(time.monotonic())
        return waited


def test_all_of_300_listed_symbols_stream_over_50_slots_within_the_connection_limits() -> None:
    limiter = RecordingLimiter(bfx.MAX_CONNECTIONS_PER_MINUTE, SCALED_MINUTE)

    async def go() -> tuple[BitfinexService, BitfinexSimulator, dict[str, float], list[RawFrame]]:
        wires = [f"tS{i:03d}:USD" for i in range(SYMBOL_COUNT)]
        sim = BitfinexSimulator(wires, seed=3, updates_per_second=10, trades_per_second=1, idle_timeout=0)
        await sim.start()
        opened: dict[str, float] = {}  # connection id -> when its first frame (info) arrived
        frames: list[RawFrame] = []

        def capture(frame: RawFrame) -> None:
            frames.append(frame)
            if frame.direction == "in" and not frame.conn.startswith("rest:"):
                opened.setdefault(frame.conn, time.monotonic())

        options = {"opt_symbols": "all", "bitfinex_ws_url": sim.ws_url, "bitfinex_api_url": sim.api_url}
        # a quiet book's first checksum can be seconds away: do not wait for it when stopping
        config = RunConfig(transport="kinesis", options=options, drain_timeout=0.5)
        service = BitfinexService(
            RunContext(config, lambda t, r: None, capture, [], lambda: time.time_ns() // 1000), env={}
        )
        try:
            await service.start()
            assert service.collector is not None
            service.collector.connection_limiter = limiter
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            deadline = time.monotonic() + 90  # leaves early once every channel is subscribed
            while time.monotonic() < deadline:
                subscribed = sum(s.subscriptions for s in sim.connection_stats() if s.open)
                if subscribed == 2 * SYMBOL_COUNT:
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.wait_for(task, 30)
        finally:
            await service.close()
            await sim.stop()
        return service, sim, opened, frames

    service, sim, opened, frames = asyncio.run(go())
    collector = service.collector
    assert collector is not None
    assert len(service.settings.symbols) == SYMBOL_COUNT  # every listed pair, resolved at start
    assert len(collector.sessions) == 50 == SYMBOL_COUNT // SYMBOLS_PER_SLOT
    assert service.all_partitions() == [f"slot-{i:03d}" for i in range(50)]
    # every slot connected once, subscribed both channels of each of its symbols, none refused
    assert len(opened) == 50 and collector.connections_opened == 50
    stats = sim.connection_stats()
    assert len(stats) == 50
    assert max(s.subscriptions for s in stats) == 2 * SYMBOLS_PER_SLOT <= bfx.MAX_SUBSCRIPTIONS_PER_CONNECTION
    assert sum(s.subscriptions for s in stats) == 2 * SYMBOL_COUNT
    assert service.processor.stats.subscribe_errors == 0 and service.processor.stats.gaps == 0
    # staggered: never more than 20 new connections within one (scaled) minute
    starts = limiter.granted
    assert len(starts) == 50
    for i, start in enumerate(starts):
        assert sum(1 for t in starts[i:] if t < start + SCALED_MINUTE) <= bfx.MAX_CONNECTIONS_PER_MINUTE
    assert starts[-1] - starts[0] >= 2 * SCALED_MINUTE * 0.9  # 20 + 20 + 10: three windows
    # each connection's frames go to exactly one slot, that of the symbols it subscribed
    slot_of_conn = {conn: service.partitions(RawFrame("bitfinex", conn, "in", 0, "")) for conn in opened}
    assert all(len(slots) == 1 for slots in slot_of_conn.values())
    assert Counter(s[0] for s in slot_of_conn.values()) == Counter(service.all_partitions())
    for frame in frames:
        if frame.direction == "out" and '"subscribe"' in frame.frame:
            wire = frame.frame.split('"symbol":"')[1].split('"')[0]
            index = int(slot_of_conn[frame.conn][0].removeprefix("slot-"))
            assert collector.sessions[index].wires.count(wire) == 1
