"""A seeded random market for the Bitfinex simulator: full order books, a drifting price and trades.

The simulators need a market that looks real enough to exercise every trap of a book client: levels
that enter and leave a top-N window, deletes, count changes, tiny sizes (``0.00005``, ``4.2e-7``)
and integral ones (``1``, ``12``), prices on a realistic tick grid, and trades that consume the
best levels. Everything is driven by one ``random.Random`` per symbol (plus one for trade ids), so a
given seed replays the same sequence of events; only the wall-clock timestamps differ.

Prices are kept as integer *tick indices* and converted to floats only at the edge, so a price is
always the exact double of its decimal text (``30001 / 10 == 3000.1``) and no float drift creeps into
book keys.

Each mutation also reports what a subscriber with a window of ``len`` levels per side must receive
(the exchange maintains the window: a level pushed out of the top ``len`` gets a delete, a level
that moves into it gets an add), for every length in :data:`WINDOW_LENGTHS`.
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "ASK",
    "BID",
    "DEFAULT_PRICES",
    "WINDOW_LENGTHS",
    "Level",
    "MarketModel",
    "MarketStep",
    "SymbolBook",
    "Trade",
    "WireEntry",
    "base_currency",
    "default_initial_price",
    "tick_exponent",
]

BID = 1
"""Side of the bids; also the sign of a bid amount on the wire."""
ASK = -1
"""Side of the asks; also the sign of an ask amount on the wire."""

WINDOW_LENGTHS: tuple[int, ...] = (1, 25, 100, 250)
"""Window lengths (levels per side) for which every mutation reports the subscriber's entries."""

DEFAULT_PRICES: Mapping[str, float] = {
    "BTC": 60_000.0,
    "ETH": 3_000.0,
    "SOL": 150.0,
    "LTC": 80.0,
    "XRP": 0.5,
    "ADA": 0.4,
    "DOGE": 0.12,
    "DOT": 6.0,
    "AVAX": 30.0,
    "LINK": 15.0,
}
"""Starting mid prices by base currency; anything else starts at 100."""

TINY_SIZES: tuple[float, ...] = (0.00005, 4.2e-7, 0.0000886, 0.000001, 7e-7, 0.00012, 0.0004)
"""Sizes whose JavaScript text differs from Python's repr (the checksum trap)."""
INTEGRAL_SIZES: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 10.0, 12.0, 25.0)
"""Sizes that JavaScript prints without ``.0``."""

BOOK_SPAN_TICKS = 260
"""Depth of the book in ticks from the fair price; with ~65 % occupancy that is ~170 levels a side."""
TARGET_LEVELS = 170
"""Levels per side the model steers towards (more than 100, so levels cross the top-100 edge)."""
HISTORY_TRADES = 90
"""Trades invented at start-up so that snapshots and REST history are never empty."""


class WireEntry(NamedTuple):
    """One book entry as a subscriber receives it: delete = ``order_count`` 0 and ``amount`` ±1."""

    price: float
    order_count: int
    amount: float


class Trade(NamedTuple):
    """A trade as Bitfinex reports it: amount > 0 when the taker bought, < 0 when it sold."""

    id: int
    mts: int
    amount: float
    price: float


@dataclass(slots=True)
class Level:
    """An aggregated price level: number of orders and total size (always > 0)."""

    count: int
    size: float


@dataclass(slots=True)
class MarketStep:
    """What one step of the market did to one symbol."""

    symbol: str
    window_entries: dict[int, list[WireEntry]]
    trades: list[Trade]


def base_currency(symbol: str) -> str:
    """``tBTCUSD`` -> ``BTC``, ``tAVAX:USD`` -> ``AVAX``, ``btc_mxn`` -> ``BTC``."""
    text = symbol[1:] if symbol[:1] in ("t", "f") and symbol[1:2].isupper() else symbol
    for separator in (":", "_", "-", "/"):
        if separator in text:
            return text.split(separator, 1)[0].upper()
    return text[:3].upper()


def default_initial_price(symbol: str) -> float:
    """A plausible starting price for a symbol (BTC ~60,000, ETH ~3,000, unknown 100)."""
    return DEFAULT_PRICES.get(base_currency(symbol), 100.0)


def tick_exponent(price: float) -> int:
    """Power of ten of the tick that gives ``price`` five significant figures (Bitfinex P0)."""
    return math.floor(math.log10(price)) - 4


class SymbolBook:
    """A full aggregated book keyed by tick index, with best-first order kept per side."""

    def __init__(self, tick_exp: int, lengths: Iterable[int] = WINDOW_LENGTHS) -> None:
        self.tick_exp = tick_exp
        self.lengths = tuple(lengths)
        self._levels: dict[int, dict[int, Level]] = {BID: {}, ASK: {}}
        # Sort keys ascending = best first: -index for bids, index for asks.
        self._keys: dict[int, list[int]] = {BID: [], ASK: []}

    def price(self, index: int) -> float:
        """The float price of a tick index (exact double of its decimal text)."""
        if self.tick_exp >= 0:
            return float(index * 10**self.tick_exp)
        return index / 10 ** (-self.tick_exp)

    def depth(self, side: int) -> int:
        """Number of levels on one side."""
        return len(self._keys[side])

    def best_index(self, side: int) -> int | None:
        """Tick index of the best level of a side, or None when the side is empty."""
        keys = self._keys[side]
        if not keys:
            return None
        return -keys[0] if side == BID else keys[0]

    def index_at(self, side: int, rank: int) -> int:
        """Tick index of the level at ``rank`` (0 = best)."""
        key = self._keys[side][rank]
        return -key if side == BID else key

    def level(self, side: int, index: int) -> Level | None:
        """The level at a tick index, if any."""
        return self._levels[side].get(index)

    def top(self, side: int, depth: int) -> list[tuple[float, int, float]]:
        """Best ``depth`` levels of a side as ``(price, count, size)``, best first."""
        levels = self._levels[side]
        out = []
        for key in self._keys[side][:depth]:
            index = -key if side == BID else key
            level = levels[index]
            out.append((self.price(index), level.count, level.size))
        return out

    def empty_entries(self) -> dict[int, list[WireEntry]]:
        """A fresh per-window-length entry collector."""
        return {length: [] for length in self.lengths}

    def set_level(
        self, side: int, index: int, count: int, size: float, out: dict[int, list[WireEntry]]
    ) -> None:
        """Add or replace a level and append, per window length, what a subscriber must receive."""
        levels = self._levels[side]
        keys = self._keys[side]
        sort_key = -index if side == BID else index
        rank = bisect_left(keys, sort_key)
        entry = WireEntry(self.price(index), count, side * size)
        if index in levels:
            levels[index] = Level(count, size)
            for length in self.lengths:
                if rank < length:
                    out[length].append(entry)
            return
        keys.insert(rank, sort_key)
        levels[index] = Level(count, size)
        for length in self.lengths:
            if rank >= length:
                continue
            if len(keys) > length:  # the level that was last in the window is pushed out: delete first
                out[length].append(WireEntry(self.price(self.index_at(side, length)), 0, float(side)))
            out[length].append(entry)

    def delete_level(self, side: int, index: int, out: dict[int, list[WireEntry]]) -> None:
        """Remove a level and append, per window length, the delete and the level that moves in."""
        levels = self._levels[side]
        if index not in levels:
            return
        keys = self._keys[side]
        sort_key = -index if side == BID else index
        rank = bisect_left(keys, sort_key)
        del keys[rank]
        del levels[index]
        price = self.price(index)
        for length in self.lengths:
            if rank >= length:
                continue
            out[length].append(WireEntry(price, 0, float(side)))
            if len(keys) >= length:
                entering = self.index_at(side, length - 1)
                level = levels[entering]
                out[length].append(WireEntry(self.price(entering), level.count, side * level.size))


@dataclass(slots=True)
class _SymbolState:
    """Everything the model keeps for one symbol."""

    symbol: str
    rng: random.Random
    book: SymbolBook
    fair_index: float
    volatility_ticks: float
    base_size: float
    trades: list[Trade] = field(default_factory=list)
    trade_mts: list[int] = field(default_factory=list)


def _default_clock_ms() -> int:
    return int(time.time() * 1000)


class MarketModel:
    """Books and trades for several symbols, advanced one step at a time.

    ``trade_share`` is the probability that a step is a trade rather than a book update, so a caller
    stepping at ``updates + trades`` steps per second gets both rates on average.
    """

    def __init__(
        self,
        initial_prices: Mapping[str, float],
        *,
        seed: int | None = None,
        trade_share: float = 0.05,
        clock_ms: Callable[[], int] = _default_clock_ms,
        lengths: Iterable[int] = WINDOW_LENGTHS,
    ) -> None:
        if seed is None:
            seed = random.SystemRandom().randrange(1 << 32)
        self.seed = seed
        self.trade_share = trade_share
        self._clock_ms = clock_ms
        self._id_rng = random.Random(f"{seed}:trade-ids")
        self._next_trade_id = 1_400_000_000 + self._id_rng.randrange(100_000_000)
        self._last_mts = 0
        self._states: dict[str, _SymbolState] = {}
        for symbol, price in initial_prices.items():
            rng = random.Random(f"{seed}:{symbol}")
            tick_exp = tick_exponent(price)
            book = SymbolBook(tick_exp, lengths)
            fair = price / 10.0**tick_exp
            state = _SymbolState(
                symbol=symbol,
                rng=rng,
                book=book,
                fair_index=fair,
                volatility_ticks=0.35,
                base_size=max(10_000.0 / price, 0.001),
            )
            self._fill_initial_book(state)
            self._states[symbol] = state
        self._invent_history()

    # ----------------------------------------------------------------------------------- queries
    @property
    def symbols(self) -> list[str]:
        """Symbols in the order they were given."""
        return list(self._states)

    def book(self, symbol: str) -> SymbolBook:
        """The true full book of a symbol."""
        return self._states[symbol].book

    def trades(self, symbol: str) -> list[Trade]:
        """Full trade history of a symbol, oldest first (live list: do not mutate)."""
        return self._states[symbol].trades

    def trades_between(self, symbol: str, start_mts: int, end_mts: int) -> list[Trade]:
        """Trades with ``start_mts <= mts <= end_mts``, oldest first."""
        state = self._states[symbol]
        low = bisect_left(state.trade_mts, start_mts)
        high = bisect_left(state.trade_mts, end_mts + 1)
        return state.trades[low:high]

    # ----------------------------------------------------------------------------------- stepping
    def step(self, symbol: str) -> MarketStep:
        """Advance one symbol by one event (a book update burst or a trade)."""
        state = self._states[symbol]
        rng = state.rng
        state.fair_index += rng.gauss(0.0, state.volatility_ticks)
        out = state.book.empty_entries()
        if rng.random() < self.trade_share:
            trades = self._trade(state, out)
            return MarketStep(symbol, out, trades)
        actions = 1 if rng.random() < 0.8 else rng.randint(2, 4)
        for _ in range(actions):
            self._random_update(state, out)
        return MarketStep(symbol, out, [])

    def step_all(self) -> list[MarketStep]:
        """Advance every symbol by one step, in a fixed order (keeps trade ids deterministic)."""
        return [self.step(symbol) for symbol in self._states]

    # ----------------------------------------------------------------------------------- internals
    def _random_size(self, state: _SymbolState, scale: float = 1.0) -> float:
        rng = state.rng
        draw = rng.random()
        if draw < 0.07:
            return rng.choice(TINY_SIZES)
        if draw < 0.15:
            return rng.choice(INTEGRAL_SIZES)
        digits = rng.choice((2, 3, 4, 5, 6, 8, 8))
        size = round(rng.lognormvariate(math.log(state.base_size * scale), 1.0), digits)
        return size if size > 0 else 10.0**-digits

    def _random_count(self, rng: random.Random) -> int:
        return 1 + min(int(rng.expovariate(0.45)), 40)

    def _fill_initial_book(self, state: _SymbolState) -> None:
        rng = state.rng
        fair = math.floor(state.fair_index)
        sink = state.book.empty_entries()
        occupancy = TARGET_LEVELS / BOOK_SPAN_TICKS
        for offset in range(BOOK_SPAN_TICKS):
            if offset == 0 or rng.random() < occupancy:
                state.book.set_level(
                    BID, fair - offset, self._random_count(rng), self._random_size(state), sink
                )
            if offset == 0 or rng.random() < occupancy:
                state.book.set_level(
                    ASK, fair + 1 + offset, self._random_count(rng), self._random_size(state), sink
                )

    def _invent_history(self) -> None:
        """Make up recent trades (spread over the last ~15 minutes) without touching the books."""
        now = self._clock_ms()
        symbols = list(self._states)
        if not symbols:
            return
        history_rng = random.Random(f"{self.seed}:history")
        times = sorted(now - history_rng.randrange(1, 900_000) for _ in range(HISTORY_TRADES * len(symbols)))
        for mts in times:
            state = self._states[history_rng.choice(symbols)]
            tick_offset = history_rng.randint(-3, 3)
            price = state.book.price(math.floor(state.fair_index) + tick_offset)
            size = round(self._random_size(state, 0.2), 8)
            amount = size if history_rng.random() < 0.5 else -size
            self._record_trade(state, mts, amount, price)

    def _record_trade(self, state: _SymbolState, mts: int, amount: float, price: float) -> Trade:
        trade = Trade(self._next_trade_id, mts, amount, price)
        self._next_trade_id += self._id_rng.randint(1, 9)
        state.trades.append(trade)
        state.trade_mts.append(mts)
        self._last_mts = max(self._last_mts, mts)
        return trade

    def _pick_rank(self, rng: random.Random, depth: int, *, deepest_share: float) -> int:
        draw = rng.random()
        if draw < deepest_share:
            return depth - 1
        if draw < deepest_share + 0.45:
            return min(int(rng.expovariate(1 / 8)), depth - 1)
        return rng.randrange(depth)

    def _random_update(self, state: _SymbolState, out: dict[int, list[WireEntry]]) -> None:
        rng = state.rng
        book = state.book
        fair = state.fair_index
        best_ask = book.best_index(ASK)
        best_bid = book.best_index(BID)
        # A best level left on the wrong side of a moving price is cancelled first.
        if best_ask is not None and best_ask < fair - 2 and book.depth(ASK) > 1:
            book.delete_level(ASK, best_ask, out)
            return
        if best_bid is not None and best_bid > fair + 2 and book.depth(BID) > 1:
            book.delete_level(BID, best_bid, out)
            return
        side = BID if rng.random() < 0.5 else ASK
        depth = book.depth(side)
        imbalance = (depth - TARGET_LEVELS) / TARGET_LEVELS
        add_share = min(max(0.33 - 1.5 * imbalance, 0.05), 0.7)
        delete_share = min(max(0.30 + 1.5 * imbalance, 0.05), 0.7)
        draw = rng.random()
        if depth < 3 or draw < add_share:
            self._add_level(state, side, out)
        elif draw < add_share + delete_share:
            rank = self._pick_rank(rng, depth, deepest_share=0.25)
            book.delete_level(side, book.index_at(side, rank), out)
        else:
            rank = self._pick_rank(rng, depth, deepest_share=0.0)
            index = book.index_at(side, rank)
            level = book.level(side, index)
            assert level is not None
            count = max(1, level.count + rng.choice((-1, 0, 0, 1)))
            size = level.size if count != level.count and rng.random() < 0.2 else self._random_size(state)
            book.set_level(side, index, count, size, out)

    def _add_level(self, state: _SymbolState, side: int, out: dict[int, list[WireEntry]]) -> None:
        rng = state.rng
        book = state.book
        fair = math.floor(state.fair_index)
        near_touch = rng.random() < 0.6
        offset = int(rng.expovariate(1 / 6)) if near_touch else rng.randrange(BOOK_SPAN_TICKS)
        if side == BID:
            index = fair - offset
            best_ask = book.best_index(ASK)
            if best_ask is not None:
                index = min(index, best_ask - 1)
        else:
            index = fair + 1 + offset
            best_bid = book.best_index(BID)
            if best_bid is not None:
                index = max(index, best_bid + 1)
        for _ in range(12):  # prefer a free tick, moving away from the touch, so an add is an add
            if book.level(side, index) is None:
                break
            index -= side
        book.set_level(side, index, self._random_count(rng), self._random_size(state), out)

    def _trade(self, state: _SymbolState, out: dict[int, list[WireEntry]]) -> list[Trade]:
        """A taker order hits the best level of one side (sometimes sweeping it)."""
        rng = state.rng
        book = state.book
        best_bid = book.best_index(BID)
        best_ask = book.best_index(ASK)
        if best_bid is None or best_ask is None:
            return []
        mid = (best_bid + best_ask) / 2
        buy_probability = min(max(0.5 + (state.fair_index - mid) / 8, 0.2), 0.8)
        taker_buys = rng.random() < buy_probability
        side = ASK if taker_buys else BID
        index = best_ask if taker_buys else best_bid
        level = book.level(side, index)
        assert level is not None
        sweep = rng.random() < 0.3 and book.depth(side) > 3
        size = level.size if sweep else min(level.size, round(self._random_size(state, 0.2), 8))
        remaining = round(level.size - size, 8)
        mts = max(self._clock_ms(), self._last_mts)
        trade = self._record_trade(state, mts, size if taker_buys else -size, book.price(index))
        if remaining <= 0 and book.depth(side) > 1:
            book.delete_level(side, index, out)
        elif remaining <= 0:  # never empty a side: the last level is refilled instead
            book.set_level(side, index, level.count, self._random_size(state), out)
        else:
            count = level.count - 1 if level.count > 1 and rng.random() < 0.5 else level.count
            book.set_level(side, index, count, remaining, out)
        return [trade]
