"""The execution-price star schema's row builders: time keys and the date and minute dimension rows.

The six tables themselves (two facts, four dimensions) are defined in :mod:`marketpipe.tables.execution`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from marketpipe.timeutil import us_to_datetime

MODEL_EPOCH = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
"""``valid_from`` of the static dimension rows (and the lake partition they are filed under)."""

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class TimeKeys:
    date_key: str
    minute_of_day: int
    minute_key: str


def time_keys(received_ts: int) -> TimeKeys:
    """``2026-11-22``, ``250`` and ``2026-11-22T04:10Z`` for a receive time of 04:10:xx UTC."""
    dt = us_to_datetime(received_ts)
    return TimeKeys(dt.strftime("%Y-%m-%d"), dt.hour * 60 + dt.minute, dt.strftime("%Y-%m-%dT%H:%MZ"))


def session_of(hour: int) -> str:
    """The trading session a UTC hour mostly belongs to (Asia, Europe, US, or the quiet late hours)."""
    if hour < 8:
        return "asia"
    if hour < 13:
        return "europe"
    if hour < 21:
        return "us"
    return "late"


def date_row(received_ts: int) -> tuple[object, ...]:
    dt = us_to_datetime(received_ts)
    day = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    weekday = day.isoweekday()
    return (
        day.strftime("%Y-%m-%d"),
        day.year,
        (day.month - 1) // 3 + 1,
        day.month,
        day.day,
        weekday,
        _DAY_NAMES[weekday - 1],
        day.isocalendar()[1],
        int(weekday >= 6),
        received_ts - received_ts % 86_400_000_000,
    )


def minute_row(minute_of_day: int) -> tuple[object, ...]:
    hour, minute = divmod(minute_of_day, 60)
    return (minute_of_day, f"{hour:02d}:{minute:02d}", hour, minute, session_of(hour), MODEL_EPOCH)
