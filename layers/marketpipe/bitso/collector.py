"""Bitso sessions: the ``orders`` websocket, the REST fallback within the rate limit, the sampler clock.

Three tasks share one set of open websocket connections:

* the websocket session subscribes every book to ``orders``, detects a dead socket (no frame, ``ka``
  included, for ``stale_after`` seconds; Bitso sends ``ka`` about every 20 s) and reconnects with
  capped exponential backoff and jitter;
* the REST poller asks ``/v3/order_book/`` only for books the websocket does not currently carry
  (disconnected, silent, not yet updated), evenly paced and through one :class:`RateLimiter` for every
  Bitso REST call of the process, below Bitso's 60 requests/minute/IP; an HTTP 420 (codes 0801/0802)
  stops all REST calls for the one-minute lock-out;
* the sampler writes a ``tick`` frame after each whole UTC second, which makes the processor observe
  every book for that second (and makes replays sample the same seconds).

Every frame (sent, received, REST answer, tick) goes to ``on_frame`` (raw capture, then processor).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from marketpipe.bitso import wire as bitso
from marketpipe.bitso.processor import SAMPLER_CONN, US, BitsoProcessor, tick_frame
from marketpipe.errors import ConfigError
from marketpipe.net.backoff import Backoff
from marketpipe.net.ratelimit import RateLimiter
from marketpipe.net.session import close_reason, refusal, run_tasks, sleep_or_stop
from marketpipe.records import RawFrame
from marketpipe.timeutil import MonotonicClock, now_us

log = logging.getLogger("marketpipe.bitso.collector")

FrameHandler = Callable[[RawFrame], None]


@dataclass
class BitsoSettings:
    ws_url: str = bitso.DEFAULT_WS_URL
    api_url: str = bitso.DEFAULT_API_URL
    stale_after: float = 30.0
    """Seconds without any frame after which the socket is dead (``ka`` comes about every 20 s)."""
    backoff_initial: float = 1.0
    backoff_cap: float = 30.0
    rest_per_minute: int = 50
    """Bitso allows 60 public requests per minute per IP; 10 spare for other tools on the same IP."""
    rest_period: float = 60.0
    lockout_seconds: float = 60.0
    """How long an HTTP 420 stops every REST call (Bitso locks the IP out for one minute)."""
    rest_timeout: float = 5.0
    tick_grace: float = 0.02
    """How long after a second ends its tick is written (lets frames of that second arrive)."""


class BitsoCollector:
    """Holds the websocket, polls REST when needed and ticks the sampler until ``stop``."""

    def __init__(
        self,
        books: Sequence[str],
        processor: BitsoProcessor,
        on_frame: FrameHandler,
        settings: BitsoSettings | None = None,
        *,
        clock: Callable[[], int] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not books:
            raise ConfigError("no Bitso books configured")
        self.books = list(dict.fromkeys(books))
        self.processor = processor
        self.on_frame = on_frame
        self.settings = settings or BitsoSettings()
        self.clock = clock or MonotonicClock()
        self.limiter = limiter or RateLimiter(self.settings.rest_per_minute, self.settings.rest_period)
        self.run_id = uuid.uuid4().hex[:8]
        self.open_conns: set[str] = set()
        self.connections_opened = 0
        self.reconnects = 0
        """Websocket connections that ended while the run went on (each is replaced after a backoff)."""
        self.rest_requests = 0
        self.rest_rate_limited = 0
        self.next_second: int | None = None
        self._http = requests.Session()
        self._http.headers["User-Agent"] = "marketpipe"
        self._locked_until = 0.0

    def _frame(self, conn: str, direction: str, text: str) -> None:
        self.on_frame(RawFrame(bitso.EXCHANGE, conn, direction, self.clock(), text))  # type: ignore[arg-type]

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop``; raises ConfigError for an unknown book or a bad URL."""
        tasks = [
            asyncio.create_task(self._websocket(stop), name="bitso-ws"),
            asyncio.create_task(self._rest(stop), name="bitso-rest"),
            asyncio.create_task(self._sampler(stop), name="bitso-sampler"),
        ]
        try:
            await run_tasks(tasks)
        finally:
            self._http.close()

    # ------------------------------------------------------------------------------------ sampler
    def tick_due(self, now: int) -> None:
        """Write a tick for every second that has fully ended (catching up after a stall)."""
        grace = int(self.settings.tick_grace * US)
        if self.next_second is None:
            self.next_second = now // US + 1  # the first whole second
        while (self.next_second + 1) * US + grace <= now:
            self._frame(SAMPLER_CONN, "in", tick_frame(self.next_second, self.open_conns))
            self.next_second += 1

    async def _sampler(self, stop: asyncio.Event) -> None:
        grace = self.settings.tick_grace
        self.tick_due(now_us())
        while not stop.is_set():
            assert self.next_second is not None
            delay = (self.next_second + 1) + grace - time.time()
            await sleep_or_stop(stop, max(delay, 0.0))
            if stop.is_set():
                break
            self.tick_due(now_us())
        # On stop: sample every second that has ended (a second still running is not over).
        self.tick_due(now_us() + int(grace * US))

    # ------------------------------------------------------------------------------------ websocket
    async def _websocket(self, stop: asyncio.Event) -> None:
        settings = self.settings
        backoff = Backoff(settings.backoff_initial, settings.backoff_cap)
        attempt = 0
        while not stop.is_set():
            attempt += 1
            conn_id = f"{self.run_id}-ws-{attempt}"
            try:
                ws = await connect(settings.ws_url, open_timeout=10, close_timeout=2, ping_interval=None,
                                   max_size=2**22)  # fmt: skip
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                if isinstance(exc, InvalidURI):
                    raise ConfigError(f"invalid Bitso websocket URL {settings.ws_url!r}") from exc
                if (refused := refusal("Bitso", settings.ws_url, exc)) is not None:
                    raise refused from None
                delay = backoff.next_delay()
                log.warning("bitso: connect to %s failed (%s); retrying in %.1f s", settings.ws_url,
                            exc or type(exc).__name__, delay)  # fmt: skip
                await sleep_or_stop(stop, delay)
                continue
            self.connections_opened += 1
            opened = time.monotonic()
            log.info("bitso: connected %s to %s", conn_id, settings.ws_url)
            try:
                reason = await self._stream(ws, conn_id, stop)
            except ConnectionClosed as exc:
                reason = close_reason(exc)
            finally:
                self.open_conns.discard(conn_id)
                self.processor.connection_closed(conn_id)
                await ws.close()
            lasted = time.monotonic() - opened
            if stop.is_set():
                log.info("bitso: closed %s after %.1f s", conn_id, lasted)
                break
            delay = backoff.after_connection(lasted)
            self.reconnects += 1
            log.warning("bitso: websocket %s ended after %.1f s (%s); REST covers the books; reconnecting "
                        "in %.1f s", conn_id, lasted, reason, delay)  # fmt: skip
            await sleep_or_stop(stop, delay)

    async def _stream(self, ws: ClientConnection, conn_id: str, stop: asyncio.Event) -> str:
        for book in self.books:
            text = bitso.subscribe_frame(book, "orders")
            self._frame(conn_id, "out", text)
            await ws.send(text)
        self.open_conns.add(conn_id)
        last_frame = time.monotonic()
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=0.25)  # type: ignore[arg-type]
            except TimeoutError:
                silent = time.monotonic() - last_frame
                if silent > self.settings.stale_after:
                    return f"no frame for {silent:.0f} s (stale connection)"
                continue
            last_frame = time.monotonic()
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            self._frame(conn_id, "in", text)
            if '"error"' in text:
                self._check_subscription(text)
        return "stopping"

    def _check_subscription(self, text: str) -> None:
        try:
            msg = bitso.parse_ws(text)
        except bitso.BadFrame:
            return
        if isinstance(msg, bitso.SubscribeError):
            book = msg.unknown_book
            if book is not None and book in self.books:
                raise ConfigError(f"unknown Bitso book {book}: the exchange answered '{msg.message}'")
            log.warning("bitso: subscription refused: %s", msg.message)

    # ------------------------------------------------------------------------------------ REST
    def books_needing_rest(self, now: int, served: dict[str, int]) -> list[str]:
        """Books the websocket does not carry now and that have no REST answer for this second yet."""
        second = now // US
        return [
            b
            for b in self.books
            if served.get(b) != second and not self.processor.ws_fresh(b, now, self.open_conns)
        ]

    async def _rest(self, stop: asyncio.Event) -> None:
        settings = self.settings
        pace = settings.rest_period / max(1, settings.rest_per_minute)
        served: dict[str, int] = {}  # book -> second of its last REST answer
        last_asked: dict[str, float] = {}
        last_request = float("-inf")
        while not stop.is_set():
            wait = max(self._locked_until - time.monotonic(), last_request + pace - time.monotonic())
            if wait > 0:
                await sleep_or_stop(stop, min(wait, 1.0))
                continue
            needing = self.books_needing_rest(now_us(), served)
            if not needing:
                await sleep_or_stop(stop, 0.05)
                continue
            book = min(needing, key=lambda b: last_asked.get(b, float("-inf")))
            await self.limiter.acquire()
            if stop.is_set():
                break
            last_request = last_asked[book] = time.monotonic()
            received = await self._fetch(book)
            if received is not None:
                served[book] = received // US

    async def _fetch(self, book: str) -> int | None:
        """One ``GET /v3/order_book/?book=``; returns the answer's receive time (µs) or None."""
        self.rest_requests += 1
        url = bitso.order_book_url(self.settings.api_url, book)
        try:
            response = await asyncio.to_thread(self._http.get, url, timeout=self.settings.rest_timeout)
        except requests.RequestException as exc:
            log.warning("bitso: REST %s failed: %s", book, type(exc).__name__)
            return None
        received = self.clock()
        self.on_frame(RawFrame(bitso.EXCHANGE, bitso.rest_conn(book), "in", received, response.text))
        if response.status_code == 200:
            return received
        try:
            answer = bitso.parse_rest_book(response.text, book)
        except bitso.BadFrame:
            answer = bitso.RestError("", response.text[:200])
        if response.status_code == bitso.RATE_LIMIT_STATUS or (
            isinstance(answer, bitso.RestError) and answer.rate_limited
        ):
            self.rest_rate_limited += 1
            self._locked_until = time.monotonic() + self.settings.lockout_seconds
            log.error("bitso: REST rate limit hit (HTTP %d); no REST request for %.0f s",
                      response.status_code, self.settings.lockout_seconds)  # fmt: skip
        elif isinstance(answer, bitso.RestError) and answer.code == bitso.UNKNOWN_BOOK_CODE:
            raise ConfigError(f"unknown Bitso book {book}: the exchange answered '{answer.message}'")
        else:
            log.warning("bitso: REST %s answered HTTP %d", book, response.status_code)
        return None
