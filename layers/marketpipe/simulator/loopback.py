"""What the loopback websocket exchanges (Bitfinex, Bitso, Binance) share: start and stop, background
tasks, ``async with``, fault injection from any thread and the ``/_sim`` control endpoints.

Each simulator keeps its own protocol, market and faults; this base only owns the servers: the
websocket server, the optional REST/control server (:class:`LoopbackHttpServer`, on the same loop)
and the tasks spawned beside them.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Self

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve

from marketpipe.simulator.http import HttpRequest, HttpResponse, LoopbackHttpServer, Router


def optional_float(value: Any) -> float | None:
    """A control parameter: absent or empty is ``None``."""
    return float(value) if value not in (None, "") else None


class LoopbackSimulator:
    """Servers, tasks and counters of one loopback exchange; subclasses serve the protocol."""

    def __init__(self) -> None:
        self.ws_url = ""
        self.api_url = ""
        self.connections_accepted = 0
        self.faults_injected: collections.Counter[str] = collections.Counter()
        self._connections: dict[int, Any] = {}  # id -> connection state with its ``ws``
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._http: LoopbackHttpServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _serve(
        self,
        handler: Callable[[ServerConnection], Awaitable[None]],
        host: str,
        port: int,
        *,
        router: Router | None = None,
        rest_port: int = 0,
        **options: Any,
    ) -> str:
        """Bind the websocket server (no protocol pings, no compression) and, with a ``router``, the
        REST server (``api_url``); return the websocket base URL."""
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            handler, host, port, ping_interval=None, compression=None, close_timeout=1.0, **options
        )
        if router is not None:
            self._http = LoopbackHttpServer(router, host, rest_port)
            await self._http.start()
            self.api_url = f"http://{host}:{self._http.port}"
        return f"ws://{host}:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        """Cancel the tasks, close every connection and both servers; idempotent."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 3.0)
            except TimeoutError:  # pragma: no cover - a stuck client
                for conn in list(self._connections.values()):
                    conn.ws.transport.abort()
        if self._http is not None:
            http_server, self._http = self._http, None
            await http_server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:  # pragma: no cover - every simulator defines it
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_loop(self, apply: Callable[..., None], *args: Any) -> None:
        """Run ``apply(*args)`` on the simulator's loop: now if called from it, else soon (thread-safe)."""
        assert self._loop is not None
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            apply(*args)
        else:
            self._loop.call_soon_threadsafe(apply, *args)

    # ------------------------------------------------------------------------------ /_sim control
    def status(self) -> dict[str, Any]:  # pragma: no cover - every simulator defines it
        raise NotImplementedError

    def _inject_request(self, fault: str, params: Mapping[str, Any]) -> None:  # pragma: no cover
        """``POST /_sim/fault/<fault>`` with its parameters (strings from a query, or JSON values)."""
        raise NotImplementedError

    def _control(self, request: HttpRequest, parts: list[str]) -> HttpResponse | None:
        """``POST /_sim/fault/<name>`` (query string or JSON body) and ``GET /_sim/status``; ``None`` for
        any other ``/_sim`` path (``parts`` follow ``_sim``)."""
        if request.method == "POST" and len(parts) == 2 and parts[0] == "fault":
            params: dict[str, Any] = dict(request.query)
            if request.body.strip():
                try:
                    body = orjson.loads(request.body)
                except orjson.JSONDecodeError:
                    return HttpResponse(400, '{"ok":false,"error":"body is not JSON"}')
                if isinstance(body, dict):
                    params.update(body)
            try:
                self._inject_request(parts[1], params)
            except (ValueError, TypeError) as exc:
                return HttpResponse(400, orjson.dumps({"ok": False, "error": str(exc)}).decode())
            return HttpResponse(200, orjson.dumps({"ok": True, "fault": parts[1]}).decode())
        if request.method == "GET" and parts == ["status"]:
            return HttpResponse(200, orjson.dumps(self.status()).decode())
        return None
