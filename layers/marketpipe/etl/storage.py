"""File helpers for the ledger ETL over a :class:`~marketpipe.lake.Location` (local folder or ``s3://``).

Writes are whole-object replacements with deterministic names (:meth:`Location.write_bytes`: atomic on
a local disk and on S3), which is what makes re-runs idempotent.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from marketpipe.lake import Location


def list_files(loc: Location) -> list[str]:
    """Base names of the files directly inside a folder (empty when it does not exist)."""
    info = loc.fs.get_file_info(pafs.FileSelector(loc.path, allow_not_found=True))
    return sorted(i.base_name for i in info if i.type == pafs.FileType.File)


@contextmanager
def open_text(loc: Location) -> Iterator[IO[str]]:
    """Read a text file (``.gz`` decompressed), tolerating a UTF-8 byte-order mark."""
    compression = "gzip" if loc.path.endswith(".gz") else None
    with loc.fs.open_input_stream(loc.path, compression=compression) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            yield text
        finally:
            text.detach()


def delete(loc: Location) -> bool:
    """Remove a file if present; returns whether something was removed."""
    if not loc.exists():
        return False
    loc.fs.delete_file(loc.path)
    return True


def parquet_bytes(table: pa.Table) -> bytes:
    """Deterministic Parquet bytes (same rows and pyarrow version -> same bytes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy", write_statistics=True)
    return bytes(sink.getvalue().to_pybytes())


def csv_bytes(table: pa.Table) -> bytes:
    """RFC 4180 CSV with a header row."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=True, quoting_style="needed"))
    return bytes(sink.getvalue().to_pybytes())


def read_parquet(loc: Location) -> pa.Table:
    return pq.read_table(loc.path, filesystem=loc.fs)
