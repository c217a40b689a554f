"""Reconnect pacing shared by every exchange session: backoff with jitter and a connection budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable


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
