"""Waiting on conditions instead of sleeping: live tests stay right on a loaded machine."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable


async def until(condition: Callable[[], object], what: str = "the condition", timeout: float = 60.0) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after a generous ``timeout``.

    ``condition`` may return an awaitable (e.g. ``asyncio.to_thread`` for a check doing blocking I/O).
    """
    deadline = time.monotonic() + timeout

    async def holds() -> object:
        result = condition()
        return await result if inspect.isawaitable(result) else result

    while not await holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)
