"""Coinbase Exchange REST level-2 book: product ids, paths and the book body (the client, within
10 req/s, is in ``execution.clients``).

``GET /products/{id}/book?level=2`` answers ``{"bids": [[price, size, num_orders], …], "asks": …,
"sequence": n, "auction_mode": false, "time": "…Z"}``; sizes are the total at the price (never
multiplied by ``num_orders``). Public limit: 10 requests/s per IP, bursts to 15, HTTP 429 beyond.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketpipe.errors import ConfigError
from marketpipe.execution.walk import Book, level2_book
from marketpipe.timeutil import iso_to_us

EXCHANGE = "coinbase"
DEFAULT_API_URL = "https://api.exchange.coinbase.com"
REQUESTS_PER_SECOND = 10
_PRODUCT = re.compile(r"[A-Z0-9]{2,10}-[A-Z0-9]{2,10}")


def validate_product(text: str) -> str:
    """``btc-usd`` -> ``BTC-USD``; ConfigError for anything that is not ``BASE-QUOTE``."""
    product = text.strip().upper()
    if not _PRODUCT.fullmatch(product):
        raise ConfigError(f"invalid Coinbase product {text!r} (expected BASE-QUOTE, e.g. BTC-USD)")
    return product


def split_product(product: str) -> tuple[str, str]:
    base, quote = product.split("-", 1)
    return base, quote


def book_path(product: str) -> str:
    return f"/products/{product}/book?level=2"


def product_of_path(path: str) -> str | None:
    """``/products/BTC-USD/book?level=2`` -> ``BTC-USD`` (the capture's conn names the path)."""
    m = re.fullmatch(r"/products/([^/?]+)/book\?level=2", path)
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    book: Book
    dropped_levels: int
    sequence: int | None
    exchange_ts: int | None
    """The book's ``time`` (µs), when the exchange sent one."""
    auction_mode: bool


def parse_book(text: str) -> Snapshot:
    """Parse a book body; ValueError when it is not a level-2 book."""
    body, book, dropped = level2_book(text, "Coinbase level-2 book")
    sequence = body.get("sequence")
    ts = body.get("time")
    exchange_ts = None
    if isinstance(ts, str):
        try:
            exchange_ts = iso_to_us(ts)
        except ValueError:
            exchange_ts = None
    return Snapshot(
        book,
        dropped,
        sequence if isinstance(sequence, int) else None,
        exchange_ts,
        bool(body.get("auction_mode")),
    )
