"""Wiring: raw capture -> processor -> row router -> sinks, for live runs and for replays.

Live and replay share the processor, so a replay of the raw capture rebuilds exactly what the live run
stored (the raw capture is the write-ahead log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from marketpipe.config import RunConfig
from marketpipe.errors import ConfigError
from marketpipe.exchanges import bitfinex as bfx
from marketpipe.processing.bitfinex import BitfinexProcessor, Stats
from marketpipe.records import RawFrame
from marketpipe.sinks.base import Row, Sink
from marketpipe.tables import BITFINEX_TRADES, Table

log = logging.getLogger("marketpipe.pipeline")

REPLAY_BATCH_ROWS = 20_000


class RowRouter:
    """Buffers rows per table and hands each batch to every sink.

    The live loop only appends (cheap); a worker thread writes the swapped-out batch, so a slow
    database never stalls the websocket reader.
    """

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self._buffer: dict[Table, list[Row]] = {}
        self.buffered = 0
        self.rows_written: dict[str, int] = {}

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

    def write(self, batch: dict[Table, list[Row]]) -> None:
        for table, rows in batch.items():
            for sink in self.sinks:
                sink.write(table, rows)
            self.rows_written[table.name] = self.rows_written.get(table.name, 0) + len(rows)
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # close every sink even if one fails
                errors.append(f"{sink.name}: {exc}")
        if errors:
            raise RuntimeError("; ".join(errors))


def build_sinks(config: RunConfig) -> list[Sink]:
    """Open the configured stores; an unreachable one is a ConfigError before any streaming starts."""
    sinks: list[Sink] = []
    if "csv" in config.sinks:
        from marketpipe.sinks.csv_sink import CsvSink

        sinks.append(CsvSink(config.data_dir))
    if "db" in config.sinks:
        from marketpipe.sinks.sql_sink import SqlSink

        sinks.append(SqlSink(config.resolved_db_url))
    if "lake" in config.sinks:
        from marketpipe.sinks.lake_sink import LakeSink

        sinks.append(LakeSink(config.resolved_lake_uri))
    return sinks


def _latest_trade_times(sinks: Sequence[Sink], wires: Sequence[str]) -> dict[str, int]:
    """Newest stored trade per symbol, so a restart backfills what was missed while down."""
    for sink in sinks:
        latest = getattr(sink, "latest_by", None)
        if latest is None:
            continue
        try:
            found: dict[str, Any] = latest(BITFINEX_TRADES.name, "exchange_ts", "symbol")
        except Exception as exc:  # an empty or new database is fine
            log.debug("no stored trades to resume from: %s", exc)
            return {}
        return {
            w: int(found[bfx.normalize_symbol(w)]) // 1000
            for w in wires
            if found.get(bfx.normalize_symbol(w))
        }
    return {}


def summarize(stats: Stats, router: RowRouter, elapsed: float) -> str:
    written = ", ".join(f"{name} {count}" for name, count in sorted(router.rows_written.items())) or "none"
    return (
        f"{stats.frames} frames in {elapsed:.1f} s; rows written: {written}; gaps {stats.gaps}, "
        f"checksum mismatches {stats.checksum_mismatches} (ok {stats.checksum_ok}), resyncs {stats.resyncs}, "
        f"invalid frames {stats.invalid_frames}, unverified rows discarded {stats.discarded_rows}"
    )


async def run_live(config: RunConfig) -> Stats:
    """``marketpipe run``: stream until SIGINT/SIGTERM or ``--duration``, then flush everything."""
    from marketpipe.collector.bitfinex import BitfinexCollector, CollectorSettings
    from marketpipe.sinks.raw_capture import RawCaptureWriter

    started = time.monotonic()
    simulator = None
    if config.simulate:
        from marketpipe.simulator.bitfinex import BitfinexSimulator

        simulator = BitfinexSimulator(tuple(config.bitfinex_wire_symbols()))
        await simulator.start()
        config.bitfinex_ws_url, config.bitfinex_api_url = simulator.ws_url, simulator.api_url
        log.info("simulated Bitfinex at %s (REST %s)", simulator.ws_url, simulator.api_url)

    sinks = await asyncio.to_thread(build_sinks, config)
    router = RowRouter(sinks)
    capture = RawCaptureWriter(config.data_dir, compress=config.compress_raw)
    wires = config.bitfinex_wire_symbols()
    collector: BitfinexCollector | None = None

    def on_signal(sig: Any) -> None:
        if collector is not None:
            collector.handle_signal(sig)

    processor = BitfinexProcessor(router.emit, on_signal=on_signal)

    def on_frame(frame: RawFrame) -> None:
        capture.write(frame)
        processor.process(frame)

    settings = CollectorSettings(
        ws_url=config.bitfinex_ws_url,
        api_url=config.bitfinex_api_url,
        stale_after=config.stale_after,
        drain_timeout=config.drain_timeout,
        subscription_retry=config.subscription_retry,
    )
    collector = BitfinexCollector(
        wires, processor, on_frame, settings, resume_trades_from=_latest_trade_times(sinks, wires)
    )

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
            capture.flush()
            batch = router.take()
            if batch:
                await asyncio.to_thread(router.write, batch)

    flusher = asyncio.create_task(flush_periodically())
    log.info(
        "streaming Bitfinex %s into %s",
        ", ".join(config.bitfinex_symbols),
        ", ".join(s.name for s in sinks) or "raw capture only",
    )
    try:
        await collector.run(stop)
    finally:
        flushing = False
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        processor.finish()
        capture.close()
        await asyncio.to_thread(router.write, router.take())
        await asyncio.to_thread(router.close)
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        if simulator is not None:
            await simulator.stop()
        log.info("stopped: %s", summarize(processor.stats, router, time.monotonic() - started))
    return processor.stats


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    log.info("received %s: stopping after flushing everything", signal.Signals(signum).name)
    stop.set()


def replay(paths: Iterable[Path], config: RunConfig) -> Stats:
    """``marketpipe replay``: rebuild every output from raw capture files, as fast as possible."""
    from marketpipe.sinks.raw_capture import iter_raw_frames

    started = time.monotonic()
    router = RowRouter(build_sinks(config))
    processor = BitfinexProcessor(router.emit)
    skipped: dict[str, int] = {}
    try:
        for frame in iter_raw_frames(paths):
            if frame.exchange != bfx.EXCHANGE:
                skipped[frame.exchange] = skipped.get(frame.exchange, 0) + 1
                continue
            processor.process(frame)
            if router.buffered >= REPLAY_BATCH_ROWS:
                router.write(router.take())
        processor.finish()
        router.write(router.take())
    finally:
        router.close()
    for exchange, count in skipped.items():
        log.info("replay: skipped %d frames of exchange %s (not handled by this replay)", count, exchange)
    log.info("replay done: %s", summarize(processor.stats, router, time.monotonic() - started))
    if processor.stats.frames == 0 and not skipped:
        raise ConfigError("no frames found in the given capture files")
    return processor.stats
