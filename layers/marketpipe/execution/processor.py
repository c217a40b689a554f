"""Captured REST books -> execution rows: the one processor used live, in ``replay`` and in the Lambda.

Capture records (exchange ``execution`` in the raw capture, so ``replay`` routes them here):

* conn ``config``: ``{"type": "config", "notionals": ["100000", "50000"]}`` — written when a run
  starts, so a replay prices the same notionals (unless ``replay --execution-notionals`` re-prices the
  history with others: then the processor's notionals are fixed and the records are only noted);
* conn ``rest:<venue>:<path>`` (``rest:coinbase:/products/BTC-USD/book?level=2``,
  ``rest:binance:/api/v3/depth?symbol=BTCUSDT&limit=1000``): a book body exactly as received.

Rows never depend on anything but those records (no wall clock), so ``replay`` rebuilds them exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation, localcontext

import orjson

from marketpipe.errors import ConfigError
from marketpipe.execution import binance_rest, coinbase
from marketpipe.execution.model import MODEL_EPOCH, date_row, minute_row, time_keys
from marketpipe.execution.walk import PRECISION, SIDES, Book, depth_quote, walk_book
from marketpipe.records import Emit, RawFrame, Row, is_rest_conn, parse_rest_conn
from marketpipe.tables import Table
from marketpipe.tables.execution import (
    EXECUTION_DIM_DATE,
    EXECUTION_DIM_EXCHANGE,
    EXECUTION_DIM_MARKET,
    EXECUTION_DIM_MINUTE,
    EXECUTION_QUOTES,
    EXECUTION_SNAPSHOTS,
)

log = logging.getLogger("marketpipe.execution")

CAPTURE_EXCHANGE = "execution"
CONFIG_CONN = "config"
DEFAULT_NOTIONALS: tuple[Decimal, ...] = (Decimal(100_000), Decimal(50_000))
DEFAULT_MARKETS = ("coinbase:BTC-USD", "coinbase:ETH-USD", "binance:BTCUSDT", "binance:ETHUSDT")
VENUES = (coinbase.EXCHANGE, binance_rest.EXCHANGE)

EXCHANGE_ROWS: dict[str, tuple[object, ...]] = {
    coinbase.EXCHANGE: (
        coinbase.EXCHANGE,
        "Coinbase Exchange",
        "GET /products/{id}/book?level=2",
        "full aggregated level-2 book",
        "10 requests/s per IP (bursts 15)",
        MODEL_EPOCH,
    ),
    binance_rest.EXCHANGE: (
        binance_rest.EXCHANGE,
        "Binance spot",
        "GET /api/v3/depth?symbol=…&limit=…",
        "top `limit` levels per side (max 5000)",
        "6000 request weight/min per IP",
        MODEL_EPOCH,
    ),
}


def usd_comparison(quote: str) -> str:
    """How prices in ``quote`` are compared with USD prices (stated in every market row)."""
    if quote == "USD":
        return "USD"
    if quote in ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI"):
        return f"{quote} taken at par (1 {quote} = 1 USD), no conversion"
    return f"{quote} (not comparable with USD)"


@dataclass(frozen=True, slots=True)
class MarketRef:
    """One configured market: ``coinbase:BTC-USD`` or ``binance:BTCUSDT``."""

    exchange: str
    symbol: str
    """The exchange's own id (``BTC-USD``, ``BTCUSDT``)."""
    base: str
    quote: str

    @property
    def market(self) -> str:
        """Normalized ``BASE-QUOTE`` (``BTC-USDT`` for Binance's ``BTCUSDT``)."""
        return f"{self.base}-{self.quote}"

    @property
    def spec(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    def dim_row(self) -> tuple[object, ...]:
        return (
            self.exchange,
            self.market,
            self.symbol,
            self.base,
            self.quote,
            usd_comparison(self.quote),
            MODEL_EPOCH,
        )


def parse_market(text: str) -> MarketRef:
    """``coinbase:BTC-USD`` / ``binance:BTCUSDT`` -> MarketRef; ConfigError otherwise."""
    venue, sep, symbol = text.strip().partition(":")
    venue = venue.lower()
    if not sep or venue not in VENUES:
        raise ConfigError(f"invalid market {text!r}: expected coinbase:<PRODUCT> or binance:<SYMBOL>")
    if venue == coinbase.EXCHANGE:
        product = coinbase.validate_product(symbol)
        base, quote = coinbase.split_product(product)
        return MarketRef(venue, product, base, quote)
    sym = binance_rest.validate_symbol(symbol)
    split = binance_rest.split_symbol(sym)
    assert split is not None  # validate_symbol checked it
    return MarketRef(venue, sym, *split)


def parse_markets(texts: Sequence[str]) -> tuple[MarketRef, ...]:
    markets = tuple(parse_market(t) for t in texts)
    if not markets:
        raise ConfigError("no execution markets configured")
    if len({m.spec for m in markets}) != len(markets):
        raise ConfigError("a market is listed twice in --execution-markets")
    return markets


def parse_notionals(texts: Sequence[str]) -> tuple[Decimal, ...]:
    """``["100000", "50000"]`` -> Decimals; ConfigError for non-positive or unreadable values."""
    out: list[Decimal] = []
    for text in texts:
        try:
            value = Decimal(str(text).strip().replace("_", ""))
        except InvalidOperation:
            raise ConfigError(f"invalid notional {text!r}: expected a number such as 100000") from None
        if not value.is_finite() or value <= 0:
            raise ConfigError(f"invalid notional {text!r}: must be positive")
        if not math.isfinite(float(value)):
            raise ConfigError(f"invalid notional {text!r}: too large")
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError("no execution notionals configured")
    return tuple(out)


def config_frame(notionals: Sequence[Decimal]) -> str:
    return orjson.dumps({"type": "config", "notionals": [str(n) for n in notionals]}).decode()


def market_of_conn(conn: str) -> MarketRef | None:
    """The market a ``rest:<venue>:<path>`` capture conn names, or None when it names none."""
    rest = parse_rest_conn(conn)
    if rest is None:
        return None
    venue, path = rest
    if venue == coinbase.EXCHANGE:
        product = coinbase.product_of_path(path)
        return parse_market(f"{venue}:{product}") if product else None
    if venue == binance_rest.EXCHANGE:
        symbol = binance_rest.symbol_of_path(path)
        return parse_market(f"{venue}:{symbol}") if symbol else None
    return None


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass
class Stats:
    snapshots: int = 0
    quotes: int = 0
    not_deep_enough: int = 0
    crossed: int = 0
    empty_sides: int = 0
    invalid: int = 0
    by_market: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PricedSnapshot:
    """What one captured body turns into."""

    snapshot: Row
    quotes: list[Row]


def price_snapshot(
    ref: MarketRef, received_ts: int, text: str, notionals: Sequence[Decimal]
) -> PricedSnapshot:
    """One body -> its snapshot row and one quote row per side × notional (ValueError: not a book)."""
    exchange_ts: int | None
    if ref.exchange == coinbase.EXCHANGE:
        cb = coinbase.parse_book(text)
        book, dropped, sequence, exchange_ts = cb.book, cb.dropped_levels, cb.sequence, cb.exchange_ts
        auction = int(cb.auction_mode)
    else:
        bn = binance_rest.parse_book(text)
        book, dropped, sequence, exchange_ts = bn.book, bn.dropped_levels, bn.last_update_id, None
        auction = 0
    keys = time_keys(received_ts)
    head = (ref.exchange, ref.market, ref.base, ref.quote, received_ts)
    when = (keys.date_key, keys.minute_of_day, keys.minute_key)
    crossed = int(book.crossed)
    snapshot = (
        *head,
        exchange_ts,
        *when,
        sequence,
        len(book.bids),
        len(book.asks),
        _f(book.best_bid),
        _f(book.best_ask),
        _f(book.mid),
        _f(_spread_bps(book)),
        crossed,
        auction,
        float(depth_quote(book.bids)),
        float(depth_quote(book.asks)),
        dropped,
        len(text.encode()),
    )
    quotes = []
    for side in SIDES:
        for notional in notionals:
            fill = walk_book(book, side, notional)
            quotes.append(
                (
                    *head,
                    *when,
                    side,
                    float(notional),
                    _f(fill.avg_price),
                    _f(fill.worst_price),
                    float(fill.base_filled),
                    float(fill.quote_spent),
                    float(fill.shortfall_quote),
                    _f(fill.mid),
                    _f(fill.slippage_bps),
                    int(fill.deep_enough),
                    fill.levels_used,
                    crossed,
                )
            )
    return PricedSnapshot(snapshot, quotes)


def _spread_bps(book: Book) -> Decimal | None:
    mid = book.mid
    if mid is None or book.best_ask is None or book.best_bid is None:
        return None
    with localcontext(Context(prec=PRECISION)):
        return (book.best_ask - book.best_bid) / mid * 10_000


class ExecutionProcessor:
    """Capture records in, snapshot/quote facts and their dimension rows out (see module doc)."""

    def __init__(
        self, emit: Emit, notionals: Sequence[Decimal] = DEFAULT_NOTIONALS, *, fixed: bool = False
    ) -> None:
        """``fixed``: price ``notionals`` whatever the capture's ``config`` records say (re-pricing)."""
        self.emit = emit
        self.notionals = tuple(notionals)
        self.fixed = fixed
        self.captured_notionals: list[tuple[Decimal, ...]] = []
        """The notionals of the ``config`` records seen while ``fixed`` (each distinct list once)."""
        self.stats = Stats()
        self._dims_seen: set[tuple[str, object]] = set()

    def process(self, frame: RawFrame) -> None:
        if frame.conn == CONFIG_CONN:
            self._configure(frame.frame)
        elif is_rest_conn(frame.conn):
            self._book(frame)
        else:
            self.stats.invalid += 1
            log.warning("execution: unknown capture conn %r skipped", frame.conn)

    def _configure(self, text: str) -> None:
        try:
            msg = orjson.loads(text)
            notionals = parse_notionals(msg["notionals"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
            self.stats.invalid += 1
            log.warning("execution: bad config record skipped (%s): %.200s", exc, text)
            return
        if not self.fixed:
            self.notionals = notionals
        elif notionals not in self.captured_notionals:
            self.captured_notionals.append(notionals)

    def _book(self, frame: RawFrame) -> None:
        try:
            ref = market_of_conn(frame.conn)
            if ref is None:
                raise ValueError(f"no market in conn {frame.conn!r}")
            priced = price_snapshot(ref, frame.received_ts, frame.frame, self.notionals)
        except (ValueError, ConfigError, orjson.JSONDecodeError) as exc:
            self.stats.invalid += 1
            log.warning("execution: unusable book body skipped (%s): %.200s", exc, frame.frame)
            return
        self._emit_dims(ref, frame.received_ts)
        self.emit(EXECUTION_SNAPSHOTS, [priced.snapshot])
        self.emit(EXECUTION_QUOTES, priced.quotes)
        s = self.stats
        s.snapshots += 1
        s.quotes += len(priced.quotes)
        s.by_market[ref.spec] = s.by_market.get(ref.spec, 0) + 1
        snap = priced.snapshot
        s.crossed += snap[EXECUTION_SNAPSHOTS.index["crossed"]]
        s.empty_sides += (snap[EXECUTION_SNAPSHOTS.index["bid_levels"]] == 0) + (
            snap[EXECUTION_SNAPSHOTS.index["ask_levels"]] == 0
        )
        deep = EXECUTION_QUOTES.index["deep_enough"]
        s.not_deep_enough += sum(1 for q in priced.quotes if not q[deep])

    def _emit_dims(self, ref: MarketRef, received_ts: int) -> None:
        keys = time_keys(received_ts)
        wanted: list[tuple[Table, tuple[str, object], tuple[object, ...] | None]] = [
            (EXECUTION_DIM_EXCHANGE, ("exchange", ref.exchange), EXCHANGE_ROWS.get(ref.exchange)),
            (EXECUTION_DIM_MARKET, ("market", ref.spec), None),
            (EXECUTION_DIM_DATE, ("date", keys.date_key), None),
            (EXECUTION_DIM_MINUTE, ("minute", keys.minute_of_day), None),
        ]
        for table, key, row in wanted:
            if key in self._dims_seen:
                continue
            self._dims_seen.add(key)
            if table is EXECUTION_DIM_MARKET:
                row = ref.dim_row()
            elif table is EXECUTION_DIM_DATE:
                row = date_row(received_ts)
            elif table is EXECUTION_DIM_MINUTE:
                row = minute_row(keys.minute_of_day)
            assert row is not None
            self.emit(table, [row])

    def finish(self) -> None:
        """Nothing is held back: every snapshot is complete when it arrives."""

    def summary(self) -> str:
        s = self.stats
        markets = ", ".join(f"{k} {v}" for k, v in sorted(s.by_market.items())) or "none"
        repriced = ""
        if self.fixed:
            captured = "; ".join(", ".join(map(str, n)) for n in self.captured_notionals) or "none"
            repriced = (
                f", re-priced at notionals {', '.join(map(str, self.notionals))} (captured: {captured})"
            )
        return (
            f"execution: {s.snapshots} book snapshots ({markets}), {s.quotes} execution quotes "
            f"({s.not_deep_enough} not deep enough){repriced}, crossed books {s.crossed}, empty sides "
            f"{s.empty_sides}, unusable records {s.invalid}"
        )
