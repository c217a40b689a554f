"""``marketpipe replay``: rebuild every output from raw capture files, as fast as possible.

The frames go through the same processors, row router and sinks as a live run (:mod:`marketpipe.pipeline`),
so replaying the raw capture rebuilds exactly what the live run stored; large captures are replayed by
several processes, each writing its share of the stores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from marketpipe.config import RunConfig
from marketpipe.errors import ConfigError
from marketpipe.pipeline import RowRouter, build_sinks, rows_summary
from marketpipe.records import Row
from marketpipe.sinks.base import Sink
from marketpipe.tables import TABLES, WIDE_FLOAT_RUN, Table, float_runs

log = logging.getLogger("marketpipe.replay")

REPLAY_BATCH_ROWS = 5_000
REPLAY_GC_THRESHOLD = 100_000
"""Allocations between young-generation collections during a replay (Python's default: 700).

A replay allocates a container per row and value list; with the default threshold the cyclic
collector ran every few frames and cost ~45 % of the processor's time (measured: 10.2 -> 5.9 µs per
frame). Rows hold no reference cycles, so collecting rarely frees the same memory.
"""


REPLAY_PARALLEL_MIN_BYTES = 8 * 2**20
"""Captures at least this large are replayed by several processes (when there are CPUs to spare)."""
REPLAY_WIDE_TABLES = frozenset(
    table.name
    for table in TABLES.values()
    if any(stop - start >= WIDE_FLOAT_RUN for start, stop in float_runs(table))
)
"""Tables whose rows cost most to store (hundreds of price/size columns: the ones the sinks' bulk paths
handle). A CSV or lake sink's share of them may go to another replay process than its other tables:
each table has its own files, so both can write."""
REPLAY_SINK_COST = {"csv": (14.6, 5.7), "db": (21.8, 0.0), "lake": (7.9, 2.7)}
"""CPU µs per book frame of each sink in a replay, for the wide tables and for the others (each part
replayed alone over the 1M-frame benchmark session, beyond the ~6 µs of reading and processing that
every process pays; SQLite is never split and was measured whole). With two processes: SQLite | CSV
and the lake."""
_SPLITTABLE_SINKS = frozenset({"csv", "lake"})  # SQLite takes one writer at a time: db stays whole

_PROGRESS_EVERY = 0x3FFF
"""The progress bar moves every 16,384 frames (a mask: ``total & _PROGRESS_EVERY == 0``)."""

SinkPart = tuple[str, str]
"""(sink name, ``all`` | ``wide`` | ``rest``): a sink, or its share of the tables in a replay process."""


def replay(
    paths: Iterable[Path], config: RunConfig, processes: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """``marketpipe replay``: rebuild every output from raw capture files, as fast as possible.

    With ``processes`` > 1 (by default: one per usable CPU, for captures of at least
    :data:`REPLAY_PARALLEL_MIN_BYTES`) the sinks, or a sink's wide and other tables, are split into
    groups of balanced cost and each group gets its own process that reads the capture and runs the
    processors itself. Replay is deterministic, so every process builds the same rows and no row
    crosses a process boundary; the sinks write side by side on separate cores instead of sharing one
    GIL. This process handles the first group and reports (logs frame-level problems once, returns its
    processors); the others only log what their sinks say.

    ``progress``: draw a bar of the capture bytes this process has read (:mod:`marketpipe.progress`).
    """
    from marketpipe.capabilities import check_replay_settings
    from marketpipe.sinks.raw_capture import capture_files

    started = time.monotonic()
    check_replay_settings(config.options)  # bad flags and a missing file: errors before any sink opens
    files = capture_files(paths)
    groups = _sink_groups(list(config.sinks), _replay_processes(files, config, processes))
    workers = [_ReplayWorker(files, config, group) for group in groups[1:]]
    try:
        replayers, total, router = _replay_frames(files, config, groups[0], workers, progress)
        for worker in workers:
            worker.result()
    finally:
        for worker in workers:
            worker.stop()
    elapsed = time.monotonic() - started
    for replayer in replayers.values():
        log.info("replay: %s", replayer.summary())
    where = f" in {len(groups)} processes ({' | '.join(map(_describe, groups))})" if workers else ""
    log.info("replay done: %d frames in %.1f s%s; %s", total, elapsed, where, rows_summary(router))
    if total == 0:
        raise ConfigError("no frames found in the given capture files")
    return dict(replayers)


def _replay_processes(files: Sequence[Path], config: RunConfig, processes: int | None) -> int:
    if processes is not None:
        return max(1, processes)
    if sum(path.stat().st_size for path in files) < REPLAY_PARALLEL_MIN_BYTES:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return cpus


def _sink_groups(sinks: list[str], processes: int) -> list[list[SinkPart]]:
    """At most ``processes`` groups of sink parts with balanced cost (largest first, onto the lightest).

    Sinks stay whole, except that the costliest CSV or lake sinks are split into their wide and other
    tables while there are more processes than parts: two sinks in one process cost less than the sum
    of each alone (measured: SQLite | CSV and lake replays in 33 s where SQLite and the other tables'
    CSV | the book's CSV and the lake takes 37 s). A sink whose parts land in one group is written whole.
    """
    spare = processes - len(sinks)
    units: list[tuple[float, SinkPart]] = []
    for sink in sorted(sinks, key=lambda name: -sum(REPLAY_SINK_COST.get(name, (1.0, 1.0)))):
        wide, rest = REPLAY_SINK_COST.get(sink, (1.0, 1.0))
        if spare > 0 and sink in _SPLITTABLE_SINKS:
            units += [(wide, (sink, "wide")), (rest, (sink, "rest"))]
            spare -= 1
        else:
            units.append((wide + rest, (sink, "all")))
    count = max(1, min(processes, len(units)))
    assigned: list[list[SinkPart]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for cost, part in sorted(units, key=lambda unit: -unit[0]):
        lightest = loads.index(min(loads))
        assigned[lightest].append(part)
        loads[lightest] += cost
    groups: list[list[SinkPart]] = []
    for parts in assigned:
        group: list[SinkPart] = []
        for sink in sinks:
            scopes = {scope for name, scope in parts if name == sink}
            if scopes:
                group.append((sink, scopes.pop() if len(scopes) == 1 else "all"))
        if group:
            groups.append(group)
    return groups or [[]]


def _describe(group: Sequence[SinkPart]) -> str:
    scopes = {"all": "", "wide": f" ({', '.join(sorted(REPLAY_WIDE_TABLES))})", "rest": " (other tables)"}
    return ", ".join(f"{name}{scopes[scope]}" for name, scope in group)


class _TableShare:
    """A sink restricted to the wide tables, or to the others: a replay process's share of it."""

    def __init__(self, sink: Sink, wide: bool) -> None:
        self.sink = sink
        self.name = sink.name
        self.wide = wide

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        if (table.name in REPLAY_WIDE_TABLES) == self.wide:
            self.sink.write(table, rows)

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        self.sink.close()


def _replay_frames(
    files: Sequence[Path],
    config: RunConfig,
    parts: Sequence[SinkPart],
    workers: Sequence[_ReplayWorker] = (),
    progress: bool = False,
) -> tuple[dict[str, Any], int, RowRouter]:
    """Every frame through the processors into the sink ``parts``; the processors, frame count, router."""
    from marketpipe.capabilities import EXCHANGE_MODULES, exchange_module
    from marketpipe.progress import progress_bar
    from marketpipe.runtime import FrameProcessor
    from marketpipe.sinks.raw_capture import ReadProgress, iter_raw_frames

    scopes = dict(parts)
    sinks: list[Sink] = [
        sink if scopes[sink.name] == "all" else _TableShare(sink, wide=scopes[sink.name] == "wide")
        for sink in build_sinks(dataclasses.replace(config, sinks=list(scopes)), bulk_load=True)
    ]
    router = RowRouter(sinks, flush_batches=False)
    thresholds = gc.get_threshold()
    gc.set_threshold(REPLAY_GC_THRESHOLD, *thresholds[1:])
    replayers: dict[str, FrameProcessor] = {}
    skipped: dict[str, int] = {}
    total = 0
    reading = ReadProgress(files) if progress else None
    shown = contextlib.ExitStack()
    bar = shown.enter_context(progress_bar(reading.total if reading else 0, "replay", enabled=progress))
    try:
        for frame in iter_raw_frames(files, reading):
            total += 1
            if reading is not None and not total & _PROGRESS_EVERY:
                bar.update_to(reading.bytes_read)
            replayer = replayers.get(frame.exchange)
            if replayer is None:
                if frame.exchange not in EXCHANGE_MODULES:
                    skipped[frame.exchange] = skipped.get(frame.exchange, 0) + 1
                    continue
                replayer = replayers[frame.exchange] = exchange_module(frame.exchange).create_replayer(
                    router.emit, config.options
                )
            replayer.process(frame)
            if router.buffered >= REPLAY_BATCH_ROWS:
                router.submit(router.take())  # written while the next batch is being built
                for worker in workers:
                    worker.check()  # a failed worker stops the replay now, not at the end
        for replayer in replayers.values():
            replayer.finish()
        if reading is not None:
            bar.update_to(reading.bytes_read)
        router.write(router.take())
    finally:
        shown.close()
        gc.set_threshold(*thresholds)
        router.close()
    for exchange, count in skipped.items():
        log.info("replay: skipped %d frames of unknown exchange %r", count, exchange)
    return dict(replayers), total, router


class _ReplayWorker:
    """A process replaying the capture into some of the sinks; its log records go to our handlers."""

    def __init__(self, files: Sequence[Path], config: RunConfig, parts: list[SinkPart]) -> None:
        context = multiprocessing.get_context("spawn")  # no fork: this process may run threads
        self.sinks = _describe(parts)
        self._logs: multiprocessing.Queue[logging.LogRecord] = context.Queue()
        self._listener = logging.handlers.QueueListener(self._logs, _LogRelay())
        self._listener.start()
        self._result, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_replay_worker_main,
            args=(list(files), config, parts, child_end, self._logs, logging.getLogger().getEffectiveLevel()),
            name=f"replay-{'-'.join(name for name, _ in parts)}",
            daemon=True,
        )
        self._process.start()
        child_end.close()  # ours: so a dead worker reads as EOF, not as a hang
        self._outcome: tuple[str, str, str] | None = None

    def check(self) -> None:
        """Raise the worker's error as soon as it has reported one (without waiting)."""
        if self._outcome is None and self._result.poll():
            self._receive()
        self._raise_on_error()

    def result(self) -> None:
        """Wait for the worker to finish; raise its error."""
        if self._outcome is None:
            self._receive()
        self._raise_on_error()

    def _receive(self) -> None:
        try:
            self._outcome = self._result.recv()
        except EOFError:
            self._process.join(5)
            code = self._process.exitcode
            self._outcome = ("error", "RuntimeError", f"worker process exited ({code}) without a result")

    def _raise_on_error(self) -> None:
        if self._outcome is None or self._outcome[0] == "ok":
            return
        _, kind, message = self._outcome
        if kind == "ConfigError":
            raise ConfigError(message)
        raise RuntimeError(f"replay into {self.sinks} failed: {kind}: {message}")

    def stop(self) -> None:
        """Reap the process (terminating it if the replay is being abandoned) and its log relay."""
        if self._outcome is None or self._outcome[0] != "ok":
            self._process.terminate()
        self._process.join()
        self._result.close()
        self._listener.stop()
        self._logs.close()
        self._logs.join_thread()


class _LogRelay(logging.Handler):
    """Hands a worker's record to the logger of the same name here (our levels, handlers, filters)."""

    def handle(self, record: logging.LogRecord) -> bool:
        logging.getLogger(record.name).handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does the work
        self.handle(record)


def _replay_worker_main(
    files: list[Path],
    config: RunConfig,
    parts: list[SinkPart],
    result: multiprocessing.connection.Connection,
    logs: multiprocessing.Queue[logging.LogRecord],
    level: int,
) -> None:
    """Entry point of a replay worker process: its sinks only; frame-level messages are the parent's."""
    handler = logging.handlers.QueueHandler(logs)
    handler.addFilter(_worker_log_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    try:
        _replay_frames(files, config, parts)
    except BaseException as exc:  # reported to the parent, which raises it
        result.send(("error", type(exc).__name__, str(exc)))
    else:
        result.send(("ok", "", ""))
    finally:
        result.close()


def _worker_log_filter(record: logging.LogRecord) -> bool:
    """The parent logs what concerns frames (it reads the same capture); a worker, its sinks' news."""
    name = record.name
    sinks = name.startswith("marketpipe.sinks.") and name != "marketpipe.sinks.raw_capture"
    return sinks or record.levelno >= logging.ERROR
