"""A loopback Bitso (websocket + REST v3) over a seeded order-level MXN market, with faults on demand.

Used by ``marketpipe run --exchanges bitso --simulate``, ``python -m marketpipe.bitso.simulator`` and
the tests. It follows PROTOCOLS.md §3:

* websocket: ``{"action":"subscribe","book":…,"type":…}`` answered with the live server's ack (book
  included), ``Already subscribed to channel: <type>:<book>`` on a repeat, ``This book is not supported
  - <book>`` for an unknown book, close 1011 for a subscribe without ``book``; channels ``orders`` (top
  20 orders per side, full replacement on every change of the top 20, unpadded amounts), ``diff-orders``
  (every order change, per-book ``sequence`` + 1 per message, amounts padded to 8 decimals, ``cancelled``
  entries carry ``a``/``v``, ``completed`` ones do not) and ``trades``; ``{"type":"ka"}`` every
  ``ka_interval`` seconds; no snapshot on subscribe.
* REST ``GET /v3/order_book/?book=X[&aggregate=false]`` (envelope, string decimals, ``sequence`` as a
  string, top 50 aggregated levels or every order with its ``oid``), ``GET /v3/available_books/``;
  HTTP 400 code 0301 for an unknown or missing book; ``rest_limit_per_minute`` requests per minute per
  client IP, past which HTTP 420 ``{"success":false,"error":{"code":"0801",…}}`` and a lock-out of
  ``lockout_seconds`` (every request during it is answered 420).

The market: a random-walk fair price (btc_mxn ~1.25 M MXN, usd_mxn ~18.5 MXN), resting orders placed
around it, cancels, partial and complete fills, and now and then a liquidity hole that clears the book
near the fair price so the spread crosses 0.1/0.5/1.0 % for a few seconds.

Control endpoints on the REST server (query string or JSON body)::

    POST /_sim/fault/<name>?book=btc_mxn&duration=5&spread=1.5
    GET  /_sim/status          counters, including every REST request with its status
    GET  /_sim/book/<book>     the true best bid/ask (strings)

Faults: ``drop`` (abort every websocket; new ones are refused with HTTP 503 for ``duration`` s),
``silence`` (nothing written, ``ka`` included, for ``duration`` s; then the backlog is delivered),
``sequence_gap`` (the next diff-orders message of ``book`` is not sent; its sequence is consumed),
``widen`` (the spread of ``book`` is held at about ``spread`` % for ``duration`` s), ``rate_limit``
(REST answers 420 from now on for ``lockout_seconds``, as after a breach).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import http
import logging
import math
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from marketpipe import envnames
from marketpipe.simulator.http import HttpRequest, HttpResponse
from marketpipe.simulator.loopback import LoopbackSimulator, optional_float

log = logging.getLogger(__name__)

FAULTS = ("drop", "silence", "sequence_gap", "widen", "rate_limit")
CHANNELS = ("orders", "diff-orders", "trades")
ORDERS_DEPTH = 20
REST_LEVELS = 50


@dataclass(frozen=True)
class BookSpec:
    """How a simulated book looks: starting fair price, tick, usual spread and order sizes."""

    price: Decimal
    tick: Decimal
    base_spread_pct: float
    size: float
    size_decimals: int = 8


DEFAULT_SPECS: dict[str, BookSpec] = {
    "btc_mxn": BookSpec(Decimal("1250000.00"), Decimal("0.01"), 0.04, 0.05),
    "usd_mxn": BookSpec(Decimal("18.5000"), Decimal("0.0001"), 0.06, 400.0, 2),
    "eth_mxn": BookSpec(Decimal("62000.00"), Decimal("0.01"), 0.06, 0.8),
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _text(value: Decimal) -> str:
    """Plain decimal text, never exponent notation."""
    return format(value, "f")


@dataclass
class _Order:
    oid: str
    side: int  # 0 buy (bid), 1 sell (ask)
    price: Decimal
    amount: Decimal
    created_ms: int


@dataclass
class _Book:
    name: str
    spec: BookSpec
    rng: random.Random
    fair: float
    orders: dict[str, _Order] = field(default_factory=dict)
    sequence: int = 0
    next_oid: int = 0
    next_trade: int = 0
    hole_pct: float = 0.0
    hole_until: float = 0.0
    forced_pct: float = 0.0
    forced_until: float = 0.0
    last_top: tuple[Any, ...] = ()

    def sorted_side(self, side: int) -> list[_Order]:
        orders = [o for o in self.orders.values() if o.side == side]
        if side == 0:
            orders.sort(key=lambda o: (-o.price, o.created_ms, o.oid))
        else:
            orders.sort(key=lambda o: (o.price, o.created_ms, o.oid))
        return orders

    def best(self, side: int) -> Decimal | None:
        prices = [o.price for o in self.orders.values() if o.side == side]
        if not prices:
            return None
        return max(prices) if side == 0 else min(prices)


@dataclass
class _Connection:
    id: int
    ws: ServerConnection
    subs: set[tuple[str, str]] = field(default_factory=set)  # (channel, book)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    silenced_until: float = 0.0
    pending_gaps: set[str] = field(default_factory=set)
    frames_sent: int = 0
    next_ka: float = 0.0
    closing: bool = False


@dataclass(frozen=True)
class RestRequest:
    """One REST request the simulator answered (for tests: was the limit ever hit?)."""

    at: float  # time.monotonic()
    path: str
    status: int


class BitsoSimulator(LoopbackSimulator):
    """Loopback Bitso; see the module docstring."""

    def __init__(
        self,
        books: Iterable[str] | Mapping[str, BookSpec] = ("btc_mxn", "usd_mxn"),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rest_port: int = 0,
        seed: int | None = None,
        updates_per_second: float = 8.0,
        ka_interval: float = 20.0,
        rest_limit_per_minute: int = 60,
        rest_period: float = 60.0,
        lockout_seconds: float = 60.0,
        holes_per_minute: float = 2.0,
    ) -> None:
        super().__init__()
        specs = dict(books) if isinstance(books, Mapping) else {b: DEFAULT_SPECS.get(b) for b in books}
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self._books: dict[str, _Book] = {}
        for name, spec in specs.items():
            spec = spec or BookSpec(Decimal("1000.00"), Decimal("0.01"), 0.05, 1.0)
            rng = random.Random(f"{self.seed}:{name}")
            book = _Book(name, spec, rng, float(spec.price))
            self._books[name] = book
            self._fill(book)
        self.host, self.port, self.rest_port = host, port, rest_port
        self.updates_per_second = updates_per_second
        self.ka_interval = ka_interval
        self.rest_limit = rest_limit_per_minute
        self.rest_period = rest_period
        self.lockout_seconds = lockout_seconds
        self.holes_per_minute = holes_per_minute
        self.connections_refused = 0
        self.rest_log: list[RestRequest] = []
        self.published: dict[str, list[tuple[int, str, str]]] = {b: [] for b in self._books}
        """Per book, every top of book published on ``orders``: (sent ms, best bid, best ask)."""
        self._rest_times: dict[str, collections.deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock_all_until = 0.0
        self._refuse_until = 0.0
        self._connections: dict[int, _Connection] = {}
        self._market_paused = False

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def books(self) -> list[str]:
        return list(self._books)

    async def start(self) -> None:
        self.ws_url = await self._serve(
            self._handle, self.host, self.port, router=self._route_http, rest_port=self.rest_port,
            process_request=self._process_request,
        )  # fmt: skip
        self._spawn(self._run_market())
        self._spawn(self._run_keepalive())

    # ------------------------------------------------------------------------------ truth
    def true_top(self, book: str) -> tuple[str, str]:
        """The server's best bid and ask as the wire writes them."""
        b = self._books[book]
        bid, ask = b.best(0), b.best(1)
        return (_text(bid) if bid is not None else "", _text(ask) if ask is not None else "")

    def sequence(self, book: str) -> int:
        return self._books[book].sequence

    def pause_market(self) -> None:
        self._market_paused = True

    def resume_market(self) -> None:
        self._market_paused = False

    @property
    def open_connections(self) -> list[int]:
        return [c.id for c in self._connections.values() if not c.closing]

    def subscribed(self, book: str, channel: str = "orders") -> bool:
        """Does an open connection receive ``channel`` of ``book``?"""
        return bool(self._subscribers(channel, book))

    def rest_statuses(self) -> collections.Counter[int]:
        return collections.Counter(r.status for r in self.rest_log)

    # ------------------------------------------------------------------------------ faults
    def inject(
        self,
        fault: str,
        *,
        book: str | None = None,
        duration: float | None = None,
        spread: float | None = None,
    ) -> None:
        """Inject a fault (module docstring); safe from any thread once started."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if book is not None and book not in self._books:
            raise ValueError(f"unknown book {book!r}")
        if fault in ("sequence_gap", "widen") and book is None:
            raise ValueError(f"fault {fault} needs a book")
        if self._loop is None:
            raise RuntimeError("simulator is not started")
        self.faults_injected[fault] += 1
        self._on_loop(self._apply, fault, book, duration, spread)

    def _apply(self, fault: str, book: str | None, duration: float | None, spread: float | None) -> None:
        now = time.monotonic()
        if fault == "drop":
            self._refuse_until = now + (duration or 0.0)
            for conn in list(self._connections.values()):
                conn.closing = True
                conn.ws.transport.abort()
        elif fault == "silence":
            for conn in self._connections.values():
                conn.silenced_until = max(
                    conn.silenced_until, now + (duration if duration is not None else 40.0)
                )
        elif fault == "sequence_gap":
            assert book is not None
            for conn in self._connections.values():
                conn.pending_gaps.add(book)
        elif fault == "widen":
            assert book is not None
            b = self._books[book]
            b.forced_pct = spread if spread is not None else 1.5
            b.forced_until = now + (duration if duration is not None else 5.0)
            self._clear_band(b, b.forced_pct)
            self._publish(b, [], [])
        elif fault == "rate_limit":
            self._lock_all_until = now + self.lockout_seconds

    # ------------------------------------------------------------------------------ market model
    def _new_oid(self, book: _Book) -> str:
        book.next_oid += 1
        return f"{book.name[:1]}{book.rng.getrandbits(40):010x}{book.next_oid}"

    def _size(self, book: _Book) -> Decimal:
        raw = book.rng.lognormvariate(math.log(book.spec.size), 0.8)
        q = Decimal(1).scaleb(-book.spec.size_decimals)
        return max(q, Decimal(repr(raw)).quantize(q))

    def _band_pct(self, book: _Book, now: float) -> float:
        """Half of the current minimum spread, in percent of the fair price."""
        pct = book.spec.base_spread_pct
        if now < book.hole_until:
            pct = max(pct, book.hole_pct)
        if now < book.forced_until:
            pct = max(pct, book.forced_pct)
        return pct / 2

    def _price(self, book: _Book, side: int, distance_pct: float) -> Decimal:
        raw = Decimal(repr(book.fair * (1 - distance_pct / 100 if side == 0 else 1 + distance_pct / 100)))
        rounding = ROUND_FLOOR if side == 0 else ROUND_CEILING
        return (raw / book.spec.tick).to_integral_value(rounding) * book.spec.tick

    def _place(self, book: _Book, side: int, now: float, out: list[dict[str, Any]]) -> None:
        half = self._band_pct(book, now)
        # Most orders rest near the touch; some deeper, so a liquidity hole leaves a book behind it.
        scale = book.spec.base_spread_pct * 1.5 if book.rng.random() < 0.7 else 1.0
        distance = half + book.rng.expovariate(1 / max(scale, 1e-6))
        price = self._price(book, side, distance)
        opposite = book.best(1 - side)
        if opposite is not None and ((side == 0 and price >= opposite) or (side == 1 and price <= opposite)):
            return  # never cross: a crossing order would trade, not rest
        order = _Order(self._new_oid(book), side, price, self._size(book), _now_ms())
        book.orders[order.oid] = order
        out.append(self._diff_entry(order, "open"))

    def _fill(self, book: _Book) -> None:
        for _ in range(60):
            for side in (0, 1):
                self._place(book, side, 0.0, [])
        book.sequence = book.rng.randrange(10_000_000, 90_000_000)

    def _clear_band(self, book: _Book, spread_pct: float) -> list[dict[str, Any]]:
        """Cancel resting orders closer to the fair price than half of ``spread_pct``."""
        bid_floor = book.fair * (1 - spread_pct / 200)
        ask_floor = book.fair * (1 + spread_pct / 200)
        out = []
        for order in list(book.orders.values()):
            if (order.side == 0 and float(order.price) > bid_floor) or (
                order.side == 1 and float(order.price) < ask_floor
            ):
                del book.orders[order.oid]
                out.append(self._diff_entry(order, "cancelled"))
        return out

    def _diff_entry(self, order: _Order, status: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"o": order.oid, "r": _text(order.price)}
        if status != "completed":
            entry["a"] = f"{order.amount:.8f}"
            entry["v"] = _text((order.amount * order.price).quantize(Decimal("0.01")))
        entry |= {"t": order.side, "d": order.created_ms, "s": status, "z": _now_ms()}
        return entry

    def _step(self, book: _Book, now: float) -> None:
        rng = book.rng
        book.fair *= math.exp(rng.gauss(0.0, book.spec.base_spread_pct / 100 / 6))
        diffs: list[dict[str, Any]] = []
        trades: list[dict[str, Any]] = []
        if now >= book.hole_until and self.holes_per_minute > 0:
            per_step = self.holes_per_minute / 60 / max(self.updates_per_second, 1e-6)
            if rng.random() < per_step:
                book.hole_pct = rng.choice((0.15, 0.3, 0.7, 1.2, 1.6))
                book.hole_until = now + rng.uniform(1.5, 6.0)
                diffs += self._clear_band(book, book.hole_pct)
        if now < book.forced_until:
            diffs += self._clear_band(book, book.forced_pct)
        action = rng.random()
        counts = [sum(1 for o in book.orders.values() if o.side == s) for s in (0, 1)]
        side = rng.randrange(2)
        if action < 0.45 or counts[side] < 20:
            self._place(book, side, now, diffs)
        elif action < 0.80:
            resting = book.sorted_side(side)[: max(1, counts[side])]
            victim = resting[min(int(rng.expovariate(1 / 8)), len(resting) - 1)]
            del book.orders[victim.oid]
            diffs.append(self._diff_entry(victim, "cancelled"))
        else:
            top = book.sorted_side(side)[:1]
            if top:
                order = top[0]
                take = min(order.amount, self._size(book))
                order.amount -= take
                book.next_trade += 1
                trades.append({
                    "i": book.next_trade, "a": _text(take), "r": _text(order.price),
                    "v": _text((take * order.price).quantize(Decimal("0.01"))), "mo": order.oid,
                    "to": self._new_oid(book), "t": 1 - order.side, "x": _now_ms(),
                })  # fmt: skip
                if order.amount <= 0:
                    del book.orders[order.oid]
                    diffs.append(self._diff_entry(order, "completed"))
                else:
                    diffs.append(self._diff_entry(order, "open"))
        self._publish(book, diffs, trades)

    def _top_orders(self, book: _Book) -> tuple[list[_Order], list[_Order]]:
        return book.sorted_side(0)[:ORDERS_DEPTH], book.sorted_side(1)[:ORDERS_DEPTH]

    def _publish(self, book: _Book, diffs: list[dict[str, Any]], trades: list[dict[str, Any]]) -> None:
        sent = _now_ms()
        if diffs:
            book.sequence += 1
            diff_text = orjson.dumps({
                "type": "diff-orders", "book": book.name, "sequence": book.sequence, "payload": diffs,
                "sent": sent,
            }).decode()  # fmt: skip
            for conn in self._subscribers("diff-orders", book.name):
                if book.name in conn.pending_gaps:
                    conn.pending_gaps.discard(book.name)
                    continue
                self._send(conn, diff_text)
        bids, asks = self._top_orders(book)
        top = tuple((o.oid, o.price, o.amount) for o in bids), tuple((o.oid, o.price, o.amount) for o in asks)
        if top != book.last_top:
            book.last_top = top
            payload = {
                "bids": [self._orders_entry(o) for o in bids],
                "asks": [self._orders_entry(o) for o in asks],
            }
            text = orjson.dumps(
                {"type": "orders", "book": book.name, "payload": payload, "sent": sent}
            ).decode()
            best_bid, best_ask = self.true_top(book.name)
            self.published[book.name].append((sent, best_bid, best_ask))
            for conn in self._subscribers("orders", book.name):
                self._send(conn, text)
        if trades:
            text = orjson.dumps(
                {"type": "trades", "book": book.name, "payload": trades, "sent": sent}
            ).decode()
            for conn in self._subscribers("trades", book.name):
                self._send(conn, text)

    @staticmethod
    def _orders_entry(order: _Order) -> dict[str, Any]:
        amount = order.amount.normalize()
        return {
            "o": order.oid, "r": _text(order.price), "a": _text(amount),
            "v": _text((order.amount * order.price).quantize(Decimal("0.01"))), "t": order.side,
            "d": order.created_ms, "s": "undefined",
        }  # fmt: skip

    async def _run_market(self) -> None:
        rate = self.updates_per_second
        if rate <= 0:
            return
        while True:
            await asyncio.sleep(1 / rate)
            if self._market_paused:
                continue
            now = time.monotonic()
            for book in self._books.values():
                try:
                    self._step(book, now)
                except Exception:  # pragma: no cover - a model bug must not stop the server
                    log.exception("bitso simulator: market step failed")

    async def _run_keepalive(self) -> None:
        while True:
            await asyncio.sleep(min(self.ka_interval / 4, 0.25))
            now = time.monotonic()
            for conn in list(self._connections.values()):
                if not conn.closing and now >= conn.next_ka:
                    conn.next_ka = now + self.ka_interval
                    self._send(conn, '{"type":"ka"}')

    # ------------------------------------------------------------------------------ websocket
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if time.monotonic() < self._refuse_until:
            self.connections_refused += 1
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable\n")
        return None

    def _subscribers(self, channel: str, book: str) -> list[_Connection]:
        return [c for c in self._connections.values() if (channel, book) in c.subs and not c.closing]

    def _send(self, conn: _Connection, text: str) -> None:
        conn.outbox.put_nowait(text)

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections_accepted += 1
        conn = _Connection(self.connections_accepted, ws, next_ka=time.monotonic() + self.ka_interval)
        self._connections[conn.id] = conn
        writer = asyncio.ensure_future(self._write_loop(conn))
        try:
            async for message in ws:
                if isinstance(message, str) and not conn.closing:
                    await self._on_text(conn, message)
        except ConnectionClosed:
            pass
        finally:
            conn.closing = True
            self._connections.pop(conn.id, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_loop(self, conn: _Connection) -> None:
        try:
            while True:
                text = await conn.outbox.get()
                while (delay := conn.silenced_until - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                await conn.ws.send(text)
                conn.frames_sent += 1
        except ConnectionClosed:
            conn.closing = True

    async def _on_text(self, conn: _Connection, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            return  # the real server ignores non-JSON text
        if not isinstance(msg, dict):
            return
        action, channel, book = msg.get("action"), msg.get("type"), msg.get("book")
        if action not in ("subscribe", "unsubscribe"):
            return
        if book is None:
            conn.closing = True
            await conn.ws.close(1011, "")
            return
        answer: dict[str, Any] = {"action": action}
        if book not in self._books or channel not in CHANNELS:
            what = "book" if book not in self._books else "channel"
            answer |= {
                "type": channel,
                "error": f"This {what} is not supported - {book if what == 'book' else channel}",
            }
        elif action == "subscribe" and (channel, book) in conn.subs:
            answer |= {
                "response": f"Already subscribed to channel: {channel}:{book}",
                "type": channel,
                "book": book,
            }
        else:
            if action == "subscribe":
                conn.subs.add((channel, book))
            else:
                conn.subs.discard((channel, book))
            answer |= {"response": "ok", "type": channel, "book": book}
        answer["time"] = _now_ms()
        self._send(conn, orjson.dumps(answer).decode())

    # ------------------------------------------------------------------------------ REST
    def _route_http(self, request: HttpRequest) -> HttpResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] == ["_sim"]:
            return self._route_control(request, parts[1:])
        if request.method != "GET" or parts[:1] != ["v3"] or len(parts) != 2:
            return HttpResponse(404, '{"success":false,"error":{"code":"0100","message":"Not found"}}')
        now = time.monotonic()
        client = request.headers.get("x-forwarded-for", "127.0.0.1")
        status, body = self._rate_check(client, now)
        if status == 200:
            if parts[1] == "order_book":
                status, body = self._order_book(request.query)
            elif parts[1] == "available_books":
                payload = [{"book": b, "tick_size": _text(s.spec.tick)} for b, s in self._books.items()]
                body = orjson.dumps({"success": True, "payload": payload}).decode()
            else:
                status, body = 404, '{"success":false,"error":{"code":"0100","message":"Not found"}}'
        self.rest_log.append(RestRequest(now, request.path, status))
        return HttpResponse(status, body)

    def _rate_check(self, client: str, now: float) -> tuple[int, str]:
        limited = 420, orjson.dumps({
            "success": False, "error": {"code": "0801", "message": "You have hit the request rate-limit"},
        }).decode()  # fmt: skip
        if now < max(self._locked_until.get(client, 0.0), self._lock_all_until):
            return limited
        times = self._rest_times.setdefault(client, collections.deque())
        while times and now - times[0] >= self.rest_period:
            times.popleft()
        if len(times) >= self.rest_limit:
            self._locked_until[client] = now + self.lockout_seconds
            return limited
        times.append(now)
        return 200, ""

    def _order_book(self, query: Mapping[str, str]) -> tuple[int, str]:
        name = query.get("book") or "missing"
        book = self._books.get(name)
        if book is None:
            return 400, orjson.dumps({
                "error": {"code": "0301", "details": [], "message": f"Unknown order book {name}"},
                "success": False,
            }).decode()  # fmt: skip
        aggregate = query.get("aggregate", "true").lower() != "false"
        sides = []
        for side in (0, 1):
            orders = book.sorted_side(side)
            if aggregate:
                levels: dict[Decimal, Decimal] = {}
                for o in orders:
                    levels[o.price] = levels.get(o.price, Decimal(0)) + o.amount
                entries = [
                    {"book": name, "price": _text(p), "amount": f"{a:.8f}"}
                    for p, a in list(levels.items())[:REST_LEVELS]
                ]
            else:
                entries = [{"book": name, "price": _text(o.price), "amount": f"{o.amount:.8f}", "oid": o.oid}
                           for o in orders]  # fmt: skip
            sides.append(entries)
        updated = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        payload = {"updated_at": updated, "bids": sides[0], "asks": sides[1], "sequence": str(book.sequence)}
        return 200, orjson.dumps({"success": True, "payload": payload}).decode()

    def _inject_request(self, fault: str, params: Mapping[str, Any]) -> None:
        self.inject(
            fault,
            book=params.get("book") or None,
            duration=optional_float(params.get("duration")),
            spread=optional_float(params.get("spread")),
        )

    def _route_control(self, request: HttpRequest, parts: list[str]) -> HttpResponse:
        if (response := self._control(request, parts)) is not None:
            return response
        if request.method == "GET" and len(parts) == 2 and parts[0] == "book" and parts[1] in self._books:
            bid, ask = self.true_top(parts[1])
            return HttpResponse(200, orjson.dumps({"book": parts[1], "bid": bid, "ask": ask}).decode())
        return HttpResponse(404, '{"ok":false,"error":"not found"}')

    def status(self) -> dict[str, Any]:
        return {
            "ws_url": self.ws_url,
            "api_url": self.api_url,
            "seed": self.seed,
            "books": self.books,
            "connections_accepted": self.connections_accepted,
            "connections_refused": self.connections_refused,
            "open_connections": self.open_connections,
            "faults_injected": dict(self.faults_injected),
            "rest_requests": len(self.rest_log),
            "rest_statuses": {str(k): v for k, v in self.rest_statuses().items()},
            "sequences": {b: book.sequence for b, book in self._books.items()},
        }


async def serve_forever(simulator: BitsoSimulator, stop: asyncio.Event, announce: Any = print) -> None:
    """Run ``simulator`` until ``stop`` is set, announcing its URLs."""
    await simulator.start()
    try:
        announce(f"Bitso simulator: ws {simulator.ws_url}  rest {simulator.api_url}")
        announce(f"  export {envnames.BITSO_WS_URL}={simulator.ws_url}")
        announce(f"  export {envnames.BITSO_API_URL}={simulator.api_url}")
        announce(
            f"  faults: POST {simulator.api_url}/_sim/fault/<{'|'.join(FAULTS)}>?book=btc_mxn&duration=5"
        )
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m marketpipe.bitso.simulator``: the simulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Loopback Bitso exchange simulator")
    parser.add_argument("--books", default="btc_mxn,usd_mxn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rest-port", type=int, default=0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    books = [b.strip() for b in args.books.split(",") if b.strip()]
    sim = BitsoSimulator(books, host=args.host, port=args.port, rest_port=args.rest_port, seed=args.seed)

    async def run() -> None:
        stop = asyncio.Event()
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        await serve_forever(sim, stop, lambda line: print(line, flush=True))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
