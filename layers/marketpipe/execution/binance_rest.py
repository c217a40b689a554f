"""Binance spot REST depth: symbols, paths, request weights and the book body (the client is in
``execution.clients``).

``GET /api/v3/depth?symbol=BTCUSDT&limit=N`` answers ``{"lastUpdateId": n, "bids": [[price, qty], …],
"asks": …}`` (no timestamp). Weight 5 / 25 / 50 / 250 for limits up to 100 / 500 / 1000 / 5000,
out of 6,000 per minute per IP; ``X-MBX-USED-WEIGHT-1M`` reports the minute's use. Over the limit:
HTTP 429 with ``Retry-After``; requests sent anyway earn HTTP 418, an IP ban of 2 minutes to 3 days,
during which this client sends nothing. Unknown symbol: HTTP 400 ``{"code":-1121}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketpipe.errors import ConfigError
from marketpipe.execution.walk import Book, level2_book

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
