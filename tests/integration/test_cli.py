"""The ``marketpipe`` command as a user meets it: exit codes, one-line errors, signals, replay."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.cli import build_parser, main
from marketpipe.config import RunConfig
from marketpipe.pipeline import run_live
from marketpipe.sinks.raw_capture import iter_raw_frames
from tests.support.reference_bitfinex import judge

MARKETPIPE = [sys.executable, "-m", "marketpipe.cli"]


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")
        }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--exchanges", "kraken"], "unknown exchange 'kraken'"),
        (["run", "--symbols", "BTC-USD,@@"], "invalid Bitfinex symbol '@@'"),
        (["run", "--symbols", "all,BTC-USD"], "'all' stands alone"),
        (["run", "--sinks", "csv,parquet"], "unknown sink 'parquet'"),
        (["run", "--duration", "-1"], "--duration must be positive"),
        (["run", "--db", "mysql+pymysql://u:secret@127.0.0.1:1/x", "--duration", "1"], "cannot"),
        (["replay", "/nonexistent/capture.jsonl"], "nonexistent"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("marketpipe: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert "Traceback" not in err
    assert "secret" not in err


def test_run_simulate_with_duration_exits_0_and_writes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No flags, no config file: every capability runs (Bitfinex, Bitso, Binance, execution prices)."""
    monkeypatch.chdir(tmp_path)  # no ./marketpipe.toml: the built-in defaults
    monkeypatch.delenv("MARKETPIPE_CONFIG", raising=False)
    code = main(["run", "--simulate", "--duration", "3", "--data-dir", str(tmp_path)])
    assert code == 0
    stored = counts(tmp_path / "marketpipe.db")
    assert stored["bitfinex_book"] > 0 and stored["bitfinex_quotes"] > 0 and stored["bitfinex_trades"] > 0
    assert list((tmp_path / "raw" / "bitfinex").glob("*/*.jsonl"))
    for table in stored:
        assert list((tmp_path / "csv" / table).glob(f"{table}-*.csv"))
        assert list((tmp_path / "lake" / table).rglob("*.parquet"))
    with sqlite3.connect(tmp_path / "marketpipe.db") as conn:
        others = {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("bitso_spreads", "binance_mini_tickers", "binance_depth20", "execution_quotes")
        }
    assert all(others.values()), others
    for exchange in ("bitso", "binance", "execution"):
        assert list((tmp_path / "raw" / exchange).glob("*/*.jsonl")), exchange


def test_a_refused_capability_stops_alone_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exchange refuses a book: that capability stops with one error line, the others keep running;
    alone (``--exchanges bitso``), the same refusal is the run's one error line and exit 2."""
    argv = ["run", "--simulate", "--bitso-books", "xyz_mxn", "--duration", "2", "--sinks", "db"]
    assert main([*argv, "--exchanges", "bitfinex,bitso", "--data-dir", str(tmp_path / "both")]) == 0
    err = capsys.readouterr().err
    refused = [line for line in err.splitlines() if "xyz_mxn" in line and "ERROR" in line]
    assert len(refused) == 1 and "bitso stopped: unknown Bitso book xyz_mxn" in refused[0], err
    assert "the other capabilities keep running" in refused[0]
    assert counts(tmp_path / "both" / "marketpipe.db")["bitfinex_trades"] > 0

    assert main([*argv, "--exchanges", "bitso", "--data-dir", str(tmp_path / "alone")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "unknown Bitso book xyz_mxn" in line]
    assert len(errors) == 1 and errors[0].startswith("marketpipe: error: unknown Bitso book xyz_mxn"), err
    assert "Traceback" not in err and "keep running" not in err


def test_a_geo_blocked_exchange_is_one_line_and_the_others_keep_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A websocket handshake answered HTTP 451 (a geo-block) is not retried forever: one line, the
    capability stops, Bitfinex keeps streaming."""

    async def go() -> dict[str, object]:
        async def blocked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(blocked, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sim = BitfinexSimulator(("tBTCUSD",), seed=5, trades_per_second=20, checksum_interval=0.3)
        await sim.start()
        try:
            config = RunConfig(
                exchanges=["bitfinex", "binance"],
                data_dir=tmp_path,
                duration=2.0,
                sinks=["db"],
                options={"bitfinex_ws_url": sim.ws_url, "bitfinex_api_url": sim.api_url,
                         "opt_symbols": "BTC-USD", "opt_binance_ws_url": f"ws://127.0.0.1:{port}"},
            )  # fmt: skip
            return await run_live(config)
        finally:
            await sim.stop()
            server.close()

    with caplog.at_level(logging.WARNING):
        stats = asyncio.run(go())
    assert set(stats) == {"bitfinex", "binance"}
    blocked = [r.getMessage() for r in caplog.records if "451" in r.getMessage()]
    assert len(blocked) == 1, blocked
    assert blocked[0].startswith("binance stopped: Binance refused the connection to ws://127.0.0.1:")
    assert "HTTP 451" in blocked[0] and blocked[0].endswith("the other capabilities keep running")
    with sqlite3.connect(tmp_path / "marketpipe.db") as db:
        assert db.execute("SELECT COUNT(*) FROM bitfinex_trades").fetchone()[0] > 0


def test_run_all_symbols_streams_every_pair_the_exchange_lists(tmp_path: Path) -> None:
    argv = ["run", "--simulate", "--exchanges", "bitfinex", "--symbols", "all", "--sinks", "db"]
    assert main([*argv, "--duration", "3", "--data-dir", str(tmp_path)]) == 0
    with sqlite3.connect(tmp_path / "marketpipe.db") as conn:
        symbols = {row[0] for row in conn.execute("SELECT DISTINCT symbol FROM bitfinex_quotes")}
    assert symbols == {"BTC-USD", "ETH-USD"}  # the simulator's pairs, from its pair list


def test_sigterm_stops_cleanly_and_flushes_everything(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*MARKETPIPE, "run", "--simulate", "--data-dir", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list((tmp_path / "raw").rglob("*.jsonl")):
            time.sleep(0.2)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "stopped:" in err
    judgement = judge(iter_raw_frames([tmp_path / "raw"]))
    stored = counts(tmp_path / "marketpipe.db")
    assert stored["bitfinex_book"] == len(judgement.confirmed) > 0
    assert stored["bitfinex_trades"] == sum(len(ids) for ids in judgement.trade_ids.values())


def test_replay_twice_adds_nothing_and_ignores_what_it_does_not_know(tmp_path: Path) -> None:
    live_dir, replay_dir = tmp_path / "live", tmp_path / "replay"
    assert main(["run", "--simulate", "--duration", "3", "--data-dir", str(live_dir)]) == 0
    capture = sorted(str(p) for p in (live_dir / "raw" / "bitfinex").glob("*/*.jsonl"))  # an hour per file
    extra = tmp_path / "extra.jsonl"
    noise = [
        {
            "exchange": "bitfinex",
            "conn": "z",
            "dir": "in",
            "received_ts": "2026-01-01T00:00:00.000001Z",
            "frame": '{"event":"subscribed","channel":"ticker","chanId":5,"symbol":"tBTCUSD"}',
        },
        {
            "exchange": "bitfinex",
            "conn": "z",
            "dir": "in",
            "received_ts": "2026-01-01T00:00:00.000002Z",
            "frame": "[5,[1,2,3,4,5,6,7,8,9,10]]",
        },
        {
            "exchange": "kraken",
            "conn": "k",
            "dir": "in",
            "received_ts": "2026-01-01T00:00:00.000003Z",
            "frame": "{}",
        },
    ]
    extra.write_bytes(b"".join(orjson.dumps(n) + b"\n" for n in noise) + b"this line is not json\n")
    assert main(["replay", *capture, str(extra), "--data-dir", str(replay_dir)]) == 0
    first = counts(replay_dir / "marketpipe.db")
    assert first == counts(live_dir / "marketpipe.db")
    assert main(["replay", *capture, "--data-dir", str(replay_dir)]) == 0
    assert counts(replay_dir / "marketpipe.db") == first
    for table in first:
        live_csv = [(p.name, p.read_text()) for p in sorted((live_dir / "csv" / table).glob("*.csv"))]
        replay_csv = [(p.name, p.read_text()) for p in sorted((replay_dir / "csv" / table).glob("*.csv"))]
        assert replay_csv == live_csv and live_csv


def test_restart_backfills_trades_missed_while_down(tmp_path: Path) -> None:
    async def go() -> list[int]:
        sim = BitfinexSimulator(
            ("tBTCUSD",),
            seed=3,
            updates_per_second=20,
            trades_per_second=20,
            heartbeat_interval=0.5,
            checksum_interval=0.3,
        )
        await sim.start()
        try:
            for _ in range(2):
                config = RunConfig(
                    data_dir=tmp_path,
                    duration=1.5,
                    options={
                        "bitfinex_ws_url": sim.ws_url,
                        "bitfinex_api_url": sim.api_url,
                        "opt_symbols": ["BTC-USD"],
                    },
                    drain_timeout=2.0,
                )
                await run_live(config)
                await asyncio.sleep(2.5)  # ~50 trades happen while marketpipe is down
            return [t[0] for t in sim.trades("tBTCUSD")]
        finally:
            await sim.stop()

    truth = asyncio.run(go())
    with sqlite3.connect(tmp_path / "marketpipe.db") as db:
        stored = [r[0] for r in db.execute("SELECT trade_id FROM bitfinex_trades ORDER BY trade_id")]
    window = [t for t in truth if stored[0] <= t <= stored[-1]]
    assert stored == window, "trades made while marketpipe was stopped are missing"
    assert len(window) > 60


def test_simulate_command_serves_until_its_duration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--port", "0", "--duration", "0.5", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "export MARKETPIPE_BITFINEX_WS_URL=ws://127.0.0.1:" in out
    assert "export MARKETPIPE_BITSO_API_URL=http://127.0.0.1:" in out
    assert "export MARKETPIPE_PLIVO_API_URL=http://127.0.0.1:" in out
    assert "export MARKETPIPE_BINANCE_WS_URL=ws://127.0.0.1:" in out
    assert "export MARKETPIPE_COINBASE_API_URL=http://127.0.0.1:" in out


def test_run_help_shows_clean_metavars(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--execution-notionals LIST" in out
    assert "OPT_" not in out  # no option shows its internal dest as its placeholder
    run = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    for action in run._actions:
        if action.dest.startswith("opt_") and action.nargs != 0:
            assert action.metavar, f"{action.option_strings[0]} has no metavar"
