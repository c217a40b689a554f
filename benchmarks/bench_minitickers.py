"""Binance mini-ticker events per second: processor alone, and the full ``marketpipe replay`` pipeline.

A deterministic capture of ``!miniTicker@arr`` frames (``--tickers`` changed symbols per frame, like the
real all-market stream) is written in the raw-capture format, then:

* ``processor``: frames pre-loaded in memory through :class:`BinanceProcessor` (parse, Decimal fields,
  rows, price-level watch on 3 symbols), rows discarded: the cost of the Binance code itself;
* ``pipeline``: ``marketpipe replay`` of the capture files into CSV + SQLite + Parquet in a fresh data dir
  (read, parse, process, route, write every sink): what a user gets.

``python -m benchmarks.bench_minitickers [--frames N --tickers K --runs R]`` pins itself to one core and
prints a Markdown table of medians over ``--runs`` runs (each stage in a fresh temp dir).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import orjson

from marketpipe.binance.price_levels import parse_watch_list
from marketpipe.binance.processor import BinanceProcessor
from marketpipe.config import RunConfig
from marketpipe.records import RawFrame
from marketpipe.replay import replay
from marketpipe.sinks.raw_capture import RawCaptureWriter, iter_raw_frames

START_US = 1_795_000_000_000_000


def generate(root: Path, frames: int, tickers: int, seed: int = 1) -> int:
    """Write the capture; returns the number of mini-ticker events in it."""
    rng = random.Random(seed)
    symbols = [f"S{i:04d}USDT" for i in range(max(tickers * 2, 3))]
    symbols[:3] = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    prices = {s: Decimal(rng.randint(1, 50_000)) for s in symbols}
    writer = RawCaptureWriter(root)
    events = 0
    for i in range(frames):
        now_ms = START_US // 1000 + i * 1000
        changed = rng.sample(symbols, tickers)
        data = []
        for s in changed:
            prices[s] = max(Decimal("0.0001"), prices[s] + Decimal(rng.randint(-50, 50)) / 100)
            p = f"{prices[s]:.8f}"
            data.append({"e": "24hrMiniTicker", "E": now_ms, "s": s, "c": p, "o": p, "h": p, "l": p,
                         "v": f"{rng.random() * 1e4:.8f}", "q": f"{rng.random() * 1e7:.8f}"})  # fmt: skip
        text = orjson.dumps({"stream": "!miniTicker@arr", "data": data}).decode()
        writer.write(RawFrame("binance", "bench-s0-1", "in", START_US + i * 1_000_000, text))
        events += len(data)
    writer.close()
    return events


def processor_rate(session: Path) -> float:
    frames = list(iter_raw_frames([session]))
    watches = parse_watch_list(["BTCUSDT>25000", "ETHUSDT<20000", "BNBUSDT>100"])
    events = 0

    def emit(_table: object, rows: list[tuple[object, ...]]) -> None:
        nonlocal events
        events += len(rows)

    processor = BinanceProcessor(emit, watches)
    started = time.perf_counter()
    for frame in frames:
        processor.process(frame)
    return processor.stats.mini_tickers / (time.perf_counter() - started)


def pipeline_rate(session: Path, events: int, sinks: str = "csv,db,lake") -> float:
    out = Path(tempfile.mkdtemp(prefix="bench-minitickers-"))
    try:
        config = RunConfig(data_dir=out, sinks=sinks.split(","))
        started = time.perf_counter()
        replay([session], config)
        return events / (time.perf_counter() - started)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--tickers", type=int, default=400, help="changed symbols per frame")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    from benchmarks import pin_to_one_core

    pin_to_one_core()
    import logging

    logging.getLogger("marketpipe").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench-minitickers-session-"))
    try:
        events = generate(root, args.frames, args.tickers)
        proc = [processor_rate(root) for _ in range(args.runs)]
        full = [pipeline_rate(root, events) for _ in range(args.runs)]
        db_only = [pipeline_rate(root, events, "db") for _ in range(args.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "events": float(events),
        "processor_events_per_s": statistics.median(proc),
        "pipeline_events_per_s": statistics.median(full),
        "pipeline_db_only_events_per_s": statistics.median(db_only),
    }
    print(f"| Stage | mini-ticker events/s (median of {args.runs}) |\n|---|---:|")
    print(f"| processor (parse, Decimal fields, rows, 3 watches) | {result['processor_events_per_s']:,.0f} |")
    print(f"| replay → CSV + SQLite + Parquet | {result['pipeline_events_per_s']:,.0f} |")
    print(f"| replay → SQLite only | {result['pipeline_db_only_events_per_s']:,.0f} |")
    print(f"\n{events:,} events in {args.frames} frames of {args.tickers} tickers")
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
