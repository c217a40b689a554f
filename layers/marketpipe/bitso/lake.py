"""Bitso spread files on AWS: per-minute staging chunks, compacted into one lake file per book per window.

The per-minute sampling Lambda writes ``<staging>/minute=<YYYYMMDDTHHMM>.parquet`` (every book of that
minute, a deterministic name: a retried invocation overwrites its own chunk). The 10-minute compaction
reads the window's chunks, adds a ``missing`` row for every second no invocation observed (cold starts,
a failed minute), and writes the window through :class:`~marketpipe.sinks.lake_sink.LakeSink` — the
same layout and merge-on-write as ``marketpipe run``: ``bitso_spreads/book=…/dt=…/hour=…/
bitso_spreads-<window start>.parquet`` with exactly ``window_seconds`` rows per book.

Paths are pyarrow filesystem URIs (a local folder in tests, ``s3://bucket/prefix`` on AWS).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from marketpipe.bitso.processor import SOURCE_MISSING, Observation, second_text, window_start_of
from marketpipe.lake import make_dirs, open_location
from marketpipe.sinks.lake_sink import LakeSink, arrow_schema
from marketpipe.tables.bitso import BITSO_SPREADS
from marketpipe.timeutil import us_to_datetime

log = logging.getLogger("marketpipe.bitso.lake")


def chunk_path(root: str, minute_start: int) -> str:
    stamp = us_to_datetime(minute_start * 1_000_000).strftime("%Y%m%dT%H%M")
    return f"{root}/minute={stamp}.parquet"


def write_minute(
    staging_uri: str, minute_start: int, observations: Sequence[Observation], window_seconds: int
) -> str:
    """Write one minute's observations (seconds outside the minute are dropped); returns the path."""
    staging = open_location(staging_uri)
    fs, root = staging.fs, staging.path
    rows = [o.row(window_seconds) for o in observations if minute_start <= o.second < minute_start + 60]
    schema = arrow_schema(BITSO_SPREADS)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    table = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )
    path = chunk_path(root, minute_start)
    make_dirs(fs, root)
    pq.write_table(table, path, filesystem=fs)
    return path


def compact_window(
    staging_uri: str, lake_uri: str, window_start: int, books: Sequence[str], window_seconds: int
) -> dict[str, Any]:
    """Write the lake file of every book for the window starting at ``window_start`` (epoch s)."""
    staging = open_location(staging_uri)
    fs, root = staging.fs, staging.path
    found: dict[tuple[str, str], tuple[Any, ...]] = {}
    chunks = 0
    for minute in range(window_start, window_start + window_seconds, 60):
        path = chunk_path(root, minute)
        if fs.get_file_info(path).type != pafs.FileType.File:
            continue
        chunks += 1
        table = pq.read_table(path, filesystem=fs, schema=arrow_schema(BITSO_SPREADS))
        names = table.column_names
        for record in table.to_pylist():
            row = tuple(record[n] for n in names)
            found.setdefault((str(row[1]), str(row[0])), row)
    rows = []
    window_us = window_start_of(window_start, window_seconds)
    for book in books:
        for second in range(window_start, window_start + window_seconds):
            stamp = second_text(second)
            stored = found.get((book, stamp))
            if stored is None:
                rows.append((stamp, book, None, None, None, SOURCE_MISSING, None, window_us))
            else:
                rows.append((*stored[:7], window_us))
    sink = LakeSink(lake_uri)
    sink.write(BITSO_SPREADS, rows)
    sink.close()
    missing = sum(1 for r in rows if r[5] == SOURCE_MISSING)
    log.info("bitso: compacted window %s: %d chunk(s), %d rows (%d missing)", second_text(window_start),
             chunks, len(rows), missing)  # fmt: skip
    return {
        "window_start": second_text(window_start),
        "chunks": chunks,
        "rows": len(rows),
        "missing": missing,
    }


def load_state(uri: str) -> dict[str, list[str]]:
    """Threshold state saved by the previous invocation (empty when there is none)."""
    data = open_location(uri).read_json()
    return {str(k): [str(t) for t in v] for k, v in data.items()} if isinstance(data, dict) else {}


def save_state(uri: str, state: dict[str, list[str]]) -> None:
    open_location(uri).write_json(state)
