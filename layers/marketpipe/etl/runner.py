"""Run the ledger ETL for a range of UTC days and report what happened.

Outputs per run: dimensions rewritten whole; for every day in the range one Parquet partition and one
CSV file per daily table, and that day's quarantine file. Names are deterministic and every file is
replaced whole, so re-running a day or a range is idempotent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from marketpipe.errors import ConfigError
from marketpipe.etl import storage, transform
from marketpipe.etl.loader import SOURCE_COLUMNS, QuarantinedRow, Snapshot, load_snapshot
from marketpipe.etl.model import (
    CALENDAR_END,
    CALENDAR_START,
    DIM_CURRENCY,
    DIM_DATE,
    DIM_USER,
    FACT_DAILY_USER_ACTIVITY,
    FACT_EVENT,
    FACT_TRANSACTION,
    LEDGER_PREFIX,
    PARTITION_COLUMN,
    ModelTable,
)
from marketpipe.lake import Location, open_location

PART_FILE = "part-00000.parquet"
UNDATED = "undated"


@dataclass(frozen=True, slots=True)
class EtlConfig:
    """Where to read, where to write, which days. ``start``/``end`` None = the snapshot's whole range."""

    input_uri: str
    lake_uri: str
    quarantine_uri: str
    csv_uri: str | None = None
    start: date | None = None
    end: date | None = None
    progress: bool = False


@dataclass(slots=True)
class RunSummary:
    """Counts a user checks after a run (also the Lambda's return value)."""

    start: date | None
    end: date | None
    days: int = 0
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per source, per reason: bad rows dated inside the range plus undated ones (whole snapshot)."""
    load_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def quarantined_total(self) -> int:
        return sum(sum(r.values()) for r in self.quarantined.values())

    @property
    def rows_per_second(self) -> float:
        return sum(self.rows_read.values()) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "days": self.days,
            "rows_read": dict(self.rows_read),
            "rows_written": dict(self.rows_written),
            "quarantined": {s: dict(r) for s, r in self.quarantined.items()},
            "quarantined_total": self.quarantined_total,
            "load_seconds": round(self.load_seconds, 3),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
        }

    def render(self) -> str:
        """A short human report for the terminal."""
        span = f"{self.start} .. {self.end}" if self.start else "no days (empty snapshot)"
        lines = [
            f"ledger ETL {span}: {self.days} day(s) in {self.seconds:.1f}s "
            f"({self.rows_per_second:,.0f} input rows/s)"
        ]
        lines.append("  read:        " + ", ".join(f"{s} {n:,}" for s, n in self.rows_read.items()))
        lines.append("  written:     " + ", ".join(f"{t} {n:,}" for t, n in self.rows_written.items()))
        lines.append(f"  quarantined: {self.quarantined_total:,}")
        for source, reasons in self.quarantined.items():
            lines.append(f"    {source}: " + ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items())))
        return "\n".join(lines)


def table_location(lake: Location, table: ModelTable) -> Location:
    return lake.child(LEDGER_PREFIX, table.name)


def partition_location(lake: Location, table: ModelTable, day: date) -> Location:
    return table_location(lake, table).child(f"{PARTITION_COLUMN}={day.isoformat()}", PART_FILE)


def _csv_location(csv_root: Location, table: ModelTable, day: date | None) -> Location:
    if day is None:
        return csv_root.child(f"{table.name}.csv")
    return csv_root.child(table.name, f"{table.name}-{day.isoformat()}.csv")


def _quarantine_table(source: str, rows: Iterable[QuarantinedRow]) -> pa.Table:
    ordered = sorted(rows, key=lambda r: r.line)
    columns: dict[str, pa.Array] = {
        "line": pa.array([r.line for r in ordered], pa.int64()),
        "reason": pa.array([r.reason for r in ordered], pa.string()),
        "detail": pa.array([r.detail for r in ordered], pa.string()),
    }
    for i, name in enumerate(SOURCE_COLUMNS[source]):
        columns[name] = pa.array([r.values[i] for r in ordered], pa.string())
    return pa.table(columns)


def quarantine_location(root: Location, source: str, day: date | None) -> Location:
    folder = UNDATED if day is None else f"{PARTITION_COLUMN}={day.isoformat()}"
    return root.child(folder, f"{source}.csv")


class _Writer:
    """Writes one table's outputs to the lake and (optionally) CSV."""

    def __init__(self, lake: Location, csv_root: Location | None) -> None:
        self.lake = lake
        self.csv_root = csv_root
        self.rows: Counter[str] = Counter()

    def write(self, model: ModelTable, table: pa.Table, day: date | None) -> None:
        if day is None:
            target = table_location(self.lake, model).child(PART_FILE)
        else:
            target = partition_location(self.lake, model, day)
        target.write_bytes(storage.parquet_bytes(table))
        if self.csv_root is not None:
            csv_table = transform.to_csv_table(model, table)
            _csv_location(self.csv_root, model, day).write_bytes(storage.csv_bytes(csv_table))
        self.rows[model.name] += table.num_rows


def _progress(total: int, enabled: bool) -> Callable[[Iterable[date]], Iterable[date]]:
    if not enabled:
        return lambda it: it
    from tqdm import tqdm

    return lambda it: tqdm(it, total=total, unit="day", desc="ledger ETL", leave=False)


def resolve_range(snapshot: Snapshot, start: date | None, end: date | None) -> tuple[date, date] | None:
    """Fill a missing bound from the snapshot's data and check the range is usable."""
    data = snapshot.data_days()
    if start is None or end is None:
        if data is None:
            if start is None and end is None:
                return None
            start = start or end
            end = end or start
        else:
            start = start or data[0]
            end = end or data[1]
    assert start is not None and end is not None
    if start > end:
        raise ConfigError(f"start {start} is after end {end}")
    if start < CALENDAR_START or end > CALENDAR_END:
        raise ConfigError(f"dates must lie within {CALENDAR_START}..{CALENDAR_END}")
    return start, end


def run_etl(config: EtlConfig, snapshot: Snapshot | None = None) -> RunSummary:
    """Load (unless given) and validate the snapshot, then write every table for the range."""
    began = time.perf_counter()
    lake = open_location(config.lake_uri)
    quarantine_root = open_location(config.quarantine_uri)
    csv_root = open_location(config.csv_uri) if config.csv_uri else None
    if snapshot is None:
        snapshot = load_snapshot(config.input_uri)
    loaded = time.perf_counter()
    span = resolve_range(snapshot, config.start, config.end)
    summary = RunSummary(start=span[0] if span else None, end=span[1] if span else None)
    summary.rows_read = dict(snapshot.rows_read)
    summary.load_seconds = loaded - began
    writer = _Writer(lake, csv_root)

    writer.write(DIM_DATE, transform.dim_date_table(), None)
    writer.write(DIM_USER, transform.dim_user_table(snapshot.users), None)
    writer.write(DIM_CURRENCY, transform.dim_currency_table(t.currency for t in snapshot.transactions), None)

    quarantined: dict[str, Counter[str]] = {s: Counter() for s in SOURCE_COLUMNS}
    undated: dict[str, list[QuarantinedRow]] = {s: [] for s in SOURCE_COLUMNS}
    dated: dict[tuple[str, date], list[QuarantinedRow]] = {}
    for row in snapshot.quarantine:
        if row.day is None:
            undated[row.source].append(row)
        else:
            dated.setdefault((row.source, row.day), []).append(row)
    for source, rows in undated.items():
        _write_quarantine(quarantine_root, source, None, rows, quarantined[source])

    if span is not None:
        days = transform.days_between(*span)
        summary.days = len(days)
        in_range = set(days)
        tx_by_day: dict[date, list[Any]] = {}
        for t in snapshot.transactions:
            if t.day in in_range:
                tx_by_day.setdefault(t.day, []).append(t)
        ev_by_day: dict[date, list[Any]] = {}
        for e in snapshot.events:
            if e.day in in_range:
                ev_by_day.setdefault(e.day, []).append(e)
        activity = transform.DailyActivity(snapshot.users, snapshot.transactions, snapshot.events)
        activity.start(span[0])
        for day in _progress(len(days), config.progress)(days):
            writer.write(FACT_TRANSACTION, transform.fact_transaction_table(tx_by_day.get(day, [])), day)
            writer.write(FACT_EVENT, transform.fact_event_table(ev_by_day.get(day, [])), day)
            writer.write(FACT_DAILY_USER_ACTIVITY, activity.day(day), day)
            for source in SOURCE_COLUMNS:
                rows = dated.get((source, day), [])
                _write_quarantine(quarantine_root, source, day, rows, quarantined[source])

    summary.rows_written = dict(writer.rows)
    summary.quarantined = {s: dict(c) for s, c in quarantined.items() if c}
    summary.seconds = time.perf_counter() - began
    return summary


def _write_quarantine(
    root: Location, source: str, day: date | None, rows: list[QuarantinedRow], counts: Counter[str]
) -> None:
    """One file per source and day; removed when a re-run finds the day clean."""
    target = quarantine_location(root, source, day)
    if not rows:
        storage.delete(target)
        return
    target.write_bytes(storage.csv_bytes(_quarantine_table(source, rows)))
    counts.update(r.reason for r in rows)
