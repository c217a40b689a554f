"""The status lines of ``marketpipe run``: one per exchange every 30 s, so a long run says how it is doing.

Each line gives, since the previous line, the frames received per second and, since the start, the rows
written, the age of the newest row, the reconnects, the book resyncs and the alerts::

    status bitfinex: 212.4 frames/s, rows written 48113 (+6371), newest row 0.4 s old, reconnects 0,
    resyncs 0, alerts -

``-`` means the capability has no such thing (no websocket, no book to resync, no alerts).

The counts come from where they already live: frames from a counting wrapper around the service's capture
callback (every frame is captured before it is processed), rows from the row router's per-table counts
(the rows handed to the sinks), the newest row from a wrapper around the service's emit callback, and the
rest from the service's collector (``reconnects``) and processor stats (``resyncs``, ``alerts``), read by
name so that no capability has to know about this module.

The interval is :data:`STATUS_INTERVAL` seconds, or ``MARKETPIPE_STATUS_INTERVAL`` (0 turns the lines off).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from marketpipe import envnames
from marketpipe.errors import ConfigError
from marketpipe.tables import Kind
from marketpipe.timeutil import iso_to_us, now_us

if TYPE_CHECKING:
    from marketpipe.records import Emit, RawFrame, Row
    from marketpipe.tables import Table

log = logging.getLogger("marketpipe.status")

STATUS_INTERVAL = 30.0
"""Seconds between two status lines of ``marketpipe run`` (``MARKETPIPE_STATUS_INTERVAL`` overrides)."""

ARRIVAL_COLUMNS = {"bitso_spreads": "orderbook_timestamp"}
"""Tables whose arrival time is not ``received_ts``: the Bitso sampler's second (ISO text)."""


def arrival_column(table: Table) -> str | None:
    """The column that says when a row arrived: ``received_ts``, or the table's own (Bitso's sampled
    second); None for tables without one (the execution dimensions, static reference rows)."""
    name = ARRIVAL_COLUMNS.get(table.name, "received_ts")
    return name if name in table.index else None


def status_interval(env: Mapping[str, str]) -> float | None:
    """:data:`STATUS_INTERVAL`, or the environment's; None when set to 0 (no status lines)."""
    text = env.get(envnames.STATUS_INTERVAL, "").strip()
    if not text:
        return STATUS_INTERVAL
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{envnames.STATUS_INTERVAL} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{envnames.STATUS_INTERVAL} must be 0 (off) or positive, got {text!r}")
    return value or None


@dataclass
class _Tracked:
    """One service's counters, fed by its wrapped capture and emit callbacks."""

    frames: int = 0
    tables: set[str] = field(default_factory=set)
    newest_us: int | None = None
    service: Any = None
    last_frames: int = 0
    last_rows: int = 0
    last_at: float = 0.0


class RunStatus:
    """Counts what each service receives and emits; :meth:`lines` says it, one line per service.

    ``rows_written``: the row router's rows per table name (read, never changed).
    """

    def __init__(
        self,
        rows_written: Mapping[str, int],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_us: Callable[[], int] = now_us,
    ) -> None:
        self.rows_written = rows_written
        self.clock = clock
        self.wall_us = wall_us
        self._tracked: dict[str, _Tracked] = {}
        self._arrival: dict[str, tuple[int, bool] | None] = {}

    def counting_capture(self, name: str, capture: Callable[[RawFrame], None]) -> Callable[[RawFrame], None]:
        """``capture`` that also counts the service's incoming frames (heartbeats and REST bodies too)."""
        tracked = self._track(name)

        def counted(frame: RawFrame) -> None:
            if frame.direction == "in":
                tracked.frames += 1
            capture(frame)

        return counted

    def counting_emit(self, name: str, emit: Emit) -> Emit:
        """``emit`` that also notes the service's tables and its newest row's arrival time."""
        tracked = self._track(name)

        def counted(table: Table, rows: list[Row]) -> None:
            if rows:
                tracked.tables.add(table.name)
                arrival = self._arrival_of(table)
                if arrival is not None:
                    index, text = arrival
                    value = rows[-1][index]  # rows arrive in order: the last is the newest
                    if value is not None:
                        us = iso_to_us(value) if text else int(value)
                        if tracked.newest_us is None or us > tracked.newest_us:
                            tracked.newest_us = us
            emit(table, rows)

        return counted

    def attach(self, name: str, service: Any) -> None:
        """The service whose collector and stats give the reconnects, resyncs and alerts."""
        self._track(name).service = service

    def _track(self, name: str) -> _Tracked:
        tracked = self._tracked.get(name)
        if tracked is None:
            tracked = self._tracked[name] = _Tracked(last_at=self.clock())
        return tracked

    def _arrival_of(self, table: Table) -> tuple[int, bool] | None:
        if table.name not in self._arrival:
            column = arrival_column(table)
            if column is None:
                self._arrival[table.name] = None
            else:
                index = table.index[column]
                self._arrival[table.name] = (index, table.columns[index].kind is Kind.STR)
        return self._arrival[table.name]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per service: frames/s since the previous snapshot, rows written (total and new), newest row
        age in seconds, reconnects, resyncs, alerts (None where the service has no such thing)."""
        now, wall = self.clock(), self.wall_us()
        out: dict[str, dict[str, Any]] = {}
        for name, t in self._tracked.items():
            rows = sum(self.rows_written.get(table, 0) for table in t.tables)
            elapsed = now - t.last_at
            rate = (t.frames - t.last_frames) / elapsed if elapsed > 0 else 0.0
            service = t.service
            stats = _call(service, "stats")
            out[name] = {
                "frames": t.frames,
                "frames_per_s": rate,
                "rows_written": rows,
                "rows_new": rows - t.last_rows,
                "newest_row_age_s": None if t.newest_us is None else max(0.0, (wall - t.newest_us) / 1e6),
                "reconnects": _int_attr(getattr(service, "collector", None), "reconnects"),
                "resyncs": _int_attr(stats, "resyncs"),
                "alerts": _int_attr(stats, "alerts"),
            }
            t.last_frames, t.last_rows, t.last_at = t.frames, rows, now
        return out

    def lines(self) -> list[str]:
        return [format_line(name, values) for name, values in self.snapshot().items()]

    async def log_every(self, interval: float) -> None:
        """Log the lines every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                lines = self.lines()
            except Exception as exc:  # a status line must never stop a run
                log.warning("no status line: %s: %s", type(exc).__name__, exc)
                continue
            for line in lines:
                log.info("%s", line)


def format_line(name: str, v: Mapping[str, Any]) -> str:
    age = v["newest_row_age_s"]
    newest = "none yet" if age is None else f"{age:.1f} s old"
    return (
        f"status {name}: {v['frames_per_s']:.1f} frames/s, rows written {v['rows_written']} "
        f"(+{v['rows_new']}), newest row {newest}, reconnects {_dash(v['reconnects'])}, "
        f"resyncs {_dash(v['resyncs'])}, alerts {_dash(v['alerts'])}"
    )


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _call(obj: Any, method: str) -> Any:
    function = getattr(obj, method, None)
    return function() if callable(function) else None


def _int_attr(obj: Any, name: str) -> int | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
