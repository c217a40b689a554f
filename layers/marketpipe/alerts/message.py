"""One market alert as every channel delivers it: a value with no I/O, so processors can build it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AlertMessage:
    text: str
    body: dict[str, Any]
    key: str
    """Stable id of the event (same on retries and replays): book, threshold, direction, second."""
    is_alert: bool
