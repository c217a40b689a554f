"""Reproducible benchmarks over a generated Bitfinex session; ``python benchmarks/run.py`` runs them all.

Each ``bench_*.py`` measures one sample per process and prints one JSON line (its figures) as the last
line of stdout, so ``run.py`` can repeat it in fresh, CPU-pinned subprocesses and take medians. The
helpers here are what every benchmark shares: loading the session into memory and pinning to a core.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from marketpipe.records import RawFrame
from marketpipe.sinks.raw_capture import iter_raw_frames

RESULT_PREFIX = "BENCH_RESULT "
"""Marks the JSON result line among whatever else a benchmark prints."""


def pin_to_one_core(cpu: int | None = None) -> int | None:
    """Pin this process to one CPU (the last one by default) so figures are per core; None if unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    chosen = cpus[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


def load_frames(session: Path) -> list[RawFrame]:
    """Every frame of a capture, in memory, then frozen out of the GC's reach.

    ``gc.freeze`` matters: a million live frame objects would otherwise be rescanned by every full
    collection the timed code triggers — a cost of pre-loading, which a streaming replay doesn't pay.
    """
    frames = list(iter_raw_frames([session]))
    gc.collect()
    gc.freeze()
    return frames


def emit_result(name: str, **metrics: Any) -> None:
    """Print the result line ``run.py`` parses."""
    print(RESULT_PREFIX + json.dumps({"name": name, **metrics}), flush=True)
    sys.stdout.flush()


def parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise ValueError("benchmark printed no result line")
