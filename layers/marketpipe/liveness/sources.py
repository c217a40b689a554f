"""Is the pipeline alive and saving? Newest-data readers for each store, and the verdict.

Readers are cheap enough to run every few seconds beside ``marketpipe run``:

* database: ``MAX(received_ts)`` per table through :class:`SqlSink` (never creates a table or a file);
* lake: only the newest ``dt=``/``hour=`` partition of each leading partition (symbol), only the
  newest file there, and only its Parquet footer statistics;
* raw capture: the tail of the newest ``raw/<exchange>/<date>/<HH>.jsonl`` file (the newest
  incoming frame; heartbeats count, so a connected stream keeps it moving).

:func:`assess` turns readings into an :class:`~marketpipe.liveness.state.Observation`: every reading
must be newer than ``now - threshold - lag``, where ``lag`` is how far its source trails the stream when
all is well (:data:`EXPECTED_LAG_S`: a live run rewrites its open lake files only every
``RunConfig.lake_flush_interval``). The diagnosis comes from the freshest evidence, the raw capture: a
table is "not saving" only when frames kept arriving well after its newest row; a table that stopped
when the frames stopped means the stream stopped, whichever of the two crossed its threshold first.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from marketpipe.config import RunConfig
from marketpipe.liveness.state import Observation, clock, duration
from marketpipe.records import RawFrame
from marketpipe.tables import TABLES

log = logging.getLogger("marketpipe.liveness.sources")

SOURCES = ("db", "lake", "raw")
_RUN = RunConfig()
EXPECTED_LAG_S: Mapping[str, float] = MappingProxyType(
    {"raw": 0.0, "db": 0.0, "lake": _RUN.lake_flush_interval + _RUN.flush_interval}
)
"""Seconds each source trails the newest incoming frame in a healthy local run (``marketpipe run``
flushes the raw capture and the database every ``flush_interval`` — noise the threshold absorbs — and
the lake's open files only every ``lake_flush_interval``, so the lake is up to ~11 s behind). A
source's lag is added to the threshold: the lake is not "silent" merely for being the lake."""
_TAIL_BYTES = 64 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reading:
    """The newest data of one thing watched: a table in a store, or an exchange's raw capture."""

    source: str
    name: str
    newest_us: int | None
    error: str = ""

    @property
    def label(self) -> str:
        if self.name == self.source:  # a whole store, e.g. an unreachable database
            return self.source
        return f"raw {self.name}" if self.source == "raw" else f"{self.name} ({self.source})"

    @property
    def exchange(self) -> str:
        return self.name if self.source == "raw" else self.name.split("_", 1)[0]


def time_column(table_name: str) -> str:
    """The arrival-time column: ``received_ts`` where a table has one, else its partition timestamp."""
    table = TABLES.get(table_name)
    if table is None or "received_ts" in table.index:
        return "received_ts"
    return table.partition_ts


# -- database -------------------------------------------------------------------------------------------


def read_db(url: str, tables: Sequence[str] | None) -> list[Reading]:
    """Newest arrival time per table; ``tables`` None = every known table that has rows."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from marketpipe.sinks.sql_sink import SqlSink

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if db and db != ":memory:" and not db.startswith("file:") and not Path(db).expanduser().exists():
            return _missing("db", tables, f"database file {db} does not exist")
    sink = SqlSink(url, tables=[])
    try:
        existing = set(sa.inspect(sink.engine).get_table_names())
        names = list(tables) if tables is not None else [t for t in TABLES if t in existing]
        readings = []
        for name in names:
            newest = sink.latest(name, time_column(name)) if name in existing else None
            if newest is not None or tables is not None:
                readings.append(Reading("db", name, newest))
        return readings
    finally:
        sink.engine.dispose()


# -- lake -----------------------------------------------------------------------------------------------


def read_lake(uri: str, tables: Sequence[str] | None) -> list[Reading]:
    """Newest arrival time per table from the newest lake file of each partition."""
    from marketpipe.lake import open_location

    lake = open_location(uri, "lake URI")
    fs, root = lake.fs, lake.path
    names = list(tables) if tables is not None else list(TABLES)
    readings = []
    for name in names:
        levels = len(TABLES[name].partitions) if name in TABLES else 1
        newest = _lake_table_newest(fs, f"{root}/{name}", levels, time_column(name))
        if newest is not None or tables is not None:
            readings.append(Reading("lake", name, newest))
    return readings


def _subdirs(fs: object, path: str) -> list[str]:
    import pyarrow.fs as pafs

    assert isinstance(fs, pafs.FileSystem)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return []
    return sorted(i.path for i in infos if i.type == pafs.FileType.Directory and "=" in i.base_name)


def _lake_table_newest(fs: object, base: str, partition_levels: int, column: str) -> int | None:
    import pyarrow.fs as pafs

    assert isinstance(fs, pafs.FileSystem)
    leaves = [base]
    for _ in range(partition_levels):  # every symbol (and other leading partitions)
        leaves = [d for leaf in leaves for d in _subdirs(fs, leaf)]
    newest: int | None = None
    for leaf in leaves:
        days = _subdirs(fs, leaf)
        for day in reversed(days):  # newest dt= first; fall back if a day holds no file yet
            hours = _subdirs(fs, day)
            found = next(
                (v for h in reversed(hours) if (v := _newest_file_max(fs, h, column)) is not None), None
            )
            if found is not None:
                newest = found if newest is None else max(newest, found)
                break
    return newest


def _newest_file_max(fs: object, directory: str, column: str) -> int | None:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    assert isinstance(fs, pafs.FileSystem)
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith(".")
    )
    for path in reversed(files):
        try:
            with fs.open_input_file(path) as handle:
                parquet = pq.ParquetFile(handle)
                return _parquet_max(parquet, column)
        except (OSError, ValueError) as exc:  # a file being replaced or damaged: try the previous one
            log.debug("lake file %s unreadable: %s", path, exc)
    return None


def _parquet_max(parquet: object, column: str) -> int | None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    assert isinstance(parquet, pq.ParquetFile)
    meta = parquet.metadata
    if column not in meta.schema.names:
        return None
    index = meta.schema.names.index(column)
    best: int | None = None
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(index).statistics
        if stats is None or not stats.has_min_max:
            value = pc.max(parquet.read_row_group(rg, columns=[column])[column]).as_py()
        else:
            value = stats.max
        if value is not None:
            us = _datetime_us(value)
            best = us if best is None else max(best, us)
    return best


def _datetime_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# -- raw capture ----------------------------------------------------------------------------------------


def read_raw(data_dir: Path, exchanges: Sequence[str] | None) -> list[Reading]:
    """Newest incoming frame per exchange; ``exchanges`` None = every exchange with a capture."""
    root = Path(data_dir) / "raw"
    if exchanges is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    else:
        names = list(exchanges)
    return [Reading("raw", name, _raw_newest(root / name)) for name in names]


def _raw_files_newest_first(exchange_dir: Path) -> Iterable[Path]:
    if not exchange_dir.is_dir():
        return
    for day in sorted((p for p in exchange_dir.iterdir() if p.is_dir()), reverse=True):
        files = [p for p in day.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))]
        yield from sorted(files, key=lambda p: (p.name.split(".", 1)[0], p.stat().st_mtime), reverse=True)


def _raw_newest(exchange_dir: Path) -> int | None:
    for checked, path in enumerate(_raw_files_newest_first(exchange_dir)):
        newest = _gz_newest(path) if path.name.endswith(".gz") else _tail_newest(path)
        if newest is not None:
            return newest
        if checked >= 2:  # three empty or damaged files in a row: stop looking further back
            break
    return None


def _frame_ts(line: bytes) -> int | None:
    """``received_ts`` of an incoming-frame line; None for outgoing frames and damaged lines."""
    try:
        frame = RawFrame.from_line(line)
    except ValueError:
        return None
    return frame.received_ts if frame.direction == "in" else None


def _tail_newest(path: Path) -> int | None:
    """Read backwards in 64 KiB steps until a complete incoming-frame line is found."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos, carry = end, b""
            while pos > 0:
                step = min(_TAIL_BYTES, pos)
                pos -= step
                f.seek(pos)
                chunk = f.read(step) + carry
                lines = chunk.split(b"\n")
                carry = lines[0] if pos > 0 else b""  # may be cut: completed by the next read
                for line in reversed(lines[1:] if pos > 0 else lines):
                    if line.strip() and (ts := _frame_ts(line)) is not None:
                        return ts
    except OSError as exc:
        log.debug("raw file %s unreadable: %s", path, exc)
    return None


def _gz_newest(path: Path) -> int | None:
    """A gzip stream cannot be read backwards: decompress and keep the last incoming frame."""
    newest = None
    try:
        with gzip.open(path, "rb") as gz:
            for line in gz:
                if (ts := _frame_ts(line)) is not None:
                    newest = ts
    except (EOFError, OSError):  # the writer's current member is unfinished: what we read counts
        pass
    return newest


def _missing(source: str, tables: Sequence[str] | None, why: str) -> list[Reading]:
    if tables is None:
        return []
    return [Reading(source, name, None, why) for name in tables]


# -- the verdict ----------------------------------------------------------------------------------------


def assess(
    readings: Sequence[Reading],
    now_us: int,
    threshold_s: float,
    lags: Mapping[str, float] = EXPECTED_LAG_S,
) -> Observation:
    """Healthy when every reading is newer than the threshold plus its source's expected lag; else say
    what stopped, per exchange."""
    if not readings:
        return Observation(now_us, False, "no data to watch: no table rows and no raw capture found")
    stale = [
        r
        for r in readings
        if r.error or r.newest_us is None or r.newest_us < _limit(r, now_us, threshold_s, lags)
    ]
    seen = [r for r in readings if r.newest_us is not None]
    newest = max(seen, key=lambda r: r.newest_us or 0) if seen else None
    last_us = newest.newest_us if newest else None
    last = newest.label if newest else ""
    if not stale:
        return Observation(now_us, True, last_data_us=last_us, last_data=last)
    problems, stopped = [], []
    for exchange in sorted({r.exchange for r in stale}):
        mine = [r for r in readings if r.exchange == exchange]
        what, since = _describe(exchange, mine, stale, now_us, threshold_s, lags)
        problems.append(what)
        if since is not None:
            stopped.append(since)
    return Observation(
        now_us,
        False,
        "; ".join(problems),
        stopped_since_us=max(stopped) if stopped else None,
        last_data_us=last_us,
        last_data=last,
    )


def _limit(reading: Reading, now_us: int, threshold_s: float, lags: Mapping[str, float]) -> int:
    return now_us - int((threshold_s + lags.get(reading.source, 0.0)) * 1_000_000)


def _outran(table: Reading, stream_us: int | None, threshold_s: float, lags: Mapping[str, float]) -> bool:
    """Did frames keep arriving after ``table``'s newest row, beyond its lag and half the threshold?

    True means the table fell behind a live stream. False means the table holds about as much as the
    stream delivered: it went silent because the frames stopped (its lag may just have made it the first
    to cross its threshold).
    """
    if stream_us is None:
        return False
    if table.newest_us is None:
        return True
    margin_us = (lags.get(table.source, 0.0) + threshold_s / 2) * 1_000_000
    return stream_us - table.newest_us > margin_us


def _describe(
    exchange: str,
    mine: list[Reading],
    stale: list[Reading],
    now_us: int,
    threshold_s: float,
    lags: Mapping[str, float],
) -> tuple[str, int | None]:
    """What stopped for one exchange, and since when (the newest timestamp of the data that stopped)."""
    raw = [r for r in mine if r.source == "raw"]
    tables = [r for r in mine if r.source != "raw"]
    stale_tables = [r for r in tables if r in stale]
    raw_stale = any(r in stale for r in raw)
    errors = [f"cannot read {r.label}: {r.error}" for r in mine if r.error]
    tables_since = max((r.newest_us for r in stale_tables if r.newest_us is not None), default=None)
    if errors:
        return "; ".join(errors), max(
            (r.newest_us for r in mine if r in stale and r.newest_us is not None), default=None
        )
    stream_us = max((r.newest_us for r in raw if r.newest_us is not None), default=None)
    behind = [r for r in stale_tables if _outran(r, stream_us, threshold_s, lags)]
    if raw and not raw_stale and stale_tables and len(behind) == len(stale_tables):
        names = ", ".join(sorted({r.name for r in stale_tables}))
        if len(stale_tables) == len(tables):
            return (
                f"{exchange} connected but saving nothing (frames arrive, no new rows in {names})",
                tables_since,
            )
        return f"{exchange} connected but not saving {names}", tables_since
    if raw and (stale_tables or (raw_stale and not tables)):
        # The raw capture is stale too, or stopped no later than the silent tables: the stream stopped.
        detail = f"no frames since {clock(stream_us, with_date=False)}" if stream_us else "no frames ever"
        if not tables:
            return f"{exchange} stream stopped ({detail})", stream_us
        return f"{exchange} stream stopped ({detail}; no new rows)", stream_us
    if raw_stale:
        return f"{exchange} raw capture stopped while rows are still saved", stream_us
    parts = []
    for r in stale_tables:
        age = "never" if r.newest_us is None else f"for {duration((now_us - r.newest_us) / 1e6)}"
        parts.append(f"{r.label} silent {age}")
    return f"{exchange} not saving: " + ", ".join(parts), tables_since
