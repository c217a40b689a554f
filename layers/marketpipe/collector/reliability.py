"""What every exchange session shares: reconnect pacing (backoff with jitter, a connection budget), a
sleep that ends at ``stop``, why a connection closed, and running a collector's tasks together."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed

HEALTHY_CONNECTION_SECONDS = 60.0
"""A connection that lasted this long resets the backoff: its end is news, not a retry storm."""


class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog's recommendation).

    Full jitter spreads reconnects of many sessions after a shared outage instead of synchronising them.
    """

    def __init__(
        self,
        initial: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    def after_connection(self, lasted: float) -> float:
        """The delay before reconnecting after a connection that lasted ``lasted`` seconds."""
        if lasted > HEALTHY_CONNECTION_SECONDS:
            self.reset()
        return self.next_delay()


class RateLimiter:
    """At most ``limit`` acquisitions in any ``period`` seconds (sliding window), shared by sessions."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    def delay_needed(self) -> float:
        now = self._clock()
        while self._times and now - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self.period - (now - self._times[0])

    async def acquire(self) -> float:
        """Wait for a slot; returns how long it waited."""
        waited = 0.0
        async with self._lock:
            while (delay := self.delay_needed()) > 0:
                await asyncio.sleep(delay)
                waited += delay
            self._times.append(self._clock())
        return waited


async def sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    """Sleep ``delay`` seconds, or less when ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)


def close_reason(exc: ConnectionClosed) -> str:
    """Why the server (or the network) ended a websocket, for the disconnect log line."""
    if exc.rcvd is None:
        return "connection lost (no close frame)"
    return f"closed by server (code {exc.rcvd.code}{': ' + exc.rcvd.reason if exc.rcvd.reason else ''})"


async def run_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for a collector's tasks: the first failure is raised; every task is cancelled on the way out."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
