"""A clock that only sleeping advances: waits become observable and instant."""

from __future__ import annotations


class FakeTime:
    """Pass ``time`` as the clock and ``sleep`` as the sleep of the code under test (and its simulator)."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
