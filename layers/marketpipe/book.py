"""A price-level order book with a top-N view and the Bitfinex checksum.

Each side keeps a dict (price -> signed wire amount) for O(1) lookups plus a sorted price list for
ordered views. Books here hold at most a few hundred levels (the exchange maintains the window), so
``bisect.insort`` into a list beats any tree structure in CPython.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from typing import Any

from marketpipe.jsnum import js_num_str_cached

CHECKSUM_DEPTH = 25


def to_signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


class OrderBook:
    """One symbol's book. Amounts are stored signed as on the wire: bids > 0, asks < 0."""

    __slots__ = ("_ask_prices", "_bid_prices", "asks", "bids", "depth")

    def __init__(self, depth: int = 100) -> None:
        self.depth = depth
        """Levels per side that count as 'the top' for change detection and rows."""
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._bid_prices: list[float] = []  # ascending; best bid is last
        self._ask_prices: list[float] = []  # ascending; best ask is first

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()

    def apply(self, price: float, count: int, amount: float) -> bool:
        """Apply one Bitfinex level ``[PRICE, COUNT, AMOUNT]``.

        Returns True when a price or size among the top ``depth`` levels changed. ``COUNT > 0`` sets
        the level to AMOUNT (absolute, sign gives the side); ``COUNT == 0`` deletes it (AMOUNT is the
        marker 1 for bids, -1 for asks); deleting an absent level is a no-op.
        """
        if count > 0:
            if amount > 0:
                levels, prices, is_bid = self.bids, self._bid_prices, True
            elif amount < 0:
                levels, prices, is_bid = self.asks, self._ask_prices, False
            else:
                return False  # a zero amount with orders is malformed; nothing to apply
            old = levels.get(price)
            if old == amount:
                return False
            levels[price] = amount
            if old is None:
                insort(prices, price)
            if len(prices) <= self.depth:
                return True
            index = bisect_left(prices, price)
            rank = len(prices) - 1 - index if is_bid else index
            return rank < self.depth
        if amount > 0:
            levels, prices, is_bid = self.bids, self._bid_prices, True
        else:
            levels, prices, is_bid = self.asks, self._ask_prices, False
        if levels.pop(price, None) is None:
            return False
        index = bisect_left(prices, price)
        del prices[index]
        rank = len(prices) - index if is_bid else index
        return rank < self.depth

    def best_bid(self) -> tuple[float, float] | None:
        if not self._bid_prices:
            return None
        price = self._bid_prices[-1]
        return price, self.bids[price]

    def best_ask(self) -> tuple[float, float] | None:
        if not self._ask_prices:
            return None
        price = self._ask_prices[0]
        return price, -self.asks[price]

    def top_bids(self, n: int) -> list[tuple[float, float]]:
        """Best-first ``(price, size)`` with positive sizes."""
        bids = self.bids
        return [(p, bids[p]) for p in self._bid_prices[: -n - 1 : -1]]

    def top_asks(self, n: int) -> list[tuple[float, float]]:
        asks = self.asks
        return [(p, -asks[p]) for p in self._ask_prices[:n]]

    def level_values(self, depth: int | None = None) -> list[Any]:
        """Flat ``bid_1_price, bid_1_size, …, ask_N_size`` values, ``None`` past the last level."""
        depth = self.depth if depth is None else depth
        bids, asks = self.bids, self.asks
        out: list[Any] = []
        append = out.append
        bid_prices = self._bid_prices[: -depth - 1 : -1]
        for p in bid_prices:
            append(p)
            append(bids[p])
        if len(bid_prices) < depth:
            out.extend([None] * (2 * (depth - len(bid_prices))))
        ask_prices = self._ask_prices[:depth]
        for p in ask_prices:
            append(p)
            append(-asks[p])
        if len(ask_prices) < depth:
            out.extend([None] * (2 * (depth - len(ask_prices))))
        return out

    def checksum_text(self) -> str:
        """The interleaved top-25 text Bitfinex hashes: ``bid0p:bid0a:ask0p:ask0a:bid1p:…``."""
        fmt = js_num_str_cached
        bids, asks = self.bids, self.asks
        bid_prices = self._bid_prices[: -CHECKSUM_DEPTH - 1 : -1]
        ask_prices = self._ask_prices[:CHECKSUM_DEPTH]
        parts: list[str] = []
        for i in range(max(len(bid_prices), len(ask_prices))):
            if i < len(bid_prices):
                p = bid_prices[i]
                parts.append(fmt(p))
                parts.append(fmt(bids[p]))
            if i < len(ask_prices):
                p = ask_prices[i]
                parts.append(fmt(p))
                parts.append(fmt(asks[p]))
        return ":".join(parts)

    def checksum(self) -> int:
        """Signed CRC-32 of :meth:`checksum_text`, comparable with the ``cs`` frame value."""
        return to_signed32(zlib.crc32(self.checksum_text().encode()))

    def __len__(self) -> int:
        return len(self._bid_prices) + len(self._ask_prices)
