"""The real collector against the loopback simulator, with every fault the exchange can throw.

Each test runs ``run_live`` for a few seconds, injects one fault, then checks what a user would:
the fault was detected and logged, rows kept flowing afterwards, every stored book row is a state a
later checksum confirmed (judged independently from the raw capture), and no trade is missing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marketpipe.bitfinex.processor import Stats
from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.config import RunConfig
from marketpipe.pipeline import run_live
from marketpipe.sinks.raw_capture import iter_raw_frames
from marketpipe.tables import BITFINEX_BOOK
from tests.support.reference_bitfinex import Judgement, judge

SYMBOLS = ("tBTCUSD", "tETHUSD")


@dataclass
class LiveRun:
    stats: Stats
    sim: BitfinexSimulator
    data_dir: Path
    fault_at_us: int
    judgement: Judgement

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "marketpipe.db")

    def book_rows(self) -> list[tuple[Any, ...]]:
        with self.db() as db:
            return db.execute("SELECT * FROM bitfinex_book ORDER BY received_ts").fetchall()

    def trade_ids(self, symbol: str) -> list[int]:
        with self.db() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT trade_id FROM bitfinex_trades WHERE symbol = ? ORDER BY trade_id", (symbol,)
                )
            ]


def _us(text: str) -> int:
    from datetime import datetime

    from marketpipe.sinks.sql_sink import naive_to_us

    return naive_to_us(datetime.fromisoformat(text))


async def _run(
    tmp_path: Path,
    fault: str | None,
    *,
    at: float = 1.5,
    duration: float = 5.0,
    fault_args: dict[str, Any] | None = None,
    **config_overrides: Any,
) -> LiveRun:
    sim = BitfinexSimulator(
        SYMBOLS,
        seed=7,
        updates_per_second=40,
        trades_per_second=4,
        heartbeat_interval=0.5,
        checksum_interval=0.3,
    )
    await sim.start()
    config = RunConfig(
        data_dir=tmp_path,
        duration=duration,
        options={"bitfinex_ws_url": sim.ws_url, "bitfinex_api_url": sim.api_url},
        stale_after=3.0,
        drain_timeout=3.0,
        subscription_retry=0.3,
        flush_interval=0.2,
    )
    for key, value in config_overrides.items():
        if key == "options":  # more options beside the simulator's URLs
            config.options.update(value)
        else:
            setattr(config, key, value)
    fault_at = [0]

    async def inject() -> None:
        await asyncio.sleep(at)
        from marketpipe.timeutil import now_us

        fault_at[0] = now_us()
        if fault:
            sim.inject(fault, **(fault_args or {}))

    injector = asyncio.create_task(inject())
    try:
        stats = (await run_live(config))["bitfinex"]
    finally:
        injector.cancel()
        await sim.stop()
    judgement = judge(iter_raw_frames([tmp_path / "raw"]))
    return LiveRun(stats, sim, tmp_path, fault_at[0], judgement)


def live(tmp_path: Path, fault: str | None, **kwargs: Any) -> LiveRun:
    return asyncio.run(_run(tmp_path, fault, **kwargs))


def assert_books_verified_and_recovered(run: LiveRun) -> None:
    """Every stored row is a confirmed state with exactly its levels; rows kept coming after the fault."""
    rows = run.book_rows()
    assert rows, "no book rows stored"
    names = BITFINEX_BOOK.column_names
    stored = set()
    for row in rows:
        record = dict(zip(names, row, strict=True))
        key = (record["symbol"], _us(record["received_ts"]))
        stored.add(key)
        assert key not in run.judgement.refuted, f"stored a refuted state {key}"
        assert key in run.judgement.confirmed, f"stored a state no checksum confirmed {key}"
        assert tuple(row[4:]) == run.judgement.confirmed[key], f"levels differ from the wire at {key}"
    assert stored == set(run.judgement.confirmed), "a confirmed state is missing from the store"
    for symbol in ("BTC-USD", "ETH-USD"):
        after = [k for k in stored if k[0] == symbol and k[1] > run.fault_at_us + 500_000]
        assert after, f"{symbol}: no book rows after the fault: not recovered"


def assert_no_trade_lost(run: LiveRun) -> None:
    for wire, symbol in (("tBTCUSD", "BTC-USD"), ("tETHUSD", "ETH-USD")):
        stored = run.trade_ids(symbol)
        assert stored, f"no {symbol} trades"
        assert len(stored) == len(set(stored))
        truth = [t[0] for t in run.sim.trades(wire) if stored[0] <= t[0] <= stored[-1]]
        missing = sorted(set(truth) - set(stored))
        assert not missing, f"{symbol}: {len(missing)} trades lost, e.g. {missing[:5]}"


def test_clean_session(tmp_path: Path) -> None:
    run = live(tmp_path, None, duration=3.0)
    assert run.stats.checksum_ok > 3
    assert run.stats.checksum_mismatches == 0 and run.stats.gaps == 0
    assert run.judgement.checksum_mismatches == 0
    assert_books_verified_and_recovered(run)
    assert_no_trade_lost(run)
    # CSV and lake hold the same rows as the database
    csv_lines = (tmp_path / "csv" / "bitfinex_book").glob("*.csv")
    assert sum(len(p.read_text().splitlines()) - 1 for p in csv_lines) == len(run.book_rows())
    from marketpipe.sinks.lake_sink import LakeSink

    assert LakeSink(str(tmp_path / "lake")).read_table("bitfinex_book").num_rows == len(run.book_rows())


def test_dropped_frame_is_a_gap_then_a_fresh_snapshot(tmp_path: Path, caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        run = live(tmp_path, "drop_frame", fault_args={"symbol": "tBTCUSD"})
    assert run.stats.gaps >= 1 and run.judgement.gaps >= 1
    assert run.sim.connections_accepted >= 2
    assert "sequence gap" in caplog.text
    assert_books_verified_and_recovered(run)
    assert_no_trade_lost(run)


def test_corrupted_level_is_refuted_and_never_stored(tmp_path: Path, caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        run = live(tmp_path, "corrupt_level", fault_args={"symbol": "tETHUSD"})
    assert run.stats.checksum_mismatches >= 1
    assert run.judgement.refuted, "the corrupted state should have been refuted"
    assert "checksum mismatch on ETH-USD" in caplog.text
    assert "resubscribing book tETHUSD" in caplog.text
    assert_books_verified_and_recovered(run)


def test_abrupt_close_reconnects_and_backfills_trades(tmp_path: Path, caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        run = live(tmp_path, "close")
    assert run.sim.connections_accepted >= 2
    assert "disconnected" in caplog.text and "backfill tBTCUSD" in caplog.text
    assert any(f.conn.startswith("rest:/v2/trades/") for f in iter_raw_frames([tmp_path / "raw"]))
    assert_books_verified_and_recovered(run)
    assert_no_trade_lost(run)


def test_info_20051_reconnects(tmp_path: Path) -> None:
    run = live(tmp_path, "info_20051", fault_args={"duration": 0.3})
    assert run.stats.reconnect_infos >= 1
    assert run.sim.connections_accepted >= 2
    assert_books_verified_and_recovered(run)
    assert_no_trade_lost(run)


def test_maintenance_pauses_then_resubscribes_everything(tmp_path: Path, caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        run = live(tmp_path, "maintenance", fault_args={"duration": 1.0}, duration=5.0)
    assert run.stats.maintenance >= 1
    assert "pausing until info 20061" in caplog.text
    assert "resubscribing all" in caplog.text
    assert_books_verified_and_recovered(run)


def test_silent_connection_is_declared_dead(tmp_path: Path, caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        run = live(tmp_path, "silence", at=1.0, duration=6.0, fault_args={"duration": 10.0}, stale_after=1.5)
    assert "stale connection" in caplog.text
    assert run.sim.connections_accepted >= 2
    assert_books_verified_and_recovered(run)
    assert_no_trade_lost(run)


@pytest.mark.parametrize("fault", ["refuse_subscription", "subscription_limit"])
def test_refused_subscription_is_retried(tmp_path: Path, caplog: Any, fault: str) -> None:
    with caplog.at_level(logging.INFO):
        run = live(tmp_path, fault, at=0.0, fault_args={"symbol": "tETHUSD"}, duration=4.0)
    assert run.stats.subscribe_errors >= 1
    assert (
        "subscription to book tETHUSD refused" in caplog.text
        or "subscription to trades tETHUSD refused" in caplog.text
    )
    assert "retrying subscription" in caplog.text
    assert_books_verified_and_recovered(run)


def test_unknown_symbol_is_a_clear_startup_error(tmp_path: Path) -> None:
    from marketpipe.errors import ConfigError

    async def go() -> None:
        sim = BitfinexSimulator(SYMBOLS, seed=1)
        await sim.start()
        try:
            config = RunConfig(
                data_dir=tmp_path,
                duration=5,
                options={
                    "bitfinex_ws_url": sim.ws_url,
                    "bitfinex_api_url": sim.api_url,
                    "opt_symbols": ["BTC-USD", "NOPE-USD"],
                },
            )
            await run_live(config)
        finally:
            await sim.stop()

    with pytest.raises(ConfigError, match="unknown Bitfinex symbol NOPE-USD"):
        asyncio.run(go())


def test_a_listed_pair_the_exchange_refuses_is_left_out_of_all_symbols(
    tmp_path: Path, caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpipe.bitfinex import service

    async def listed(api_url: str) -> list[str]:  # the pair list still names a pair delisted since
        return ["tBTCUSD", "tETHUSD", "tNOPE:USD"]

    monkeypatch.setattr(service, "listed_symbols", listed)
    run = live(tmp_path, None, duration=3.0, options={"opt_symbols": "all"})
    assert "listed tNOPE:USD but refuses it" in caplog.text
    with run.db() as db:
        symbols = {r[0] for r in db.execute("SELECT DISTINCT symbol FROM bitfinex_quotes")}
    assert symbols == {"BTC-USD", "ETH-USD"}
