"""Capped exponential backoff with jitter, and the one retry loop built on it (sync and async).

Every retry in marketpipe goes through :func:`retry` (or :func:`retry_async`): the caller says which
failures are worth another attempt, how many attempts there are in all, and may name a delay the server
asked for (``Retry-After``, a lock-out), which then replaces the backoff's delay for that retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("marketpipe.net")

T = TypeVar("T")

HEALTHY_CONNECTION_SECONDS = 60.0
"""A connection that lasted this long resets the backoff: its end is news, not a retry storm."""

MAX_EXPONENT = 32
"""The exponent stops growing here: a long outage never overflows the float (the cap is reached long
before for any sensible ``initial``)."""

RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
"""Which failures are retried: exception types, or a predicate over the exception."""
RetryAfter = Callable[[Exception], float | None]
"""The delay a failure itself asks for (seconds), or None to use the backoff."""
OnRetry = Callable[[int, Exception, float], None]
"""Called before each retry with the failed attempt's number (1-based), its exception and the delay."""


class Backoff:
    """Capped exponential backoff with jitter ("equal jitter" in the AWS architecture blog's terms).

    The n-th delay since :meth:`reset` is drawn uniformly from ``[c / 2, c]`` with ``c = min(cap,
    initial * factor**n)``: the jitter spreads retries of many clients after a shared outage instead
    of synchronising them, and the lower half bound keeps a client from hammering at once.
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
        """Delays handed out since the last reset."""
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * self.factor ** min(self.attempt, MAX_EXPONENT))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    def after_connection(self, lasted: float) -> float:
        """The delay before reconnecting after a connection that lasted ``lasted`` seconds."""
        if lasted > HEALTHY_CONNECTION_SECONDS:
            self.reset()
        return self.next_delay()


def _log_retry(attempt: int, exc: Exception, delay: float) -> None:
    log.warning("attempt %d failed (%s); retrying in %.1f s", attempt, exc or type(exc).__name__, delay)


def _retry_delay(
    attempt: int,
    exc: Exception,
    attempts: int | None,
    backoff: Backoff,
    retry_on: RetryOn,
    retry_after: RetryAfter | None,
) -> float | None:
    """The delay before the next attempt, or None when ``exc`` must be raised (not retryable, or last)."""
    if attempts is not None and attempt >= attempts:
        return None
    retryable = isinstance(exc, retry_on) if isinstance(retry_on, type | tuple) else retry_on(exc)
    if not retryable:
        return None
    asked = retry_after(exc) if retry_after is not None else None
    return asked if asked is not None else backoff.next_delay()


def retry(
    call: Callable[[], T],
    *,
    attempts: int | None,
    backoff: Backoff,
    retry_on: RetryOn = Exception,
    retry_after: RetryAfter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: OnRetry = _log_retry,
) -> T:
    """``call()``'s result, retrying the failures ``retry_on`` accepts, ``attempts`` calls at most.

    ``attempts=None`` retries until success (or until ``retry_on`` declines). The delay before a retry
    is ``retry_after(exc)`` when that gives one (the backoff is then not advanced), else the backoff's
    next delay. ``on_retry`` runs before each wait (log there; raising there ends the retries). The
    last failure, or the first one not retryable, is raised unchanged.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            delay = _retry_delay(attempt, exc, attempts, backoff, retry_on, retry_after)
            if delay is None:
                raise
            failure = exc
        on_retry(attempt, failure, delay)
        if delay > 0:
            sleep(delay)


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int | None,
    backoff: Backoff,
    retry_on: RetryOn = Exception,
    retry_after: RetryAfter | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: OnRetry = _log_retry,
) -> T:
    """:func:`retry` for a coroutine: the waits are ``await sleep(delay)``."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            delay = _retry_delay(attempt, exc, attempts, backoff, retry_on, retry_after)
            if delay is None:
                raise
            failure = exc
        on_retry(attempt, failure, delay)
        if delay > 0:
            await sleep(delay)
