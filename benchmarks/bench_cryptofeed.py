"""The same frames through cryptofeed 2.4's Bitfinex L2 book handler vs marketpipe, both writing CSV.

cryptofeed is driven without a network the way its connection loop drives it: one coroutine awaits
``Bitfinex.message_handler(text, conn, receipt_ts)`` for every frame, and the ``L2_BOOK`` callback
writes one top-100 CSV row (symbol, receipt time, sequence, 100 bid price/size, 100 ask price/size)
with the ``csv`` module. Symbols are pre-registered so the feed never fetches its symbol list.

Fairness notes (each favours cryptofeed):

* cryptofeed subscribes with ``SEQ_ALL`` only and has no checksum support, and its handler reads the
  sequence from the *last* array element. So it gets the session as it would have received it: the
  TIMESTAMP trailer cut off and ``cs`` frames removed, sequences renumbered — by text surgery, so
  every price and amount token is byte-identical. This preparation is not timed.
* marketpipe processes the original frames, verifying every checksum, building quote rows too
  (not written here), and writes the ``bitfinex_book`` rows through its real ``CsvSink``.
* The callback skips frames whose change lies outside the top 100 (the window's 101st-level
  deletes), as marketpipe does, so both write about the same number of rows; the counts are reported.

``python -m benchmarks.bench_cryptofeed --session DIR --impl cryptofeed|marketpipe`` prints one result.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import emit_result, load_frames, pin_to_one_core
from benchmarks.generate_session import load_info
from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.records import RawFrame, Row
from marketpipe.sinks.csv_sink import CsvSink
from marketpipe.tables import BITFINEX_BOOK, Table

TOP = 100
BATCH_ROWS = 20_000  # marketpipe's replay batch size


def cryptofeed_frames(frames: list[RawFrame]) -> list[tuple[str, float]]:
    """(text, receipt seconds) as cryptofeed's SEQ_ALL-only subscription would have received them."""
    out: list[tuple[str, float]] = []
    seq = 0
    for frame in frames:
        text = frame.frame
        if text.startswith("["):
            if ',"cs",' in text:
                continue
            head, _seq, _ts = text.rsplit(",", 2)  # payload…, SEQ, TS]
            seq += 1
            text = f"{head},{seq}]"
        out.append((text, frame.received_ts / 1e6))
    return out


class _Conn:
    """The only attribute of a connection the Bitfinex handler reads."""

    uuid = "bench-c1"


class TopRowsCsv:
    """A cryptofeed L2_BOOK callback writing marketpipe's top-100 row layout with the csv module."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.writer = csv.writer(self.file)
        self.rows = 0
        self._second = -1
        self._prefix = ""

    def _iso(self, ts: float) -> str:
        second = int(ts)
        if second != self._second:  # one strftime per second, as marketpipe's CsvSink does
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return f"{self._prefix}{round((ts - second) * 1e6):06d}Z"

    async def __call__(self, book: Any, receipt_timestamp: float) -> None:
        bids = book.book.bids.to_list()
        asks = book.book.asks.to_list()
        delta = book.delta
        if delta is not None:  # an update: skip it when the change lies below the top 100
            changes = delta["bid"] or delta["ask"]
            if not changes:
                return
            price = changes[0][0]
            if delta["bid"]:
                if len(bids) >= TOP and price < bids[TOP - 1][0]:
                    return
            elif len(asks) >= TOP and price > asks[TOP - 1][0]:
                return
        row: list[Any] = [book.symbol, self._iso(receipt_timestamp), book.sequence_number]
        for levels in (bids[:TOP], asks[:TOP]):
            for price, size in levels:
                row.append(price)
                row.append(size)
            row.extend([""] * (2 * (TOP - len(levels))))
        self.writer.writerow(row)
        self.rows += 1

    def close(self) -> None:
        self.file.close()


def run_cryptofeed(frames: list[RawFrame], out_dir: Path) -> tuple[float, int, int]:
    from cryptofeed.defines import BITFINEX, L2_BOOK
    from cryptofeed.exchanges import Bitfinex
    from cryptofeed.symbols import Symbols

    Symbols.set(
        BITFINEX,
        {"BTC-USD": "tBTCUSD", "ETH-USD": "tETHUSD"},
        {"instrument_type": {"BTC-USD": "spot", "ETH-USD": "spot"}},
    )
    callback = TopRowsCsv(out_dir / "cryptofeed_book.csv")
    feed = Bitfinex(symbols=["BTC-USD", "ETH-USD"], channels=[L2_BOOK], callbacks={L2_BOOK: callback})
    texts = cryptofeed_frames(frames)
    conn = _Conn()

    async def drive() -> float:
        handler = feed.message_handler
        started = time.perf_counter()
        for text, ts in texts:
            await handler(text, conn, ts)
        return time.perf_counter() - started

    elapsed = asyncio.run(drive())
    started = time.perf_counter()
    callback.close()
    elapsed += time.perf_counter() - started
    return elapsed, callback.rows, len(texts)


def run_marketpipe(frames: list[RawFrame], out_dir: Path) -> tuple[float, int, int]:
    sink = CsvSink(out_dir)
    pending: list[Row] = []
    written = 0

    def emit(table: Table, rows: list[Row]) -> None:
        nonlocal written
        if table is BITFINEX_BOOK:
            pending.extend(rows)
            if len(pending) >= BATCH_ROWS:
                sink.write(BITFINEX_BOOK, pending)
                written += len(pending)
                pending.clear()

    processor = BitfinexProcessor(emit)
    process = processor.process
    started = time.perf_counter()
    for frame in frames:
        process(frame)
    processor.finish()
    sink.write(BITFINEX_BOOK, pending)
    written += len(pending)
    sink.close()
    return time.perf_counter() - started, written, len(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cryptofeed vs marketpipe, book -> top-100 CSV (one sample)")
    parser.add_argument("--session", type=Path, required=True)
    parser.add_argument("--impl", choices=("cryptofeed", "marketpipe"), required=True)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    cpu = None if args.no_pin else pin_to_one_core()
    info = load_info(args.session)
    frames = load_frames(args.session)
    out_dir = Path(tempfile.mkdtemp(prefix=f"marketpipe-bench-{args.impl}-"))
    try:
        run = run_cryptofeed if args.impl == "cryptofeed" else run_marketpipe
        elapsed, rows, fed = run(frames, out_dir)
        csv_mib = sum(p.stat().st_size for p in out_dir.rglob("*.csv")) / 2**20
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    emit_result(
        f"csv_{args.impl}",
        cpu=cpu,
        seconds=elapsed,
        frames=fed,
        book_frames=info.book_update_frames,
        book_frames_per_s=info.book_update_frames / elapsed,
        us_per_book_frame=elapsed * 1e6 / info.book_update_frames,
        rows_written=rows,
        csv_mib=round(csv_mib, 1),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
