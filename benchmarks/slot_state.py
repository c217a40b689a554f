"""Book-builder checkpoint size of one Kinesis slot: how many books can share a partition key?

``python -m benchmarks.slot_state`` prints, for several slot sizes and two load profiles, the
compressed state (orjson + zlib, exactly what ``CheckpointStore.save`` writes to DynamoDB) the book
builder would checkpoint after each record of the slot: median, 99th percentile and maximum. Records
are cut as the collector's publisher cuts them (200 ms), and a Lambda batch can end after any record,
so the maximum over all records is the figure that must fit ``MAX_STATE_BYTES``.

Profiles (``generate_session.slot_connection``: 100-level books, SEQ_ALL, the symbols of a slot on one
connection):

* ``typical``: each book at the benchmark session's per-symbol rate (~24 book frames/s), a checksum
  every 2.5 s (the median cadence observed live, PROTOCOLS.md §1.10);
* ``busy``: 4x that rate (~80-90 frames/s per book) and a checksum only every 8 s (the longest gap
  observed live), so the most unverified rows the state holds.

Both start with 2 000 trade ids per symbol already remembered (what the state keeps by default), with
Bitfinex-like ids (one id sequence shared by every pair, so a pair's ids jump by thousands).
What dominates is the unverified ``bitfinex_book`` rows (404 columns each) waiting for their checksum.
The figures are quoted in docs/AWS.md and justify ``marketpipe.bitfinex.slots.SYMBOLS_PER_SLOT``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import dataclass

from benchmarks.generate_session import START_US, slot_connection, symbol_spec
from marketpipe.aws.book_builder import BookRun, FrameFilter
from marketpipe.aws.checkpoints import MAX_STATE_BYTES, pack_state
from marketpipe.aws.records import decode_record, encode_record
from marketpipe.bitfinex import wire as bfx
from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.records import RawFrame, rest_conn

PROFILES = {"typical": (1.0, 2_500_000), "busy": (4.0, 8_000_000)}
LINGER_US = 200_000
TRADE_IDS = 2_000


@dataclass(frozen=True)
class SlotState:
    books: int
    profile: str
    frames_per_book_s: float
    records: int
    median: int
    p99: int
    max: int
    max_trimmed: int
    """The largest state exported with 200 trade ids per symbol (the store's first fallback)."""


def trade_history(count: int, ids: int, seed: int = 3) -> list[RawFrame]:
    """REST backfill bodies with ``ids`` past trades per symbol, as a restart's backfill brings them."""
    rng = random.Random(seed)
    frames = []
    for index in range(count):
        wire = symbol_spec(index)[0]
        trade_id, entries = 1_650_000_000, []
        for i in range(ids):
            trade_id += rng.randint(1, 20_000)
            entries.append(f"[{trade_id},{START_US // 1000 - ids + i},{rng.choice((0.01, -0.02))},100]")
        path = f"{bfx.trades_hist_path(wire)}?start=0&end={START_US // 1000}&limit=10000&sort=1"
        frames.append(
            RawFrame(bfx.EXCHANGE, rest_conn(path), "in", START_US - 1000 + index, f"[{','.join(entries)}]")
        )
    return frames


def records_of(frames: list[RawFrame], linger_us: int = LINGER_US) -> list[bytes]:
    """Kinesis records as the publisher cuts one key's frames: ``linger_us`` after each record's first."""
    records: list[bytes] = []
    lines: list[bytes] = []
    window_end = 0
    for frame in frames:
        if lines and frame.received_ts >= window_end:
            records.append(encode_record(lines))
            lines = []
        if not lines:
            window_end = frame.received_ts + linger_us
        lines.append(frame.to_line())
    if lines:
        records.append(encode_record(lines))
    return records


def new_run() -> BookRun:
    emitted: list[tuple[object, object]] = []
    processor = BitfinexProcessor(lambda table, rows: emitted.append((table, rows)))
    return BookRun(processor, FrameFilter(), emitted)  # type: ignore[arg-type]


def measure(books: int, profile: str, seconds: float = 30.0) -> SlotState:
    busier, checksum_every_us = PROFILES[profile]
    frames = slot_connection(books, seconds, busier=busier, checksum_every_us=checksum_every_us)
    run = new_run()
    for frame in trade_history(books, TRADE_IDS):
        run.processor.process(frame)
    sizes: list[int] = []
    most_pending, trimmed = -1, 0
    records = records_of(frames)
    for data in records:
        for frame in decode_record(data):
            if run.frames.accept(frame):
                run.processor.process(frame)
        sizes.append(len(pack_state(run.export(TRADE_IDS))))
        pending = run.processor.pending_rows()
        if pending > most_pending:  # the trimmed export is largest where the most rows wait
            most_pending, trimmed = pending, len(pack_state(run.export(200)))
    assert run.processor.stats.gaps == 0 and run.processor.stats.checksum_mismatches == 0
    sizes.sort()
    book_frames = sum(1 for f in frames if f.frame.startswith("[") and '"' not in f.frame[:12])
    return SlotState(
        books,
        profile,
        book_frames / books / seconds,
        len(records),
        int(statistics.median(sizes)),
        sizes[int(len(sizes) * 0.99)],
        sizes[-1],
        trimmed,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--books", default="1,6,8,12", help="slot sizes to measure (comma list)")
    parser.add_argument("--profiles", default="typical,busy")
    parser.add_argument("--seconds", type=float, default=30.0, help="session time per measurement")
    args = parser.parse_args(argv)
    print(f"limit: {MAX_STATE_BYTES / 1024:.1f} KiB (aws.checkpoints.MAX_STATE_BYTES)")
    print("| books | profile | book frames/s per book | median KiB | p99 KiB | max KiB | max KiB, 200 ids |")
    print("|---|---|---|---|---|---|---|")
    for profile in args.profiles.split(","):
        for books in (int(b) for b in args.books.split(",")):
            s = measure(books, profile, args.seconds)
            print(
                f"| {s.books} | {s.profile} | {s.frames_per_book_s:.0f} | {s.median / 1024:.1f} | "
                f"{s.p99 / 1024:.1f} | {s.max / 1024:.1f} | {s.max_trimmed / 1024:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
