"""Book maintenance throughput: parse + apply + sequence and checksum bookkeeping, frames in memory.

Two figures, because the production path does more than the requirement's definition:

* ``processor``: the real :class:`BitfinexProcessor` with a no-op emit. Per frame it parses, checks
  SEQ_ALL, applies to the :class:`OrderBook`, verifies every ``cs`` frame, *and* builds the rows it
  would store (one 404-value ``bitfinex_book`` row per changed frame and one ``bitfinex_quotes`` row per
  level event) and holds them until a checksum releases them. That is what a replay pays per frame.
* ``core``: exactly the requirement's definition — ``orjson.loads``, the SEQ_ALL continuity check,
  ``OrderBook.apply`` and ``OrderBook.checksum`` verification of every ``cs`` frame — in a lean loop
  over the same frames with the real book class, no row building. It asserts zero gaps and zero
  mismatches, so it can't skip work and still report a figure.

A third, ``parse_only`` (``orjson.loads`` of the same texts), is the ceiling for any JSON-based path.

Both book figures use ``marketpipe.book.OrderBook`` as installed: the compiled book where ``pip install``
could compile it (each result records ``compiled_book``), else the pure-Python one.

``python -m benchmarks.bench_book --session DIR [--mode processor|core|parse_only]`` prints one result.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks import emit_result, load_frames, pin_to_one_core
from benchmarks.generate_session import load_info
from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.book import COMPILED, OrderBook
from marketpipe.records import RawFrame, Row
from marketpipe.tables import Table


def _noop_emit(table: Table, rows: list[Row]) -> None:
    """Rows are built and released but dropped: this benchmark measures the processor, not sinks."""


def run_processor(frames: list[RawFrame]) -> tuple[float, dict[str, int]]:
    processor = BitfinexProcessor(_noop_emit)
    process = processor.process
    started = time.perf_counter()
    for frame in frames:
        process(frame)
    processor.finish()
    elapsed = time.perf_counter() - started
    stats = processor.stats
    if stats.gaps or stats.checksum_mismatches or stats.invalid_frames:
        raise SystemExit(f"processor saw a broken session: {stats.as_dict()}")
    return elapsed, {"checksums_verified": stats.checksum_ok, "book_rows": stats.book_rows}


def run_core(texts: list[str]) -> tuple[float, dict[str, int]]:
    """Parse, sequence-check, apply and checksum-verify: the book maintenance work and nothing else."""
    loads = orjson.loads
    books: dict[int, OrderBook] = {}
    snapshotted: set[int] = set()
    last_seq = 0
    gaps = verified = mismatches = 0
    started = time.perf_counter()
    for text in texts:
        msg: Any = loads(text)
        if type(msg) is not list:
            if msg.get("event") == "subscribed" and msg.get("channel") == "book":
                books[msg["chanId"]] = OrderBook(100)
            continue
        seq = msg[-2]  # SEQ_ALL + TIMESTAMP: payload…, SEQ, TS
        if seq != last_seq + 1:
            gaps += 1
        last_seq = seq
        book = books.get(msg[0])
        if book is None:
            continue  # trades channel: sequence-checked above, nothing to maintain
        body = msg[1]
        if type(body) is list:
            if type(body[0]) is list:
                if msg[0] not in snapshotted:
                    snapshotted.add(msg[0])
                    book.clear()
                for price, count, amount in body:
                    book.apply(price, count, amount)
            else:
                book.apply(body[0], body[1], body[2])
        elif body == "cs":
            if book.checksum() == msg[2]:
                verified += 1
            else:
                mismatches += 1
    elapsed = time.perf_counter() - started
    if gaps or mismatches or not verified:
        raise SystemExit(f"core loop saw a broken session: gaps {gaps}, mismatches {mismatches}")
    return elapsed, {"checksums_verified": verified}


def run_parse_only(texts: list[str]) -> tuple[float, dict[str, int]]:
    loads = orjson.loads
    started = time.perf_counter()
    for text in texts:
        loads(text)
    return time.perf_counter() - started, {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="book maintenance benchmark (one sample)")
    parser.add_argument("--session", type=Path, required=True)
    parser.add_argument("--mode", choices=("processor", "core", "parse_only"), default="processor")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    cpu = None if args.no_pin else pin_to_one_core()
    info = load_info(args.session)
    frames = load_frames(args.session)
    if args.mode == "processor":
        elapsed, extra = run_processor(frames)
    else:
        texts = [f.frame for f in frames if f.direction == "in"]
        elapsed, extra = run_core(texts) if args.mode == "core" else run_parse_only(texts)
    emit_result(
        f"book_{args.mode}",
        cpu=cpu,
        seconds=elapsed,
        frames=len(frames),
        book_frames=info.book_update_frames,
        book_frames_per_s=info.book_update_frames / elapsed,
        frames_per_s=len(frames) / elapsed,
        us_per_frame=elapsed * 1e6 / len(frames),
        compiled_book=COMPILED,
        **extra,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
