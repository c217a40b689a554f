"""``replay`` split over worker processes writes exactly what a single-process replay writes.

A replay with ``processes`` > 1 gives each group of sinks its own process (each reads the capture and
runs its own processor). These tests compare the stores a user would look at: CSV bytes, SQL rows,
Parquet rows and file names; and check idempotency across process counts, that a bad frame is logged
once, and that a worker's failure reaches the caller.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from benchmarks.generate_session import generate

from marketpipe.config import RunConfig
from marketpipe.errors import ConfigError
from marketpipe.replay import _sink_groups, replay
from marketpipe.sinks.lake_sink import LakeSink

TABLES = ("bitfinex_book", "bitfinex_quotes", "bitfinex_trades")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("session")
    generate(root, frames=3_000, seed=11)
    return root / "raw"


def stores(data_dir: Path) -> dict[str, Any]:
    """Everything a user would compare: CSV bytes per file, SQL rows, lake rows and files."""
    out: dict[str, Any] = {}
    for path in sorted((data_dir / "csv").rglob("*.csv")):
        out[str(path.relative_to(data_dir))] = path.read_bytes()
    with sqlite3.connect(data_dir / "marketpipe.db") as con:
        out["db journal"] = con.execute("PRAGMA journal_mode").fetchone()[0]  # WAL again after a replay
        for table in TABLES:
            out[f"db:{table}"] = con.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    lake = LakeSink(str(data_dir / "lake"))
    for table in TABLES:
        out[f"lake:{table}"] = lake.read_table(table).to_pylist()
    out["lake files"] = sorted(str(p.relative_to(data_dir)) for p in (data_dir / "lake").rglob("*.parquet"))
    return out


def run(capture: Path, data_dir: Path, processes: int, **config: Any) -> dict[str, Any]:
    return replay([capture], RunConfig(data_dir=data_dir, **config).validate(), processes=processes)


def test_two_and_three_processes_write_exactly_what_one_process_writes(capture: Path, tmp_path: Path) -> None:
    run(capture, tmp_path / "one", processes=1)
    expected = stores(tmp_path / "one")
    assert len(expected["db:bitfinex_book"]) > 1_000
    assert expected["db journal"] == "wal"
    for processes in (2, 3):
        result = run(capture, tmp_path / str(processes), processes=processes)
        assert result["bitfinex"].stats.gaps == 0
        assert stores(tmp_path / str(processes)) == expected


def test_replaying_again_with_another_process_count_adds_nothing(capture: Path, tmp_path: Path) -> None:
    run(capture, tmp_path, processes=2)
    first = stores(tmp_path)
    run(capture, tmp_path, processes=1)
    assert stores(tmp_path) == first
    run(capture, tmp_path, processes=3)
    assert stores(tmp_path) == first


def test_bad_frame_is_logged_once_and_skipped(
    capture: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(capture, raw)
    bad = {
        "exchange": "bitfinex",
        "conn": "zz",
        "dir": "in",
        "received_ts": "2026-01-01T00:00:00.000001Z",
        "frame": "[5,{not json",
    }
    (raw / "extra.jsonl").write_bytes(orjson.dumps(bad) + b"\n" + b"this line is not json\n")
    with caplog.at_level(logging.INFO):
        replay([raw], RunConfig(data_dir=tmp_path / "out").validate(), processes=2)
    frame_warnings = [r for r in caplog.records if "[5,{not json" in r.getMessage()]
    line_warnings = [r for r in caplog.records if "this line is not json" in r.getMessage()]
    assert len(frame_warnings) == 1
    assert len(line_warnings) == 1
    assert any("in 2 processes" in r.getMessage() for r in caplog.records)


def test_a_worker_config_error_reaches_the_caller(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(capture, out, processes=1, sinks=["csv"])
    book = next((out / "csv" / "bitfinex_book").glob("*.csv"))
    book.write_text("a,b,c\r\n")  # not the table's header: the CSV sink refuses the file
    # The worker writes the CSV and lake files; it fails on its first batch.
    with pytest.raises(ConfigError, match="header does not match"):
        run(capture, out, processes=2)


def test_a_failing_worker_fails_the_replay(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "lake").mkdir(parents=True)
    (out / "lake" / "bitfinex_book").write_text("a file where the table's folder should be")
    with pytest.raises(RuntimeError, match=r"replay into csv, lake failed"):
        run(capture, out, processes=2)


def test_sinks_are_grouped_by_cost() -> None:
    everything = ["csv", "db", "lake"]
    assert _sink_groups(everything, 1) == [[("csv", "all"), ("db", "all"), ("lake", "all")]]
    # Two processes: SQLite in one, CSV and the lake in the other.
    assert _sink_groups(everything, 2) == [[("db", "all")], [("csv", "all"), ("lake", "all")]]
    assert _sink_groups(everything, 3) == [[("db", "all")], [("csv", "all")], [("lake", "all")]]
    # More processes than sinks: the costliest CSV or lake sink gives its book table a process of its own.
    assert _sink_groups(everything, 4) == [
        [("db", "all")],
        [("csv", "wide")],
        [("lake", "all")],
        [("csv", "rest")],
    ]
    assert _sink_groups(["csv"], 2) == [[("csv", "wide")], [("csv", "rest")]]
    assert _sink_groups(["db"], 2) == [[("db", "all")]]  # SQLite: one writer
    assert _sink_groups([], 2) == [[]]
