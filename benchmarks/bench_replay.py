"""Full ``marketpipe replay`` of the generated session into CSV + SQLite + Parquet, with an RSS profile.

This is the user-visible path: read the capture files, parse every line, process, and write all three
tables to all three sinks in a fresh data dir. The figure is book update frames per second of wall
time.

Unlike the other benchmarks this one is **not pinned to one core**: ``marketpipe replay`` splits the
sinks over one process per usable CPU (each reads the capture and runs its own processor), so it uses
every core the machine gives it — both cores here. ``--pin`` measures the one-core (single process)
figure instead.

A sampler thread reads ``VmRSS`` of this process *and of its child processes* (the replay workers)
from ``/proc`` every 0.5 s, so the report can show the total memory at 25/50/75/100 % of the run:
"flat" means the late samples are no higher than the early ones (no buffer grows with the length of
the session).

``python -m benchmarks.bench_replay --session DIR`` prints one result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import emit_result, pin_to_one_core
from benchmarks.generate_session import load_info
from marketpipe.bitfinex.processor import Stats
from marketpipe.config import RunConfig
from marketpipe.replay import replay

SAMPLE_EVERY_S = 0.5


def _rss_kib(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:  # gone, or no /proc
        pass
    return 0


def _children(pid: str) -> list[str]:
    found: list[str] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found.extend(children.read().split())
    except OSError:
        pass
    return found


def rss_mib() -> float:
    """Resident set size of this process plus its descendants, MiB (Linux); 0 where /proc is missing."""
    total, todo = 0, [str(os.getpid())]
    while todo:
        pid = todo.pop()
        total += _rss_kib(pid)
        todo.extend(_children(pid))
    return total / 1024


class RssSampler(threading.Thread):
    """Samples RSS until stopped; the GIL switch interval keeps its cost negligible (one read per 0.5 s)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._t0 = time.perf_counter()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter() - self._t0, rss_mib()))
            self._stop_event.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.samples.append((time.perf_counter() - self._t0, rss_mib()))

    def at_fractions(self, fractions: tuple[float, ...]) -> dict[str, float]:
        """RSS of the last sample taken at or before each fraction of the run."""
        total = self.samples[-1][0]
        out: dict[str, float] = {}
        for fraction in fractions:
            limit = total * fraction
            value = self.samples[0][1]
            for t, rss in self.samples:
                if t <= limit + 1e-9:
                    value = rss
            out[f"{round(fraction * 100)}%"] = round(value, 1)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="full replay benchmark (one sample)")
    parser.add_argument("--session", type=Path, required=True)
    parser.add_argument("--keep", action="store_true", help="keep the data dir (printed) for inspection")
    parser.add_argument("--pin", action="store_true", help="one core, one process (the old figure)")
    args = parser.parse_args(argv)
    cpu = pin_to_one_core() if args.pin else None
    info = load_info(args.session)
    data_dir = Path(tempfile.mkdtemp(prefix="marketpipe-bench-replay-"))
    config = RunConfig(data_dir=data_dir, sinks=["csv", "db", "lake"]).validate()
    rss_start = rss_mib()
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    try:
        try:
            result = replay([args.session / "raw"], config)
        finally:
            elapsed = time.perf_counter() - started
            sampler.stop()
        stats: Stats = result["bitfinex"].stats  # replay returns each exchange's processor
        if stats.gaps or stats.checksum_mismatches:
            raise SystemExit(f"replay saw a broken session: {stats.as_dict()}")
        sizes = {
            sub: sum(p.stat().st_size for p in (data_dir / sub).rglob("*") if p.is_file()) / 2**20
            for sub in ("csv", "lake")
        }
        sizes["db"] = sum(p.stat().st_size for p in data_dir.glob("marketpipe.db*")) / 2**20
        lake_files = sum(1 for _ in (data_dir / "lake").rglob("*.parquet"))
    finally:  # a failed run must not leave gigabytes in /tmp
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    emit_result(
        "replay",
        cpu=cpu,
        seconds=elapsed,
        frames=stats.frames,
        book_frames=info.book_update_frames,
        book_frames_per_s=info.book_update_frames / elapsed,
        frames_per_s=stats.frames / elapsed,
        book_rows=stats.book_rows,
        quote_rows=stats.quote_rows,
        trade_rows=stats.trade_rows,
        checksums_verified=stats.checksum_ok,
        rss_start_mib=round(rss_start, 1),
        rss_mib=sampler.at_fractions((0.25, 0.5, 0.75, 1.0)),
        rss_peak_mib=round(max(r for _, r in sampler.samples), 1),
        output_mib={k: round(v, 1) for k, v in sizes.items()},
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        lake_files=lake_files,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
