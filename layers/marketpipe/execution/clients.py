"""The REST book clients of the execution capability: polite GETs plus ``fetch_book`` per venue.

Retries, ``Retry-After``, refusals and rate-limit skips are :class:`marketpipe.net.rest.RestClient`'s;
what each venue adds is its own accounting: Coinbase's 10 requests per second, Binance's request-weight
budget and its 418 ban. The wire facts they use (paths, weights, bodies) are in ``execution.coinbase``
and ``execution.binance_rest``, which the pure processor reads too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from marketpipe.errors import ConfigError
from marketpipe.execution import binance_rest, coinbase
from marketpipe.execution.binance_rest import (
    DEFAULT_BAN_SECONDS,
    DEFAULT_DEPTH_LIMIT,
    DEFAULT_WEIGHT_BUDGET,
    WEIGHT_LIMIT_1M,
    depth_path,
    request_weight,
)
from marketpipe.execution.coinbase import REQUESTS_PER_SECOND, book_path
from marketpipe.net.ratelimit import RateLimiter
from marketpipe.net.rest import Banned, RateLimited, RestAnswer, RestClient, retry_after

log = logging.getLogger("marketpipe.execution")


class BookClient(RestClient):
    """A venue's REST book source; subclasses add the venue's own accounting and ``fetch_book``."""

    venue = "exchange"
    logger = log

    def fetch_book(self, symbol: str) -> tuple[str, RestAnswer]:
        """(path, answer) for one market's book."""
        raise NotImplementedError


class CoinbaseBookClient(BookClient):
    """Level-2 books from Coinbase Exchange, never more than 10 requests in any second."""

    venue = coinbase.EXCHANGE

    def __init__(self, base_url: str = coinbase.DEFAULT_API_URL, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.limiter = RateLimiter(REQUESTS_PER_SECOND, 1.0, clock=self.clock, sleep=self.sleep)

    def before_request(self, path: str) -> None:
        self.limiter.acquire_blocking()

    def fetch_book(self, product: str) -> tuple[str, RestAnswer]:
        """(path, answer) for one product's level-2 book."""
        path = book_path(product)
        return path, self.get(path)


class BinanceBookClient(BookClient):
    """Depth snapshots within the weight budget; 429 honoured; after a 418 nothing until the ban ends."""

    venue = binance_rest.EXCHANGE

    def __init__(
        self,
        base_url: str = binance_rest.DEFAULT_API_URL,
        *,
        depth_limit: int = DEFAULT_DEPTH_LIMIT,
        weight_budget: int = DEFAULT_WEIGHT_BUDGET,
        wall: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_url, **kwargs)
        if not 1 <= depth_limit <= 5000:
            raise ConfigError(f"Binance depth limit {depth_limit}: must be 1..5000")
        if not 0 < weight_budget <= WEIGHT_LIMIT_1M:
            raise ConfigError(f"Binance weight budget {weight_budget}: must be 1..{WEIGHT_LIMIT_1M}")
        self.depth_limit = depth_limit
        self.weight_budget = weight_budget
        self.wall = wall
        self.used_weight = 0
        """Weight used in :attr:`weight_minute`, from the server's header (or counted when it has none)."""
        self.weight_minute = -1
        self.banned_until = 0.0
        """Monotonic time before which the IP is banned (HTTP 418)."""

    def _minute(self) -> int:
        return int(self.wall() // 60)

    def before_request(self, path: str) -> None:
        now = self.clock()
        if now < self.banned_until:
            raise Banned(
                f"binance: IP banned (HTTP 418) for another {self.banned_until - now:.0f} s; not polling",
                self.banned_until,
            )
        weight = request_weight(self.depth_limit)
        if self._minute() == self.weight_minute and self.used_weight + weight > self.weight_budget:
            wait = 60 - self.wall() % 60
            log.warning("binance: %d of %d weight used this minute; waiting %.1f s for the next minute",
                        self.used_weight, self.weight_budget, wait)  # fmt: skip
            if wait > self.max_wait:
                raise RateLimited("binance: minute weight budget spent; skipping", now + wait)
            self.sleep(wait)
        if self._minute() != self.weight_minute:
            self.weight_minute, self.used_weight = self._minute(), 0
        self.used_weight += weight  # provisional until the header says

    def after_response(self, response: requests.Response) -> None:
        header = response.headers.get("X-MBX-USED-WEIGHT-1M")
        if header is not None:
            try:
                self.used_weight, self.weight_minute = int(header), self._minute()
            except ValueError:
                log.warning("binance: unreadable X-MBX-USED-WEIGHT-1M %r", header)

    def on_status(self, path: str, status: int, message: str, headers: Mapping[str, str]) -> None:
        if status == 418:
            ban = retry_after(headers, DEFAULT_BAN_SECONDS)
            self.banned_until = self.clock() + ban
            log.error(
                "binance GET %s: HTTP 418 IP ban (%s); no Binance request for %.0f s", path, message, ban
            )
            raise Banned(f"binance: IP banned (HTTP 418: {message}) for {ban:.0f} s", self.banned_until)

    def fetch_book(self, symbol: str) -> tuple[str, RestAnswer]:
        path = depth_path(symbol, self.depth_limit)
        return path, self.get(path)
