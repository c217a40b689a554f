"""What every exchange websocket session shares: a sleep that ends at ``stop``, why a connection closed,
and running a collector's tasks together. Reconnect pacing (backoff with jitter, the connection budget)
is :mod:`marketpipe.net`'s."""

from __future__ import annotations

import asyncio
import contextlib

from websockets.exceptions import ConnectionClosed

from marketpipe.errors import ConfigError

REFUSALS = {403: "forbidden", 451: "unavailable for legal reasons: the exchange blocks this location"}
"""Answers to a websocket handshake that retrying cannot change (a geo-block)."""


def refusal(exchange: str, url: str, exc: BaseException) -> ConfigError | None:
    """A ConfigError when the handshake was refused with HTTP 403/451 (a geo-block), else None."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    if status not in REFUSALS:
        return None
    return ConfigError(f"{exchange} refused the connection to {url}: HTTP {status} ({REFUSALS[status]})")


async def sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    """Sleep ``delay`` seconds, or less when ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)


def close_reason(exc: ConnectionClosed) -> str:
    """Why the server (or the network) ended a websocket, for the disconnect log line."""
    if exc.rcvd is None:
        return "connection lost (no close frame)"
    return f"closed by server (code {exc.rcvd.code}{': ' + exc.rcvd.reason if exc.rcvd.reason else ''})"


async def run_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for a collector's tasks: the first failure is raised; every task is cancelled on the way out."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
