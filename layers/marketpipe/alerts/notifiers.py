"""The notifier port (``send(text)``) and the adapters that need no network.

The liveness checker and the alarm Lambda only know this port; Plivo SMS (``marketpipe.alerts.sms``)
and the console/log notifier plug in behind it, so the alerting logic is tested without a phone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

log = logging.getLogger("marketpipe.alerts")


class NotifyError(Exception):
    """A message could not be handed over.

    ``maybe_delivered`` is True when the outcome is unknown (the request reached the provider but no
    answer came back): the caller must not resend blindly or it may produce a duplicate.
    """

    def __init__(self, message: str, *, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


class Notifier(Protocol):
    """Deliver one text; return provider message ids (possibly none); raise NotifyError on failure."""

    def send(self, text: str) -> Sequence[str]: ...

    def describe(self) -> str:
        """Where messages go, safe to log (numbers masked)."""
        ...


def mask_number(number: str) -> str:
    """``+14155550199`` -> ``+*******0199``: enough to tell numbers apart, not enough to dial them."""
    number = number.strip()
    digits = sum(c.isdigit() for c in number)
    if digits <= 4:
        return "*" * len(number)
    keep = 4
    out = []
    seen = 0
    for c in number:
        if c.isdigit():
            seen += 1
            out.append(c if seen > digits - keep else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_numbers(numbers: Iterable[str]) -> str:
    return ", ".join(mask_number(n) for n in numbers)


class LogNotifier:
    """Writes what would have been sent to the log: the no-credentials mode of ``marketpipe check``."""

    def __init__(self, reason: str = "no Plivo credentials") -> None:
        self.reason = reason
        self.sent: list[str] = []

    def send(self, text: str) -> Sequence[str]:
        log.warning("ALERT (not sent as SMS: %s): %s", self.reason, text)
        self.sent.append(text)
        return []

    def describe(self) -> str:
        return f"the log ({self.reason})"
