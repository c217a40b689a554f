"""Binance spot REST depth: symbols, the book body, and a client inside the request-weight budget.

``GET /api/v3/depth?symbol=BTCUSDT&limit=N`` answers ``{"lastUpdateId": n, "bids": [[price, qty], …],
"asks": …}`` (no timestamp). Weight 5 / 25 / 50 / 250 for limits up to 100 / 500 / 1000 / 5000,
out of 6,000 per minute per IP; ``X-MBX-USED-WEIGHT-1M`` reports the minute's use. Over the limit:
HTTP 429 with ``Retry-After``; requests sent anyway earn HTTP 418, an IP ban of 2 minutes to 3 days,
during which this client sends nothing. Unknown symbol: HTTP 400 ``{"code":-1121}``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from marketpipe.errors import ConfigError
from marketpipe.execution.http import BookClient
from marketpipe.execution.walk import Book, level2_book
from marketpipe.net.rest import Banned, RateLimited, RestAnswer, retry_after

log = logging.getLogger("marketpipe.execution")

EXCHANGE = "binance"
DEFAULT_API_URL = "https://api.binance.com"
WEIGHT_LIMIT_1M = 6000
DEFAULT_WEIGHT_BUDGET = 4800
"""What this client lets itself use of the minute's 6,000: the rest stays for other clients on the IP."""
DEFAULT_DEPTH_LIMIT = 1000
DEFAULT_BAN_SECONDS = 120.0
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "DAI", "USD", "EUR", "TRY", "BTC", "ETH", "BNB")
"""Quote assets recognised when splitting a symbol, longest first where they share a suffix."""
_SYMBOL = re.compile(r"[A-Z0-9]{4,20}")
_PATH = re.compile(r"/api/v3/depth\?symbol=([A-Z0-9]+)&limit=(\d+)")


def validate_symbol(text: str) -> str:
    symbol = text.strip().upper()
    if not _SYMBOL.fullmatch(symbol) or split_symbol(symbol) is None:
        raise ConfigError(f"invalid Binance symbol {text!r} (expected e.g. BTCUSDT)")
    return symbol


def split_symbol(symbol: str) -> tuple[str, str] | None:
    """``BTCUSDT`` -> ``("BTC", "USDT")``; None when no known quote asset ends the symbol."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return None


def request_weight(limit: int) -> int:
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def depth_path(symbol: str, limit: int = DEFAULT_DEPTH_LIMIT) -> str:
    return f"/api/v3/depth?symbol={symbol}&limit={limit}"


def symbol_of_path(path: str) -> str | None:
    m = _PATH.fullmatch(path)
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    book: Book
    dropped_levels: int
    last_update_id: int | None


def parse_book(text: str) -> Snapshot:
    """Parse a depth body; ValueError when it is not one."""
    body, book, dropped = level2_book(text, "Binance depth body")
    update_id = body.get("lastUpdateId")
    return Snapshot(book, dropped, update_id if isinstance(update_id, int) else None)


class BinanceBookClient(BookClient):
    """Depth snapshots within the weight budget; 429 honoured; after a 418 nothing until the ban ends."""

    venue = EXCHANGE

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
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
