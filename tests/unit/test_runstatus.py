"""``marketpipe run``'s status lines: what they count and how they read."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from marketpipe import envnames
from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame, Row
from marketpipe.runstatus import STATUS_INTERVAL, RunStatus, arrival_column, status_interval
from marketpipe.tables import TABLES, Table

S = 1_000_000
NOW_US = 1_795_839_026 * S


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_interval_defaults_to_30_s_and_env_overrides_it() -> None:
    assert status_interval({}) == STATUS_INTERVAL == 30.0
    assert status_interval({envnames.STATUS_INTERVAL: "2.5"}) == 2.5
    assert status_interval({envnames.STATUS_INTERVAL: "0"}) is None  # off
    for bad in ("soon", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match=envnames.STATUS_INTERVAL):
            status_interval({envnames.STATUS_INTERVAL: bad})


def test_arrival_column_is_received_ts_or_the_tables_own() -> None:
    assert arrival_column(TABLES["bitfinex_book"]) == "received_ts"
    assert arrival_column(TABLES["bitso_spreads"]) == "orderbook_timestamp"
    assert arrival_column(TABLES["execution_dim_exchange"]) is None


def test_lines_count_frames_rows_newest_and_the_services_own_counters() -> None:
    clock = Clock()
    written: dict[str, int] = {}
    status = RunStatus(written, clock=clock, wall_us=lambda: NOW_US)
    captured: list[RawFrame] = []
    emitted: list[tuple[Table, list[Row]]] = []
    capture = status.counting_capture("bitfinex", captured.append)
    emit = status.counting_emit("bitfinex", lambda t, r: emitted.append((t, r)))
    service = SimpleNamespace(
        collector=SimpleNamespace(reconnects=2),
        stats=lambda: SimpleNamespace(resyncs=1, frames=999),
    )
    status.attach("bitfinex", service)

    for i in range(30):
        capture(RawFrame("bitfinex", "c1", "in", NOW_US - S, f"[{i}]"))
    capture(RawFrame("bitfinex", "c1", "out", NOW_US - S, "{}"))  # our own subscriptions don't count
    trades = TABLES["bitfinex_trades"]
    ts = trades.index["received_ts"]
    row: list[Any] = [None] * len(trades.columns)
    row[ts] = NOW_US - 3 * S
    older = list(row)
    older[ts] = NOW_US - 9 * S
    emit(trades, [tuple(older), tuple(row)])
    emit(trades, [])
    written["bitfinex_trades"] = 2
    written["bitso_spreads"] = 5  # another service's table: not bitfinex's rows
    clock.now += 10.0

    assert len(captured) == 31 and len(emitted) == 2  # the wrapped callbacks still do their job
    assert status.lines() == [
        "status bitfinex: 3.0 frames/s, rows written 2 (+2), newest row 3.0 s old, reconnects 2, "
        "resyncs 1, alerts -"
    ]
    clock.now += 5.0
    written["bitfinex_trades"] = 7
    (values,) = status.snapshot().values()
    assert values["frames_per_s"] == 0.0 and values["rows_written"] == 7 and values["rows_new"] == 5


def test_a_service_without_rows_collector_or_stats_reads_as_none_and_dashes() -> None:
    status = RunStatus({}, clock=Clock(), wall_us=lambda: NOW_US)
    status.attach("execution", SimpleNamespace())
    assert status.lines() == [
        "status execution: 0.0 frames/s, rows written 0 (+0), newest row none yet, reconnects -, "
        "resyncs -, alerts -"
    ]


def test_bitso_rows_are_dated_by_their_sampled_second() -> None:
    status = RunStatus({"bitso_spreads": 1}, clock=Clock(), wall_us=lambda: NOW_US)
    emit = status.counting_emit("bitso", lambda t, r: None)
    spreads = TABLES["bitso_spreads"]
    row: list[Any] = [None] * len(spreads.columns)
    row[spreads.index["orderbook_timestamp"]] = "2026-11-28T04:10:24+00:00"  # NOW_US - 2 s
    emit(spreads, [tuple(row)])
    status.attach("bitso", SimpleNamespace(stats=lambda: SimpleNamespace(alerts=3)))
    (values,) = status.snapshot().values()
    assert values["newest_row_age_s"] == pytest.approx(2.0)
    assert values["alerts"] == 3 and values["reconnects"] is None


def test_a_failing_status_never_stops_the_run(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Any:
        raise RuntimeError("stats gone")

    status = RunStatus({}, clock=Clock(), wall_us=lambda: NOW_US)
    status.attach("bitfinex", SimpleNamespace(stats=broken))

    async def two_intervals() -> None:
        task = asyncio.create_task(status.log_every(0.01))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()

    with caplog.at_level(logging.WARNING, logger="marketpipe.status"):
        asyncio.run(two_intervals())
    assert "no status line: RuntimeError: stats gone" in caplog.text
