"""Bitfinex websocket sessions: connect, subscribe, watch, recover, backfill.

The collector moves frames; it does not interpret market data. Every frame goes to ``on_frame`` (the
pipeline captures it raw and hands it to :class:`BitfinexProcessor`), and the processor's signals come
back here as actions: resubscribe a channel after a checksum mismatch, reconnect after a sequence gap or
info 20051, pause on 20060, resubscribe everything on 20061.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from marketpipe.bitfinex import wire as bfx
from marketpipe.bitfinex.processor import BitfinexProcessor, Signal, SignalKind
from marketpipe.bitfinex.slots import CHANNELS_PER_SYMBOL, slot_name, slot_symbols
from marketpipe.errors import ConfigError
from marketpipe.net.backoff import Backoff, retry_async
from marketpipe.net.ratelimit import RateLimiter
from marketpipe.net.session import close_reason, refusal, run_tasks, sleep_or_stop
from marketpipe.records import RawFrame, rest_conn
from marketpipe.timeutil import MonotonicClock, now_us

log = logging.getLogger("marketpipe.bitfinex.collector")

FrameHandler = Callable[[RawFrame], None]

SESSION_PREFIX = "bitfinex-"
MAINTENANCE_SILENCE_ALLOWED = 180.0
BACKFILL_PAGE_LIMIT = 10_000
BACKFILL_MAX_PAGES = 20
BACKFILL_MAX_AGE_MS = 24 * 3600 * 1000


@dataclass
class CollectorSettings:
    ws_url: str = bfx.DEFAULT_WS_URL
    api_url: str = bfx.DEFAULT_API_URL
    stale_after: float = 30.0
    """Seconds without any frame (heartbeats included) after which the connection is declared dead."""
    drain_timeout: float = 10.0
    """On stop, how long to keep reading so unverified book rows can meet their checksum."""
    backoff_initial: float = 1.0
    backoff_cap: float = 60.0
    subscription_retry: float = 5.0
    max_subscriptions_per_connection: int = bfx.MAX_SUBSCRIPTIONS_PER_CONNECTION
    slot_size: int | None = None
    """None packs up to 25 subscriptions per socket in the order given (local runs). A number cuts the
    symbols, sorted, into fixed slots of that many (at most 12): one socket each, and one Kinesis
    partition each, so that a partition holds its socket's complete SEQ_ALL numbering (see
    :func:`slot_symbols`)."""
    drop_refused_symbols: bool = False
    """``--symbols all``: a listed pair that the exchange then refuses to subscribe (delisted since it
    was listed) is left out with an error line; with a configured list it stops the run (a typo)."""
    connections_per_minute: int = bfx.MAX_CONNECTIONS_PER_MINUTE
    rest_requests_per_minute: int = 15
    rest_timeout: float = 10.0


@dataclass
class _SessionState:
    book_channels: dict[str, int] = field(default_factory=dict)  # wire -> chanId
    trades_channels: dict[str, int] = field(default_factory=dict)
    retry_at: dict[tuple[str, str], float] = field(default_factory=dict)  # (channel, wire) -> due
    paused: bool = False


class _RestFailed(Exception):
    """One failed REST request (backfill, pair list); ``retryable`` when another attempt may succeed."""

    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.retryable = retryable


async def _get_text(get: Callable[..., requests.Response], url: str, **kwargs: Any) -> str:
    """One GET's body (off the event loop); _RestFailed otherwise, retryable for network errors, 429, 5xx."""
    try:
        response = await asyncio.to_thread(get, url, **kwargs)
    except requests.RequestException as exc:
        raise _RestFailed(f"{exc.__class__.__name__}: {exc}") from exc
    if response.status_code == 200:
        return response.text
    retryable = response.status_code in (429, 500, 502, 503, 504)
    raise _RestFailed(f"HTTP {response.status_code}: {response.text[:200]}", retryable)


class TradesBackfill:
    """Fetches trades missed while disconnected from ``/v2/trades/{symbol}/hist``."""

    def __init__(
        self,
        api_url: str,
        limiter: RateLimiter,
        timeout: float = 10.0,
        retry_initial: float = 1.0,
        rate_limit_block: float = 60.0,
    ) -> None:
        self.api_url = api_url
        self._limiter = limiter
        self._timeout = timeout
        self._retry_initial = retry_initial
        self._rate_limit_block = rate_limit_block
        """Bitfinex blocks an IP for about a minute after a rate-limit breach: wait it out."""
        self._http = requests.Session()
        self._http.headers["User-Agent"] = "marketpipe"

    async def fetch(self, wire: str, start_ms: int, end_ms: int) -> list[tuple[str, str]]:
        """Return ``(capture conn, body)`` pages, oldest first; raises after repeated failures."""
        url = bfx.trades_hist_url(self.api_url, wire)
        pages: list[tuple[str, str]] = []
        start = start_ms
        for _ in range(BACKFILL_MAX_PAGES):
            query = urlencode({"start": start, "end": end_ms, "limit": BACKFILL_PAGE_LIMIT, "sort": 1})
            body = await self._get(f"{url}?{query}")
            pages.append((rest_conn(f"{bfx.trades_hist_path(wire)}?{query}"), body))
            entries = orjson.loads(body)
            if not isinstance(entries, list) or len(entries) < BACKFILL_PAGE_LIMIT:
                break
            next_start = max(int(e[1]) for e in entries)
            if next_start <= start:
                log.warning(
                    "backfill %s: more than %d trades in one millisecond at %d; some may be missing",
                    wire,
                    BACKFILL_PAGE_LIMIT,
                    start,
                )
                break
            start = next_start
        return pages

    async def _get(self, url: str) -> str:
        """The body of one GET: 4 attempts, network errors, 429 and 5xx retried; RuntimeError after."""

        async def once() -> str:
            await self._limiter.acquire()
            return await _get_text(self._http.get, url, timeout=self._timeout)

        def block(exc: Exception) -> float | None:
            """Bitfinex blocks the IP after a rate-limit breach: wait the block out, not the backoff."""
            text = str(exc)
            return self._rate_limit_block if text.startswith("HTTP 429") or "ratelimit" in text else None

        try:
            return await retry_async(
                once,
                attempts=4,
                backoff=Backoff(initial=self._retry_initial, cap=20.0),
                retry_on=lambda exc: isinstance(exc, _RestFailed) and exc.retryable,
                retry_after=block,
                on_retry=lambda _attempt, exc, delay: log.warning(
                    "backfill request failed (%s); retrying in %.1f s", exc, delay
                ),
            )
        except _RestFailed as exc:
            raise RuntimeError(str(exc)) from None

    def close(self) -> None:
        self._http.close()


async def listed_symbols(api_url: str, timeout: float = 10.0, retry_initial: float = 1.0) -> list[str]:
    """Every trading pair the exchange lists (``--symbols all``), as sorted wire symbols.

    Asked once at start (``GET /v2/conf/pub:list:pair:exchange``), so a restart picks up new listings.
    Network errors, 429 and 5xx are retried a few times; then ConfigError, one line, and the process
    exits (ECS starts it again).
    """
    url = bfx.pair_list_url(api_url)

    async def once() -> str:
        return await _get_text(requests.get, url, timeout=timeout, headers={"User-Agent": "marketpipe"})

    try:
        body = await retry_async(
            once,
            attempts=4,
            backoff=Backoff(initial=retry_initial, cap=20.0),
            retry_on=lambda exc: isinstance(exc, _RestFailed) and exc.retryable,
            on_retry=lambda _attempt, exc, delay: log.warning(
                "listing Bitfinex pairs failed (%s); retrying in %.1f s", exc, delay
            ),
        )
    except _RestFailed as exc:
        raise ConfigError(f"--symbols all: could not list the Bitfinex pairs at {url}: {exc}") from None
    wires, skipped = bfx.parse_pair_list(body)
    if skipped:
        shown = ", ".join(skipped[:20])
        log.warning("--symbols all: skipped %d listed non-trading pair(s): %s", len(skipped), shown)
    if not wires:
        raise ConfigError(f"--symbols all: the exchange listed no trading pairs at {url}")
    return wires


class BitfinexCollector:
    """Holds the websocket connections for a list of symbols (book + trades per symbol)."""

    def __init__(
        self,
        wire_symbols: Sequence[str],
        processor: BitfinexProcessor,
        on_frame: FrameHandler,
        settings: CollectorSettings | None = None,
        *,
        clock: Callable[[], int] | None = None,
        resume_trades_from: dict[str, int] | None = None,
    ) -> None:
        if not wire_symbols:
            raise ConfigError("no Bitfinex symbols configured")
        self.settings = settings or CollectorSettings()
        self.processor = processor
        self.on_frame = on_frame
        self.clock = clock or MonotonicClock()
        self.run_id = uuid.uuid4().hex[:8]
        self.connection_limiter = RateLimiter(self.settings.connections_per_minute, 60.0)
        self.backfill = TradesBackfill(
            self.settings.api_url,
            RateLimiter(self.settings.rest_requests_per_minute, 60.0),
            self.settings.rest_timeout,
        )
        for wire, mts in (resume_trades_from or {}).items():
            processor.last_trade_mts.setdefault(wire, mts)
        per_connection = max(1, self.settings.max_subscriptions_per_connection // CHANNELS_PER_SYMBOL)
        if self.settings.slot_size:
            groups = slot_symbols(wire_symbols, min(per_connection, self.settings.slot_size))
        else:
            symbols = list(dict.fromkeys(wire_symbols))
            groups = [symbols[i : i + per_connection] for i in range(0, len(symbols), per_connection)]
        self.sessions = [_Session(self, index, wires) for index, wires in enumerate(groups)]
        self._slot_of_wire = {wire: index for index, wires in enumerate(groups) for wire in wires}
        self._conn_prefix = f"{self.run_id}-{SESSION_PREFIX}"
        self._by_conn: dict[str, _Session] = {}
        self.connections_opened = 0
        self.reconnects = 0
        """Connections that ended while the run went on (each is replaced after a backoff)."""

    def partitions(self) -> list[str]:
        """Every slot's partition name, in slot order."""
        return [slot_name(index) for index in range(len(self.sessions))]

    def partition_of(self, conn: str) -> str | None:
        """The slot of a frame: its connection's, or for a REST backfill body that of the symbol in its
        path; None for a connection this collector did not open.

        The slot is read from the connection id (``<run>-bitfinex-<slot>-<attempt>``), so frames that
        reach the transport after their socket closed still go to their slot.
        """
        wire = bfx.wire_of_backfill_conn(conn)
        if wire is not None:
            index = self._slot_of_wire.get(wire)
        elif conn.startswith(self._conn_prefix):
            slot, _, attempt = conn[len(self._conn_prefix) :].partition("-")
            known = slot.isdigit() and attempt.isdigit() and int(slot) < len(self.sessions)
            index = int(slot) if known else None
        else:
            index = None
        return None if index is None else slot_name(index)

    def handle_signal(self, signal: Signal) -> None:
        """Processor callback: queue the action on the session owning that connection."""
        session = self._by_conn.get(signal.conn)
        if session is not None:
            session.actions.append(signal)

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set; raises ConfigError if a configured symbol does not exist."""
        tasks = [asyncio.create_task(s.run(stop), name=s.name) for s in self.sessions]
        try:
            await run_tasks(tasks)
        finally:
            self.backfill.close()


class _Session:
    """One websocket connection (re-established as needed) carrying up to 25 channels."""

    def __init__(self, collector: BitfinexCollector, index: int, wires: list[str]) -> None:
        self.collector = collector
        self.name = f"{SESSION_PREFIX}{index}"
        self.wires = wires
        self.actions: list[Signal] = []
        self.attempt = 0
        self.confirmed: set[str] = set()
        self.backoff = Backoff(collector.settings.backoff_initial, collector.settings.backoff_cap)

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.collector.settings
        down_since: float | None = None
        while not stop.is_set():
            waited = await self.collector.connection_limiter.acquire()
            if waited:
                log.info(
                    "%s: waited %.1f s to stay within %d connections/minute",
                    self.name,
                    waited,
                    settings.connections_per_minute,
                )
            self.attempt += 1
            conn_id = f"{self.collector.run_id}-{self.name}-{self.attempt}"
            try:
                ws = await connect(
                    settings.ws_url,
                    open_timeout=10,
                    close_timeout=2,
                    ping_interval=None,
                    max_size=2**24,
                    max_queue=4096,
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                if isinstance(exc, InvalidURI):
                    raise ConfigError(f"invalid Bitfinex websocket URL {settings.ws_url!r}") from exc
                if (refused := refusal("Bitfinex", settings.ws_url, exc)) is not None:
                    raise refused from None
                if down_since is None:
                    down_since = time.monotonic()
                delay = self.backoff.next_delay()
                log.warning(
                    "%s: connect to %s failed (%s); retrying in %.1f s",
                    self.name,
                    settings.ws_url,
                    exc or exc.__class__.__name__,
                    delay,
                )
                await sleep_or_stop(stop, delay)
                continue
            self.collector.connections_opened += 1
            downtime = f", after {time.monotonic() - down_since:.1f} s down" if down_since else ""
            log.info("%s: connected %s to %s%s", self.name, conn_id, settings.ws_url, downtime)
            self.collector._by_conn[conn_id] = self
            opened = time.monotonic()
            try:
                reason = await self._stream(ws, conn_id, stop)
            except ConnectionClosed as exc:
                reason = close_reason(exc)
            finally:
                self.collector._by_conn.pop(conn_id, None)
                self.actions.clear()
                self.collector.processor.connection_closed(conn_id)
                await ws.close()
            down_since = time.monotonic()
            if stop.is_set():
                log.info("%s: closed %s after %.1f s: %s", self.name, conn_id, down_since - opened, reason)
                break
            log.warning(
                "%s: disconnected %s after %.1f s: %s", self.name, conn_id, down_since - opened, reason
            )
            delay = self.backoff.after_connection(down_since - opened)
            self.collector.reconnects += 1
            log.info("%s: reconnecting in %.1f s", self.name, delay)
            await sleep_or_stop(stop, delay)

    async def _stream(self, ws: ClientConnection, conn_id: str, stop: asyncio.Event) -> str:
        """Subscribe and read until the connection must end; returns why it ended."""
        collector, settings = self.collector, self.collector.settings
        state = _SessionState()
        await self._send(ws, conn_id, bfx.conf_frame())
        for wire in self.wires:
            await self._send(ws, conn_id, bfx.subscribe_book_frame(wire))
            await self._send(ws, conn_id, bfx.subscribe_trades_frame(wire))
        # After a disconnect, or a restart that resumed from stored trades, fetch what was missed.
        backfills = [
            asyncio.create_task(self._backfill(wire))
            for wire in self.wires
            if wire in collector.processor.last_trade_mts
        ]
        last_frame = time.monotonic()
        draining_since: float | None = None
        try:
            while True:
                if stop.is_set():
                    if draining_since is None:
                        draining_since = time.monotonic()
                    pending = collector.processor.pending_rows(conn_id)
                    if pending == 0:
                        return "stopping"
                    if time.monotonic() - draining_since > settings.drain_timeout:
                        log.warning(
                            "%s: stopping with %d book rows still unverified (no checksum within "
                            "%.0f s); they are not stored, the raw capture keeps them",
                            self.name,
                            pending,
                            settings.drain_timeout,
                        )
                        return "stopping"
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=0.5)
                except TimeoutError:
                    allowed = MAINTENANCE_SILENCE_ALLOWED if state.paused else settings.stale_after
                    silent = time.monotonic() - last_frame
                    if silent > allowed:
                        return f"no frame for {silent:.0f} s (stale connection)"
                    await self._retry_due_subscriptions(ws, conn_id, state)
                    continue
                last_frame = time.monotonic()
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                collector.on_frame(RawFrame(bfx.EXCHANGE, conn_id, "in", collector.clock(), text))
                if self.actions:
                    reason = await self._act(ws, conn_id, state, stop)
                    if reason:
                        return reason
                if state.retry_at:
                    await self._retry_due_subscriptions(ws, conn_id, state)
        finally:
            for task in backfills:
                task.cancel()

    async def _act(
        self, ws: ClientConnection, conn_id: str, state: _SessionState, stop: asyncio.Event
    ) -> str:
        actions, self.actions = self.actions, []
        for signal in actions:
            kind = signal.kind
            if kind is SignalKind.SUBSCRIBED and signal.symbol and signal.chan_id is not None:
                channels = state.book_channels if signal.channel == "book" else state.trades_channels
                channels[signal.symbol] = signal.chan_id
                self.confirmed.add(signal.symbol)
            elif kind is SignalKind.UNSUBSCRIBED and signal.symbol:
                for channels in (state.book_channels, state.trades_channels):
                    if channels.get(signal.symbol) == signal.chan_id:
                        del channels[signal.symbol]
            elif kind is SignalKind.RECONNECT:
                return f"reconnect requested: {signal.reason}"
            elif stop.is_set():
                continue  # draining: no resubscriptions
            elif kind is SignalKind.RESUBSCRIBE and signal.symbol and signal.chan_id is not None:
                log.warning(
                    "%s: resubscribing %s %s (%s)", self.name, signal.channel, signal.symbol, signal.reason
                )
                await self._send(ws, conn_id, bfx.unsubscribe_frame(signal.chan_id))
                await self._send(ws, conn_id, bfx.subscribe_book_frame(signal.symbol))
            elif kind is SignalKind.PAUSE:
                state.paused = True
                log.warning("%s: exchange maintenance: pausing until info 20061", self.name)
            elif kind is SignalKind.RESUBSCRIBE_ALL:
                state.paused = False
                log.warning(
                    "%s: resubscribing all %d channels (%s)",
                    self.name,
                    len(state.book_channels) + len(state.trades_channels),
                    signal.reason,
                )
                for chan_id in [*state.book_channels.values(), *state.trades_channels.values()]:
                    await self._send(ws, conn_id, bfx.unsubscribe_frame(chan_id))
                for wire in self.wires:
                    await self._send(ws, conn_id, bfx.subscribe_book_frame(wire))
                    await self._send(ws, conn_id, bfx.subscribe_trades_frame(wire))
            elif kind is SignalKind.SUBSCRIBE_ERROR:
                self._on_subscribe_error(signal, state)
        return ""

    def _on_subscribe_error(self, signal: Signal, state: _SessionState) -> None:
        wire, channel, code = signal.symbol, signal.channel, signal.code
        if code == bfx.ERROR_ALREADY_SUBSCRIBED:
            log.info("%s: %s %s already subscribed", self.name, channel, wire)
            return
        if (
            code == bfx.ERROR_SUBSCRIPTION_FAILED
            and "symbol" in signal.reason
            and wire in self.wires
            and wire not in self.confirmed
        ):
            if self.collector.settings.drop_refused_symbols:
                log.error(
                    "%s: the exchange listed %s but refuses it (%s); collecting the others without it",
                    self.name,
                    wire,
                    signal.reason,
                )
                self.wires.remove(wire)
                return
            raise ConfigError(
                f"unknown Bitfinex symbol {bfx.normalize_symbol(wire)} ({wire}): "
                f"the exchange answered '{signal.reason}'"
            )
        if wire in self.wires and channel in ("book", "trades"):
            retry = self.collector.settings.subscription_retry
            state.retry_at[(channel, wire)] = time.monotonic() + retry
            log.warning(
                "%s: subscription to %s %s refused (code %s: %s); retrying in %.0f s",
                self.name,
                channel,
                wire,
                code,
                signal.reason,
                retry,
            )

    async def _retry_due_subscriptions(
        self, ws: ClientConnection, conn_id: str, state: _SessionState
    ) -> None:
        if state.paused:
            return
        now = time.monotonic()
        for (channel, wire), due in list(state.retry_at.items()):
            if due <= now:
                del state.retry_at[(channel, wire)]
                frame = (
                    bfx.subscribe_book_frame(wire) if channel == "book" else bfx.subscribe_trades_frame(wire)
                )
                log.info("%s: retrying subscription to %s %s", self.name, channel, wire)
                await self._send(ws, conn_id, frame)

    async def _send(self, ws: ClientConnection, conn_id: str, text: str) -> None:
        self.collector.on_frame(RawFrame(bfx.EXCHANGE, conn_id, "out", self.collector.clock(), text))
        await ws.send(text)

    async def _backfill(self, wire: str) -> None:
        collector = self.collector
        start = collector.processor.last_trade_mts.get(wire)
        if start is None:
            return
        end = now_us() // 1000
        start = max(start, end - BACKFILL_MAX_AGE_MS)
        try:
            pages = await collector.backfill.fetch(wire, start, end)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "backfill of %s trades %d..%d ms failed: %s; trades in that window may be missing",
                wire,
                start,
                end,
                exc,
            )
            return
        before = collector.processor.stats.trade_rows
        for capture_conn, body in pages:
            collector.on_frame(RawFrame(bfx.EXCHANGE, capture_conn, "in", collector.clock(), body))
        added = collector.processor.stats.trade_rows - before
        log.info(
            "backfill %s: %d ms of history fetched in %d page(s), %d trade(s) were missing",
            wire,
            end - start,
            len(pages),
            added,
        )
