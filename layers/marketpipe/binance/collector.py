"""Binance sessions: combined streams sharded over connections, within Binance's connection rules.

* Streams are split over connections of at most ``streams_per_connection`` (Binance allows 1,024; the
  default keeps the ``/stream?streams=…`` URL short) and requested in the URL, so a session sends no
  JSON control message at all: the only messages Binance receives from us are pongs, far below its
  5 incoming messages per second.
* Pings are answered by the websockets library (a pong echoing the payload, at once); we never send
  unsolicited pings (they would count against the 5/s).
* Every connection attempt of the process goes through one :class:`RateLimiter` below Binance's
  300 attempts per 5 minutes per IP; failed attempts back off exponentially with jitter.
* Binance cuts connections at 24 h and announces maintenance with ``serverShutdown``: in both cases
  (at ``max_connection_age``, 23 h by default) the shard opens its next connection *before* closing
  the old one, so the streams continue without a gap. A socket silent for ``stale_after`` is dead.

Every frame received goes to ``on_frame`` (raw capture, then processor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from marketpipe.binance import wire as binance
from marketpipe.errors import ConfigError
from marketpipe.net.backoff import Backoff
from marketpipe.net.ratelimit import RateLimiter
from marketpipe.net.session import close_reason, refusal, run_tasks, sleep_or_stop
from marketpipe.records import RawFrame
from marketpipe.timeutil import MonotonicClock

log = logging.getLogger("marketpipe.binance.collector")

FrameHandler = Callable[[RawFrame], None]
ROTATE = "rotate"
SHUTDOWN = "shutdown"


@dataclass
class BinanceSettings:
    ws_url: str = binance.DEFAULT_WS_URL
    streams_per_connection: int = 200
    max_connection_age: float = 23 * 3600.0
    """Reconnect (make-before-break) before Binance's 24-hour cut."""
    stale_after: float = 30.0
    """Seconds without a frame before the socket counts as dead (depth20@100ms sends 10 per second)."""
    backoff_initial: float = 1.0
    backoff_cap: float = 30.0
    connects_per_window: int = 250
    """Binance allows 300 connection attempts per 5 minutes per IP; the rest is left for restarts."""
    connect_window: float = 300.0
    open_timeout: float = 10.0


class BinanceCollector:
    """Holds one websocket per shard of streams until ``stop``."""

    def __init__(
        self,
        streams: Sequence[str],
        on_frame: FrameHandler,
        settings: BinanceSettings | None = None,
        *,
        clock: Callable[[], int] | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not streams:
            raise ConfigError("no Binance streams configured")
        self.settings = settings or BinanceSettings()
        self.shards = binance.shard_streams(streams, self.settings.streams_per_connection)
        self.on_frame = on_frame
        self.clock = clock or MonotonicClock()
        self.limiter = limiter or RateLimiter(self.settings.connects_per_window, self.settings.connect_window)
        self.run_id = uuid.uuid4().hex[:8]
        self.connections_opened = 0
        self.rotations = 0
        self.shutdown_notices = 0
        self.reconnects = 0
        self.open_conns: set[str] = set()
        self._attempts = 0

    def partitions_of(self, conn: str) -> list[str]:
        """Kinesis partitions of a frame: its connection's shard (``shard-0``…; the settings record: all).

        One partition per shard rather than per symbol: a mini-ticker array concerns every symbol and is
        kept whole (frames stay byte-exact), and each symbol's depth stream lives in exactly one shard,
        so per-symbol order is kept. Rotations reuse the shard's partition.
        """
        if conn == "config":
            return [shard_key(i) for i in range(len(self.shards))]
        parts = conn.rsplit("-", 2)
        if (
            len(parts) == 3
            and parts[0] == self.run_id
            and parts[1].startswith("s")
            and parts[1][1:].isdigit()
        ):
            return [shard_key(int(parts[1][1:]))]
        return []

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self._shard(i, shard, stop), name=f"binance-shard-{i}")
            for i, shard in enumerate(self.shards)
        ]
        await run_tasks(tasks)

    async def _connect(
        self, index: int, streams: list[str], stop: asyncio.Event, backoff: Backoff
    ) -> tuple[ClientConnection, str] | None:
        """Open a connection for a shard (retrying with backoff); None when stopped first."""
        url = binance.combined_url(self.settings.ws_url, streams)
        while not stop.is_set():
            # Wait for the connection budget, but never past ``stop``.
            while (wait := self.limiter.delay_needed()) > 0 and not stop.is_set():
                await sleep_or_stop(stop, wait)
            if stop.is_set():
                break
            await self.limiter.acquire()
            self._attempts += 1
            conn_id = f"{self.run_id}-s{index}-{self._attempts}"
            try:
                ws = await connect(url, open_timeout=self.settings.open_timeout, close_timeout=2,
                                   ping_interval=None, max_size=2**24)  # fmt: skip
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                if isinstance(exc, InvalidURI):
                    raise ConfigError(f"invalid Binance websocket URL {self.settings.ws_url!r}") from exc
                if (refused := refusal("Binance", self.settings.ws_url, exc)) is not None:
                    raise refused from None
                delay = backoff.next_delay()
                log.warning(
                    "binance: connect failed (%s); retrying in %.1f s", exc or type(exc).__name__, delay
                )
                await sleep_or_stop(stop, delay)
                continue
            self.connections_opened += 1
            self.open_conns.add(conn_id)
            log.info("binance: connected %s (%d streams)", conn_id, len(streams))
            return ws, conn_id
        return None

    async def _shard(self, index: int, streams: list[str], stop: asyncio.Event) -> None:
        settings = self.settings
        backoff = Backoff(settings.backoff_initial, settings.backoff_cap)
        current = await self._connect(index, streams, stop, backoff)
        while current is not None and not stop.is_set():
            ws, conn_id = current
            opened = time.monotonic()
            try:
                reason = await self._stream(ws, conn_id, opened, stop)
            except ConnectionClosed as exc:
                reason = close_reason(exc)
            if reason in (ROTATE, SHUTDOWN) and not stop.is_set():
                if reason == ROTATE:
                    self.rotations += 1
                else:
                    self.shutdown_notices += 1
                log.info("binance: %s: %s; opening the next connection first", conn_id,
                         "connection age limit" if reason == ROTATE else "serverShutdown")  # fmt: skip
                following = await self._connect(index, streams, stop, backoff)
                await self._close(ws, conn_id)
                current = following
                continue
            await self._close(ws, conn_id)
            if stop.is_set():
                break
            lasted = time.monotonic() - opened
            delay = backoff.after_connection(lasted)
            self.reconnects += 1
            log.warning("binance: %s ended after %.1f s (%s); reconnecting in %.1f s",
                        conn_id, lasted, reason, delay)  # fmt: skip
            await sleep_or_stop(stop, delay)
            current = await self._connect(index, streams, stop, backoff)
        if current is not None:
            await self._close(*current)

    async def _close(self, ws: ClientConnection, conn_id: str) -> None:
        self.open_conns.discard(conn_id)
        with contextlib.suppress(Exception):
            await ws.close()

    async def _stream(self, ws: ClientConnection, conn_id: str, opened: float, stop: asyncio.Event) -> str:
        settings = self.settings
        last_frame = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - opened >= settings.max_connection_age:
                return ROTATE
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=0.25)
            except TimeoutError:
                silent = time.monotonic() - last_frame
                if silent > settings.stale_after:
                    return f"no frame for {silent:.0f} s (stale connection)"
                continue
            last_frame = time.monotonic()
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            self.on_frame(RawFrame(binance.EXCHANGE, conn_id, "in", self.clock(), text))
            if '"serverShutdown"' in text:
                return SHUTDOWN
        return "stopping"


def shard_key(index: int) -> str:
    """Partition name of a shard (never six letters: the transport would read those as a currency pair)."""
    return f"shard-{index}"
