"""Loopback Binance spot REST depth (``/api/v3/depth``) with Binance's weight limits and bans.

Books come from :class:`~marketpipe.execution.coinbase_simulator.SyntheticBooks` (BTCUSDT ≈ 60,000, ETHUSDT ≈
3,000; Binance's 8-decimal number text; ``limit`` levels, at most 5,000). Limits as documented:
request weight 5/25/50/250 by ``limit`` counted per UTC minute (``X-MBX-USED-WEIGHT-1M`` on every
answer); over the minute's limit, HTTP 429 ``-1003`` with ``Retry-After`` up to the next minute; a
client that keeps asking during a Retry-After (``ban_after`` times) is banned: HTTP 418 with
``Retry-After`` for ``ban_seconds``, every request until then answered 418. Unknown symbol: HTTP 400
``{"code":-1121,"msg":"Invalid symbol."}``. 5xx answers on demand (:meth:`inject_status`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import orjson

from marketpipe.execution.coinbase_simulator import BookRestSimulator, SyntheticBooks
from marketpipe.simulator.http import HttpRequest, HttpResponse

DEFAULT_SYMBOLS: dict[str, float] = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}


def depth_weight(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


class BinanceRestSimulator(BookRestSimulator):
    """The public depth endpoint on loopback, with weight accounting, 429, 418 and -1121."""

    def __init__(
        self,
        symbols: Mapping[str, float] | None = None,
        *,
        seed: int | None = None,
        thin_probability: float = 0.05,
        weight_limit: int = 6000,
        ban_after: int = 2,
        ban_seconds: int = 120,
        wall: Callable[[], float] = time.time,
    ) -> None:
        books = SyntheticBooks(symbols or DEFAULT_SYMBOLS, seed=seed, thin_probability=thin_probability,
                               levels=100, price_decimals=8)  # fmt: skip
        super().__init__(books)
        self.weight_limit = weight_limit
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.wall = wall
        self.minute = -1
        self.used = 0
        self.retry_until = 0.0
        self.ignored_429 = 0
        self.banned_until = 0.0

    def _reply(self, status: int, body: object, extra: dict[str, str] | None = None) -> HttpResponse:
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.used), "X-MBX-USED-WEIGHT": str(self.used)}
        headers.update(extra or {})
        return self._answer(HttpResponse(status, orjson.dumps(body).decode(), headers=headers))

    def route(self, request: HttpRequest) -> HttpResponse:
        self.requests += 1
        now = self.wall()
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0
        if now < self.banned_until:
            until_ms = int(self.banned_until * 1000)
            return self._reply(
                418,
                {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until_ms}. "
                 "Please use WebSocket Streams for live updates to avoid bans."},
                {"Retry-After": str(max(1, int(self.banned_until - now + 0.999)))},
            )  # fmt: skip
        if now < self.retry_until:
            self.ignored_429 += 1
            if self.ignored_429 >= self.ban_after:
                self.banned_until = now + self.ban_seconds
                return self._reply(
                    418,
                    {"code": -1003, "msg": f"Way too much request weight used; IP banned until "
                     f"{int(self.banned_until * 1000)}. Please use WebSocket Streams for live updates to "
                     "avoid bans."},
                    {"Retry-After": str(self.ban_seconds)},
                )  # fmt: skip
        if request.path != "/api/v3/depth":
            return self._reply(404, {"code": -1000, "msg": "Not found."})
        try:
            limit = min(int(request.query.get("limit", "100")), 5000)
            if limit < 1:
                raise ValueError
        except ValueError:
            return self._reply(400, {"code": -1100, "msg": "Illegal characters found in parameter 'limit'."})
        weight = depth_weight(limit)
        if self.used + weight > self.weight_limit:
            self.retry_until = (minute + 1) * 60.0
            return self._reply(
                429,
                {"code": -1003, "msg": f"Too much request weight used; current limit is {self.weight_limit} "
                 "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                 "polling the API."},
                {"Retry-After": str(max(1, int(self.retry_until - now + 0.999)))},
            )  # fmt: skip
        self.used += weight
        symbol = request.query.get("symbol", "")
        if not self.books.knows(symbol):
            return self._reply(400, {"code": -1121, "msg": "Invalid symbol."})
        if self.injected:
            return self._reply(self.injected.popleft(), {"code": -1001, "msg": "Internal error; unable to "
                                "process your request. Please try again."})  # fmt: skip
        bids, asks, update_id = self.books.book(symbol, limit)
        return self._reply(200, {"lastUpdateId": update_id, "bids": bids, "asks": asks})
