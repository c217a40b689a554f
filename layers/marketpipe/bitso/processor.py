"""Bitso spread sampler: best bid/ask per book, one observation per book per whole UTC second.

Sources, per book: the websocket ``orders`` channel (top 20 orders per side, a full replacement on every
change, so each frame alone gives the exact best bid/ask: nothing to resync, no REST snapshot needed)
and, while the websocket is down, REST ``/v3/order_book/`` answers.

Which seconds are sampled is a wall-clock decision, so the live sampler records it in the raw capture:
a ``tick`` frame on connection :data:`SAMPLER_CONN` after each second ends, listing the websocket
connections open at that moment. The observation of second ``S`` is the state after exactly the frames
received before ``S + 1`` (frames of the next second that were processed before the tick are kept out
by per-second snapshots), so ``marketpipe replay`` of the capture rebuilds the very same rows.

An observation of second ``S`` (its end ``E``) uses:

* ``websocket`` when the book has an ``orders`` state from a connection still open at the tick that
  delivered a frame (of any kind, ``ka`` included) within ``silence_limit`` before ``E``;
  ``age_ms = E - last frame on that connection`` (the socket confirms nothing changed since);
* otherwise ``rest`` when a REST answer for the book arrived during ``S``; ``age_ms = E - arrival``;
* otherwise ``missing``: bid, ask and spread NULL — never a carried-forward or invented value.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import orjson

from marketpipe.bitso import wire as bitso
from marketpipe.bitso.thresholds import DEFAULT_THRESHOLDS, Crossing, ThresholdTracker
from marketpipe.records import Emit, RawFrame, Row, is_rest_conn
from marketpipe.tables.bitso import BITSO_SPREADS
from marketpipe.timeutil import us_to_datetime
from marketpipe.wire import json_object

log = logging.getLogger("marketpipe.bitso")

SAMPLER_CONN = "sampler"
US = 1_000_000
DEFAULT_WINDOW_SECONDS = 600
DEFAULT_SILENCE_LIMIT_MS = 5_000
SOURCE_WS = "websocket"
SOURCE_REST = "rest"
SOURCE_MISSING = "missing"
MAX_SNAPSHOTS = 3600


def second_text(second: int) -> str:
    """Epoch second -> ``2022-04-30T04:10:26+00:00`` (the ``orderbook_timestamp`` format)."""
    return us_to_datetime(second * US).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def window_start_of(second: int, window_seconds: int) -> int:
    """Start (µs) of the UTC-aligned window holding ``second``."""
    return (second - second % window_seconds) * US


def validate_window(window_seconds: int) -> int:
    """Windows must be whole minutes dividing an hour, so the lake keeps one file per window."""
    from marketpipe.errors import ConfigError

    if window_seconds < 60 or window_seconds % 60 or 3600 % window_seconds:
        raise ConfigError(
            f"window of {window_seconds} s: must be a whole number of minutes dividing an hour "
            "(60, 120, 180, 240, 300, 600, 900, 1200, 1800, 3600)"
        )
    return window_seconds


def tick_frame(second: int, open_conns: Iterable[str]) -> str:
    return orjson.dumps({"type": "tick", "second": second, "open": sorted(open_conns)}).decode()


@dataclass(frozen=True)
class SamplerConfig:
    books: tuple[str, ...] = bitso.DEFAULT_BOOKS
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    silence_limit_ms: int = DEFAULT_SILENCE_LIMIT_MS
    thresholds: tuple[Decimal, ...] = DEFAULT_THRESHOLDS

    def frame(self) -> str:
        """The capture record that makes a replay use the same settings."""
        return orjson.dumps(
            {
                "type": "config",
                "books": list(self.books),
                "window_seconds": self.window_seconds,
                "silence_limit_ms": self.silence_limit_ms,
                "thresholds": [str(t) for t in self.thresholds],
            }
        ).decode()

    @classmethod
    def from_frame(cls, msg: dict[str, object]) -> SamplerConfig:
        books = msg.get("books")
        thresholds = msg.get("thresholds")
        return cls(
            books=tuple(str(b) for b in books) if isinstance(books, list) else bitso.DEFAULT_BOOKS,
            window_seconds=int(str(msg.get("window_seconds", DEFAULT_WINDOW_SECONDS))),
            silence_limit_ms=int(str(msg.get("silence_limit_ms", DEFAULT_SILENCE_LIMIT_MS))),
            thresholds=tuple(Decimal(str(t)) for t in thresholds)
            if isinstance(thresholds, list)
            else DEFAULT_THRESHOLDS,
        )


@dataclass(frozen=True, slots=True)
class BookState:
    ws_top: bitso.Top | None = None
    ws_conn: str | None = None
    rest_top: bitso.Top | None = None
    rest_us: int = 0


@dataclass(frozen=True, slots=True)
class Observation:
    book: str
    second: int
    bid: Decimal | None
    ask: Decimal | None
    spread: Decimal | None
    source: str
    age_ms: int | None

    @property
    def orderbook_timestamp(self) -> str:
        return second_text(self.second)

    def row(self, window_seconds: int) -> Row:
        return (
            self.orderbook_timestamp,
            self.book,
            None if self.bid is None else float(self.bid),
            None if self.ask is None else float(self.ask),
            None if self.spread is None else float(self.spread),
            self.source,
            self.age_ms,
            window_start_of(self.second, window_seconds),
        )


@dataclass
class Stats:
    frames: int = 0
    ticks: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {SOURCE_WS: 0, SOURCE_REST: 0, SOURCE_MISSING: 0})
    alerts: int = 0
    notices: int = 0
    invalid_frames: int = 0
    rest_errors: int = 0
    rate_limited: int = 0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    books: dict[str, BookState]
    last_seen: dict[str, int]


OnCrossing = Callable[[Crossing, Observation], None]


class BitsoProcessor:
    """Frames in (websocket, REST, sampler ticks), ``bitso_spreads`` rows and threshold crossings out."""

    def __init__(
        self,
        emit: Emit,
        config: SamplerConfig | None = None,
        *,
        on_crossing: OnCrossing | None = None,
        tracker_state: dict[str, list[str]] | None = None,
    ) -> None:
        self.emit = emit
        self.on_crossing = on_crossing
        self.stats = Stats()
        self.observations: list[Observation] = []
        """Kept only when :attr:`keep_observations` is set (the Lambda's minute chunk, tests)."""
        self.keep_observations = False
        self._tracker_state = tracker_state
        self.configure(config or SamplerConfig())
        self._books: dict[str, BookState] = {}
        self._last_seen: dict[str, int] = {}
        self._last_sec = -1
        self._snap_secs: list[int] = []
        self._snaps: list[_Snapshot] = []

    def configure(self, config: SamplerConfig) -> None:
        self.config = config
        self.tracker = ThresholdTracker(config.thresholds, self._tracker_state)

    # -------------------------------------------------------------------------------------- input
    def process(self, frame: RawFrame) -> None:
        self.stats.frames += 1
        second = frame.received_ts // US
        if second > self._last_sec:
            if self._last_sec >= 0:
                self._snap_secs.append(self._last_sec)
                self._snaps.append(_Snapshot(dict(self._books), dict(self._last_seen)))
                self._bound_snapshots()
            self._last_sec = second
        if frame.direction != "in":
            return
        conn = frame.conn
        try:
            if conn == SAMPLER_CONN:
                self._on_sampler(frame)
            elif is_rest_conn(conn):
                self._on_rest(frame)
            else:
                self._on_ws(frame)
        except bitso.BadFrame as exc:
            self.stats.invalid_frames += 1
            log.warning("bitso: skipped a bad frame on %s (%s): %.300s", conn, exc, frame.frame)

    def _on_ws(self, frame: RawFrame) -> None:
        self._last_seen[frame.conn] = frame.received_ts
        msg = bitso.parse_ws(frame.frame)
        if isinstance(msg, bitso.OrdersUpdate) and msg.book in self.config.books:
            state = self._books.get(msg.book, BookState())
            self._books[msg.book] = replace(state, ws_top=msg.top, ws_conn=frame.conn)

    def _on_rest(self, frame: RawFrame) -> None:
        book = bitso.book_of_rest_conn(frame.conn)
        if book is None or book not in self.config.books:
            return
        answer = bitso.parse_rest_book(frame.frame, book)
        if isinstance(answer, bitso.RestError):
            self.stats.rest_errors += 1
            self.stats.rate_limited += answer.rate_limited
            return
        state = self._books.get(book, BookState())
        self._books[book] = replace(state, rest_top=answer.top, rest_us=frame.received_ts)

    def _on_sampler(self, frame: RawFrame) -> None:
        msg = json_object(frame.frame)
        if msg.get("type") == "config":
            self.configure(SamplerConfig.from_frame(msg))
        elif msg.get("type") == "tick" and isinstance(msg.get("second"), int):
            opened = msg.get("open")
            self.sample(msg["second"], set(opened) if isinstance(opened, list) else set())
        else:
            raise bitso.BadFrame("unknown sampler record")

    # -------------------------------------------------------------------------------------- sampling
    def _state_at_end_of(self, second: int) -> _Snapshot:
        """The state after every frame received before ``second + 1`` (and none after)."""
        if second >= self._last_sec:
            return _Snapshot(self._books, self._last_seen)
        i = bisect.bisect_right(self._snap_secs, second) - 1
        if i < 0:
            return _Snapshot({}, {})
        snap = self._snaps[i]
        del self._snap_secs[:i], self._snaps[:i]
        return snap

    def _bound_snapshots(self) -> None:
        """A capture without ticks must not grow memory: keep at most an hour of per-second states."""
        if len(self._snaps) > MAX_SNAPSHOTS:
            del self._snap_secs[:-MAX_SNAPSHOTS], self._snaps[:-MAX_SNAPSHOTS]

    def sample(self, second: int, open_conns: set[str]) -> list[Observation]:
        """Observe every book for ``second``; emits the rows and feeds the threshold tracker."""
        self.stats.ticks += 1
        snap = self._state_at_end_of(second)
        end = (second + 1) * US
        observations = [self._observe(book, second, end, snap, open_conns) for book in self.config.books]
        self.emit(BITSO_SPREADS, [o.row(self.config.window_seconds) for o in observations])
        for obs in observations:
            self.stats.rows[obs.source] += 1
            for crossing in self.tracker.observe(obs.book, obs.spread, second):
                if crossing.is_alert:
                    self.stats.alerts += 1
                else:
                    self.stats.notices += 1
                if self.on_crossing is not None:
                    self.on_crossing(crossing, obs)
        if self.keep_observations:
            self.observations.extend(observations)
        return observations

    def _observe(
        self, book: str, second: int, end: int, snap: _Snapshot, open_conns: set[str]
    ) -> Observation:
        state = snap.books.get(book)
        if state is not None:
            top = state.ws_top
            if (
                top is not None
                and top.bid is not None
                and top.ask is not None
                and state.ws_conn in open_conns
            ):
                seen = snap.last_seen.get(state.ws_conn or "", 0)
                if end - seen <= self.config.silence_limit_ms * 1000:
                    return _observation(book, second, top, SOURCE_WS, end - seen)
            if state.rest_top is not None and second * US <= state.rest_us < end:
                return _observation(book, second, state.rest_top, SOURCE_REST, end - state.rest_us)
        return Observation(book, second, None, None, None, SOURCE_MISSING, None)

    def ws_fresh(self, book: str, now_us: int, open_conns: set[str]) -> bool:
        """Does the websocket currently carry a live state of ``book``? (REST is used only if not.)"""
        state = self._books.get(book)
        if state is None or state.ws_top is None or state.ws_conn not in open_conns:
            return False
        if state.ws_top.bid is None or state.ws_top.ask is None:
            return False
        seen = self._last_seen.get(state.ws_conn, 0)
        return now_us - seen <= self.config.silence_limit_ms * 1000

    def connection_closed(self, conn: str) -> None:
        """Forget a closed connection's activity (ticks already stop listing it)."""
        self._last_seen.pop(conn, None)

    def finish(self) -> None:
        """Nothing is pending: every sampled second was emitted when its tick was processed."""

    def summary(self) -> str:
        s = self.stats
        return (
            f"bitso: {s.ticks} seconds sampled; rows websocket {s.rows[SOURCE_WS]}, "
            f"rest {s.rows[SOURCE_REST]}, "
            f"missing {s.rows[SOURCE_MISSING]}; alerts {s.alerts}, notices {s.notices}; REST errors "
            f"{s.rest_errors} (rate-limited {s.rate_limited}); invalid frames {s.invalid_frames}"
        )


def _observation(book: str, second: int, top: bitso.Top, source: str, age_us: int) -> Observation:
    if top.bid is None or top.ask is None:
        return Observation(book, second, None, None, None, SOURCE_MISSING, None)
    return Observation(
        book, second, top.bid, top.ask, bitso.spread_percent(top.bid, top.ask), source, age_us // 1000
    )


def observations_from_rows(rows: Sequence[Sequence[object]]) -> list[Observation]:
    """Stored rows (as written) -> observations, for compaction and checks."""
    from datetime import datetime

    out = []
    for row in rows:
        ts, book, bid, ask, spread, source, age = row[:7]
        second = int(datetime.fromisoformat(str(ts)).timestamp())
        out.append(
            Observation(
                str(book),
                second,
                None if bid is None else Decimal(repr(bid)),
                None if ask is None else Decimal(repr(ask)),
                None if spread is None else Decimal(repr(spread)),
                str(source),
                None if age is None else int(str(age)),
            )
        )
    return out
