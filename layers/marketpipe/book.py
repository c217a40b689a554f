"""A price-level order book with a top-N view and the Bitfinex checksum.

``OrderBook`` is the compiled book (``marketpipe._cbook``, built by ``pip install`` where a C compiler
exists) or, failing that, :class:`PyOrderBook`, the pure-Python reference with the same behaviour;
``COMPILED`` says which one this process uses.

In the pure-Python book each side keeps a dict (price -> signed wire amount) for O(1) lookups plus a
sorted price list for ordered views. Books here hold at most a few hundred levels (the exchange
maintains the window), so ``bisect.insort`` into a list beats any tree structure in CPython.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from marketpipe.jsnum import js_num_str_cached

CHECKSUM_DEPTH = 25


def to_signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


class PyOrderBook:
    """One symbol's book. Amounts are stored signed as on the wire: bids > 0, asks < 0.

    Besides the price maps, each side keeps a best-first flat list ``[price, size, price, size, …]``
    (sizes positive), updated by C-level slice inserts/deletes, so emitting a 400-value top-100 row
    is a slice copy rather than a Python loop.
    """

    __slots__ = ("_ask_flat", "_ask_prices", "_bid_flat", "_bid_prices", "asks", "bids", "depth")

    def __init__(self, depth: int = 100) -> None:
        self.depth = depth
        """Levels per side that count as 'the top' for change detection and rows."""
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self._bid_prices: list[float] = []  # ascending; best bid is last
        self._ask_prices: list[float] = []  # ascending; best ask is first
        self._bid_flat: list[float] = []  # best first: price, size, price, size, ...
        self._ask_flat: list[float] = []

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()
        self._bid_flat.clear()
        self._ask_flat.clear()

    def apply(self, price: float, count: int, amount: float) -> bool:
        """Apply one Bitfinex level ``[PRICE, COUNT, AMOUNT]``.

        Returns True when a price or size among the top ``depth`` levels changed. ``COUNT > 0`` sets
        the level to AMOUNT (absolute, sign gives the side); ``COUNT == 0`` deletes it (AMOUNT is the
        marker 1 for bids, -1 for asks); deleting an absent level is a no-op.
        """
        if count > 0:
            if amount > 0:
                levels = self.bids
                old = levels.get(price)
                if old == amount:
                    return False
                levels[price] = amount
                prices = self._bid_prices
                if old is None:
                    index = bisect_left(prices, price)
                    prices.insert(index, price)
                    rank = len(prices) - 1 - index
                    self._bid_flat[2 * rank : 2 * rank] = (price, amount)
                else:
                    rank = len(prices) - 1 - bisect_left(prices, price)
                    self._bid_flat[2 * rank + 1] = amount
                return rank < self.depth
            if amount < 0:
                levels = self.asks
                old = levels.get(price)
                if old == amount:
                    return False
                levels[price] = amount
                prices = self._ask_prices
                if old is None:
                    rank = bisect_left(prices, price)
                    prices.insert(rank, price)
                    self._ask_flat[2 * rank : 2 * rank] = (price, -amount)
                else:
                    rank = bisect_left(prices, price)
                    self._ask_flat[2 * rank + 1] = -amount
                return rank < self.depth
            return False  # a zero amount with orders is malformed; nothing to apply
        if amount > 0:
            if self.bids.pop(price, None) is None:
                return False
            prices = self._bid_prices
            index = bisect_left(prices, price)
            del prices[index]
            rank = len(prices) - index
            del self._bid_flat[2 * rank : 2 * rank + 2]
        else:
            if self.asks.pop(price, None) is None:
                return False
            prices = self._ask_prices
            rank = bisect_left(prices, price)
            del prices[rank]
            del self._ask_flat[2 * rank : 2 * rank + 2]
        return rank < self.depth

    def best_bid(self) -> tuple[float, float] | None:
        flat = self._bid_flat
        return (flat[0], flat[1]) if flat else None

    def best_ask(self) -> tuple[float, float] | None:
        flat = self._ask_flat
        return (flat[0], flat[1]) if flat else None

    def top_bids(self, n: int) -> list[tuple[float, float]]:
        """Best-first ``(price, size)`` with positive sizes."""
        flat = self._bid_flat[: 2 * n]
        return list(zip(flat[::2], flat[1::2], strict=True))

    def top_asks(self, n: int) -> list[tuple[float, float]]:
        flat = self._ask_flat[: 2 * n]
        return list(zip(flat[::2], flat[1::2], strict=True))

    def levels(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """``(bids, asks)``, each a best-first list of ``(price, signed amount)``: a checkpoint's view."""
        bids = self._bid_flat
        asks = self._ask_flat
        return list(zip(bids[::2], bids[1::2], strict=True)), [
            (price, -size) for price, size in zip(asks[::2], asks[1::2], strict=True)
        ]

    def level_values(self, depth: int | None = None) -> list[Any]:
        """Flat ``bid_1_price, bid_1_size, …, ask_N_size`` values, ``None`` past the last level."""
        return list(self.row((), depth))

    def row(self, head: tuple[Any, ...], depth: int | None = None) -> tuple[Any, ...]:
        """``head`` followed by the top levels as one tuple (a ``bitfinex_book`` row), padded with None."""
        width = 2 * (self.depth if depth is None else depth)
        bids = self._bid_flat[:width]
        asks = self._ask_flat[:width]
        if len(bids) == width and len(asks) == width:
            return (*head, *bids, *asks)
        pad = (None,) * width
        return (*head, *bids, *pad[len(bids) :], *asks, *pad[len(asks) :])

    def checksum_text(self) -> str:
        """The interleaved top-25 text Bitfinex hashes: ``bid0p:bid0a:ask0p:ask0a:bid1p:…``."""
        fmt = js_num_str_cached
        bids = self._bid_flat[: 2 * CHECKSUM_DEPTH]
        asks = self._ask_flat[: 2 * CHECKSUM_DEPTH]
        parts: list[str] = []
        for i in range(0, max(len(bids), len(asks)), 2):
            if i < len(bids):
                parts.append(fmt(bids[i]))
                parts.append(fmt(bids[i + 1]))
            if i < len(asks):
                parts.append(fmt(asks[i]))
                parts.append(fmt(-asks[i + 1]))
        return ":".join(parts)

    def checksum(self) -> int:
        """Signed CRC-32 of :meth:`checksum_text`, comparable with the ``cs`` frame value."""
        return to_signed32(zlib.crc32(self.checksum_text().encode()))

    def __len__(self) -> int:
        return len(self._bid_prices) + len(self._ask_prices)


def py_apply_update(
    book: PyOrderBook, body: Any, quotes: list[tuple[Any, ...]], head: tuple[Any, ...], set_action: str
) -> int:
    """Apply one Bitfinex book update frame (one level or a bulk list) and append its quote rows.

    ``head`` is ``(symbol, exchange_ts, received_ts, seq)``; each level adds one ``bitfinex_quotes`` row
    (``set_action`` for a set, 'delete' for a delete). Returns bit 0 = a top-``depth`` level changed,
    the higher bits = how many entries were too short to be levels (the caller logs them).
    """
    entries = body if type(body) is list and body and type(body[0]) is list else [body]
    symbol, exchange_ts, received_ts, seq = head
    changed = False
    invalid = 0
    for entry in entries:
        if len(entry) < 3:
            invalid += 1
            continue
        price, count, amount = entry[0], entry[1], entry[2]
        if count > 0:
            if amount > 0:
                quotes.append(
                    (symbol, exchange_ts, received_ts, seq, "bid", price, count, amount, set_action)
                )
            else:
                quotes.append(
                    (symbol, exchange_ts, received_ts, seq, "ask", price, count, -amount, set_action)
                )
        else:
            side = "bid" if amount > 0 else "ask"
            quotes.append((symbol, exchange_ts, received_ts, seq, side, price, 0, 0, "delete"))
        if book.apply(price, count, amount):
            changed = True
    return changed | (invalid << 1)


OrderBook: type[PyOrderBook]
apply_update: Callable[[PyOrderBook, Any, list[tuple[Any, ...]], tuple[Any, ...], str], int]
try:
    from marketpipe._cbook import OrderBook as _CompiledOrderBook
    from marketpipe._cbook import apply_update as _compiled_apply_update
except ImportError:  # installed without a C compiler: same results, about 3x slower book maintenance
    OrderBook, apply_update, COMPILED = PyOrderBook, py_apply_update, False
else:
    OrderBook, apply_update, COMPILED = _CompiledOrderBook, _compiled_apply_update, True
