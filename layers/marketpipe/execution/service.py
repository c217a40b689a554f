"""Execution price as a ``marketpipe run`` service: poll Coinbase and Binance books, price market orders.

Settings: declared once in :data:`SETTINGS` (flag, environment, ``[execution]`` file key, default).

Each poll fetches every market once (the two exchanges side by side, one request at a time per
exchange), writes each body to the raw capture (``rest:<venue>:<path>``) and prices it with the same
processor ``replay`` uses; the body also goes, gzip-compressed, to ``<lake>/execution_raw/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketpipe import envnames
from marketpipe.config import ConfigFile, Section, Setting, split_list
from marketpipe.errors import ConfigError
from marketpipe.execution import binance_rest, clients, coinbase
from marketpipe.execution.clients import BookClient
from marketpipe.execution.processor import (
    CAPTURE_EXCHANGE,
    CONFIG_CONN,
    DEFAULT_MARKETS,
    DEFAULT_NOTIONALS,
    ExecutionProcessor,
    MarketRef,
    Stats,
    config_frame,
    parse_markets,
    parse_notionals,
)
from marketpipe.net.rest import RateLimited, Rejected, RestError
from marketpipe.records import Emit, RawFrame, rest_conn
from marketpipe.runtime import RunContext

log = logging.getLogger("marketpipe.execution")


@dataclass
class ExecutionSettings:
    markets: tuple[MarketRef, ...] = field(default_factory=lambda: parse_markets(DEFAULT_MARKETS))
    notionals: tuple[Decimal, ...] = DEFAULT_NOTIONALS
    interval: float = 60.0
    binance_depth_limit: int = binance_rest.DEFAULT_DEPTH_LIMIT
    coinbase_url: str = coinbase.DEFAULT_API_URL
    binance_url: str = binance_rest.DEFAULT_API_URL

    def venues(self) -> list[str]:
        return sorted({m.exchange for m in self.markets})


def _interval(value: float) -> float:
    if not math.isfinite(value) or value < 1:
        raise ConfigError(f"{value:g}: must be at least 1 second")
    return value


def _depth_limit(value: int) -> int:
    if not 1 <= value <= 5000:
        raise ConfigError(f"{value}: must be 1..5000")
    return value


SETTINGS = Section(
    "execution",
    "Execution price",
    (
        Setting(
            "markets",
            list(DEFAULT_MARKETS),
            "venue:symbol, comma list",
            kind="strs",
            flag="--execution-markets",
            env=envnames.EXECUTION_MARKETS,
            dest="opt_execution_markets",
            check=parse_markets,
        ),
        Setting(
            "notionals",
            [str(n) for n in DEFAULT_NOTIONALS],
            "order sizes in quote currency",
            kind="numbers",
            flag="--execution-notionals",
            env=envnames.EXECUTION_NOTIONALS,
            dest="opt_execution_notionals",
            check=parse_notionals,
        ),
        Setting(
            "interval",
            60.0,
            "seconds between book polls (on interval boundaries)",
            kind="float",
            flag="--execution-interval",
            env=envnames.EXECUTION_INTERVAL,
            dest="opt_execution_interval",
            check=_interval,
        ),
        Setting(
            "binance_limit",
            binance_rest.DEFAULT_DEPTH_LIMIT,
            "Binance depth levels per side (weight 50 at 1000)",
            kind="int",
            flag="--execution-binance-limit",
            env=envnames.EXECUTION_BINANCE_LIMIT,
            dest="opt_execution_binance_limit",
            check=_depth_limit,
        ),
        Setting(
            "coinbase_api_url",
            coinbase.DEFAULT_API_URL,
            "Coinbase REST endpoint",
            env=envnames.COINBASE_API_URL,
        ),
        Setting(
            "binance_api_url",
            binance_rest.DEFAULT_API_URL,
            "Binance REST endpoint (https://data-api.binance.vision where api.binance.com answers 451)",
            env=envnames.BINANCE_API_URL,
        ),
    ),
)
"""Settings: flag > environment > ``[execution]`` of the config file > default (``marketpipe.config``)."""


def settings_from(
    options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None = None
) -> ExecutionSettings:
    """The declared :data:`SETTINGS` read and checked; ConfigError for anything unusable."""
    v = SETTINGS.values(options, env, file)
    return ExecutionSettings(
        markets=v["markets"],
        notionals=v["notionals"],
        interval=v["interval"],
        binance_depth_limit=v["binance_limit"],
        coinbase_url=v["coinbase_api_url"],
        binance_url=v["binance_api_url"],
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    SETTINGS.add_arguments(parser, "Execution price (--exchanges …,execution)")


def build_clients(settings: ExecutionSettings, **kwargs: Any) -> dict[str, BookClient]:
    by_venue: dict[str, BookClient] = {}
    venues = settings.venues()
    if coinbase.EXCHANGE in venues:
        by_venue[coinbase.EXCHANGE] = clients.CoinbaseBookClient(settings.coinbase_url, **kwargs)
    if binance_rest.EXCHANGE in venues:
        by_venue[binance_rest.EXCHANGE] = clients.BinanceBookClient(
            settings.binance_url, depth_limit=settings.binance_depth_limit, **kwargs
        )
    return by_venue


def fetch(client: BookClient, ref: MarketRef) -> tuple[str, str]:
    """(path, body) of one market's book."""
    path, answer = client.fetch_book(ref.symbol)
    return path, answer.text


def serialized(clock: Callable[[], int]) -> Callable[[], int]:
    """The receive clock behind a lock: the venues are polled from worker threads side by side."""
    lock = threading.Lock()

    def stamp() -> int:
        with lock:
            return clock()

    return stamp


@dataclass
class PollOutcome:
    """One venue's part of a poll: the frames received, and why the others are missing."""

    frames: list[tuple[MarketRef, RawFrame]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, Rejected] = field(default_factory=dict)


def poll_venue(client: BookClient, markets: Sequence[MarketRef], clock: Callable[[], int]) -> PollOutcome:
    """Fetch each market of one venue in turn; a rate limit or ban skips the rest of this poll."""
    out = PollOutcome()
    for i, ref in enumerate(markets):
        try:
            path, text = fetch(client, ref)
        except RateLimited as exc:
            for later in markets[i:]:
                out.failures[later.spec] = str(exc)
            log.warning("%s", exc)
            break
        except Rejected as exc:
            out.rejected[ref.spec] = exc
            out.failures[ref.spec] = str(exc)
            continue
        except RestError as exc:
            out.failures[ref.spec] = str(exc)
            continue
        out.frames.append(
            (ref, RawFrame(CAPTURE_EXCHANGE, rest_conn(path, venue=ref.exchange), "in", clock(), text))
        )
    return out


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Execution price")
    group.add_argument("--execution-notionals", dest="opt_execution_notionals", metavar="LIST",
                       help="re-price the captured books at these order sizes (quote currency, comma "
                            "list) instead of the notionals the capture recorded; rows of other "
                            "notionals are kept as they are")  # fmt: skip


def replay_settings_from(options: Mapping[str, Any]) -> tuple[Decimal, ...] | None:
    """``replay --execution-notionals``, or None: the flag only (the environment's
    MARKETPIPE_EXECUTION_NOTIONALS is for live runs; a replay reproduces the capture unless told)."""
    notionals = options.get("opt_execution_notionals")
    if notionals is None:
        return None
    try:
        return parse_notionals(split_list(str(notionals)))
    except ConfigError as exc:
        raise ConfigError(f"--execution-notionals: {exc}") from None


def create_replayer(emit: Emit, options: Mapping[str, Any] | None = None) -> ExecutionProcessor:
    """Replay: the live processor; notionals come from the capture's ``config`` records, or, re-pricing,
    from ``replay --execution-notionals`` (the records are then ignored)."""
    notionals = replay_settings_from(options or {})
    if notionals is None:
        return ExecutionProcessor(emit)
    return ExecutionProcessor(emit, notionals, fixed=True)


def next_boundary(now: float, interval: float) -> float:
    """The next wall-clock multiple of ``interval`` (polls of every run line up on minute starts)."""
    return (math.floor(now / interval) + 1) * interval


class ExecutionService:
    name = CAPTURE_EXCHANGE

    def __init__(self, ctx: RunContext, env: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self.env = os.environ if env is None else env
        self.settings = settings_from(ctx.config.options, self.env, ctx.config.file)
        self.processor = ExecutionProcessor(ctx.emit, self.settings.notionals)
        self.simulators: list[Any] = []
        self.clients: dict[str, BookClient] = {}
        self.fetched: set[str] = set()
        self.polls = 0
        self.failures = 0
        config = ctx.config
        self.lake_uri = (
            config.resolved_lake_uri if "lake" in config.sinks and config.transport == "local" else None
        )
        self.archived = 0

    def _capture(self, frame: RawFrame) -> None:
        self.ctx.capture(frame)
        self.processor.process(frame)

    async def start(self) -> None:
        s = self.settings
        if self.ctx.config.simulate:
            from marketpipe.execution.binance_simulator import BinanceRestSimulator
            from marketpipe.execution.coinbase_simulator import CoinbaseRestSimulator

            cb_sim, bn_sim = CoinbaseRestSimulator(), BinanceRestSimulator()
            for sim in (cb_sim, bn_sim):
                await sim.start()
                self.simulators.append(sim)
            s.coinbase_url, s.binance_url = cb_sim.api_url, bn_sim.api_url
            log.info("simulated Coinbase REST at %s, Binance REST at %s", s.coinbase_url, s.binance_url)
        self.clients = build_clients(s)
        for sink in self.ctx.sinks:
            if sink.name == "db":  # the per-minute questions as views beside the tables
                from marketpipe.execution.queries import create_db_views

                await asyncio.to_thread(create_db_views, sink)  # type: ignore[arg-type]
        self._capture(
            RawFrame(CAPTURE_EXCHANGE, CONFIG_CONN, "in", self.ctx.clock(), config_frame(s.notionals))
        )
        log.info(
            "pricing market orders of %s on %s every %g s",
            " and ".join(str(n) for n in s.notionals),
            ", ".join(m.spec for m in s.markets),
            s.interval,
        )

    async def poll_once(self) -> None:
        """Fetch every market once (venues side by side), capture and price each body."""
        self.polls += 1
        by_venue = {v: [m for m in self.settings.markets if m.exchange == v] for v in self.clients}
        clock = serialized(self.ctx.clock)
        outcomes = await asyncio.gather(
            *(asyncio.to_thread(poll_venue, self.clients[v], ms, clock) for v, ms in by_venue.items())
        )
        for outcome in outcomes:
            for ref, frame in outcome.frames:
                self.fetched.add(ref.spec)
                self._capture(frame)
                if self.lake_uri is not None:
                    from marketpipe.execution.archive import write_snapshot

                    await asyncio.to_thread(
                        write_snapshot,
                        self.lake_uri,
                        ref.exchange,
                        ref.market,
                        frame,
                        self.settings.notionals,
                    )
                    self.archived += 1
            self.failures += len(outcome.failures)
            for spec, exc in outcome.rejected.items():
                if spec not in self.fetched:  # never worked: a wrong symbol or a geo-block, not an outage
                    self._drop_refused(spec, exc)

    def _drop_refused(self, spec: str, exc: Exception) -> None:
        """Stop polling a market the exchange refuses, with one line; the other markets keep being priced.
        The last one refused is the capability's ConfigError (the pipeline reports it the same way)."""
        message = f"execution market {spec} refused by the exchange: {exc}"
        left = tuple(m for m in self.settings.markets if m.spec != spec)
        if not left:
            raise ConfigError(message)
        log.error("%s; pricing the other markets", message)
        self.settings.markets = left

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll_once()
            delay = next_boundary(time.time(), self.settings.interval) - time.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(delay, 0.0))

    async def close(self) -> None:
        self.processor.finish()
        for client in self.clients.values():
            client.session.close()
        for sim in self.simulators:
            await sim.stop()

    def summary(self) -> str:
        requests = ", ".join(
            f"{v} {c.requests} (errors {dict(sorted(c.errors.items())) or 'none'})"
            for v, c in self.clients.items()
        )
        return (
            f"{self.processor.summary()}; polls {self.polls}, REST requests {requests}, markets missed "
            f"{self.failures}, raw snapshots archived {self.archived}"
        )

    def stats(self) -> Stats:
        return self.processor.stats


def create_service(ctx: RunContext) -> ExecutionService:
    return ExecutionService(ctx)


# ------------------------------------------------------------------------------------------ one minute
def price_minute(
    settings: ExecutionSettings,
    by_venue: Mapping[str, BookClient],
    lake_uri: str,
    pauses: dict[str, float],
    event_time: Any = None,
) -> dict[str, Any]:
    """Fetch every market once, archive the raw bodies, write the facts to the lake; returns the summary.

    What the per-minute Lambda (``marketpipe.aws.execution``) runs. ``pauses`` (epoch seconds per venue:
    a Binance ban, a Retry-After) are honoured, then updated in place with the pauses this minute caused:
    no request goes to a venue before its pause ends, across invocations.
    """
    from marketpipe.execution.archive import write_snapshot
    from marketpipe.sinks.lake_sink import LakeSink
    from marketpipe.tables import Table
    from marketpipe.timeutil import MonotonicClock

    rows: dict[Table, list[Any]] = {}

    def emit(table: Table, batch: list[Any]) -> None:
        rows.setdefault(table, []).extend(batch)

    processor = ExecutionProcessor(emit, settings.notionals)
    clock = serialized(MonotonicClock())
    summary: dict[str, Any] = {"time": event_time, "snapshots": 0, "skipped": {}, "failed": {}}
    active: dict[str, BookClient] = {}
    for venue, client in by_venue.items():
        paused = pauses.get(venue, 0.0) - time.time()
        if paused > 0:
            summary["skipped"][venue] = f"paused for another {paused:.0f} s (ban or Retry-After)"
            log.warning("%s: paused for another %.0f s; not polling", venue, paused)
        else:
            active[venue] = client
    with ThreadPoolExecutor(max_workers=max(len(active), 1)) as pool:
        futures = {
            venue: pool.submit(
                poll_venue, client, [m for m in settings.markets if m.exchange == venue], clock
            )
            for venue, client in active.items()
        }
    for venue, future in futures.items():
        client, outcome = active[venue], future.result()
        resume_in = max(client.resume_at, getattr(client, "banned_until", 0.0)) - client.clock()
        if resume_in > 0:
            pauses[venue] = time.time() + resume_in
        for ref, frame in outcome.frames:
            processor.process(frame)
            write_snapshot(lake_uri, ref.exchange, ref.market, frame, settings.notionals)
            summary["snapshots"] += 1
        summary["failed"].update(outcome.failures)
    sink = LakeSink(lake_uri)
    for table, batch in rows.items():
        sink.write(table, batch)
    sink.close()
    now = time.time()
    for venue in [v for v, t in pauses.items() if t <= now]:
        del pauses[venue]
    summary["rows"] = {t.name: len(b) for t, b in rows.items()}
    return summary
