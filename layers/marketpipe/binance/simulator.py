"""Loopback Binance spot websocket streams (PROTOCOLS.md §2.7), for ``--simulate`` and tests.

* ``/stream?streams=a/b`` wraps every payload as ``{"stream":…,"data":…}``; ``/ws/<stream>`` sends it bare;
  ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` work on an open connection.
* ``<symbol>@depth20@100ms``: a complete top-20 snapshot without symbol, every ``depth_interval``;
  one update-id counter per symbol.
* ``!miniTicker@arr`` every ``ticker_interval``: only the symbols whose ticker changed since the last push;
  ``<symbol>@miniTicker`` for one symbol.
* A ping frame every ``ping_interval`` (20 s); a connection that has not answered a ping within
  ``pong_timeout`` (60 s) is closed. Connections are closed at ``max_age`` (24 h).
* More than ``message_limit`` (5) incoming messages in any second closes the connection (1008). The
  simulator counts the client's data frames; the websockets library answers pings below that level.
* :meth:`shutdown_notice` sends ``serverShutdown`` to every connection and closes them shortly after.

The timings are settings so tests run in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from marketpipe.binance import wire as binance
from marketpipe.simulator.loopback import LoopbackSimulator

log = logging.getLogger("marketpipe.binance.simulator")

DEFAULT_PRICES: dict[str, str] = {
    "BTCUSDT": "43650.00", "ETHUSDT": "2300.00", "BNBUSDT": "310.00", "SOLUSDT": "98.00",
    "XRPUSDT": "0.6200", "ADAUSDT": "0.5400", "DOGEUSDT": "0.0950", "LTCUSDT": "72.00",
    "ETHBTC": "0.05300", "BNBBTC": "0.00710",
}  # fmt: skip
_PLACES = Decimal("0.00000001")


@dataclass
class _Market:
    symbol: str
    mid: Decimal
    tick: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    base_volume: Decimal = Decimal(0)
    quote_volume: Decimal = Decimal(0)
    update_id: int = 1000
    changed: bool = True


@dataclass
class _Connection:
    id: int
    ws: ServerConnection
    combined: bool
    streams: list[str]
    opened: float
    incoming: deque[float] = field(default_factory=deque)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    closing: bool = False


class BinanceSimulator(LoopbackSimulator):
    """Start with :meth:`start` (or ``async with``); ``ws_url`` is then the base URL to stream from."""

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        depth_interval: float = 0.1,
        ticker_interval: float = 1.0,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        max_age: float = 86_400.0,
        message_limit: int = 5,
        max_streams: int = binance.MAX_STREAMS_PER_CONNECTION,
    ) -> None:
        super().__init__()
        names = [binance.validate_symbol(s) for s in symbols] if symbols else list(DEFAULT_PRICES)
        self.rng = random.Random(seed)
        self.markets: dict[str, _Market] = {}
        for name in names:
            mid = Decimal(DEFAULT_PRICES.get(name, "100.00"))
            raw_tick = max(mid * Decimal("0.00002"), Decimal("0.00000001"))
            tick = Decimal(1).scaleb(raw_tick.adjusted())  # a power of ten, like exchange tick sizes
            self.markets[name] = _Market(name, mid, tick, mid, mid, mid, mid)
        self.host, self.port = host, port
        self.depth_interval, self.ticker_interval = depth_interval, ticker_interval
        self.ping_interval, self.pong_timeout = ping_interval, pong_timeout
        self.max_age, self.message_limit, self.max_streams = max_age, message_limit, max_streams
        self.closed_reasons: list[str] = []
        self.pings_sent = 0
        self.paused = False
        """Stop publishing (and moving) everything."""
        self.market_frozen = False
        """Keep publishing, but prices move only through :meth:`set_price` (deterministic tests)."""
        self._connections: dict[int, _Connection] = {}

    # ------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.ws_url = await self._serve(self._handle, self.host, self.port, max_size=2**20)
        self._spawn(self._every(self.depth_interval, self._publish_depth))
        self._spawn(self._every(self.ticker_interval, self._publish_tickers))
        self._spawn(self._every(self.depth_interval, self._step_market))

    async def _every(self, interval: float, step: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.paused:
                step()

    # ------------------------------------------------------------------------------ control
    @property
    def open_connections(self) -> list[int]:
        return [c.id for c in self._connections.values() if not c.closing]

    def set_price(self, symbol: str, price: str) -> None:
        """Move a symbol's last trade and book to ``price`` (the next mini-ticker carries it)."""
        m = self.markets[symbol]
        m.last = m.mid = Decimal(price)
        m.high, m.low = max(m.high, m.last), min(m.low, m.last)
        m.changed = True

    def shutdown_notice(self, grace: float = 0.2) -> None:
        """Send ``serverShutdown`` to every open connection, then close them after ``grace`` seconds."""
        event = {"e": "serverShutdown", "E": int(time.time() * 1000)}
        for conn in list(self._connections.values()):
            if conn.closing:
                continue
            if conn.combined:
                self._send(
                    conn, orjson.dumps({"stream": binance.SERVER_SHUTDOWN_STREAM, "data": event}).decode()
                )
            else:
                self._send(conn, orjson.dumps(event).decode())
            self._spawn(self._close_later(conn, grace, 1001, "server shutdown"))

    async def _close_later(self, conn: _Connection, delay: float, code: int, reason: str) -> None:
        await asyncio.sleep(delay)
        await self._close(conn, code, reason)

    async def _close(self, conn: _Connection, code: int, reason: str) -> None:
        if conn.closing:
            return
        conn.closing = True
        self.closed_reasons.append(reason)
        with contextlib.suppress(Exception):
            await conn.ws.close(code, reason)

    # ------------------------------------------------------------------------------ market
    def _step_market(self) -> None:
        if self.market_frozen:
            return
        for m in self.markets.values():
            if self.rng.random() < 0.3:
                move = m.tick * self.rng.randint(-3, 3)
                m.mid = max(m.tick * 10, m.mid + move)
                if self.rng.random() < 0.5:
                    qty = Decimal(self.rng.randint(1, 500)) / 100
                    m.last = m.mid
                    m.base_volume += qty
                    m.quote_volume += (qty * m.last).quantize(_PLACES)
                    m.high, m.low = max(m.high, m.last), min(m.low, m.last)
                    m.changed = True
            m.update_id += self.rng.randint(1, 5)

    def depth_payload(self, m: _Market) -> dict[str, Any]:
        half = m.tick
        bids, asks = [], []
        for i in range(binance.DEPTH_LEVELS):
            qty = Decimal(self.rng.randint(1, 4000)) / 1000
            bids.append([binance.decimal_text(m.mid - half - m.tick * i), binance.decimal_text(qty)])
            qty = Decimal(self.rng.randint(1, 4000)) / 1000
            asks.append([binance.decimal_text(m.mid + half + m.tick * i), binance.decimal_text(qty)])
        return {"lastUpdateId": m.update_id, "bids": bids, "asks": asks}

    @staticmethod
    def ticker_payload(m: _Market) -> dict[str, Any]:
        return {
            "e": "24hrMiniTicker", "E": int(time.time() * 1000), "s": m.symbol,
            "c": binance.decimal_text(m.last), "o": binance.decimal_text(m.open),
            "h": binance.decimal_text(m.high), "l": binance.decimal_text(m.low),
            "v": binance.decimal_text(m.base_volume), "q": binance.decimal_text(m.quote_volume),
        }  # fmt: skip

    def _publish(self, stream: str, data: Any) -> None:
        combined = raw = ""
        for conn in self._connections.values():
            if conn.closing or stream not in conn.streams:
                continue
            if conn.combined:
                combined = combined or orjson.dumps({"stream": stream, "data": data}).decode()
                self._send(conn, combined)
            else:
                raw = raw or orjson.dumps(data).decode()
                self._send(conn, raw)

    def _publish_depth(self) -> None:
        for m in self.markets.values():
            stream = binance.depth_stream(m.symbol)
            if any(stream in c.streams for c in self._connections.values()):
                self._publish(stream, self.depth_payload(m))

    def _publish_tickers(self) -> None:
        changed = [m for m in self.markets.values() if m.changed]
        for m in changed:
            m.changed = False
            self._publish(binance.mini_ticker_stream(m.symbol), self.ticker_payload(m))
        if changed:
            self._publish(binance.ALL_MINI_TICKERS, [self.ticker_payload(m) for m in changed])

    # ------------------------------------------------------------------------------ connections
    def _send(self, conn: _Connection, text: str) -> None:
        conn.outbox.put_nowait(text)

    def _valid_stream(self, stream: str) -> bool:
        if stream == binance.ALL_MINI_TICKERS:
            return True
        symbol = binance.symbol_of_stream(stream)
        suffix = stream.split("@", 1)[1] if "@" in stream else ""
        return symbol in self.markets and suffix in ("depth20@100ms", "depth20", "miniTicker")

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        parts = urlsplit(request.path if request is not None else "/")
        if parts.path.rstrip("/") == "/stream":
            combined = True
            streams = [s for s in parse_qs(parts.query).get("streams", [""])[0].split("/") if s]
        elif parts.path.startswith("/ws"):
            combined = False
            streams = [s for s in parts.path[len("/ws") :].strip("/").split("/") if s]
        else:
            await ws.close(1008, "unknown path")
            return
        self.connections_accepted += 1
        conn = _Connection(self.connections_accepted, ws, combined, [], time.monotonic())
        bad = [s for s in streams if not self._valid_stream(s)]
        if bad or len(streams) > self.max_streams:
            await ws.close(1008, f"invalid stream {bad[0]}" if bad else "too many streams")
            return
        conn.streams = list(dict.fromkeys(streams))
        self._connections[conn.id] = conn
        tasks = [
            asyncio.ensure_future(self._write_loop(conn)),
            asyncio.ensure_future(self._ping_loop(conn)),
            asyncio.ensure_future(self._close_later(conn, self.max_age, 1000, "24-hour limit")),
        ]
        try:
            async for message in ws:
                now = time.monotonic()
                conn.incoming.append(now)
                while conn.incoming and now - conn.incoming[0] >= 1.0:
                    conn.incoming.popleft()
                if len(conn.incoming) > self.message_limit:
                    await self._close(conn, 1008, "too many incoming messages")
                    break
                self._on_request(conn, message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        finally:
            conn.closing = True
            for task in tasks:
                task.cancel()
            self._connections.pop(conn.id, None)

    def _on_request(self, conn: _Connection, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._send(conn, '{"error":{"code":3,"msg":"Invalid JSON"},"id":null}')
            return
        method = msg.get("method") if isinstance(msg, dict) else None
        req_id = msg.get("id") if isinstance(msg, dict) else None
        params = msg.get("params", []) if isinstance(msg, dict) else []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list):
            bad = [p for p in params if not isinstance(p, str) or not self._valid_stream(p)]
            if bad:
                reply: dict[str, Any] = {"error": {"code": 2, "msg": "Invalid request: invalid stream"}}
            elif method == "SUBSCRIBE":
                conn.streams = list(dict.fromkeys([*conn.streams, *params]))
                reply = {"result": None}
            else:
                conn.streams = [s for s in conn.streams if s not in params]
                reply = {"result": None}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": list(conn.streams)}
        else:
            reply = {"error": {"code": 2, "msg": "Invalid request: unknown method"}}
        self._send(conn, orjson.dumps({**reply, "id": req_id}).decode())

    async def _write_loop(self, conn: _Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await conn.outbox.get()
                await conn.ws.send(text)

    async def _ping_loop(self, conn: _Connection) -> None:
        """A ping every ``ping_interval``; close when one stays unanswered for ``pong_timeout``."""
        with contextlib.suppress(ConnectionClosed):
            while not conn.closing:
                await asyncio.sleep(self.ping_interval)
                self.pings_sent += 1
                waiter = await conn.ws.ping(str(self.pings_sent).encode())
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), self.pong_timeout)
                except TimeoutError:
                    await self._close(conn, 1008, "pong timeout")
                    return
