"""How many rows per second the SQL sink sustains on MariaDB: the figure that sizes the RDS instance.

``python -m benchmarks.bench_sql [--frames N] [--batch-seconds S] [--runs R]`` replays the first N frames
of the deterministic benchmark session (2 Bitfinex books on one connection, ~47 book frames/s) through
the Bitfinex processor, then writes the rows to a throwaway MariaDB server (the one the tests start,
``tests/mariadb.py``) through :class:`marketpipe.sinks.sql_sink.SqlSink`, in batches of ``S`` seconds of
session time as the book builder would (one flush = one commit per batch). Each run starts on empty
tables. Prints one JSON line per table and run, then the medians, and what the session needs per book.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from marketpipe.records import Row
from marketpipe.tables import Table


def session_batches(
    frames: int, batch_seconds: float, cache: Path | None = None
) -> tuple[list[dict[Table, list[Row]]], float]:
    """The session's rows cut into batches of ``batch_seconds`` of session time; also its duration (s)."""
    from benchmarks.generate_session import CACHE_DIR, ensure_session
    from marketpipe.bitfinex.processor import BitfinexProcessor
    from marketpipe.sinks.raw_capture import iter_raw_frames

    batches: list[dict[Table, list[Row]]] = []
    current: dict[Table, list[Row]] = defaultdict(list)
    processor = BitfinexProcessor(lambda table, rows: current[table].extend(rows))
    first = last = end = None
    for frame in iter_raw_frames([ensure_session(frames, cache=cache or CACHE_DIR)]):
        first = frame.received_ts if first is None else first
        last = frame.received_ts
        if end is None:
            end = frame.received_ts + int(batch_seconds * 1e6)
        if frame.received_ts >= end:
            batches.append(dict(current))
            current.clear()
            end += int(batch_seconds * 1e6)
        processor.process(frame)
    processor.finish()
    batches.append(dict(current))
    return [b for b in batches if b], ((last or 0) - (first or 0)) / 1e6


def measure(url: str, batches: list[dict[Table, list[Row]]], run: int) -> dict[str, float]:
    """Rows/s per table (its share of the write time) and in all, writing every batch then committing."""
    import sqlalchemy as sa

    from marketpipe.sinks.sql_sink import SqlSink

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in {t.name for batch in batches for t in batch}:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS `{table}`"))
    engine.dispose()
    sink = SqlSink(url)
    seconds: dict[str, float] = defaultdict(float)
    rows: dict[str, int] = defaultdict(int)
    began = time.perf_counter()
    for batch in batches:
        for table, table_rows in batch.items():
            start = time.perf_counter()
            sink.write(table, table_rows)
            sink.flush()
            seconds[table.name] += time.perf_counter() - start
            rows[table.name] += len(table_rows)
    total = time.perf_counter() - began
    sink.close()
    result = {name: rows[name] / seconds[name] for name in rows}
    result["all"] = sum(rows.values()) / total
    for name, rate in result.items():
        count = sum(rows.values()) if name == "all" else rows[name]
        print(json.dumps({"run": run, "table": name, "rows": count, "rows_per_s": round(rate)}), flush=True)
    return result


SECTION_TITLE = "## SQL sink on MariaDB (what sizes the RDS instance)"


def render(command: str, medians: dict[str, float], need: dict[str, float], duration: float) -> str:
    """The report section: measured rows/s, what a book needs, and the instance each size needs."""
    from benchmarks.run import machine

    mach = machine()
    lines = [
        SECTION_TITLE,
        "",
        f"`{command}` on {mach.get('cpu', '?')} ({mach.get('ram', '?')}), MariaDB 10.11 started by the test "
        f"setup on loopback; the first {duration / 60:.0f} minutes of the benchmark session (2 books), "
        "written in 10-second book-builder batches by one `SqlSink` (insert-ignore on the natural key, one "
        "commit per batch). Median of the runs; each run starts on empty tables.",
        "",
        "| table | measured rows/s (one writer) | rows/s one book produces | books one writer sustains |",
        "|---|---:|---:|---:|",
    ]
    for name in ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book", "all"):
        if name in medians and need.get(name):
            lines.append(
                f"| {name} | {medians[name]:,.0f} | {need[name]:.2f} | {int(medians[name] / need[name]):,} |"
            )
    book = need.get("bitfinex_book", 0.0)
    quotes_speed = max(medians.get("bitfinex_quotes", 1.0), 1.0)
    everything = need.get("all", 0.0)
    lines += [
        "",
        "What each deployment size needs (derived from the rows above: measured here on one writer, not on "
        "RDS; a db.t4g.micro has 2 burstable vCPUs at a 10 % baseline and 1 GiB, so treat its share as a "
        "fraction of these figures):",
        "",
        f"- **2 books** (the default): ~{2 * everything:,.0f} rows/s, of which {2 * book:,.0f} book rows/s: "
        "a few per cent of one writer: **db.t4g.micro**.",
        f"- **50 books, every table of every symbol**: ~{50 * everything:,.0f} rows/s, {50 * book:,.0f} of "
        "them 404-column book rows (about half of what one writer sustains, several MB/s of row data "
        "into InnoDB, all day): beyond a burstable instance's baseline: **db.m7g.large** (2 vCPU, 8 GiB, "
        "not burstable), or keep in SQL only the symbols queried there (`sqlSymbols`; 10 of them: "
        f"~{10 * everything:,.0f} rows/s) and stay on **db.t4g.medium**.",
        f"- **300 books**: every table of every symbol would be ~{300 * everything:,.0f} rows/s, more than "
        "one writer sustains, so the lake is the store of record and SQL gets a scope: "
        f"`sqlTables: [bitfinex_trades, bitfinex_quotes]` (~{300 * (everything - book):,.0f} rows/s, "
        f"{300 * (everything - book) / quotes_speed:.0%} of one writer at the quotes' speed), or all three "
        "tables for at most ~100 symbols (`sqlSymbols`): **db.m7g.large**; "
        "more SQL book rows need more writers (shards) and a larger class (db.m7g.xlarge).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--batch-seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--report", type=Path, help="rewrite this benchmark's section of the report")
    args = parser.parse_args(argv)

    from tests.mariadb import MariaDBServer, available

    if not available():
        print("MariaDB is not installed (make test installs it): nothing measured", file=sys.stderr)
        return 1
    batches, duration = session_batches(args.frames, args.batch_seconds)
    per_table: dict[str, int] = defaultdict(int)
    for batch in batches:
        for table, rows in batch.items():
            per_table[table.name] += len(rows)
    server = MariaDBServer(database="marketpipe_bench")
    url = server.start()
    try:
        results = [measure(url, batches, run) for run in range(1, args.runs + 1)]
    finally:
        server.stop()
    medians = {name: statistics.median(r[name] for r in results) for name in results[0]}
    need = {name: count / duration / 2 for name, count in per_table.items()}  # the session has 2 books
    need["all"] = sum(need.values())
    print(json.dumps({
        "session_seconds": round(duration, 1),
        "batches": len(batches),
        "median_rows_per_s": {k: round(v) for k, v in medians.items()},
        "rows_per_s_per_book": {k: round(v, 2) for k, v in need.items()},
        "books_one_writer_sustains": {k: int(medians[k] / need[k]) for k in need if need[k]},
    }))  # fmt: skip
    if args.report is not None:
        from benchmarks.aws_scale import write_section

        command = "python -m benchmarks.bench_sql " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(args.report, render(command.strip(), medians, need, duration), SECTION_TITLE)
        print(f"wrote {args.report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
