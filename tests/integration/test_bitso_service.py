"""Settings, the CLI with both exchanges, a bad book, and the AWS path (sample a span, compact a window)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from marketpipe.aws import bitso_spreads
from marketpipe.bitso import lake as bitso_lake
from marketpipe.bitso.service import MonitorSettings, sample_span, settings_from
from marketpipe.bitso.simulator import BitsoSimulator
from marketpipe.cli import main
from marketpipe.errors import ConfigError


def test_settings_flags_over_env_over_defaults() -> None:
    defaults = settings_from({}, {})
    assert defaults.books == ("btc_mxn", "usd_mxn") and [str(t) for t in defaults.thresholds] == [
        "1.0",
        "0.5",
        "0.1",
    ]
    assert defaults.window_seconds == 600 and defaults.collector.rest_per_minute == 50
    env = {
        "MARKETPIPE_BITSO_BOOKS": "eth_mxn", "MARKETPIPE_SPREAD_THRESHOLDS": "2", "MARKETPIPE_WEBHOOK_URLS": "http://a,http://b",
        "MARKETPIPE_BITSO_WS_URL": "ws://x", "MARKETPIPE_BITSO_API_URL": "http://y",
    }  # fmt: skip
    flags = {"opt_bitso_books": "btc_mxn", "opt_bitso_rest_per_minute": 30, "opt_bitso_stale_after": 9,
             "opt_bitso_lockout_seconds": 61, "opt_bitso_silence_limit": 2.5}  # fmt: skip
    s = settings_from(flags, env)
    assert (
        s.books == ("btc_mxn",)
        and [str(t) for t in s.thresholds] == ["2"]
        and s.webhooks == ("http://a", "http://b")
    )
    assert (s.collector.ws_url, s.collector.api_url, s.collector.rest_per_minute) == (
        "ws://x",
        "http://y",
        30,
    )
    assert (s.collector.stale_after, s.collector.lockout_seconds, s.silence_limit) == (9.0, 61.0, 2.5)
    for bad in (
        {"opt_bitso_books": "BTC"}, {"opt_bitso_books": ","}, {"opt_bitso_rest_per_minute": 61},
        {"opt_bitso_window_seconds": 45}, {"opt_bitso_stale_after": "x"}, {"opt_bitso_silence_limit": -1},
        {"opt_webhooks": ["nope"]},
    ):  # fmt: skip
        with pytest.raises(ConfigError):
            settings_from(bad, {})


def test_run_with_both_exchanges_simulated(tmp_path: Path) -> None:
    code = main(["run", "--exchanges", "bitfinex,bitso", "--simulate", "--duration", "4",
                 "--data-dir", str(tmp_path), "--bitso-window-seconds", "60"])  # fmt: skip
    assert code == 0
    with sqlite3.connect(tmp_path / "marketpipe.db") as db:
        assert db.execute("SELECT count(*) FROM bitfinex_trades").fetchone()[0] > 0
        rows = db.execute("SELECT book, source FROM bitso_spreads").fetchall()
    assert {b for b, _ in rows} == {"btc_mxn", "usd_mxn"} and len(rows) >= 4


def test_unknown_book_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--exchanges", "bitso", "--simulate", "--bitso-books", "nope_mxn", "--duration", "5",
                 "--data-dir", str(tmp_path)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown Bitso book nope_mxn" in err and "Traceback" not in err


def test_aws_path_samples_a_span_then_compacts_a_full_window(tmp_path: Path) -> None:
    async def sample() -> tuple[list, dict]:  # type: ignore[type-arg]
        async with BitsoSimulator(seed=9, holes_per_minute=0) as sim:
            settings = MonitorSettings()
            settings.collector.ws_url, settings.collector.api_url = sim.ws_url, sim.api_url
            sim.inject("widen", book="btc_mxn", spread=0.3, duration=10)
            # three seconds after a generous start-up margin (connect, first REST), inside one minute as the
            # Lambda's spans are: a span across a minute boundary would be staged as two chunks
            start = int(time.time()) + 3
            if start % 60 > 57:
                start = start // 60 * 60 + 60
            return await sample_span(settings, start, start + 3, state={"usd_mxn": ["0.1"]})

    observations, state = asyncio.run(sample())
    assert len(observations) == 6 and {o.source for o in observations} <= {"websocket", "rest"}
    assert state["btc_mxn"] == ["0.1"], "the widened book crossed 0.1 %"
    second = observations[0].second
    minute, window = second // 60 * 60, second // 600 * 600
    staging, lake = str(tmp_path / "staging"), str(tmp_path / "lake")
    bitso_lake.write_minute(staging, minute, observations, 600)
    bitso_lake.save_state(str(tmp_path / "state.json"), state)
    assert bitso_lake.load_state(str(tmp_path / "state.json")) == state
    assert bitso_lake.load_state(str(tmp_path / "none.json")) == {}
    env = {"MARKETPIPE_BITSO_STAGING_URI": staging, "MARKETPIPE_BITSO_LAKE_URI": lake}
    from datetime import UTC, datetime

    fired = datetime.fromtimestamp(window + 600 + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    summary = bitso_spreads.handle({"action": "compact", "time": fired}, env)
    assert (
        summary["chunks"] == 1 and summary["rows"] == 1200 and summary["missing"] == 1200 - len(observations)
    )
    files = sorted(Path(lake).rglob("*.parquet"))
    assert len(files) == 2
    for f in files:
        table = pq.read_table(f)
        assert table.num_rows == 600, "one row per second of the window, missing seconds marked"
        assert table.column("orderbook_timestamp").to_pylist() == sorted(
            table.column("orderbook_timestamp").to_pylist()
        )
    with pytest.raises(ConfigError):
        bitso_spreads.handle({"action": "explode"}, env)
