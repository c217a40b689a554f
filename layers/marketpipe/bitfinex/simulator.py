"""A loopback Bitfinex v2 exchange that speaks the real public wire protocol, with faults on demand.

Used by ``marketpipe run --simulate``, ``marketpipe simulate`` and the test suite, to prove that the
collector rebuilds books exactly and detects and recovers from every failure the real exchange
produces. It follows PROTOCOLS.md §1 (checklist §1.13):

* ``info`` on connect; ``conf`` flags per connection (TIMESTAMP, SEQ_ALL, OB_CHECKSUM, BULK_UPDATES);
  subscribe/unsubscribe acks and the generic error codes the live server returns (10000, 10300,
  10301, 10305, 10400); ``ping``/``pong``; non-JSON text ignored.
* ``book`` (P0..P4, F0/F1, len 1/25/100/250; P1..P4 and F1 are served the P0 real-time book),
  ``trades`` (``te`` then ``tu``) and ``ticker`` channels; heartbeats on every channel; ``cs``
  checksums computed from the exact token text put on the wire; the server keeps each book
  subscription's window of ``len`` levels (deletes for levels leaving it, adds for levels entering).
* Every number is JavaScript text (``60000``, ``0.00005``, ``4.2e-7``), never ``json.dumps(float)``.

REST (``api_url``, a small HTTP server on its own loopback port)::

    GET  /v2/trades/{symbol}/hist?start=MS&end=MS&limit=N&sort=1|-1   trade history
    GET  /v2/book/{symbol}/{P0..P4}?len=1|25|100|250                  book snapshot (flat array)
    GET  /v2/conf/pub:list:pair:exchange                              the pairs served, [["BTCUSD",…]]

Errors as the real API: HTTP 500 ``["error",10020,"symbol: invalid"]``; over the rate limit
(``rest_rate_limit_per_minute`` for trades, 240/min for the book) HTTP 429
``["error",11010,"ratelimit: error"]``.

Control endpoints on the same HTTP server, so ``marketpipe simulate`` can be driven from another
process (query string or JSON body; ``symbol``, ``duration`` seconds, ``conn`` = connection number)::

    POST /_sim/fault/<name>?symbol=tBTCUSD&duration=5&conn=1    inject a fault, answers {"ok":true,...}
    GET  /_sim/status                                            counters as JSON
    GET  /_sim/book/<symbol>?depth=N                             the true book (bids, asks)

    e.g.  curl -X POST 'http://127.0.0.1:PORT/_sim/fault/drop_frame?symbol=tBTCUSD'

Faults (:meth:`BitfinexSimulator.inject`; every fault targets all open connections unless ``conn``
is given):

``drop_frame``            the next book update frame (matching ``symbol``) is not sent but its
                          sequence number is consumed and the server book moves on: a seq gap.
``corrupt_level``         one top-of-book level is sent with a wrong amount (the true book is kept),
                          followed at once by a (true) checksum: a checksum mismatch.
``close``                 abrupt close: the TCP connection is aborted, no close frame (code 1006).
``info_20051``            info 20051 (server restarting), then a close (1012) ``duration`` seconds
                          later (default 0.5); no data meanwhile.
``maintenance``           info 20060, no data (heartbeats continue) for ``duration`` seconds (default
                          10), then info 20061. Subscriptions received meanwhile are answered after
                          20061. Without ``conn`` new connections also start in maintenance
                          (``platform.status`` 0).
``silence``               nothing at all is written (heartbeats included) for ``duration`` seconds
                          (default 40), the socket stays open; what was produced meanwhile is then
                          delivered (like a stalled TCP stream).
``refuse_subscription``   the next valid subscribe (for ``symbol``) gets error 10300
                          ``"subscribe: failed"``.
``subscription_limit``    the next valid subscribe (for ``symbol``) gets error 10305
                          ``"subscribe: limit"``.

Sockets with no subscription for ``idle_timeout`` seconds are aborted, like the real server.
Run it in the foreground with ``python -m marketpipe.bitfinex.simulator`` (see :func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from marketpipe import envnames
from marketpipe.bitfinex.market import (
    ASK,
    BID,
    MarketModel,
    MarketStep,
    WireEntry,
    default_initial_price,
)
from marketpipe.bitfinex.simulator_wire import (
    BOOK_LENGTHS,
    BOOK_PRECISIONS,
    BULK_UPDATES,
    CHECKSUM_DEPTH,
    OB_CHECKSUM,
    SEQ_ALL,
    TIMESTAMP,
    book_checksum,
    book_tokens,
    entries_text,
    entry_text,
    normalize_symbol,
    pair_of,
    trade_text,
)
from marketpipe.jsnum import js_num_str_cached
from marketpipe.simulator.http import HttpRequest, HttpResponse
from marketpipe.simulator.loopback import LoopbackSimulator, optional_float

__all__ = ["FAULTS", "BitfinexSimulator", "ConnectionStats", "main", "serve_forever"]

log = logging.getLogger(__name__)

FAULTS: tuple[str, ...] = (
    "drop_frame",
    "corrupt_level",
    "close",
    "info_20051",
    "maintenance",
    "silence",
    "refuse_subscription",
    "subscription_limit",
)
DEFAULT_FAULT_DURATION = {"info_20051": 0.5, "maintenance": 10.0, "silence": 40.0}

CHANNELS = ("book", "trades", "ticker")
TRADES_SNAPSHOT_SIZE = 30
TU_DELAY_SECONDS = 0.03
TICKER_INTERVAL_SECONDS = 1.0
BOOK_REST_LIMIT_PER_MINUTE = 240
REST_LIMIT_MAX = 10_000
REST_LIMIT_DEFAULT = 125
MSG_20051 = "Stop/Restart Websocket Server (please reconnect)"
MSG_20060 = (
    "Entering in Maintenance mode. Please pause any activity and resume after receiving the info "
    "message 20061 (it should take 120 seconds at most)."
)
MSG_20061 = (
    "Maintenance ended. You can resume normal activity. It is advised to unsubscribe/subscribe "
    "again all channels."
)
NOT_FOUND_HTML = "<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>"

num = js_num_str_cached


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """What the server did on one connection (for tests and ``/_sim/status``)."""

    conn_id: int
    open: bool
    flags: int
    frames_sent: int
    array_frames_sent: int
    last_seq: int
    subscriptions: int
    frames_dropped: int


@dataclass(slots=True, eq=False)
class _Subscription:
    """One channel on one connection."""

    chan_id: int
    channel: str
    symbol: str
    key: tuple[str, ...]
    length: int
    next_heartbeat_at: float
    next_checksum_at: float
    next_ticker_at: float
    changed: bool = False
    pending_tu: list[tuple[float, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A pending ``refuse_subscription``/``subscription_limit`` fault."""

    code: int
    msg: str
    symbol: str | None
    conn_id: int | None


class _Connection:
    """Per-socket state: flags, subscriptions, the sequence counter and an ordered outbox.

    Frames are numbered when they are queued and written by one writer task, so the sequence on the
    wire is exactly the queue order, and a slow client never blocks the market.
    """

    def __init__(self, conn_id: int, ws: ServerConnection, now: float, first_chan_id: int) -> None:
        self.id = conn_id
        self.ws = ws
        self.flags = 0
        self.subs: dict[int, _Subscription] = {}
        self.next_chan_id = first_chan_id
        self.seq = 0
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.frames_sent = 0
        self.array_frames_sent = 0
        self.frames_dropped = 0
        self.idle_since = now
        self.silenced_until = 0.0
        self.maintenance_until: float | None = None
        self.restarting = False
        self.closing = False
        self.deferred: list[dict[str, Any]] = []
        self.pending_drops: list[str | None] = []

    def stats(self) -> ConnectionStats:
        return ConnectionStats(
            conn_id=self.id,
            open=not self.closing,
            flags=self.flags,
            frames_sent=self.frames_sent,
            array_frames_sent=self.array_frames_sent,
            last_seq=self.seq,
            subscriptions=len(self.subs),
            frames_dropped=self.frames_dropped,
        )

    @property
    def data_paused(self) -> bool:
        """True while market data must not be sent (closing, restarting or in maintenance)."""
        return self.closing or self.restarting or self.maintenance_until is not None


class _RateWindow:
    """At most ``limit`` hits in any 60 s window (``limit <= 0`` disables it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._hits: collections.deque[float] = collections.deque()

    def allow(self, now: float) -> bool:
        if self.limit <= 0:
            return True
        while self._hits and now - self._hits[0] >= 60.0:
            self._hits.popleft()
        if len(self._hits) >= self.limit:
            return False
        self._hits.append(now)
        return True


class BitfinexSimulator(LoopbackSimulator):
    """A loopback Bitfinex (websocket + REST) over a seeded random market; see the module docstring."""

    def __init__(
        self,
        symbols: Iterable[str] | Mapping[str, float] = ("tBTCUSD", "tETHUSD"),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        updates_per_second: float = 20.0,
        trades_per_second: float = 1.0,
        heartbeat_interval: float = 15.0,
        checksum_interval: float = 2.5,
        max_subscriptions: int = 25,
        idle_timeout: float = 60.0,
        rest_rate_limit_per_minute: int = 30,
        rest_port: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(symbols, Mapping):
            prices = {normalize_symbol(s): float(p) for s, p in symbols.items()}
        else:
            prices = {normalize_symbol(s): default_initial_price(s) for s in symbols}
        steps_per_second = max(updates_per_second, 0.0) + max(trades_per_second, 0.0)
        trade_share = max(trades_per_second, 0.0) / steps_per_second if steps_per_second > 0 else 0.0
        self.market = MarketModel(prices, seed=seed, trade_share=trade_share)
        self.seed = self.market.seed
        self.host = host
        self.port = port
        self.rest_port = rest_port if rest_port is not None else (port + 1 if port else 0)
        self.steps_per_second = steps_per_second
        self.heartbeat_interval = heartbeat_interval
        self.checksum_interval = checksum_interval
        self.max_subscriptions = max_subscriptions
        self.idle_timeout = idle_timeout
        self._rng = random.Random(f"{self.seed}:server")
        self.server_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        self._trades_rate = _RateWindow(rest_rate_limit_per_minute)
        self._book_rate = _RateWindow(BOOK_REST_LIMIT_PER_MINUTE)

        self.subscriptions_total = 0
        self.faults_applied: collections.Counter[str] = collections.Counter()

        self._connections: dict[int, _Connection] = {}
        self._closed_stats: collections.deque[ConnectionStats] = collections.deque(maxlen=1000)
        self._refusals: list[_Refusal] = []
        self._maintenance_until = 0.0
        self._market_paused = False
        limits = [heartbeat_interval, checksum_interval, TICKER_INTERVAL_SECONDS]
        if idle_timeout > 0:
            limits.append(idle_timeout)
        self._tick_seconds = min(max(min(limits) / 10, 0.005), 0.1)

    # =============================================================================== lifecycle
    @property
    def symbols(self) -> list[str]:
        """Symbols served (with their ``t`` prefix)."""
        return self.market.symbols

    async def start(self) -> None:
        """Bind the websocket and HTTP servers and start the market; ``ws_url``/``api_url`` are set."""
        base = await self._serve(
            self._handle_connection, self.host, self.port, router=self._route_http, rest_port=self.rest_port
        )
        self.ws_url = f"{base}/ws/2"
        self._spawn(self._run_market())
        self._spawn(self._run_housekeeping())

    # =============================================================================== truth for tests
    def true_book(
        self, symbol: str, depth: int = 100
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The server's book: (bids best first, asks best first) as ``(price, size > 0)``."""
        book = self.market.book(normalize_symbol(symbol))
        bids = [(price, size) for price, _count, size in book.top(BID, depth)]
        asks = [(price, size) for price, _count, size in book.top(ASK, depth)]
        return bids, asks

    def true_levels(self, symbol: str, depth: int = 100) -> dict[float, float]:
        """The server's top ``depth`` levels as ``price -> signed amount`` (asks negative)."""
        bids, asks = self.true_book(symbol, depth)
        return {**{p: s for p, s in bids}, **{p: -s for p, s in asks}}

    def true_checksum(self, symbol: str, length: int = 100) -> int:
        """Checksum a subscriber with window ``length`` should compute now."""
        return self._checksum(normalize_symbol(symbol), length)

    def trades(self, symbol: str) -> list[tuple[int, int, float, float]]:
        """Full trade history ``[id, mts, amount, price]``, oldest first."""
        return list(self.market.trades(normalize_symbol(symbol)))

    def connection_stats(self) -> list[ConnectionStats]:
        """Counters of closed (most recent 1000) and open connections, by connection number."""
        stats = list(self._closed_stats) + [c.stats() for c in self._connections.values()]
        return sorted(stats, key=lambda s: s.conn_id)

    def frames_sent(self, conn: int) -> int:
        """Frames written on connection number ``conn``."""
        return next((s.frames_sent for s in self.connection_stats() if s.conn_id == conn), 0)

    @property
    def open_connections(self) -> list[int]:
        """Numbers of the connections currently open."""
        return [c.id for c in self._connections.values() if not c.closing]

    def pause_market(self) -> None:
        """Freeze the market (heartbeats and checksums go on), e.g. to compare a client with the truth."""
        self._market_paused = True

    def resume_market(self) -> None:
        """Let the market move again."""
        self._market_paused = False

    def advance(self, steps: int = 1) -> None:
        """Advance every symbol by ``steps`` market events right now (call on the server's loop)."""
        for _ in range(steps):
            self._advance_once()

    # =============================================================================== faults
    def inject(
        self,
        fault: str,
        *,
        symbol: str | None = None,
        duration: float | None = None,
        conn: int | None = None,
    ) -> None:
        """Inject a fault (see the module docstring); safe to call from any thread once started."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if self._loop is None:
            raise RuntimeError("simulator is not started")
        target_symbol = normalize_symbol(symbol) if symbol else None
        if target_symbol is not None and target_symbol not in self.market.symbols:
            raise ValueError(f"unknown symbol {symbol!r}")
        seconds = duration if duration is not None else DEFAULT_FAULT_DURATION.get(fault, 0.0)
        self.faults_injected[fault] += 1
        self._on_loop(self._apply_fault, fault, target_symbol, seconds, conn)

    def _apply_fault(self, fault: str, symbol: str | None, seconds: float, conn_id: int | None) -> None:
        assert self._loop is not None
        now = self._loop.time()
        targets = [c for c in self._connections.values() if not c.closing and conn_id in (None, c.id)]
        if fault == "refuse_subscription":
            self._refusals.append(_Refusal(10300, "subscribe: failed", symbol, conn_id))
        elif fault == "subscription_limit":
            self._refusals.append(_Refusal(10305, "subscribe: limit", symbol, conn_id))
        elif fault == "maintenance" and conn_id is None:
            self._maintenance_until = now + seconds
        for conn in targets:
            self.faults_applied[fault] += 1
            if fault == "drop_frame":
                conn.pending_drops.append(symbol)
            elif fault == "corrupt_level":
                self._corrupt_level(conn, symbol, now)
            elif fault == "close":
                self._abort(conn)
            elif fault == "info_20051":
                self._send_event(conn, {"event": "info", "code": 20051, "msg": MSG_20051})
                conn.restarting = True
                self._spawn(self._close_later(conn, seconds, 1012, "Service Restart"))
            elif fault == "maintenance":
                if conn.maintenance_until is None:
                    self._send_event(conn, {"event": "info", "code": 20060, "msg": MSG_20060})
                conn.maintenance_until = max(conn.maintenance_until or 0.0, now + seconds)
            elif fault == "silence":
                conn.silenced_until = max(conn.silenced_until, now + seconds)

    def _corrupt_level(self, conn: _Connection, symbol: str | None, now: float) -> None:
        """Send the best level of one book with a wrong amount, then the true checksum at once."""
        for sub in conn.subs.values():
            if sub.channel != "book" or symbol not in (None, sub.symbol):
                continue
            book = self.market.book(sub.symbol)
            side = BID if book.depth(BID) else ASK
            top = book.top(side, 1)
            if not top:
                continue
            price, count, size = top[0]
            wrong = round(size * 2 + 0.5, 8)
            self._send_array(conn, f"{sub.chan_id},{entry_text(WireEntry(price, count, side * wrong))}")
            sub.changed = True
            if conn.flags & OB_CHECKSUM:
                self._send_checksum(conn, sub, now)
                sub.changed = True  # the client stays wrong until it resubscribes: keep checking
            return

    def _abort(self, conn: _Connection) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        conn.closing = True
        conn.ws.transport.abort()

    async def _close_later(self, conn: _Connection, seconds: float, code: int, reason: str) -> None:
        await asyncio.sleep(seconds)
        conn.closing = True
        with contextlib.suppress(Exception):
            await conn.ws.close(code, reason)

    # =============================================================================== connections
    async def _handle_connection(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.connections_accepted += 1
        conn = _Connection(self.connections_accepted, ws, now, self._rng.randint(1_000, 400_000))
        self._connections[conn.id] = conn
        writer = asyncio.ensure_future(self._write_loop(conn))
        in_maintenance = self._maintenance_until > now
        if in_maintenance:
            conn.maintenance_until = self._maintenance_until
        self._send_event(
            conn,
            {
                "event": "info",
                "version": 2,
                "serverId": self.server_id,
                "platform": {"status": 0 if in_maintenance else 1},
            },
        )
        try:
            async for message in ws:
                if isinstance(message, str) and not conn.closing:
                    try:
                        self._on_text(conn, message)
                    except Exception:  # a bad request must never take the connection down
                        log.exception("bitfinex simulator: error handling %r", message[:200])
        except ConnectionClosed:
            pass
        finally:
            conn.closing = True
            self._connections.pop(conn.id, None)
            self._closed_stats.append(conn.stats())
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_loop(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                text = await conn.outbox.get()
                while (delay := conn.silenced_until - loop.time()) > 0:
                    await asyncio.sleep(delay)
                await conn.ws.send(text)
                conn.frames_sent += 1
                if text.startswith("["):
                    conn.array_frames_sent += 1
        except ConnectionClosed:
            conn.closing = True

    def _send_event(self, conn: _Connection, event: dict[str, Any]) -> None:
        conn.outbox.put_nowait(orjson.dumps(event).decode())

    def _send_array(self, conn: _Connection, body: str) -> None:
        """Queue ``[body, SEQ?, TS?]``; every array frame takes the next sequence number."""
        conn.seq += 1
        trailer = ""
        if conn.flags & SEQ_ALL:
            trailer += f",{conn.seq}"
        if conn.flags & TIMESTAMP:
            trailer += f",{_now_ms()}"
        conn.outbox.put_nowait(f"[{body}{trailer}]")

    def _error(self, conn: _Connection, code: int, msg: str, echo: Mapping[str, Any]) -> None:
        self._send_event(conn, {"event": "error", "msg": msg, "code": code, **echo})

    # =============================================================================== requests
    def _on_text(self, conn: _Connection, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return  # the real server ignores non-JSON text
        if not isinstance(message, dict):
            return
        event = message.get("event")
        if event == "conf":
            flags = message.get("flags")
            if isinstance(flags, int) and not isinstance(flags, bool):
                conn.flags = flags
                self._send_event(conn, {"event": "conf", "status": "OK", "flags": flags})
            else:
                self._send_event(conn, {"event": "conf", "status": "FAILED", "flags": flags})
        elif event == "subscribe":
            self._subscribe(conn, message)
        elif event == "unsubscribe":
            self._unsubscribe(conn, message)
        elif event == "ping":
            pong: dict[str, Any] = {"event": "pong", "ts": _now_ms()}
            if "cid" in message:
                pong["cid"] = message["cid"]
            self._send_event(conn, pong)
        else:
            self._error(conn, 10000, f"event: invalid ({event})", {})

    def _subscribe(self, conn: _Connection, request: dict[str, Any]) -> None:
        if conn.maintenance_until is not None:
            conn.deferred.append(request)  # answered after 20061
            return
        echo = {k: v for k, v in request.items() if k != "event"}
        channel = request.get("channel")
        raw_symbol = request.get("symbol")
        symbol = normalize_symbol(raw_symbol) if isinstance(raw_symbol, str) and raw_symbol else None
        if symbol is not None:
            echo["symbol"] = symbol
            echo["pair"] = pair_of(symbol)
        if channel not in CHANNELS:
            self._error(conn, 10300, "channel: unknown", echo)
            return
        if symbol is None or symbol not in self.market.symbols:
            self._error(conn, 10300, "symbol: invalid", echo)
            return
        length = 0
        key: tuple[str, ...] = (channel, symbol)
        ack: dict[str, Any] = {"event": "subscribed", "channel": channel, "chanId": 0, "symbol": symbol}
        if channel == "book":
            prec = str(request.get("prec", "P0"))
            freq = str(request.get("freq", "F0"))
            length_text = str(request.get("len", "25"))
            echo.update(prec=prec, freq=freq, len=length_text)
            if prec not in BOOK_PRECISIONS:
                self._error(conn, 10300, "precision: invalid", echo)
                return
            if freq not in ("F0", "F1"):
                self._error(conn, 10300, "freq: invalid", echo)
                return
            if length_text not in BOOK_LENGTHS:
                self._error(conn, 10300, "length: invalid", echo)
                return
            length = int(length_text)
            key = (channel, symbol, prec, freq, length_text)
            ack.update(prec=prec, freq=freq, len=length_text)
        for existing in conn.subs.values():
            if existing.key == key:
                self._error(conn, 10301, "subscribe: dup", {"chanId": existing.chan_id, **echo})
                return
        for refusal in self._refusals:
            if refusal.conn_id in (None, conn.id) and refusal.symbol in (None, symbol):
                self._refusals.remove(refusal)
                self._error(conn, refusal.code, refusal.msg, echo)
                return
        if len(conn.subs) >= self.max_subscriptions:
            self._error(conn, 10305, "subscribe: limit", echo)
            return
        assert self._loop is not None
        now = self._loop.time()
        chan_id = conn.next_chan_id
        conn.next_chan_id += self._rng.randint(1, 97)
        sub = _Subscription(
            chan_id=chan_id,
            channel=channel,
            symbol=symbol,
            key=key,
            length=length,
            next_heartbeat_at=now + self.heartbeat_interval,
            next_checksum_at=now + self.checksum_interval,
            next_ticker_at=now + TICKER_INTERVAL_SECONDS,
        )
        conn.subs[chan_id] = sub
        self.subscriptions_total += 1
        ack["chanId"] = chan_id
        if "subId" in request:
            ack["subId"] = request["subId"]
        ack["pair"] = pair_of(symbol)
        self._send_event(conn, ack)
        self._send_snapshot(conn, sub)

    def _unsubscribe(self, conn: _Connection, request: dict[str, Any]) -> None:
        chan_id = request.get("chanId")
        sub = conn.subs.pop(chan_id, None) if isinstance(chan_id, int) else None
        if sub is None:
            self._error(conn, 10400, "unsubscribe: invalid", {"chanId": chan_id})
            return
        if not conn.subs:
            assert self._loop is not None
            conn.idle_since = self._loop.time()
        self._send_event(conn, {"event": "unsubscribed", "status": "OK", "chanId": sub.chan_id})

    # =============================================================================== channel data
    def _send_snapshot(self, conn: _Connection, sub: _Subscription) -> None:
        if sub.channel == "book":
            book = self.market.book(sub.symbol)
            entries = [WireEntry(p, c, s) for p, c, s in book.top(BID, sub.length)]
            entries += [WireEntry(p, c, -s) for p, c, s in book.top(ASK, sub.length)]
            self._send_array(conn, f"{sub.chan_id},{entries_text(entries)}")
        elif sub.channel == "trades":
            recent = self.market.trades(sub.symbol)[-TRADES_SNAPSHOT_SIZE:]
            body = ",".join(trade_text(t) for t in reversed(recent))
            self._send_array(conn, f"{sub.chan_id},[{body}]")
        else:
            self._send_array(conn, f"{sub.chan_id},{self._ticker_text(sub.symbol)}")

    def _ticker_text(self, symbol: str) -> str:
        """``[BID,BID_SIZE,ASK,ASK_SIZE,DAILY_CHANGE,DAILY_CHANGE_RELATIVE,LAST,VOLUME,HIGH,LOW]``."""
        book = self.market.book(symbol)
        bid = book.top(BID, 1)
        ask = book.top(ASK, 1)
        day_ago = _now_ms() - 86_400_000
        day = [t for t in self.market.trades(symbol) if t.mts >= day_ago] or self.market.trades(symbol)[-1:]
        prices = [t.price for t in day] or [0.0]
        last = prices[-1]
        change = round(last - prices[0], 8)
        relative = round(change / prices[0], 4) if prices[0] else 0.0
        volume = round(sum(abs(t.amount) for t in day), 8)
        values = [
            bid[0][0] if bid else 0.0,
            bid[0][2] if bid else 0.0,
            ask[0][0] if ask else 0.0,
            ask[0][2] if ask else 0.0,
            change,
            relative,
            last,
            volume,
            max(prices),
            min(prices),
        ]
        return "[" + ",".join(num(v) for v in values) + "]"

    def _checksum(self, symbol: str, length: int) -> int:
        book = self.market.book(symbol)
        depth = min(CHECKSUM_DEPTH, length)
        return book_checksum(book_tokens(book.top(BID, depth), BID), book_tokens(book.top(ASK, depth), ASK))

    def _send_checksum(self, conn: _Connection, sub: _Subscription, now: float) -> None:
        self._send_array(conn, f'{sub.chan_id},"cs",{self._checksum(sub.symbol, sub.length)}')
        sub.changed = False
        sub.next_checksum_at = now + self.checksum_interval

    def _advance_once(self) -> None:
        for step in self.market.step_all():
            self._publish(step)

    def _publish(self, step: MarketStep) -> None:
        """Fan one market step out to every subscriber of its symbol."""
        assert self._loop is not None
        now = self._loop.time()
        entry_texts: dict[int, list[str]] = {}
        trade_texts = [trade_text(t) for t in step.trades]
        for conn in list(self._connections.values()):
            if conn.data_paused:
                continue
            for sub in list(conn.subs.values()):
                if sub.symbol != step.symbol:
                    continue
                if sub.channel == "book":
                    entries = step.window_entries.get(sub.length)
                    if not entries:
                        continue
                    texts = entry_texts.get(sub.length)
                    if texts is None:
                        texts = entry_texts[sub.length] = [entry_text(e) for e in entries]
                    sub.changed = True
                    if conn.flags & BULK_UPDATES and len(texts) > 1:
                        self._send_book_update(conn, sub, "[" + ",".join(texts) + "]")
                    else:
                        for text in texts:
                            self._send_book_update(conn, sub, text)
                elif sub.channel == "trades":
                    for text in trade_texts:
                        self._send_array(conn, f'{sub.chan_id},"te",{text}')
                        sub.pending_tu.append((now + TU_DELAY_SECONDS, text))

    def _send_book_update(self, conn: _Connection, sub: _Subscription, payload: str) -> None:
        for index, symbol in enumerate(conn.pending_drops):
            if symbol in (None, sub.symbol):
                del conn.pending_drops[index]
                conn.seq += 1  # the frame is lost on the way: its number is used, the client sees a gap
                conn.frames_dropped += 1
                return
        self._send_array(conn, f"{sub.chan_id},{payload}")

    # =============================================================================== background tasks
    async def _run_market(self) -> None:
        """Step the market at ``updates + trades`` steps per second per symbol, catching up after stalls."""
        rate = self.steps_per_second
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        max_burst = max(1, int(rate * 0.25))
        start = loop.time()
        done = 0
        while True:
            if self._market_paused:
                await asyncio.sleep(0.02)
                start, done = loop.time(), 0
                continue
            due = int((loop.time() - start) * rate) - done
            if due > max_burst:
                done += due - max_burst
                due = max_burst
            for _ in range(due):
                try:
                    self._advance_once()
                except Exception:  # pragma: no cover - a model bug must not stop the server
                    log.exception("bitfinex simulator: market step failed")
            done += due
            await asyncio.sleep(max((done + 1) / rate - (loop.time() - start), 0.0))

    async def _run_housekeeping(self) -> None:
        """Heartbeats, checksums, ticker frames, delayed ``tu``, maintenance end, idle sockets."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for conn in list(self._connections.values()):
                try:
                    self._service_connection(conn, now)
                except Exception:  # pragma: no cover - must never stop the server
                    log.exception("bitfinex simulator: housekeeping failed on connection %d", conn.id)
            await asyncio.sleep(self._tick_seconds)

    def _service_connection(self, conn: _Connection, now: float) -> None:
        if conn.closing:
            return
        if conn.maintenance_until is not None and now >= conn.maintenance_until:
            self._end_maintenance(conn)
        if not conn.subs and self.idle_timeout > 0 and now - conn.idle_since >= self.idle_timeout:
            self._abort(conn)
            return
        if conn.restarting:
            return
        for sub in list(conn.subs.values()):
            if now >= sub.next_heartbeat_at:
                self._send_array(conn, f'{sub.chan_id},"hb"')
                sub.next_heartbeat_at = now + self.heartbeat_interval
            if conn.maintenance_until is not None:
                continue
            while sub.pending_tu and sub.pending_tu[0][0] <= now:
                _due, text = sub.pending_tu.pop(0)
                self._send_array(conn, f'{sub.chan_id},"tu",{text}')
            if sub.channel == "book":
                if conn.flags & OB_CHECKSUM and sub.changed and now >= sub.next_checksum_at:
                    self._send_checksum(conn, sub, now)
            elif sub.channel == "ticker" and now >= sub.next_ticker_at:
                self._send_array(conn, f"{sub.chan_id},{self._ticker_text(sub.symbol)}")
                sub.next_ticker_at = now + TICKER_INTERVAL_SECONDS

    def _end_maintenance(self, conn: _Connection) -> None:
        conn.maintenance_until = None
        self._send_event(conn, {"event": "info", "code": 20061, "msg": MSG_20061})
        for sub in conn.subs.values():
            sub.changed = True  # the book moved meanwhile: a client that keeps it will see a mismatch
            sub.pending_tu.clear()
        deferred, conn.deferred = conn.deferred, []
        for request in deferred:
            self._subscribe(conn, request)

    # =============================================================================== REST
    def _route_http(self, request: HttpRequest) -> HttpResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] == ["_sim"]:
            return self._route_control(request, parts[1:])
        if request.method == "GET" and parts == ["v2", "conf", "pub:list:pair:exchange"]:
            # what ``--symbols all`` asks for: the served pairs without their ``t`` prefix
            return HttpResponse(200, orjson.dumps([[s[1:] for s in self.symbols]]).decode())
        if request.method != "GET" or len(parts) != 4 or parts[0] != "v2":
            return HttpResponse(404, NOT_FOUND_HTML, "text/html; charset=utf-8")
        now = time.monotonic()
        if parts[1] == "trades" and parts[3] == "hist":
            if not self._trades_rate.allow(now):
                return HttpResponse(429, '["error",11010,"ratelimit: error"]')
            return self._rest_trades(parts[2], request.query)
        if parts[1] == "book":
            if not self._book_rate.allow(now):
                return HttpResponse(429, '["error",11010,"ratelimit: error"]')
            return self._rest_book(parts[2], parts[3], request.query)
        return HttpResponse(404, NOT_FOUND_HTML, "text/html; charset=utf-8")

    def _rest_trades(self, raw_symbol: str, query: Mapping[str, str]) -> HttpResponse:
        symbol = normalize_symbol(raw_symbol)
        if symbol not in self.market.symbols:
            return HttpResponse(500, '["error",10020,"symbol: invalid"]')
        try:
            start = int(query.get("start") or 0)
            end = int(query.get("end") or _now_ms())
            limit = int(query.get("limit") or REST_LIMIT_DEFAULT)
            sort = int(query.get("sort") or -1)
        except ValueError:
            return HttpResponse(500, '["error",10020,"params: invalid"]')
        limit = min(max(limit, 1), REST_LIMIT_MAX)
        selected = self.market.trades_between(symbol, start, end)
        chosen = selected[:limit] if sort == 1 else list(reversed(selected[-limit:]))
        return HttpResponse(200, "[" + ",".join(trade_text(t) for t in chosen) + "]")

    def _rest_book(self, raw_symbol: str, prec: str, query: Mapping[str, str]) -> HttpResponse:
        symbol = normalize_symbol(raw_symbol)
        if symbol not in self.market.symbols:
            return HttpResponse(500, '["error",10020,"symbol: invalid"]')
        if prec not in BOOK_PRECISIONS:
            return HttpResponse(500, '["error",10020,"prec: invalid"]')
        length = query.get("len", "25")
        if length not in BOOK_LENGTHS:
            return HttpResponse(500, '["error",10020,"len: invalid"]')
        book = self.market.book(symbol)
        entries = [WireEntry(p, c, s) for p, c, s in book.top(BID, int(length))]
        entries += [WireEntry(p, c, -s) for p, c, s in book.top(ASK, int(length))]
        return HttpResponse(200, entries_text(entries))

    def _inject_request(self, fault: str, params: Mapping[str, Any]) -> None:
        conn = params.get("conn")
        self.inject(
            fault,
            symbol=params.get("symbol") or None,
            duration=optional_float(params.get("duration")),
            conn=int(conn) if conn not in (None, "") else None,
        )

    def _route_control(self, request: HttpRequest, parts: list[str]) -> HttpResponse:
        if (response := self._control(request, parts)) is not None:
            return response
        if request.method == "GET" and len(parts) == 2 and parts[0] == "book":
            symbol = normalize_symbol(parts[1])
            if symbol not in self.market.symbols:
                return HttpResponse(404, '{"ok":false,"error":"unknown symbol"}')
            depth = int(request.query.get("depth", "100"))
            bids, asks = self.true_book(symbol, depth)
            return HttpResponse(200, orjson.dumps({"bids": bids, "asks": asks}).decode())
        return HttpResponse(404, NOT_FOUND_HTML, "text/html; charset=utf-8")

    def status(self) -> dict[str, Any]:
        """Counters as plain data (what ``GET /_sim/status`` answers)."""
        return {
            "ws_url": self.ws_url,
            "api_url": self.api_url,
            "seed": self.seed,
            "symbols": self.symbols,
            "connections_accepted": self.connections_accepted,
            "open_connections": self.open_connections,
            "subscriptions_total": self.subscriptions_total,
            "faults_injected": dict(self.faults_injected),
            "faults_applied": dict(self.faults_applied),
            "connections": [dataclasses.asdict(s) for s in self.connection_stats()],
            "trades": {s: len(self.market.trades(s)) for s in self.symbols},
        }


# =================================================================================== foreground
async def serve_forever(
    simulator: BitfinexSimulator | None = None,
    *,
    stop: asyncio.Event | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Run a simulator until ``stop`` is set (or the task is cancelled), announcing its URLs."""
    sim = simulator if simulator is not None else BitfinexSimulator()
    await sim.start()
    try:
        announce(f"bitfinex simulator ws:   {sim.ws_url}")
        announce(f"bitfinex simulator rest: {sim.api_url}")
        announce(f"bitfinex simulator faults: POST {sim.api_url}/_sim/fault/<{'|'.join(FAULTS)}>")
        announce(f"  export {envnames.BITFINEX_WS_URL}={sim.ws_url}")
        announce(f"  export {envnames.BITFINEX_API_URL}={sim.api_url}")
        await (stop if stop is not None else asyncio.Event()).wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m marketpipe.bitfinex.simulator``: run the simulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Loopback Bitfinex v2 exchange simulator")
    parser.add_argument("--symbols", default="tBTCUSD,tETHUSD", help="comma-separated symbols")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="websocket port (REST uses port+1)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--updates-per-second", type=float, default=20.0)
    parser.add_argument("--trades-per-second", type=float, default=1.0)
    parser.add_argument("--heartbeat-interval", type=float, default=15.0)
    parser.add_argument("--checksum-interval", type=float, default=2.5)
    args = parser.parse_args(argv)
    simulator = BitfinexSimulator(
        [s.strip() for s in args.symbols.split(",") if s.strip()],
        host=args.host,
        port=args.port,
        seed=args.seed,
        updates_per_second=args.updates_per_second,
        trades_per_second=args.trades_per_second,
        heartbeat_interval=args.heartbeat_interval,
        checksum_interval=args.checksum_interval,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(simulator, announce=lambda line: print(line, flush=True)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
