"""The mini-ticker benchmark's capture replays completely: every generated event becomes one stored row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from benchmarks.bench_minitickers import generate, pipeline_rate, processor_rate

from marketpipe.config import RunConfig
from marketpipe.replay import replay


def test_generated_capture_replays_every_event_once(tmp_path: Path) -> None:
    events = generate(tmp_path / "session", frames=5, tickers=50)
    assert events == 250
    replay([tmp_path / "session"], RunConfig(data_dir=tmp_path / "out", sinks=["db"]))
    with sqlite3.connect(tmp_path / "out" / "marketpipe.db") as db:
        assert (
            db.execute("SELECT count(*), count(DISTINCT symbol) FROM binance_mini_tickers").fetchone()[0]
            == 250
        )
    assert processor_rate(tmp_path / "session") > 0
    assert pipeline_rate(tmp_path / "session", events, "db") > 0
