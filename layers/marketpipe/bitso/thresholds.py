"""Edge-triggered threshold crossings: one alert on the way up, one notice on the way down.

Pure logic (no I/O, no clock) so it is property-tested and runs identically live, in replay and in the
per-minute Lambda (whose state is saved between invocations with :meth:`ThresholdTracker.export`).

Semantics, per book and per threshold: the spread is *above* a threshold when ``spread > threshold``
and *below* otherwise. A book starts below every threshold, so a spread that is already wide at start
raises its alerts at once. A move from below to above raises one ``above`` event, a move back one
``below`` event; seconds without data (``None``) change nothing, so a gap never produces an event nor
hides one (the next real observation is compared with the last known state).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from marketpipe.errors import ConfigError

DEFAULT_THRESHOLDS = (Decimal("1.0"), Decimal("0.5"), Decimal("0.1"))


def parse_thresholds(text: str | Iterable[str]) -> tuple[Decimal, ...]:
    """``"1.0,0.5,0.1"`` -> thresholds, highest first; ConfigError for non-positive or non-numeric."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
    parts = [p for p in parts if p]
    if not parts:
        raise ConfigError("no spread thresholds given (e.g. 1.0,0.5,0.1)")
    values: set[Decimal] = set()
    for part in parts:
        try:
            value = Decimal(part.rstrip("%"))
        except InvalidOperation as exc:
            raise ConfigError(f"invalid spread threshold {part!r}: expected a percentage like 0.5") from exc
        if not value.is_finite() or value <= 0:
            raise ConfigError(f"invalid spread threshold {part!r}: must be a positive percentage")
        values.add(value)
    return tuple(sorted(values, reverse=True))


@dataclass(frozen=True, slots=True)
class Crossing:
    """A book's spread went above (``direction='above'``) or fell back below a threshold."""

    book: str
    threshold: Decimal
    direction: str
    spread: Decimal
    second: int
    """The observed UTC second (epoch seconds)."""

    @property
    def is_alert(self) -> bool:
        return self.direction == "above"


class ThresholdTracker:
    """Per book, the set of thresholds currently exceeded."""

    def __init__(
        self, thresholds: Iterable[Decimal], state: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self.thresholds = tuple(sorted(set(thresholds), reverse=True))
        self._above: dict[str, set[Decimal]] = {
            book: {Decimal(t) for t in above} & set(self.thresholds) for book, above in (state or {}).items()
        }

    def observe(self, book: str, spread: Decimal | None, second: int) -> list[Crossing]:
        """Feed one observation; returns the crossings it causes (highest threshold first)."""
        if spread is None:
            return []
        above = self._above.setdefault(book, set())
        events: list[Crossing] = []
        for threshold in self.thresholds:
            now_above = spread > threshold
            if now_above and threshold not in above:
                above.add(threshold)
                events.append(Crossing(book, threshold, "above", spread, second))
            elif not now_above and threshold in above:
                above.discard(threshold)
                events.append(Crossing(book, threshold, "below", spread, second))
        return events

    def above(self, book: str) -> tuple[Decimal, ...]:
        return tuple(sorted(self._above.get(book, ()), reverse=True))

    def export(self) -> dict[str, list[str]]:
        """JSON-able state (book -> thresholds exceeded) to resume edge detection elsewhere."""
        return {book: [str(t) for t in sorted(above, reverse=True)] for book, above in self._above.items()}
