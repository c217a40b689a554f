"""Live status: ``marketpipe run``'s periodic status lines, and ``marketpipe status`` over what is stored."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from pathlib import Path

import orjson
import pytest

from marketpipe import envnames
from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.cli import main
from marketpipe.config import RunConfig
from marketpipe.pipeline import run_live

STATUS_LINE = re.compile(
    r"status (?P<name>\w+): (?P<rate>[\d.]+) frames/s, rows written (?P<rows>\d+) \(\+\d+\), "
    r"newest row (?P<newest>none yet|[\d.]+ s old), reconnects (?P<reconnects>\d+|-), "
    r"resyncs (?P<resyncs>\d+|-), alerts (?P<alerts>\d+|-)$"
)


def test_run_logs_a_status_line_per_exchange_at_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(envnames.STATUS_INTERVAL, "1")
    # a tiny spread threshold: the simulated books cross it, so the run sends (and records) alerts
    argv = ["run", "--simulate", "--exchanges", "bitfinex,bitso", "--spread-thresholds", "0.0001"]
    argv += ["--duration", "3.5"]
    assert main([*argv, "--data-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    lines = [
        line.split("marketpipe.status: ", 1)[1] for line in err.splitlines() if "marketpipe.status:" in line
    ]
    matches = [STATUS_LINE.match(line) for line in lines]
    assert all(matches), lines
    by_name: dict[str, list[re.Match[str]]] = {}
    for m in matches:
        assert m is not None
        by_name.setdefault(m["name"], []).append(m)
    assert set(by_name) == {"bitfinex", "bitso"}
    assert all(len(found) >= 2 for found in by_name.values()), lines  # every second for 3.5 s
    for name, found in by_name.items():
        last = found[-1]
        assert float(found[0]["rate"]) > 0, name  # the simulators stream from the start
        assert int(last["rows"]) > 0 and last["newest"].endswith("s old"), name
        # Bitso's rows carry the book's own timestamp, which a loaded machine's simulator can leave
        # seconds behind (12.5 s seen in CI): fresh means well inside a liveness threshold here
        assert float(last["newest"].split()[0]) < 30, name
        assert last["reconnects"] == "0", name
    assert by_name["bitfinex"][-1]["resyncs"] == "0" and by_name["bitfinex"][-1]["alerts"] == "-"
    assert by_name["bitso"][-1]["resyncs"] == "-" and int(by_name["bitso"][-1]["alerts"]) > 0

    # what the run stored, as `marketpipe status --json` reports it
    assert main(["status", "--data-dir", str(tmp_path), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    tables = {t["table"]: t for t in doc["tables"]}
    assert set(tables) == {"bitfinex_trades", "bitfinex_quotes", "bitfinex_book", "bitso_spreads"}
    with sqlite3.connect(tmp_path / "marketpipe.db") as db:
        for name, t in tables.items():
            column = "orderbook_timestamp" if name == "bitso_spreads" else "received_ts"
            total = db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
            today = db.execute(f"SELECT COUNT(*) FROM {name} WHERE {column} >= ?", (doc["day"],)).fetchone()[
                0
            ]
            assert t["rows_total"]["db"] == total > 0, name
            assert t["rows_today"] == {"db": today, "csv": today, "lake": today}, name
            assert t["newest_age_s"] < 30, name
    assert {r["exchange"] for r in doc["raw"]} == {"bitfinex", "bitso"}
    alerts = [a for a in doc["alerts"] if a["source"] == "bitso"]
    assert alerts and all(a["text"].startswith(("ALERT bitso", "NOTICE bitso")) for a in alerts), doc[
        "alerts"
    ]


def test_a_bad_status_interval_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(envnames.STATUS_INTERVAL, "often")
    assert main(["run", "--simulate", "--duration", "1", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"marketpipe: error: {envnames.STATUS_INTERVAL} must be a number" in err
    assert "Traceback" not in err


async def _run_with_a_dropped_connection(data_dir: Path) -> None:
    sim = BitfinexSimulator(("tBTCUSD", "tETHUSD"), seed=7, updates_per_second=40, heartbeat_interval=0.5)
    await sim.start()
    config = RunConfig(
        data_dir=data_dir,
        duration=4.0,
        sinks=["db"],
        options={"bitfinex_ws_url": sim.ws_url, "bitfinex_api_url": sim.api_url},
        flush_interval=0.2,
    )

    async def drop() -> None:
        await asyncio.sleep(1.0)
        sim.inject("close")

    dropper = asyncio.create_task(drop())
    try:
        await run_live(config)
    finally:
        dropper.cancel()
        await sim.stop()


def test_status_lines_count_the_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(envnames.STATUS_INTERVAL, "0.5")
    with caplog.at_level(logging.INFO, logger="marketpipe.status"):
        asyncio.run(_run_with_a_dropped_connection(tmp_path))
    lines = [r.getMessage() for r in caplog.records if r.name == "marketpipe.status"]
    matches = [m for m in map(STATUS_LINE.match, lines) if m is not None]
    assert len(matches) == len(lines) >= 5, lines
    assert matches[0]["reconnects"] == "0" and matches[-1]["reconnects"] == "1", lines
