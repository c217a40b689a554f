"""Typed records that cross module boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["in", "out"]


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One websocket frame (or REST body) exactly as sent or received: the write-ahead log entry.

    ``received_ts`` is integer microseconds since the epoch (UTC); ``frame`` is the exact text so that
    replay sees the exact number tokens.
    """

    exchange: str
    conn: str
    direction: Direction
    received_ts: int
    frame: str
