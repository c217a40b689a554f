"""The one sliding-window rate limiter: at most ``limit`` acquisitions in any ``period`` seconds.

One instance is shared by everything that spends the same budget (every Bitso REST call of a process,
every Binance connection attempt, every Coinbase book request). Coroutines ``await acquire()``; threads
call ``acquire_blocking()``; both may share one limiter. Waiters are served in arrival order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """At most ``limit`` acquisitions in any ``period`` seconds (sliding window)."""

    def __init__(
        self,
        limit: int,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._times: deque[float] = deque()
        self._guard = threading.Lock()  # the window itself; never held while waiting
        self._async_turn = asyncio.Lock()  # one coroutine waits at a time (arrival order)
        self._thread_turn = threading.Lock()  # one thread waits at a time

    def _expire(self, now: float) -> None:
        # ``t + period <= now``, not ``now - t >= period``: sleeping the delay below then always reaches
        # the slot's expiry exactly (a fake clock could otherwise fall short by rounding, forever).
        while self._times and self._times[0] + self.period <= now:
            self._times.popleft()

    def _delay(self, now: float) -> float:
        return 0.0 if len(self._times) < self.limit else (self._times[0] + self.period) - now

    def delay_needed(self) -> float:
        """Seconds until a slot frees up (0 when one is free now); takes nothing."""
        with self._guard:
            now = self._clock()
            self._expire(now)
            return self._delay(now)

    def try_acquire(self) -> float:
        """Take a slot if one is free (returns 0), else take nothing and return the seconds to wait."""
        with self._guard:
            now = self._clock()
            self._expire(now)
            delay = self._delay(now)
            if delay <= 0:
                self._times.append(now)
            return delay

    async def acquire(self) -> float:
        """Wait (asynchronously) for a slot and take it; returns how long it waited."""
        waited = 0.0
        async with self._async_turn:
            while (delay := self.try_acquire()) > 0:
                await asyncio.sleep(delay)
                waited += delay
        return waited

    def acquire_blocking(self) -> float:
        """Wait (blocking the thread, through ``sleep``) for a slot and take it; returns the wait."""
        waited = 0.0
        with self._thread_turn:
            while (delay := self.try_acquire()) > 0:
                self._sleep(delay)
                waited += delay
        return waited
