"""Wiring of a live run: collectors -> raw capture -> processors -> row router -> sinks.

``marketpipe replay`` (:mod:`marketpipe.replay`) uses the same processors, router and sinks, so a replay
of the raw capture rebuilds exactly what the live run stored (the raw capture is the write-ahead log).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from marketpipe.config import RunConfig
from marketpipe.errors import MarketpipeError
from marketpipe.records import RawFrame, Row
from marketpipe.sinks.base import Sink
from marketpipe.tables import Table
from marketpipe.timeutil import MonotonicClock

log = logging.getLogger("marketpipe.pipeline")


class RowRouter:
    """Buffers rows per table and hands each batch to every sink, the sinks side by side.

    The producer (the live event loop, or the replay loop) only appends. Batches are written by one
    single-thread executor per sink, so each sink sees its batches one at a time and in order while
    the sinks, and the producer, overlap (SQLite, Parquet and file writes release the GIL). At most
    one batch is in flight: :meth:`submit` waits for the previous one, which bounds memory.

    ``flush_batches``: flush every sink after each batch (live runs: what was received is durable
    within a flush interval). A replay passes False and relies on :meth:`close`: the capture is the
    write-ahead log, and flushing partial lake windows or committing every batch would only make the
    stores rewrite their data.
    """

    def __init__(self, sinks: Sequence[Sink], flush_batches: bool = True) -> None:
        self.sinks = list(sinks)
        self.flush_batches = flush_batches
        self._buffer: dict[Table, list[Row]] = {}
        self.buffered = 0
        self.rows_written: dict[str, int] = {}
        self._writers = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sink-{s.name}") for s in sinks
        ]
        self._in_flight: list[Future[None]] = []

    def emit(self, table: Table, rows: list[Row]) -> None:
        existing = self._buffer.get(table)
        if existing is None:
            self._buffer[table] = rows
        else:
            existing.extend(rows)
        self.buffered += len(rows)

    def take(self) -> dict[Table, list[Row]]:
        batch, self._buffer, self.buffered = self._buffer, {}, 0
        return batch

    def submit(self, batch: dict[Table, list[Row]]) -> None:
        """Start writing ``batch`` to every sink once the previous batch is fully written."""
        self.wait()
        if not batch:
            return
        self._in_flight = [
            writer.submit(_write_batch, sink, batch, self.flush_batches)
            for sink, writer in zip(self.sinks, self._writers, strict=True)
        ]
        for table, rows in batch.items():
            self.rows_written[table.name] = self.rows_written.get(table.name, 0) + len(rows)

    def wait(self) -> None:
        """Block until the batch in flight is written; re-raise the first sink error."""
        in_flight, self._in_flight = self._in_flight, []
        errors = [f.exception() for f in in_flight]
        for error in errors:
            if error is not None:
                raise error

    def write(self, batch: dict[Table, list[Row]]) -> None:
        """Write one batch to every sink and flush (synchronously)."""
        self.submit(batch)
        self.wait()

    def close(self) -> None:
        errors = []
        try:
            self.wait()
        except Exception as exc:
            errors.append(str(exc))
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # close every sink even if one fails
                errors.append(f"{sink.name}: {exc}")
        for writer in self._writers:
            writer.shutdown()
        if errors:
            raise RuntimeError("; ".join(errors))


def _write_batch(sink: Sink, batch: dict[Table, list[Row]], flush: bool) -> None:
    for table, rows in batch.items():
        sink.write(table, rows)
    if flush:
        sink.flush()


def build_sinks(config: RunConfig, bulk_load: bool = False) -> list[Sink]:
    """Open the configured stores; an unreachable one is a ConfigError before any streaming starts.

    ``bulk_load``: the stores are being rebuilt by a replay (SQLite then skips its write-ahead log).
    """
    sinks: list[Sink] = []
    if "csv" in config.sinks:
        from marketpipe.sinks.csv_sink import CsvSink

        sinks.append(CsvSink(config.data_dir))
    if "db" in config.sinks:
        from marketpipe.sinks.sql_sink import SqlSink

        sinks.append(SqlSink(config.resolved_db_url, bulk_load=bulk_load))
    if "lake" in config.sinks:
        from marketpipe.sinks.lake_sink import LakeSink

        sinks.append(LakeSink(config.resolved_lake_uri, open_window_seconds=config.lake_flush_interval))
    return sinks


class CaptureWriter(Protocol):
    """Where ``run`` sends every raw frame: the local capture files, or Kinesis + the S3 archive."""

    def write(self, frame: RawFrame) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def _open_transport(config: RunConfig) -> tuple[CaptureWriter, list[Sink]]:
    """Local: capture files and the configured sinks. Kinesis: frames leave the process, no sinks.

    In Kinesis mode the processor still runs in the collector (it drives resubscribes and reconnects)
    but its rows are dropped: the Lambdas store them. Each service routes its frames to Kinesis
    partitions that hold complete, ordered input for one consumer (``runtime.Partitioned``, docs/AWS.md).
    """
    if config.transport == "kinesis":
        from marketpipe.aws.transport import KinesisTransport

        return KinesisTransport.from_env(config), []
    from marketpipe.sinks.raw_capture import RawCaptureWriter

    return RawCaptureWriter(config.data_dir, compress=config.compress_raw), build_sinks(config)


def _discard_rows(table: Table, rows: list[Row]) -> None:
    """Emit of a collector whose rows are stored elsewhere (Kinesis transport)."""


def rows_summary(router: RowRouter) -> str:
    written = ", ".join(f"{name} {count}" for name, count in sorted(router.rows_written.items()))
    return f"rows written: {written or 'none'}"


async def run_live(config: RunConfig) -> dict[str, Any]:
    """``marketpipe run``: stream until SIGINT/SIGTERM or ``--duration``, then flush everything.

    Returns each exchange service's stats by exchange name.
    """
    from marketpipe.capabilities import UNSET_EXCHANGES, check_settings, exchange_module
    from marketpipe.runstatus import RunStatus, status_interval
    from marketpipe.runtime import RunContext

    started = time.monotonic()
    config.exchanges = config.exchanges or list(UNSET_EXCHANGES)
    check_settings(config.exchanges, config.options, os.environ, config.file)  # before anything opens
    interval = status_interval(os.environ)
    modules = [exchange_module(name) for name in config.exchanges]
    raw, sinks = await asyncio.to_thread(_open_transport, config)
    router = RowRouter(sinks)
    emit = router.emit if sinks else _discard_rows
    ctx = RunContext(config=config, emit=emit, capture=raw.write, sinks=sinks, clock=MonotonicClock())
    status = RunStatus(router.rows_written)
    services = []
    for name, module in zip(config.exchanges, modules, strict=True):
        own = dataclasses.replace(
            ctx, emit=status.counting_emit(name, emit), capture=status.counting_capture(name, raw.write)
        )
        services.append(module.create_service(own))
        status.attach(name, services[-1])
    if sinks:  # a local run also records the alerts it sends, for `marketpipe status`
        _journal_alerts(config, services)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, _request_stop, stop, signum)
    if config.duration is not None:
        loop.call_later(config.duration, stop.set)

    flushing = True

    async def flush_periodically() -> None:
        while flushing:
            await asyncio.sleep(config.flush_interval)
            raw.flush()
            batch = router.take()
            if batch:
                await asyncio.to_thread(router.write, batch)

    flusher = asyncio.create_task(flush_periodically())
    reporter = asyncio.create_task(status.log_every(interval)) if interval else None
    log.info("writing to %s", ", ".join(s.name for s in sinks) or "the raw capture only")
    tasks: list[asyncio.Task[None]] = []
    isolate = _Isolation(len(services))
    try:
        running = []
        for service in services:
            try:
                await service.start()
            except MarketpipeError as exc:
                isolate.failed(service.name, exc)
            else:
                running.append(service)
        if hasattr(raw, "attach"):
            raw.attach(running)  # the Kinesis transport maps connections to symbol partitions
        tasks = [asyncio.create_task(service.run(stop), name=service.name) for service in running]
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if isinstance(error, MarketpipeError):
                    isolate.failed(task.get_name(), error)
                elif error is not None:
                    raise error
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        flushing = False
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        for service in services:
            await service.close()
        raw.close()
        await asyncio.to_thread(router.write, router.take())
        await asyncio.to_thread(router.close)
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        elapsed = time.monotonic() - started
        for service in services:
            log.info("stopped after %.1f s: %s", elapsed, service.summary())
        log.info("stopped: %s", rows_summary(router))
    return {service.name: service.stats() for service in services}


class _Isolation:
    """One capability's refusal (a geo-block, an unknown symbol, a bad setting found at start) stops that
    capability only: one error line, and the others keep running. The last one standing raises it (so
    ``--exchanges X`` with a bad X is one error line and exit 2)."""

    def __init__(self, count: int) -> None:
        self.left = count

    def failed(self, name: str, exc: MarketpipeError) -> None:
        self.left -= 1
        if self.left <= 0:
            raise exc
        log.error("%s stopped: %s; the other capabilities keep running", name, exc)


def _journal_alerts(config: RunConfig, services: Sequence[Any]) -> None:
    from marketpipe.alerts.journal import AlertJournal, journal_path

    for name, service in zip(config.exchanges, services, strict=True):
        dispatcher = getattr(service, "dispatcher", None)  # the alerting services (Bitso, Binance)
        if dispatcher is not None:
            dispatcher.channels.append(AlertJournal(journal_path(config.data_dir), name))


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    log.info("received %s: stopping after flushing everything", signal.Signals(signum).name)
    stop.set()
