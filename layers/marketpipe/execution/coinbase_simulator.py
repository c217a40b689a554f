"""Loopback Coinbase Exchange REST book (``/products/{id}/book?level=1|2``) with realistic depth.

Books are drawn around a random-walking mid (BTC ≈ 60,000, ETH ≈ 3,000 USD): one-tick spread, level
gaps and sizes that grow with distance (a $100k order walks a handful of levels for a few basis points),
and now and then (``thin_probability``) a thin book whose whole visible side is worth less than $50k.
Faults the real exchange shows: 429 ``Public rate limit exceeded`` beyond 10 requests/s (bursts to
15), 404 ``NotFound`` for an unknown product, 400 for a bad ``level``; plus, on demand, 5xx answers
and empty, thin or crossed books (:meth:`inject_status`, :meth:`force_books`).

:class:`SyntheticBooks` is shared with the Binance REST simulator.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

import orjson

from marketpipe.simulator.http import HttpRequest, HttpResponse, LoopbackHttpServer
from marketpipe.timeutil import now_us, us_to_iso

DEFAULT_PRODUCTS: dict[str, float] = {"BTC-USD": 60_000.0, "ETH-USD": 3_000.0}
BOOK_KINDS = ("normal", "thin", "empty", "crossed")


@dataclass
class _Market:
    mid: float
    tick: Decimal
    size_decimals: int
    sequence: int


class SyntheticBooks:
    """Realistic level-2 books per market, reproducible from the seed."""

    def __init__(
        self,
        start_mids: Mapping[str, float],
        *,
        seed: int | None = None,
        thin_probability: float = 0.05,
        levels: int = 1000,
        price_decimals: int = 2,
        size_decimals: int = 8,
    ) -> None:
        self.rng = random.Random(seed)
        self.thin_probability = thin_probability
        self.levels = levels
        self.price_decimals = price_decimals
        self.forced: deque[str] = deque()
        self.markets = {
            name: _Market(mid, Decimal(1).scaleb(-2), size_decimals, 1_000_000 * (i + 1))
            for i, (name, mid) in enumerate(start_mids.items())
        }

    def knows(self, market: str) -> bool:
        return market in self.markets

    def force(self, kind: str, count: int = 1) -> None:
        if kind not in BOOK_KINDS:
            raise ValueError(f"unknown book kind {kind!r} (one of {', '.join(BOOK_KINDS)})")
        self.forced.extend([kind] * count)

    def next_kind(self) -> str:
        if self.forced:
            return self.forced.popleft()
        return "thin" if self.rng.random() < self.thin_probability else "normal"

    def book(self, market: str, levels: int | None = None) -> tuple[list[list[str]], list[list[str]], int]:
        """(bids, asks, sequence) as text, best first; advances the market's mid and sequence."""
        m = self.markets[market]
        m.mid *= math.exp(self.rng.gauss(0.0, 0.0002))  # ~2 bp per poll
        m.sequence += self.rng.randint(50, 5000)
        kind = self.next_kind()
        count = levels if levels is not None else self.levels
        if kind == "empty":
            return [], [], m.sequence
        tick = float(m.tick)
        best_bid = math.floor(m.mid / tick) * tick
        best_ask = best_bid + tick
        if kind == "crossed":
            best_bid, best_ask = best_ask + 5 * tick, best_bid
        thin = kind == "thin"
        side_levels = min(count, self.rng.randint(2, 6)) if thin else count
        # a level every ~0.1 bp of the price on average, sizes ~$8k near the touch, more further out
        mean_gap_ticks = max(1.0, m.mid * 1e-5 / tick)
        bids = self._side(best_bid, -1, side_levels, mean_gap_ticks, m, thin)
        asks = self._side(best_ask, +1, side_levels, mean_gap_ticks, m, thin)
        return bids, asks, m.sequence

    def _side(
        self, best: float, direction: int, count: int, mean_gap: float, m: _Market, thin: bool
    ) -> list[list[str]]:
        out: list[list[str]] = []
        ticks = 0
        tick = float(m.tick)
        for i in range(count):
            price = best + direction * ticks * tick
            if price <= tick:
                break
            quote_median = (300.0 if thin else 8_000.0) * (1.0 + i / 50.0)
            size = max(self.rng.lognormvariate(math.log(quote_median / price), 1.0), 10.0**-m.size_decimals)
            out.append([f"{price:.{self.price_decimals}f}", f"{size:.{m.size_decimals}f}"])
            ticks += 1 + int(self.rng.expovariate(1.0 / mean_gap))
        return out


class _TokenBucket:
    """Coinbase's public limit: ``rate`` requests per second, bursts to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(body).decode(), headers=headers or {})


class BookRestSimulator:
    """A REST book endpoint on loopback over :class:`SyntheticBooks` (Coinbase, Binance): start/stop,
    injected statuses and books, and a count of the requests and of the answers per status."""

    def __init__(self, books: SyntheticBooks) -> None:
        self.books = books
        self.server = LoopbackHttpServer(self.route)
        self.injected: deque[int] = deque()
        self.requests = 0
        self.answers: dict[int, int] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def inject_status(self, status: int, count: int = 1) -> None:
        """The next ``count`` book requests answer ``status`` (500, 502, 503, …)."""
        self.injected.extend([status] * count)

    def force_books(self, kind: str, count: int = 1) -> None:
        """The next ``count`` books are ``thin``, ``empty``, ``crossed`` or ``normal``."""
        self.books.force(kind, count)

    def _answer(self, response: HttpResponse) -> HttpResponse:
        self.answers[response.status] = self.answers.get(response.status, 0) + 1
        return response

    def route(self, request: HttpRequest) -> HttpResponse:  # pragma: no cover - each endpoint defines it
        raise NotImplementedError


class CoinbaseRestSimulator(BookRestSimulator):
    """The public Coinbase Exchange book endpoint on loopback."""

    def __init__(
        self,
        products: Mapping[str, float] | None = None,
        *,
        seed: int | None = None,
        thin_probability: float = 0.05,
        levels: int = 1000,
        rate: float = 10.0,
        burst: int = 15,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            SyntheticBooks(
                products or DEFAULT_PRODUCTS, seed=seed, thin_probability=thin_probability, levels=levels
            )
        )
        self.bucket = _TokenBucket(rate, burst, clock)

    def route(self, request: HttpRequest) -> HttpResponse:
        self.requests += 1
        if not self.bucket.take():
            return self._answer(_json(429, {"message": "Public rate limit exceeded"}))
        parts = request.path.strip("/").split("/")
        if request.method != "GET" or len(parts) != 3 or parts[0] != "products" or parts[2] != "book":
            return self._answer(_json(404, {"message": "NotFound"}))
        product = parts[1]
        if not self.books.knows(product):
            return self._answer(_json(404, {"message": "NotFound"}))
        level = request.query.get("level", "1")
        if level not in ("1", "2"):
            return self._answer(_json(400, {"message": "Invalid level"}))
        if self.injected:
            status = self.injected.popleft()
            return self._answer(_json(status, {"message": "Internal server error"}))
        bids, asks, sequence = self.books.book(product)
        orders = self.books.rng
        body = {
            "bids": [[p, s, orders.randint(1, 12)] for p, s in (bids[:1] if level == "1" else bids)],
            "asks": [[p, s, orders.randint(1, 12)] for p, s in (asks[:1] if level == "1" else asks)],
            "sequence": sequence,
            "auction_mode": False,
            "auction": None,
            "time": us_to_iso(now_us()),
        }
        return self._answer(_json(200, body))
