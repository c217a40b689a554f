"""UTC timestamps as integer microseconds: exact, cheap to compare, easy to convert per sink."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    return time.time_ns() // 1000


def us_to_datetime(us: int) -> datetime:
    """Exact conversion (no float rounding)."""
    seconds, micros = divmod(us, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


def us_to_iso(us: int, millis: bool = False) -> str:
    """``2026-11-22T04:10:26.123456Z`` (or ``.123Z`` with ``millis``)."""
    dt = us_to_datetime(us)
    if millis:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_to_us(text: str) -> int:
    """Parse an ISO 8601 UTC timestamp (``Z`` or ``+00:00``, any fraction) to microseconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class MonotonicClock:
    """Receive timestamps that strictly increase, so (symbol, received_ts) identifies a frame."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        now = now_us()
        if now <= self._last:
            now = self._last + 1
        self._last = now
        return now
