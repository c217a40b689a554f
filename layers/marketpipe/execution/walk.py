"""Execution price: walk a level-2 book to price a market order of a given quote notional.

Semantics (the contract every row of ``execution_quotes`` follows):

* A **buy** of notional ``N`` spends up to ``N`` of the quote currency on the asks, best (lowest) first;
  a **sell** of notional ``N`` sells base on the bids, best (highest) first, until the proceeds reach
  ``N``. The last level touched is taken partially: ``base = remaining / price``.
* ``avg_price = quote_spent / base_filled`` (the VWAP of the fill); ``worst_price`` is the price of the
  last level touched; ``levels_used`` counts the levels touched (the partial one included).
* ``deep_enough`` is true when the *visible* book covers the whole notional (``quote_spent == N``).
  When it does not, the row describes the partial fill of everything visible (``shortfall_quote`` is
  what is missing); Coinbase's level-2 book is the aggregated full book, Binance's is the top
  ``limit`` levels, so "not deep enough" means "not within the levels we were shown".
* ``mid = (best_bid + best_ask) / 2``, NULL when either side is empty.
* ``slippage_bps`` is signed so that **positive is a cost** for both sides:
  buy ``(avg - mid) / mid * 10_000``, sell ``(mid - avg) / mid * 10_000``. It is negative only on a
  crossed book (``best_bid >= best_ask``), which is priced as shown and flagged ``crossed``: a quant
  filters it rather than trust a price better than the mid.
* An empty side prices nothing: ``avg_price``, ``worst_price`` and ``slippage_bps`` are NULL,
  ``base_filled = quote_spent = 0``, ``deep_enough`` false.

All arithmetic is :class:`~decimal.Decimal` at 40 significant digits (exact for every product and sum
of exchange prices and sizes; only the partial-level division and the final ratios round).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any, Literal

import orjson

Side = Literal["buy", "sell"]
SIDES: tuple[Side, ...] = ("buy", "sell")
PRECISION = 40
BPS = Decimal(10_000)
_TWO = Decimal(2)


@dataclass(frozen=True, slots=True)
class Level:
    price: Decimal
    size: Decimal


@dataclass(frozen=True, slots=True)
class Book:
    """Bids best (highest) first, asks best (lowest) first; only positive prices and sizes."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0].price if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0].price if self.asks else None

    @property
    def mid(self) -> Decimal | None:
        if not self.bids or not self.asks:
            return None
        with localcontext(Context(prec=PRECISION)):
            return (self.bids[0].price + self.asks[0].price) / _TWO

    @property
    def crossed(self) -> bool:
        """Best bid at or above best ask: a book no exchange should show (stale or auction data)."""
        return bool(self.bids and self.asks and self.bids[0].price >= self.asks[0].price)


def build_book(bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> tuple[Book, int]:
    """Parse ``(price, size)`` text pairs; sort each side best first and merge repeated prices.

    Exchanges send sorted, unique, positive levels; anything else (zero or negative size or price,
    unparsable text) is dropped and counted, so one bad level never makes a snapshot unusable.
    Returns the book and the number of dropped levels.
    """
    dropped = 0

    def side(pairs: Iterable[tuple[str, str]], descending: bool) -> tuple[Level, ...]:
        nonlocal dropped
        merged: dict[Decimal, Decimal] = {}
        for price_text, size_text in pairs:
            try:
                price, size = Decimal(price_text), Decimal(size_text)
            except (InvalidOperation, TypeError, ValueError):
                dropped += 1
                continue
            if not (price.is_finite() and size.is_finite()) or price <= 0 or size <= 0:
                dropped += 1
                continue
            merged[price] = merged.get(price, Decimal(0)) + size
        return tuple(Level(p, merged[p]) for p in sorted(merged, reverse=descending))

    return Book(side(bids, True), side(asks, False)), dropped


@dataclass(frozen=True, slots=True)
class Fill:
    """The price of one market order of ``notional`` quote currency against one book."""

    side: Side
    notional: Decimal
    avg_price: Decimal | None
    worst_price: Decimal | None
    base_filled: Decimal
    quote_spent: Decimal
    mid: Decimal | None
    slippage_bps: Decimal | None
    deep_enough: bool
    levels_used: int

    @property
    def shortfall_quote(self) -> Decimal:
        return self.notional - self.quote_spent


def walk_book(book: Book, side: Side, notional: Decimal) -> Fill:
    """Price a market ``side`` order of ``notional`` quote currency against ``book`` (see module doc)."""
    if notional <= 0:
        raise ValueError(f"notional must be positive, got {notional}")
    levels: Sequence[Level] = book.asks if side == "buy" else book.bids
    with localcontext(Context(prec=PRECISION)):
        remaining = notional
        base = Decimal(0)
        spent = Decimal(0)
        worst: Decimal | None = None
        used = 0
        for level in levels:
            if remaining <= 0:
                break
            value = level.price * level.size
            used += 1
            worst = level.price
            if value <= remaining:
                base += level.size
                spent += value
                remaining -= value
            else:
                base += remaining / level.price
                spent += remaining
                remaining = Decimal(0)
        mid = book.mid
        avg = spent / base if base > 0 else None
        slippage: Decimal | None = None
        if avg is not None and mid is not None:
            slippage = (avg - mid) / mid * BPS if side == "buy" else (mid - avg) / mid * BPS
        return Fill(side, notional, avg, worst, base, spent, mid, slippage, remaining <= 0, used)


def depth_quote(levels: Sequence[Level]) -> Decimal:
    """Total visible quote value of one side (sum of price x size)."""
    with localcontext(Context(prec=PRECISION)):
        return sum((lv.price * lv.size for lv in levels), Decimal(0))


def level2_book(text: str, what: str) -> tuple[dict[str, Any], Book, int]:
    """(body, book, dropped levels) of a level-2 REST book body (``bids``/``asks`` lists of
    ``[price, size, …]``, Coinbase's and Binance's shape); ValueError when it is not ``what``."""
    body: Any = orjson.loads(text)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("bids"), list)
        or not isinstance(body.get("asks"), list)
    ):
        raise ValueError(f"not a {what} (no bids/asks lists)")

    def pairs(levels: list[Any]) -> list[tuple[str, str]]:
        return [(str(lv[0]), str(lv[1])) for lv in levels if isinstance(lv, list) and len(lv) >= 2]

    book, dropped = build_book(pairs(body["bids"]), pairs(body["asks"]))
    return body, book, dropped
