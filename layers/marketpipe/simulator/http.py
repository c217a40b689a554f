"""A minimal asyncio HTTP/1.1 server for the simulators' REST and control endpoints.

The websockets server only parses ``GET`` upgrade requests, and the control endpoint needs ``POST``;
a stdlib ``http.server`` would run in another thread and race the event loop that owns the market.
This server runs on the same loop, supports keep-alive (``requests.Session`` reuses sockets) and
hands each request to a synchronous router.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["HttpRequest", "HttpResponse", "LoopbackHttpServer"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A parsed request: method, decoded path, query parameters (last value wins) and body."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A response body with its status and content type."""

    status: int
    body: str
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Router = Callable[[HttpRequest], HttpResponse]


class LoopbackHttpServer:
    """Serve ``router`` on ``host:port`` (port 0 picks a free one) until :meth:`stop`."""

    def __init__(self, router: Router, host: str = "127.0.0.1", port: int = 0) -> None:
        self._router = router
        self._host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(
            self._serve_client, self._host, self._requested_port, limit=_MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every open client connection."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                try:
                    response = self._router(request)
                except Exception as exc:  # a router bug must answer 500, not kill the server
                    response = HttpResponse(500, f'["error",10000,"internal: {type(exc).__name__}"]')
                keep_alive = request.headers.get("connection", "").lower() != "close"
                writer.write(_render(response, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or "0")
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return HttpRequest(method.upper(), unquote(parts.path), query, headers, body)


def _render(response: HttpResponse, keep_alive: bool) -> bytes:
    body = response.body.encode("utf-8")
    reason = _REASONS.get(response.status, "Unknown")
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    head += [f"{name}: {value}" for name, value in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
