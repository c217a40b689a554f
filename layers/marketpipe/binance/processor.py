"""Binance processor: mini-tickers, depth20 books, book metrics with time-weighted averages, alerts.

Everything is derived from the frames and their receive times, never from a wall clock, so
``marketpipe replay`` of the raw capture rebuilds the same rows (the watch list and the averaging
settings are recorded in the capture as a ``config`` record on connection :data:`CONFIG_CONN`).

Metrics per depth20 message (Decimal arithmetic, stored as doubles):

* ``spread = best_ask - best_bid``; ``spread_pct = spread * 100 / mid`` with ``mid = (bid + ask) / 2``;
* ``bid_vwap = Σ p·q / Σ q`` over the 20 bid levels (``ask_vwap`` likewise);
  ``price = (bid_vwap + ask_vwap) / 2``;
* ``avg_price_30s`` / ``avg_price_1m``: the **time-weighted** average of ``price`` over the window
  ``[t - W, t]`` ending at this message's receive time ``t``. ``price`` is a step function: each value
  holds from its message until the next one, but at most :attr:`AverageConfig.max_hold_ms` (after a
  longer silence the book is unknown, and an unknown stretch carries no weight). The average divides
  by the covered time, so it is defined from the second message on; on the first message of a symbol
  (nothing covered yet) it is that message's price. Sample-count averages would over-weight bursts;
  the time weighting is what "the average price over the last minute" means for irregular samples.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

import orjson

from marketpipe.binance import wire as binance
from marketpipe.binance.price_levels import PriceAlert, PriceLevelTracker, Watch, parse_watch_list
from marketpipe.records import Emit, RawFrame, Row
from marketpipe.tables.binance import (
    BINANCE_BOOK_METRICS,
    BINANCE_DEPTH20,
    BINANCE_MINI_TICKERS,
    BINANCE_PRICE_ALERTS,
)

log = logging.getLogger("marketpipe.binance")

CONFIG_CONN = "config"
DEPTH = binance.DEPTH_LEVELS
US = 1_000_000
DEFAULT_WINDOWS_S = (30, 60)
DEFAULT_MAX_HOLD_MS = 10_000
_CTX = Context(prec=60)
"""Wide enough that products and sums of 8-decimal prices and quantities are exact."""


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# ------------------------------------------------------------------------------------------ metrics
@dataclass(frozen=True, slots=True)
class BookMetrics:
    best_bid: Decimal | None
    best_ask: Decimal | None
    spread: Decimal | None
    spread_pct: Decimal | None
    bid_vwap: Decimal | None
    ask_vwap: Decimal | None
    price: Decimal | None


def vwap(levels: Sequence[tuple[Decimal, Decimal]]) -> Decimal | None:
    """Σ p·q / Σ q over the levels with a positive quantity; None for an empty side."""
    notional = Decimal(0)
    quantity = Decimal(0)
    for price, qty in levels:
        if qty > 0:
            notional = _CTX.add(notional, _CTX.multiply(price, qty))
            quantity = _CTX.add(quantity, qty)
    if quantity == 0:
        return None
    return _CTX.divide(notional, quantity)


def book_metrics(
    bids: Sequence[tuple[Decimal, Decimal]], asks: Sequence[tuple[Decimal, Decimal]]
) -> BookMetrics:
    """Best prices, spread (absolute and % of mid), VWAP per side and their mid (see module doc)."""
    best_bid = bids[0][0] if bids else None
    best_ask = asks[0][0] if asks else None
    spread = spread_pct = None
    if best_bid is not None and best_ask is not None:
        spread = _CTX.subtract(best_ask, best_bid)
        mid = _CTX.divide(_CTX.add(best_ask, best_bid), Decimal(2))
        spread_pct = _CTX.divide(_CTX.multiply(spread, Decimal(100)), mid) if mid else None
    bid_vwap, ask_vwap = vwap(bids), vwap(asks)
    price = None
    if bid_vwap is not None and ask_vwap is not None:
        price = _CTX.divide(_CTX.add(bid_vwap, ask_vwap), Decimal(2))
    return BookMetrics(best_bid, best_ask, spread, spread_pct, bid_vwap, ask_vwap, price)


# ------------------------------------------------------------------------------------------ averages
def time_weighted_average(
    samples: Iterable[tuple[int, Decimal]], end_us: int, window_us: int, max_hold_us: int
) -> Decimal | None:
    """Time-weighted mean of the step function through ``samples`` (time µs, value) over
    ``[end - window, end]``; each value holds until the next sample or ``max_hold``, whichever is first.

    Returns None when no sample lies at or before ``end``; the last value at or before ``end`` when the
    covered time is zero.
    """
    start = end_us - window_us
    ordered = sorted((t, v) for t, v in samples if t <= end_us)
    if not ordered:
        return None
    integral = Decimal(0)
    covered = 0
    for i, (t, value) in enumerate(ordered):
        until = min(t + max_hold_us, end_us)
        if i + 1 < len(ordered):
            until = min(until, ordered[i + 1][0])
        lo = max(t, start)
        if until > lo:
            integral = _CTX.add(integral, _CTX.multiply(value, Decimal(until - lo)))
            covered += until - lo
    if covered == 0:
        return ordered[-1][1]
    return _CTX.divide(integral, Decimal(covered))


@dataclass(frozen=True)
class AverageConfig:
    windows_s: tuple[int, ...] = DEFAULT_WINDOWS_S
    max_hold_ms: int = DEFAULT_MAX_HOLD_MS


class RollingAverages:
    """Per symbol, the samples of the longest window; averages for every window at each new sample."""

    def __init__(self, config: AverageConfig | None = None) -> None:
        self.config = config or AverageConfig()
        self._longest_us = max(self.config.windows_s) * US
        self._samples: dict[str, deque[tuple[int, Decimal]]] = {}

    def add(self, symbol: str, t_us: int, price: Decimal) -> tuple[Decimal | None, ...]:
        samples = self._samples.setdefault(symbol, deque())
        if samples and t_us < samples[-1][0]:
            t_us = samples[-1][0]  # never reorder the step function (receive times only grow)
        samples.append((t_us, price))
        # Keep one sample at or before the longest window's start: it covers the window's beginning.
        while len(samples) > 1 and samples[1][0] <= t_us - self._longest_us:
            samples.popleft()
        hold = self.config.max_hold_ms * 1000
        return tuple(time_weighted_average(samples, t_us, w * US, hold) for w in self.config.windows_s)

    def export(self) -> dict[str, list[list[object]]]:
        """JSON-able samples (exact decimal strings) to continue in another process (the Lambda)."""
        return {s: [[t, str(p)] for t, p in samples] for s, samples in self._samples.items()}

    def restore(self, state: dict[str, list[list[object]]]) -> None:
        self._samples = {
            s: deque((int(str(t)), Decimal(str(p))) for t, p in samples) for s, samples in state.items()
        }


# ------------------------------------------------------------------------------------------ processor
@dataclass
class Stats:
    frames: int = 0
    mini_tickers: int = 0
    depth_messages: int = 0
    stale_depth: int = 0
    """depth20 messages older (lower ``lastUpdateId``) than one already processed: skipped."""
    alerts: int = 0
    server_shutdowns: int = 0
    control_replies: int = 0
    control_errors: int = 0
    invalid_frames: int = 0
    symbols_seen: set[str] = field(default_factory=set)


def config_frame(watches: Sequence[Watch], averages: AverageConfig) -> str:
    """The capture record that makes a replay alert and average exactly like the live run."""
    return orjson.dumps(
        {
            "type": "config",
            "watch": [w.spec() for w in watches],
            "windows_s": list(averages.windows_s),
            "max_hold_ms": averages.max_hold_ms,
        }
    ).decode()


OnAlert = Callable[[PriceAlert], None]
OnTicker = Callable[[binance.MiniTicker], None]


class BinanceProcessor:
    """Frames in; mini-ticker, depth20, metrics and alert rows out; alerts and shutdowns signalled."""

    def __init__(
        self,
        emit: Emit,
        watches: Sequence[Watch] = (),
        averages: AverageConfig | None = None,
        *,
        on_alert: OnAlert | None = None,
        on_ticker: OnTicker | None = None,
    ) -> None:
        self.emit = emit
        self.on_alert = on_alert
        self.on_ticker = on_ticker
        self.stats = Stats()
        self.configure(watches, averages or AverageConfig())

    def configure(self, watches: Sequence[Watch], averages: AverageConfig) -> None:
        self.tracker = PriceLevelTracker(watches)
        self.averages = RollingAverages(averages)
        self._last_update: dict[str, int] = {}

    def process(self, frame: RawFrame) -> binance.Message | None:
        """Handle one frame; returns the parsed message (the collector acts on ``ServerShutdown``)."""
        self.stats.frames += 1
        if frame.direction != "in":
            return None
        try:
            if frame.conn == CONFIG_CONN:
                self._on_config(frame.frame)
                return None
            msg = binance.parse(frame.frame)
        except binance.BadFrame as exc:
            self.stats.invalid_frames += 1
            log.warning("binance: skipped a bad frame on %s (%s): %.300s", frame.conn, exc, frame.frame)
            return None
        if isinstance(msg, binance.MiniTickers):
            self._on_tickers(msg, frame.received_ts)
        elif isinstance(msg, binance.Depth):
            self._on_depth(msg, frame.received_ts)
        elif isinstance(msg, binance.ServerShutdown):
            self.stats.server_shutdowns += 1
        else:
            self.stats.control_replies += 1
            if msg.error is not None:
                self.stats.control_errors += 1
                log.warning("binance: request %s refused: %s", msg.id, msg.error)
        return msg

    def _on_config(self, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise binance.BadFrame("invalid JSON") from exc
        if not isinstance(msg, dict) or msg.get("type") != "config":
            raise binance.BadFrame("unknown config record")
        windows = msg.get("windows_s") or list(DEFAULT_WINDOWS_S)
        averages = AverageConfig(
            tuple(int(w) for w in windows), int(msg.get("max_hold_ms", DEFAULT_MAX_HOLD_MS))
        )
        self.configure(parse_watch_list(str(w) for w in msg.get("watch") or ()), averages)

    def _on_tickers(self, msg: binance.MiniTickers, received: int) -> None:
        rows: list[Row] = []
        alert_rows: list[Row] = []
        for t in msg.tickers:
            rows.append((t.event_ms * 1000, t.symbol, float(t.close), float(t.open), float(t.high),
                         float(t.low), float(t.base_volume), float(t.quote_volume), received))  # fmt: skip
            if self.on_ticker is not None:
                self.on_ticker(t)
            for alert in self.tracker.observe(t.symbol, t.close, t.event_ms * 1000):
                self.stats.alerts += 1
                w = alert.watch
                alert_rows.append(
                    (alert.event_us, w.symbol, float(w.level), w.direction, float(alert.price), received)
                )
                if self.on_alert is not None:
                    self.on_alert(alert)
        self.stats.mini_tickers += len(rows)
        if rows:
            self.emit(BINANCE_MINI_TICKERS, rows)
        if alert_rows:
            self.emit(BINANCE_PRICE_ALERTS, alert_rows)

    def _on_depth(self, msg: binance.Depth, received: int) -> None:
        # A late message of a closing connection (make-before-break overlap) must not move the book back.
        if msg.last_update_id < self._last_update.get(msg.symbol, -1):
            self.stats.stale_depth += 1
            return
        self._last_update[msg.symbol] = msg.last_update_id
        self.stats.depth_messages += 1
        self.stats.symbols_seen.add(msg.symbol)
        levels: list[object] = []
        for side in (msg.bids, msg.asks):
            for i in range(DEPTH):
                if i < len(side):
                    levels += (float(side[i][0]), float(side[i][1]))
                else:
                    levels += (None, None)
        self.emit(BINANCE_DEPTH20, [(msg.symbol, msg.last_update_id, received, *levels)])
        m = book_metrics(msg.bids[:DEPTH], msg.asks[:DEPTH])
        avg30: Decimal | None = None
        avg60: Decimal | None = None
        if m.price is not None:
            averages = self.averages.add(msg.symbol, received, m.price)
            avg30, avg60 = (*averages, None, None)[:2]
        self.emit(
            BINANCE_BOOK_METRICS,
            [(msg.symbol, received, msg.last_update_id, _f(m.best_bid), _f(m.best_ask), _f(m.spread),
              _f(m.spread_pct), _f(m.bid_vwap), _f(m.ask_vwap), _f(m.price), _f(avg30), _f(avg60))],
        )  # fmt: skip

    def export_state(self) -> dict[str, object]:
        """Settings, average samples and fired watches: all a stateless runtime must carry over."""
        return {
            "watch": [w.spec() for w in self.tracker.watches],
            "fired": [w.spec() for w in self.tracker.fired],
            "windows_s": list(self.averages.config.windows_s),
            "max_hold_ms": self.averages.config.max_hold_ms,
            "samples": self.averages.export(),
            "last_update_ids": dict(self._last_update),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        watches = parse_watch_list(str(w) for w in state.get("watch") or ())
        windows = tuple(int(w) for w in state.get("windows_s") or DEFAULT_WINDOWS_S)
        self.configure(watches, AverageConfig(windows, int(state.get("max_hold_ms", DEFAULT_MAX_HOLD_MS))))
        self.tracker.fired = set(parse_watch_list(str(w) for w in state.get("fired") or ()))
        self.averages.restore(state.get("samples") or {})
        self._last_update = {str(k): int(v) for k, v in (state.get("last_update_ids") or {}).items()}

    def handle(self, frame: RawFrame) -> None:
        """:meth:`process` for callers that only feed frames."""
        self.process(frame)

    def finish(self) -> None:
        """Nothing pending: every message's rows were emitted when it was processed."""

    def summary(self) -> str:
        s = self.stats
        return (
            f"binance: {s.frames} frames; mini-tickers {s.mini_tickers}, depth20 messages {s.depth_messages} "
            f"({len(s.symbols_seen)} symbols; stale skipped {s.stale_depth}), price alerts {s.alerts}, "
            f"server shutdowns {s.server_shutdowns}, invalid frames {s.invalid_frames}"
        )
