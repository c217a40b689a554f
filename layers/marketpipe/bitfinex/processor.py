"""Bitfinex frames -> verified rows.

A pure state machine over :class:`RawFrame`s: the live collector feeds it every frame it receives and
``replay`` feeds it the raw capture, so both produce the same rows. It never does I/O; when the feed
can no longer be trusted it raises a :class:`Signal` that the live collector acts on (resubscribe,
reconnect, pause) and that replay simply ignores (the capture already holds what happened next).

Verified emission: ``bitfinex_book`` and ``bitfinex_quotes`` rows of a book are held back until a
later checksum frame matches the local book with every frame in between in sequence; a gap or a
mismatch discards them. On a feed without checksums, sequence continuity alone releases them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

import orjson

from marketpipe.bitfinex import wire as bfx
from marketpipe.book import OrderBook, apply_update
from marketpipe.records import Emit, RawFrame, Row, is_rest_conn
from marketpipe.tables import BITFINEX_BOOK, BITFINEX_QUOTES, BITFINEX_TRADES
from marketpipe.tables.bitfinex import BOOK_DEPTH
from marketpipe.timeutil import us_to_iso

log = logging.getLogger("marketpipe.bitfinex")

_TRADE_IDS_REMEMBERED = 20_000
_MAX_PENDING_ROWS = 200_000
_TRAILER_TAGS_WITH_PAYLOAD = frozenset(("te", "tu", "cs"))


class SignalKind(StrEnum):
    RESUBSCRIBE = "resubscribe"  # one channel's book is wrong: unsubscribe + subscribe again
    RECONNECT = "reconnect"  # the connection's stream is broken (gap, 20051): new socket, new snapshots
    PAUSE = "pause"  # maintenance started (20060): stop (re)subscribing
    RESUBSCRIBE_ALL = "resubscribe_all"  # maintenance ended (20061)
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBE_ERROR = "subscribe_error"
    CONF = "conf"


@dataclass(frozen=True, slots=True)
class Signal:
    kind: SignalKind
    conn: str
    reason: str = ""
    channel: str | None = None
    symbol: str | None = None  # wire symbol, e.g. tBTCUSD
    chan_id: int | None = None
    code: int | None = None


@dataclass(slots=True)
class Stats:
    """Counters a user (and the CloudWatch dashboard) cares about."""

    frames: int = 0
    invalid_frames: int = 0
    ignored_frames: int = 0
    gaps: int = 0
    checksum_ok: int = 0
    checksum_mismatches: int = 0
    reconnect_infos: int = 0
    maintenance: int = 0
    resyncs: int = 0
    subscribe_errors: int = 0
    book_rows: int = 0
    quote_rows: int = 0
    trade_rows: int = 0
    duplicate_trades: int = 0
    discarded_rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _BookChannel:
    __slots__ = (
        "book",
        "chan_id",
        "conn",
        "fresh_book",
        "has_snapshot",
        "pending_books",
        "pending_quotes",
        "symbol",
        "valid",
        "wire",
    )

    def __init__(self, conn: str, chan_id: int, wire: str, depth: int) -> None:
        self.conn = conn
        self.chan_id = chan_id
        self.wire = wire
        self.symbol = bfx.normalize_symbol(wire)
        self.book = OrderBook(depth)
        self.has_snapshot = False
        self.fresh_book = False
        """After an empty snapshot: the next levels to arrive are recorded as the new book's snapshot."""
        self.valid = True
        self.pending_books: list[Row] = []
        self.pending_quotes: list[Row] = []


class _TradesChannel:
    __slots__ = ("chan_id", "conn", "symbol", "wire")

    def __init__(self, conn: str, chan_id: int, wire: str) -> None:
        self.conn = conn
        self.chan_id = chan_id
        self.wire = wire
        self.symbol = bfx.normalize_symbol(wire)


@dataclass(slots=True)
class _Connection:
    conn: str
    flags: int | None = None
    checksums: bool = False
    last_seq: int | None = None
    channels: dict[int, _BookChannel | _TradesChannel] = field(default_factory=dict)


class _RecentIds:
    """The last N trade ids of a symbol: te/tu pairs and resubscription snapshots repeat them."""

    __slots__ = ("_ids", "_limit")

    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._limit = limit

    def last(self, n: int) -> list[int]:
        """The ``n`` most recent ids, oldest first."""
        ids = list(self._ids)
        return ids[-n:] if n else []

    def add(self, trade_id: int) -> bool:
        """True when the id is new."""
        if trade_id in self._ids:
            return False
        self._ids[trade_id] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True


class BitfinexProcessor:
    """Turns the frames of any number of Bitfinex connections into rows, verified by checksums."""

    def __init__(
        self,
        emit: Emit,
        *,
        on_signal: Callable[[Signal], None] | None = None,
        depth: int = BOOK_DEPTH,
    ) -> None:
        self._emit = emit
        self._on_signal = on_signal
        self._depth = depth
        self._connections: dict[str, _Connection] = {}
        self._active_books: dict[str, _BookChannel] = {}  # symbol -> the channel rows come from
        self._recent_trades: dict[str, _RecentIds] = {}
        self.last_trade_mts: dict[str, int] = {}  # wire symbol -> newest trade time seen (ms)
        self.stats = Stats()

    # ------------------------------------------------------------------ entry points

    def process(self, frame: RawFrame) -> None:
        """Consume one raw frame; malformed input is logged with its text and skipped."""
        if frame.direction != "in":
            return
        self.stats.frames += 1
        if is_rest_conn(frame.conn):
            self._on_rest(frame)
            return
        try:
            msg = orjson.loads(frame.frame)
        except orjson.JSONDecodeError:
            self._invalid(frame, "not JSON")
            return
        connection = self._connections.get(frame.conn)
        if connection is None:
            connection = self._connections[frame.conn] = _Connection(frame.conn)
        try:
            if type(msg) is list:
                self._on_array(connection, msg, frame)
            elif type(msg) is dict:
                self._on_event(connection, msg, frame)
            else:
                self._invalid(frame, "neither an event object nor a channel array")
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
            self._invalid(frame, f"unexpected shape ({exc.__class__.__name__}: {exc})")

    def connection_closed(self, conn: str) -> None:
        """The socket is gone: its unverified rows can never be verified."""
        connection = self._connections.pop(conn, None)
        if connection is None:
            return
        for channel in connection.channels.values():
            if isinstance(channel, _BookChannel):
                self._discard(channel, "connection closed")
                if self._active_books.get(channel.symbol) is channel:
                    del self._active_books[channel.symbol]

    def pending_rows(self, conn: str | None = None) -> int:
        """Rows waiting for a checksum, of one connection or all (a clean stop waits a little for them)."""
        return sum(
            len(c.pending_books) + len(c.pending_quotes)
            for c in self._active_books.values()
            if conn is None or c.conn == conn
        )

    def summary(self) -> str:
        stats = self.stats
        return (
            f"bitfinex: {stats.frames} frames; gaps {stats.gaps}, checksum mismatches "
            f"{stats.checksum_mismatches} (ok {stats.checksum_ok}), resyncs {stats.resyncs}, invalid frames "
            f"{stats.invalid_frames}, unverified rows discarded {stats.discarded_rows}"
        )

    def finish(self) -> None:
        """End of input: rows no checksum confirmed are discarded (the raw capture keeps the frames)."""
        for conn in list(self._connections):
            self.connection_closed(conn)

    # ------------------------------------------------------------------ checkpoints

    def export_state(self, trade_ids_per_symbol: int = 2_000) -> dict[str, Any]:
        """Everything needed to continue exactly where this processor is, as JSON-able data.

        A stateless runtime (the book-builder Lambda) saves this after every batch and restores it on
        the next one: books, sequence positions, rows still waiting for their checksum, the active
        connection per symbol and the most recent trade ids (keyed stores dedupe older ones; an append-only
        lake relies on these).
        """
        connections = []
        for connection in self._connections.values():
            channels = []
            for channel in connection.channels.values():
                if isinstance(channel, _BookChannel):
                    bids, asks = channel.book.levels()
                    channels.append(
                        {
                            "kind": "book",
                            "chan_id": channel.chan_id,
                            "wire": channel.wire,
                            "has_snapshot": channel.has_snapshot,
                            "fresh_book": channel.fresh_book,
                            "valid": channel.valid,
                            "bids": bids,
                            "asks": asks,
                            "pending_books": channel.pending_books,
                            "pending_quotes": channel.pending_quotes,
                            "active": self._active_books.get(channel.symbol) is channel,
                        }
                    )
                else:
                    channels.append({"kind": "trades", "chan_id": channel.chan_id, "wire": channel.wire})
            connections.append(
                {
                    "conn": connection.conn,
                    "flags": connection.flags,
                    "checksums": connection.checksums,
                    "last_seq": connection.last_seq,
                    "channels": channels,
                }
            )
        return {
            "version": 1,
            "connections": connections,
            "recent_trades": {s: r.last(trade_ids_per_symbol) for s, r in self._recent_trades.items()},
            "last_trade_mts": dict(self.last_trade_mts),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`export_state` (on a fresh processor)."""
        if state.get("version") != 1:
            raise ValueError(f"unsupported processor state version {state.get('version')!r}")
        self._connections.clear()
        self._active_books.clear()
        for saved in state["connections"]:
            connection = _Connection(saved["conn"], saved["flags"], saved["checksums"], saved["last_seq"])
            for ch in saved["channels"]:
                if ch["kind"] == "trades":
                    connection.channels[ch["chan_id"]] = _TradesChannel(
                        connection.conn, ch["chan_id"], ch["wire"]
                    )
                    continue
                channel = _BookChannel(connection.conn, ch["chan_id"], ch["wire"], self._depth)
                channel.has_snapshot, channel.valid = ch["has_snapshot"], ch["valid"]
                channel.fresh_book = ch["fresh_book"]
                for price, amount in (*ch["bids"], *ch["asks"]):
                    channel.book.apply(price, 1, amount)
                channel.pending_books = [tuple(r) for r in ch["pending_books"]]
                channel.pending_quotes = [tuple(r) for r in ch["pending_quotes"]]
                connection.channels[channel.chan_id] = channel
                if ch["active"]:
                    self._active_books[channel.symbol] = channel
            self._connections[connection.conn] = connection
        self._recent_trades = {}
        for symbol, ids in state["recent_trades"].items():
            recent = self._recent_trades[symbol] = _RecentIds(_TRADE_IDS_REMEMBERED)
            for trade_id in ids:
                recent.add(trade_id)
        self.last_trade_mts = dict(state["last_trade_mts"])

    # ------------------------------------------------------------------ channel arrays

    def _on_array(self, connection: _Connection, msg: list[Any], frame: RawFrame) -> None:
        if len(msg) < 2 or type(msg[0]) is not int:
            self._invalid(frame, "channel array without a channel id")
            return
        body = msg[1]
        base = 3 if type(body) is str and body in _TRAILER_TAGS_WITH_PAYLOAD else 2
        seq: int | None = None
        ts: int | None = None
        extra = len(msg) - base
        if extra > 0:
            flags = connection.flags
            if flags is not None:
                if flags & bfx.FLAG_TIMESTAMP:
                    ts = msg[-1]
                    if flags & bfx.FLAG_SEQ_ALL and extra >= 2:
                        seq = msg[-2]
                elif flags & bfx.FLAG_SEQ_ALL:
                    seq = msg[-1]
            elif extra >= 2:  # no conf seen (partial capture): payload…, SEQ, TS
                seq, ts = msg[-2], msg[-1]
            elif msg[-1] > 100_000_000_000:  # a lone trailer this large is a ms timestamp
                ts = msg[-1]
            else:
                seq = msg[-1]
            if (seq is not None and type(seq) is not int) or (ts is not None and type(ts) is not int):
                self._invalid(frame, "sequence/timestamp trailer is not an integer")
                return
        if seq is not None:
            last = connection.last_seq
            connection.last_seq = seq
            if last is not None and seq != last + 1:
                self._on_gap(connection, last, seq, frame)
        channel = connection.channels.get(msg[0])
        if channel is None:
            self.stats.ignored_frames += 1
            return
        if type(channel) is _BookChannel:
            if type(body) is str:
                if body == "cs":
                    self._on_checksum(connection, channel, msg[2], frame)
                elif body != "hb":
                    self._invalid(frame, f"unknown book message {body!r}")
                return
            if type(body) is not list:
                self._invalid(frame, "book payload is not a list")
                return
            exchange_ts = ts * 1000 if ts is not None else None
            if not channel.has_snapshot:
                self._on_book_snapshot(connection, channel, body, exchange_ts, seq, frame)
            elif channel.valid and self._active_books.get(channel.symbol) is channel:
                self._on_book_update(connection, channel, body, exchange_ts, seq, frame)
            return
        assert type(channel) is _TradesChannel
        if type(body) is str:
            if body == "te" or body == "tu":
                self._on_trades(channel, [msg[2]], frame)
            elif body != "hb":
                self._invalid(frame, f"unknown trades message {body!r}")
        elif type(body) is list:
            self._on_trades(channel, body, frame)
        else:
            self._invalid(frame, "trades payload is not a list")

    def _on_book_snapshot(
        self,
        connection: _Connection,
        channel: _BookChannel,
        levels: list[Any],
        exchange_ts: int | None,
        seq: int | None,
        frame: RawFrame,
    ) -> None:
        if not all(type(e) is list and len(e) >= 3 for e in levels):
            self._invalid(frame, "book snapshot entries must be [PRICE, COUNT, AMOUNT]")
            return
        previous = self._active_books.get(channel.symbol)
        if previous is not None and previous is not channel:
            self._discard(previous, "a newer snapshot took over the symbol")
        self._active_books[channel.symbol] = channel
        book = channel.book
        book.clear()
        symbol, received_ts = channel.symbol, frame.received_ts
        quotes = channel.pending_quotes
        for price, count, amount, *_ in levels:
            book.apply(price, count, amount)
            quotes.append(
                (
                    symbol,
                    exchange_ts,
                    received_ts,
                    seq,
                    "bid" if amount > 0 else "ask",
                    price,
                    count,
                    amount if amount > 0 else -amount,
                    "snapshot",
                )
            )
        channel.has_snapshot = True
        channel.valid = True
        if not levels:
            # Nothing in bitfinex_quotes could mark this reset, so store no row for it: the first levels
            # that arrive are recorded with action 'snapshot' instead (quotes always replay to books).
            channel.fresh_book = True
            log.info("%s: empty book snapshot; rows resume when the book has levels", symbol)
            return
        channel.fresh_book = False
        channel.pending_books.append(book.row((symbol, exchange_ts, received_ts, seq)))
        if not connection.checksums:
            self._release(channel)

    def _on_book_update(
        self,
        connection: _Connection,
        channel: _BookChannel,
        body: list[Any],
        exchange_ts: int | None,
        seq: int | None,
        frame: RawFrame,
    ) -> None:
        outcome = apply_update(
            channel.book,
            body,
            channel.pending_quotes,
            (channel.symbol, exchange_ts, frame.received_ts, seq),
            "snapshot" if channel.fresh_book else "update",
        )
        for _ in range(outcome >> 1):
            self._invalid(frame, "book level must be [PRICE, COUNT, AMOUNT]")
        if outcome & 1:
            channel.fresh_book = False
            channel.pending_books.append(
                channel.book.row((channel.symbol, exchange_ts, frame.received_ts, seq))
            )
        if not connection.checksums:
            self._release(channel)
        elif len(channel.pending_quotes) > _MAX_PENDING_ROWS:
            # Bitfinex checksums an active book every few seconds; this many rows without one means the
            # book can't be verified: treat it like a mismatch rather than hold rows forever.
            self.stats.resyncs += 1
            log.warning(
                "%s: %d book events without a checksum; discarding them and resubscribing",
                channel.symbol,
                len(channel.pending_quotes),
            )
            self._discard(channel, "no checksum")
            channel.valid = False
            self._signal(
                Signal(
                    SignalKind.RESUBSCRIBE,
                    connection.conn,
                    "no checksum received",
                    "book",
                    channel.wire,
                    channel.chan_id,
                )
            )

    def _on_checksum(
        self, connection: _Connection, channel: _BookChannel, expected: Any, frame: RawFrame
    ) -> None:
        if type(expected) is not int:
            self._invalid(frame, "checksum is not an integer")
            return
        connection.checksums = True
        if (
            not (channel.has_snapshot and channel.valid)
            or self._active_books.get(channel.symbol) is not channel
        ):
            return
        actual = channel.book.checksum()
        if actual == expected or (actual & 0xFFFFFFFF) == (expected & 0xFFFFFFFF):
            self.stats.checksum_ok += 1
            self._release(channel)
            return
        self.stats.checksum_mismatches += 1
        self.stats.resyncs += 1
        log.warning(
            "checksum mismatch on %s (conn %s, chan %d) at %s: expected %d, computed %d; "
            "discarding %d unverified book rows and resubscribing",
            channel.symbol,
            connection.conn,
            channel.chan_id,
            us_to_iso(frame.received_ts),
            expected,
            actual,
            len(channel.pending_books),
        )
        self._discard(channel, "checksum mismatch")
        channel.valid = False
        self._signal(
            Signal(
                SignalKind.RESUBSCRIBE,
                connection.conn,
                "checksum mismatch",
                "book",
                channel.wire,
                channel.chan_id,
            )
        )

    def _on_trades(self, channel: _TradesChannel, entries: list[Any], frame: RawFrame) -> None:
        rows = self._trade_rows(channel.wire, channel.symbol, entries, frame)
        if rows:
            self._emit(BITFINEX_TRADES, rows)

    def _trade_rows(self, wire: str, symbol: str, entries: list[Any], frame: RawFrame) -> list[Row]:
        recent = self._recent_trades.get(symbol)
        if recent is None:
            recent = self._recent_trades[symbol] = _RecentIds(_TRADE_IDS_REMEMBERED)
        rows: list[Row] = []
        newest = self.last_trade_mts.get(wire, 0)
        for entry in entries:
            if type(entry) is not list or len(entry) < 4:
                self._invalid(frame, "trade entry must be [ID, MTS, AMOUNT, PRICE]")
                continue
            trade_id, mts, amount, price = entry[0], entry[1], entry[2], entry[3]
            if type(trade_id) is not int or type(mts) is not int or amount == 0:
                self._invalid(frame, "trade entry has a bad id, time or amount")
                continue
            if not recent.add(trade_id):
                self.stats.duplicate_trades += 1
                continue
            if mts > newest:
                newest = mts
            rows.append(
                (
                    symbol,
                    trade_id,
                    mts * 1000,
                    price,
                    amount if amount > 0 else -amount,
                    "buy" if amount > 0 else "sell",
                    frame.received_ts,
                )
            )
        if newest:
            self.last_trade_mts[wire] = newest
        rows.sort(key=lambda r: r[1])
        self.stats.trade_rows += len(rows)
        return rows

    # ------------------------------------------------------------------ events

    def _on_event(self, connection: _Connection, msg: dict[str, Any], frame: RawFrame) -> None:
        event = msg.get("event")
        conn = connection.conn
        if event == "info":
            code = bfx.info_code(msg)
            if code is None:
                if "version" in msg and msg.get("version") != 2:
                    log.error("conn %s: server speaks API version %s, expected 2", conn, msg.get("version"))
                platform = msg.get("platform")
                if isinstance(platform, dict) and platform.get("status") == 0:
                    self.stats.maintenance += 1
                    self._signal(Signal(SignalKind.PAUSE, conn, "platform in maintenance", code=0))
                return
            if code == bfx.INFO_RECONNECT:
                self.stats.reconnect_infos += 1
                self.stats.resyncs += 1
                log.warning(
                    "conn %s: info 20051 (server restarting) at %s; reconnecting",
                    conn,
                    us_to_iso(frame.received_ts),
                )
                self._invalidate_books(connection, "server restarting (20051)")
                self._signal(Signal(SignalKind.RECONNECT, conn, "info 20051", code=code))
            elif code == bfx.INFO_MAINTENANCE_START:
                self.stats.maintenance += 1
                log.warning(
                    "conn %s: info 20060 (maintenance) at %s; pausing", conn, us_to_iso(frame.received_ts)
                )
                self._signal(Signal(SignalKind.PAUSE, conn, "info 20060", code=code))
            elif code == bfx.INFO_MAINTENANCE_END:
                self.stats.resyncs += 1
                log.warning(
                    "conn %s: info 20061 (maintenance over) at %s; resubscribing everything",
                    conn,
                    us_to_iso(frame.received_ts),
                )
                self._invalidate_books(connection, "maintenance ended (20061)")
                self._signal(Signal(SignalKind.RESUBSCRIBE_ALL, conn, "info 20061", code=code))
            else:
                log.info("conn %s: info %s: %s", conn, code, msg.get("msg"))
        elif event == "conf":
            if msg.get("status") == "OK" and isinstance(msg.get("flags"), int):
                connection.flags = msg["flags"]
                connection.checksums = bool(msg["flags"] & bfx.FLAG_OB_CHECKSUM)
                self._signal(Signal(SignalKind.CONF, conn, "conf OK"))
            elif "status" in msg:
                log.error("conn %s: conf refused: %s", conn, frame.frame)
                self._signal(Signal(SignalKind.SUBSCRIBE_ERROR, conn, f"conf refused: {frame.frame}"))
        elif event == "subscribed":
            self._on_subscribed(connection, msg, frame)
        elif event == "unsubscribed":
            chan_id = msg.get("chanId")
            channel = connection.channels.pop(chan_id, None) if isinstance(chan_id, int) else None
            if isinstance(channel, _BookChannel):
                self._discard(channel, "unsubscribed")
                if self._active_books.get(channel.symbol) is channel:
                    del self._active_books[channel.symbol]
            if channel is not None:
                self._signal(Signal(SignalKind.UNSUBSCRIBED, conn, "", None, channel.wire, chan_id))
        elif event == "error":
            code = bfx.info_code(msg)
            self.stats.subscribe_errors += 1
            log.error(
                "conn %s: error %s (%s) for %s %s",
                conn,
                code,
                msg.get("msg"),
                msg.get("channel"),
                msg.get("symbol"),
            )
            self._signal(
                Signal(
                    SignalKind.SUBSCRIBE_ERROR,
                    conn,
                    str(msg.get("msg", "")),
                    msg.get("channel"),
                    msg.get("symbol"),
                    msg.get("chanId"),
                    code,
                )
            )
        elif event in ("pong", "ping"):
            return
        else:
            self.stats.ignored_frames += 1

    def _on_subscribed(self, connection: _Connection, msg: dict[str, Any], frame: RawFrame) -> None:
        chan_id, channel_name, wire = msg.get("chanId"), msg.get("channel"), msg.get("symbol")
        if type(chan_id) is not int or not isinstance(wire, str):
            self._invalid(frame, "subscribed event without chanId/symbol")
            return
        if not wire.startswith("t"):
            # funding channels (fUSD) have other shapes; nothing of ours reads them
            log.info("conn %s: ignoring %s channel of %s", connection.conn, channel_name, wire)
            return
        if channel_name == "book":
            if str(msg.get("prec", "P0")).upper().startswith("R"):
                log.info("conn %s: ignoring raw book channel of %s", connection.conn, wire)
                return
            connection.channels[chan_id] = _BookChannel(connection.conn, chan_id, wire, self._depth)
        elif channel_name == "trades":
            connection.channels[chan_id] = _TradesChannel(connection.conn, chan_id, wire)
        else:
            log.info("conn %s: ignoring %s channel of %s", connection.conn, channel_name, wire)
            return
        self._signal(Signal(SignalKind.SUBSCRIBED, connection.conn, "", channel_name, wire, chan_id))

    def _on_gap(self, connection: _Connection, last: int, seq: int, frame: RawFrame) -> None:
        self.stats.gaps += 1
        self.stats.resyncs += 1
        log.warning(
            "sequence gap on conn %s at %s: expected %d, got %d; books can't be trusted, reconnecting",
            connection.conn,
            us_to_iso(frame.received_ts),
            last + 1,
            seq,
        )
        self._invalidate_books(connection, "sequence gap")
        self._signal(Signal(SignalKind.RECONNECT, connection.conn, f"sequence gap {last + 1} -> {seq}"))

    def _on_rest(self, frame: RawFrame) -> None:
        """A REST trades history body captured by the backfill: ``rest:/v2/trades/<wire>/hist``."""
        wire = bfx.wire_of_backfill_conn(frame.conn)
        if wire is None:
            self.stats.ignored_frames += 1
            return
        try:
            entries = orjson.loads(frame.frame)
        except orjson.JSONDecodeError:
            self._invalid(frame, "REST body is not JSON")
            return
        if not isinstance(entries, list) or (entries and entries[0] == "error"):
            self._invalid(frame, "REST trades body is not a list of trades")
            return
        rows = self._trade_rows(wire, bfx.normalize_symbol(wire), entries, frame)
        if rows:
            self._emit(BITFINEX_TRADES, rows)

    # ------------------------------------------------------------------ helpers

    def _release(self, channel: _BookChannel) -> None:
        if channel.pending_quotes:
            self.stats.quote_rows += len(channel.pending_quotes)
            self._emit(BITFINEX_QUOTES, channel.pending_quotes)
            channel.pending_quotes = []
        if channel.pending_books:
            self.stats.book_rows += len(channel.pending_books)
            self._emit(BITFINEX_BOOK, channel.pending_books)
            channel.pending_books = []

    def _discard(self, channel: _BookChannel, reason: str) -> None:
        dropped = len(channel.pending_books)
        if dropped or channel.pending_quotes:
            self.stats.discarded_rows += dropped + len(channel.pending_quotes)
            log.info("%s: discarded %d unverified book rows (%s)", channel.symbol, dropped, reason)
        channel.pending_books = []
        channel.pending_quotes = []

    def _invalidate_books(self, connection: _Connection, reason: str) -> None:
        for channel in connection.channels.values():
            if isinstance(channel, _BookChannel):
                self._discard(channel, reason)
                channel.valid = False

    def _signal(self, signal: Signal) -> None:
        if self._on_signal is not None:
            self._on_signal(signal)

    def _invalid(self, frame: RawFrame, reason: str) -> None:
        self.stats.invalid_frames += 1
        text = frame.frame if len(frame.frame) <= 500 else frame.frame[:500] + "…"
        log.warning(
            "invalid frame skipped (%s) on conn %s at %s: %s",
            reason,
            frame.conn,
            us_to_iso(frame.received_ts),
            text,
        )
