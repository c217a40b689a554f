"""Parquet lake sink: Hive-partitioned files on any pyarrow filesystem (a local folder or S3).

``<root>/<table>/<p>=<v>/…/dt=YYYY-MM-DD/hour=HH/<table>-<YYYYMMDDTHHMMSS>.parquet``: one file per
partition and time window (the table's ``lake_window_seconds``), named after the window start, so a
rewrite of the same window replaces the same object (idempotent). Partition columns live in the path
only (Hive / Athena partition projection convention). A window is written when a newer window shows up
in its partition, on ``flush()`` (at most every ``open_window_seconds``) and on ``close()``. When its
file already exists (restart, replay, earlier flush) the file is read, merged, deduplicated on the
natural key and sorted, then replaced atomically; files of a shorter window found inside it (written
before the table's window grew) are merged in and deleted.
"""

from __future__ import annotations

import calendar
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from marketpipe.errors import ConfigError
from marketpipe.lake import make_dirs, open_location
from marketpipe.records import Row
from marketpipe.tables import TABLES, WIDE_FLOAT_RUN, Kind, Table, divides_an_hour, float_runs
from marketpipe.timeutil import us_to_datetime

log = logging.getLogger(__name__)

bitmap_bytes: Any
float_columns: Any
try:  # built with the compiled book; without it every row goes through pa.array (same values, slower)
    from marketpipe._cbook import bitmap_bytes, float_columns
except ImportError:  # pragma: no cover - the tests run the pure path with float_columns = None
    bitmap_bytes = float_columns = None

_CHUNK_ROWS = 4096
"""Buffered Python rows are converted to Arrow in chunks of this size (compact, bounded memory)."""
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_ROW_INDEX = "__row"
_STAMP = "%Y%m%dT%H%M%S"

ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.STR: pa.string(),
    Kind.INT: pa.int64(),
    Kind.FLOAT: pa.float64(),
    Kind.TS_MS: pa.timestamp("us", tz="UTC"),
    Kind.TS_US: pa.timestamp("us", tz="UTC"),
}


def arrow_schema(table: Table, include_partitions: bool = True) -> pa.Schema:
    """The Arrow schema of a table (without its partition columns when they live in the path)."""
    return pa.schema(
        [
            pa.field(c.name, ARROW_TYPES[c.kind], nullable=c.nullable)
            for c in table.columns
            if include_partitions or c.name not in table.partitions
        ]
    )


@dataclass
class _Window:
    rows: list[Row] = field(default_factory=list)
    batches: list[pa.RecordBatch] = field(default_factory=list)


class _Layout:
    """Per-table indices, window and the stored (non-partition) schema."""

    def __init__(self, table: Table, window_seconds: int) -> None:
        self.table = table
        self.window_us = window_seconds * 1_000_000
        self.part_idx = [table.index[p] for p in table.partitions]
        self.ts_idx = table.index[table.partition_ts]
        self.stored_idx = [i for i, c in enumerate(table.columns) if c.name not in table.partitions]
        self.schema = arrow_schema(table, include_partitions=False)
        # Without a wide run, rows are converted as one struct array (a single C++ pass over the
        # tuples, no Python-level transpose), then split into its columns without copying.
        self.row_type = pa.struct(list(arrow_schema(table)))
        self.dedupe_keys = [k for k in table.key if k not in table.partitions]
        self.order_in_keys = table.order_by in self.dedupe_keys
        # Dictionary encoding only for strings: for float columns it was slower and made files larger.
        self.dictionary_columns = [
            c.name for c in table.columns if c.kind is Kind.STR and c.name not in table.partitions
        ]

        # A long run of float columns (a book row's 400 levels) goes through the compiled converter
        # (C doubles straight into Arrow buffers: ~4 instead of ~20 µs per book row), the rest through
        # pa.array column by column.
        self.wide = _wide_float_run(table) if float_columns is not None else None
        self.types = [ARROW_TYPES[c.kind] for c in table.columns]

    def to_batch(self, rows: Sequence[Row]) -> pa.RecordBatch:
        if self.wide is None:
            columns = pa.array(rows, type=self.row_type).flatten()
            return pa.RecordBatch.from_arrays([columns[i] for i in self.stored_idx], schema=self.schema)
        rows = rows if isinstance(rows, list) else list(rows)
        start, stop = self.wide
        count = len(rows)
        values, validity, null_counts = float_columns(rows, start, stop - start)
        values_buffer, validity_buffer = pa.py_buffer(values), pa.py_buffer(validity)
        stride = bitmap_bytes(count)
        arrays = []
        for i in self.stored_idx:
            if start <= i < stop:
                j = i - start
                nulls = null_counts[j]
                buffers = [
                    validity_buffer.slice(j * stride, stride) if nulls else None,
                    values_buffer.slice(j * count * 8, count * 8),
                ]
                arrays.append(pa.Array.from_buffers(pa.float64(), count, buffers, null_count=nulls))
            else:
                arrays.append(pa.array([row[i] for row in rows], type=self.types[i]))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _wide_float_run(table: Table) -> tuple[int, int] | None:
    """(start, stop) of the longest run of at least WIDE_FLOAT_RUN stored FLOAT columns, if any."""
    runs = [run for run in float_runs(table, skip=table.partitions) if run[1] - run[0] >= WIDE_FLOAT_RUN]
    return max(runs, key=lambda run: run[1] - run[0], default=None)


class LakeSink:
    """Rows to Parquet under ``uri`` (a local path or ``s3://bucket/prefix``)."""

    name = "lake"

    def __init__(
        self,
        uri: str,
        window_seconds: int | None = None,
        compression: str = "zstd",
        open_window_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``window_seconds`` replaces every table's own window (tests only: writers must agree).

        ``open_window_seconds``: ``flush()`` rewrites the windows still open at most this often. A live
        run flushes every second; rewriting a ten-minute file each time would cost more than writing
        it. 0 (the Lambdas, which keep nothing between invocations) writes them at every flush.
        """
        if window_seconds is not None and not divides_an_hour(window_seconds):
            raise ConfigError(f"lake window of {window_seconds}s must divide an hour (e.g. 60, 600, 3600)")
        self.window_seconds = window_seconds
        self.compression = compression
        self.open_window_seconds = open_window_seconds
        self._clock = clock
        self._written_at = clock()
        location = open_location(uri, "lake URI")
        self.fs, self.root, self._local = location.fs, location.path, location.is_local
        self._layouts: dict[str, _Layout] = {}
        # (table, partition values) -> window start -> buffered rows
        self._open: dict[tuple[str, tuple[Any, ...]], dict[int, _Window]] = {}
        # files reaching past the window they start in: warned about once, then not read again
        self._left_alone: set[str] = set()

    def _layout(self, table: Table) -> _Layout:
        layout = self._layouts.get(table.name)
        if layout is None or layout.table is not table:
            window = self.window_seconds or table.lake_window_seconds
            layout = self._layouts[table.name] = _Layout(table, window)
        return layout

    # -- paths --------------------------------------------------------------------------------------

    def partition_dir(self, table: Table, values: tuple[Any, ...], window_start: int) -> str:
        parts = [self.root, table.name]
        for name, value in zip(table.partitions, values, strict=True):
            text = _NULL_PARTITION if value is None else quote(str(value), safe="")
            parts.append(f"{name}={text}")
        start = us_to_datetime(window_start)
        parts.append(start.strftime("dt=%Y-%m-%d/hour=%H"))
        return "/".join(parts)

    def file_path(self, table: Table, values: tuple[Any, ...], window_start: int) -> str:
        stamp = us_to_datetime(window_start).strftime(_STAMP)
        return f"{self.partition_dir(table, values, window_start)}/{table.name}-{stamp}.parquet"

    # -- Sink ---------------------------------------------------------------------------------------

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        if not rows:
            return
        layout = self._layout(table)
        part_idx = layout.part_idx
        ts_idx = layout.ts_idx
        window_us = layout.window_us
        touched: set[tuple[str, tuple[Any, ...]]] = set()
        last: tuple[Any, ...] | None = None
        current: _Window | None = None
        for row in rows:
            ts = row[ts_idx]
            values = tuple([row[i] for i in part_idx])
            where = (values, ts - ts % window_us)
            if where != last or current is None:
                pkey = (table.name, values)
                windows = self._open.setdefault(pkey, {})
                current = windows.get(where[1])
                if current is None:
                    current = windows[where[1]] = _Window()
                touched.add(pkey)
                last = where
            current.rows.append(row)
            if len(current.rows) >= _CHUNK_ROWS:
                current.batches.append(layout.to_batch(current.rows))
                current.rows = []
        for pkey in touched:
            windows = self._open[pkey]
            newest = max(windows)
            for start in sorted(w for w in windows if w < newest):
                self._write_window(layout, pkey[1], start, windows.pop(start))

    def flush(self) -> None:
        """Write the open windows, if ``open_window_seconds`` have passed since they were last written."""
        if self._clock() - self._written_at >= self.open_window_seconds:
            self._write_open_windows()

    def close(self) -> None:
        self._write_open_windows()

    def _write_open_windows(self) -> None:
        self._written_at = self._clock()
        for (name, values), windows in self._open.items():
            layout = self._layouts[name]
            for start in sorted(windows):
                self._write_window(layout, values, start, windows[start])
            windows.clear()
        self._open = {k: v for k, v in self._open.items() if v}

    # -- merge-on-write -----------------------------------------------------------------------------

    def _write_window(self, layout: _Layout, values: tuple[Any, ...], start: int, window: _Window) -> None:
        batches = list(window.batches)
        if window.rows:
            batches.append(layout.to_batch(window.rows))
        if not batches:
            return
        table = layout.table
        path = self.file_path(table, values, start)
        directory, name = path.rsplit("/", 1)
        stored, shorter = self._stored_files(layout, directory, name, start)
        data = pa.Table.from_batches(batches, schema=layout.schema)
        if stored:  # stored rows first: they win over new rows with the same key
            data = pa.concat_tables([*stored, data])
        if stored or not (layout.order_in_keys and _strictly_increasing(data[table.order_by])):
            data = _dedupe_sorted(data, layout.dedupe_keys, table.order_by)
        make_dirs(self.fs, directory)
        if self._local:
            tmp = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
            try:
                self._write_file(layout, data, tmp)
                self.fs.move(tmp, path)
            except BaseException:
                if self.fs.get_file_info(tmp).type == pafs.FileType.File:
                    self.fs.delete_file(tmp)
                raise
        else:  # an object store PUT is atomic
            self._write_file(layout, data, path)
        for merged in shorter:  # only now: until the window file holds their rows, they stay
            self.fs.delete_file(merged)
        log.debug("lake: wrote %d rows to %s", data.num_rows, path)

    def _stored_files(
        self, layout: _Layout, directory: str, name: str, start: int
    ) -> tuple[list[pa.Table], list[str]]:
        """The window's stored rows: its own file, then any shorter-window files inside it.

        Returns the tables read and the paths of the shorter files (to delete once merged). A file
        that starts inside the window but holds rows beyond its end is left alone, with a warning.
        """
        listing = self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        names = {i.base_name for i in listing if i.type == pafs.FileType.File}
        table, end = layout.table, start + layout.window_us
        stored: list[pa.Table] = []
        if name in names:
            stored.append(pq.read_table(f"{directory}/{name}", filesystem=self.fs, schema=layout.schema))
        shorter: list[str] = []
        for found in sorted(names - {name}):
            found_start = _window_start_of_file(table, found)
            if found_start is None or not start < found_start < end:
                continue
            path = f"{directory}/{found}"
            if path in self._left_alone:
                continue
            rows = pq.read_table(path, filesystem=self.fs, schema=layout.schema)
            times = rows[table.partition_ts]
            if times.null_count or (len(times) and pc.max(times).value >= end):
                log.warning(
                    "lake: %s starts inside the window of %s but ends after it; left as it is", path, name
                )
                self._left_alone.add(path)
                continue
            stored.append(rows)
            shorter.append(path)
        return stored, shorter

    def _write_file(self, layout: _Layout, data: pa.Table, path: str) -> None:
        pq.write_table(
            data,
            path,
            filesystem=self.fs,
            compression=self.compression,
            use_dictionary=layout.dictionary_columns,
        )

    # -- reading ------------------------------------------------------------------------------------

    def read_table(self, table_name: str) -> pa.Table:
        """Every stored row of a table, partition columns restored, in table column order."""
        table = TABLES[table_name]
        schema = arrow_schema(table)
        base = f"{self.root}/{table.name}"
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return schema.empty_table()
        partitioning = ds.partitioning(
            pa.schema(
                [schema.field(p).with_nullable(True) for p in table.partitions]
                + [pa.field("dt", pa.string()), pa.field("hour", pa.string())]
            ),
            flavor="hive",
        )
        dataset = ds.dataset(base, filesystem=self.fs, format="parquet", partitioning=partitioning)
        data = dataset.to_table(columns=list(table.column_names))
        data = data.cast(schema)
        sort = [(p, "ascending") for p in table.partitions] + [(table.order_by, "ascending")]
        return data.sort_by(sort)


def _window_start_of_file(table: Table, name: str) -> int | None:
    """µs window start of a ``<table>-YYYYMMDDTHHMMSS.parquet`` file name; None for another name."""
    prefix, suffix = f"{table.name}-", ".parquet"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    try:
        return calendar.timegm(time.strptime(name[len(prefix) : -len(suffix)], _STAMP)) * 1_000_000
    except ValueError:
        return None


def _strictly_increasing(column: pa.ChunkedArray) -> bool:
    """True when every value is above the previous one (so unique and sorted); False with nulls."""
    if column.null_count:
        return False
    if len(column) < 2:
        return True
    values = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return bool(pc.all(pc.less(values[:-1], values[1:])).as_py())


def _dedupe_sorted(data: pa.Table, keys: list[str], order_by: str) -> pa.Table:
    """Keep the first row of each key, then sort by ``order_by`` (then key) for stable files."""
    if keys and data.num_rows > 1:
        indexed = data.append_column(_ROW_INDEX, pa.array(range(data.num_rows), pa.int64()))
        first = indexed.group_by(keys, use_threads=False).aggregate([(_ROW_INDEX, "min")])
        if first.num_rows != data.num_rows:
            data = data.take(first[f"{_ROW_INDEX}_min"])
    sort = [(order_by, "ascending")] + [(k, "ascending") for k in keys if k != order_by]
    return data.sort_by(sort)
