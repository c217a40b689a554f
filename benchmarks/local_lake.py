"""The local lake as Parquet files or as Iceberg tables: what a live run would pay for each.

``python -m benchmarks.local_lake [--symbols 2] [--minutes 10]`` (results: docs/PERFORMANCE.md)
(issue 16, item 2: decide, measure and document the local lake). A generated session (one connection
per symbol, ``generate_session.symbol_connection``) goes through the Bitfinex processor; its rows go
to (a) the local Parquet lake (``LakeSink`` on a folder: ten-minute files, the open window rewritten
every 10 s, as ``marketpipe run`` does) and (b) Iceberg tables in pyiceberg's SQL catalog (a SQLite
file) with a ``file://`` warehouse (``IcebergSink``: one append per table every 10 s of session time).
Prints one JSON line per lake: CPU seconds spent in the sink per 1,000 frames, files and bytes left
on disk, and the time a DuckDB count of the book table takes on what was written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.generate_session import symbol_connection
from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.records import Row
from marketpipe.sinks.base import Sink
from marketpipe.tables import Table

FLUSH_US = 10 * 1_000_000


def _rows(symbols: int, minutes: float) -> list[tuple[int, Table, list[Row]]]:
    """(receive time, table, rows) in session order, as a live run hands them to its sinks."""
    emitted: list[tuple[int, Table, list[Row]]] = []
    clock = [0]
    processor = BitfinexProcessor(lambda table, rows: emitted.append((clock[0], table, list(rows))))
    frames = sorted(
        (f for i in range(symbols) for f in symbol_connection(i, minutes * 60)), key=lambda f: f.received_ts
    )
    for frame in frames:
        clock[0] = frame.received_ts
        processor.process(frame)
    processor.finish()
    return emitted


def _feed(sink: Sink, emitted: list[tuple[int, Table, list[Row]]]) -> float:
    """CPU seconds the sink takes for the session, flushed every 10 s of session time."""
    started = time.process_time()
    next_flush = emitted[0][0] + FLUSH_US if emitted else 0
    for ts, table, rows in emitted:
        if ts >= next_flush:
            sink.flush()
            next_flush = ts + FLUSH_US
        sink.write(table, rows)
    sink.close()
    return time.process_time() - started


def _disk(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def measure(symbols: int, minutes: float) -> list[dict[str, Any]]:
    import duckdb

    from marketpipe.sinks.iceberg_sink import IcebergSink
    from marketpipe.sinks.lake_sink import LakeSink
    from marketpipe.tables.bitfinex import BITFINEX_TABLES

    emitted = _rows(symbols, minutes)
    frame_count = sum(len(symbol_connection(i, minutes * 60)) for i in range(symbols))
    out = []
    with tempfile.TemporaryDirectory(prefix="marketpipe-local-lake-") as tmp:
        root = Path(tmp)
        parquet = LakeSink(str(root / "lake"))
        parquet_cpu = _feed(parquet, emitted)
        files, size = _disk(root / "lake")
        started = time.perf_counter()
        con = duckdb.connect()
        glob = str(root / "lake" / "bitfinex_book" / "**" / "*.parquet")
        parquet_rows = con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()
        parquet_query = time.perf_counter() - started
        out.append(_line("parquet", symbols, minutes, frame_count, parquet_cpu, files, size, parquet_query))

        uri = f"sqlite:///{root / 'catalog.db'}?warehouse=file://{root / 'warehouse'}"
        iceberg = IcebergSink(uri, BITFINEX_TABLES)
        iceberg_cpu = _feed(iceberg, emitted)
        files, size = _disk(root / "warehouse")
        started = time.perf_counter()
        book = iceberg.catalog.load_table(("marketpipe", "bitfinex_book"))
        # DuckDB's own iceberg extension is a download (not offline): it reads pyiceberg's scan instead
        con = duckdb.connect()
        con.register("book", book.scan().to_arrow_batch_reader())
        iceberg_rows = con.execute("SELECT count(*) FROM book").fetchone()
        iceberg_query = time.perf_counter() - started
        out.append(_line("iceberg", symbols, minutes, frame_count, iceberg_cpu, files, size, iceberg_query))
        assert parquet_rows == iceberg_rows, (parquet_rows, iceberg_rows)
    return out


def _line(
    lake: str, symbols: int, minutes: float, frames: int, cpu: float, files: int, size: int, query: float
) -> dict[str, Any]:
    return {
        "lake": lake,
        "symbols": symbols,
        "minutes": minutes,
        "frames": frames,
        "sink_cpu_ms_per_1000_frames": round(cpu * 1e6 / frames, 1),
        "files": files,
        "mib_on_disk": round(size / 2**20, 1),
        "duckdb_book_count_s": round(query, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--symbols", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args(argv)
    for line in measure(args.symbols, args.minutes):
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
