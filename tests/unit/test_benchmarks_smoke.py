"""The benchmark session generator produces a capture that replays cleanly (no timing here).

The benchmarks trust the generated session; this proves it on a small one: the processor sees zero
gaps and zero checksum mismatches with the generator's independently computed checksums, every book
row is released by a verified checksum, and the same seed gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.generate_session import generate

from marketpipe.bitfinex.processor import BitfinexProcessor
from marketpipe.records import Row
from marketpipe.sinks.raw_capture import iter_raw_frames
from marketpipe.tables import Table


def _capture_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((root / "raw").rglob("*.jsonl")))


def test_generated_session_replays_with_no_gap_and_no_checksum_mismatch(tmp_path: Path) -> None:
    info = generate(tmp_path / "a", frames=2_000, seed=7)
    rows: dict[str, int] = {}

    def emit(table: Table, batch: list[Row]) -> None:
        rows[table.name] = rows.get(table.name, 0) + len(batch)

    processor = BitfinexProcessor(emit)
    frames = list(iter_raw_frames([tmp_path / "a"]))
    for frame in frames:
        processor.process(frame)
    processor.finish()
    stats = processor.stats

    assert info.book_update_frames >= 2_000
    assert len(frames) == info.total_frames == stats.frames
    assert stats.gaps == 0
    assert stats.checksum_mismatches == 0
    assert stats.invalid_frames == 0
    assert stats.checksum_ok == info.checksum_frames >= 10
    assert stats.discarded_rows == 0  # the closing checksums verify every frame
    assert 0.25 < info.delete_share < 0.35
    assert rows["bitfinex_quotes"] == info.book_update_frames + 400  # + two 200-level snapshots
    assert 0 < rows["bitfinex_book"] <= info.book_update_frames + 2
    assert rows["bitfinex_trades"] == info.trade_frames // 2  # each te is followed by its tu

    texts = "\n".join(f.frame for f in frames)
    assert '"flags":229376' in texts
    assert "e-" in texts  # JavaScript exponent form of tiny sizes, e.g. 5e-8


def test_generator_is_deterministic(tmp_path: Path) -> None:
    generate(tmp_path / "a", frames=500, seed=3)
    generate(tmp_path / "b", frames=500, seed=3)
    assert _capture_bytes(tmp_path / "a") == _capture_bytes(tmp_path / "b")


def test_sql_benchmark_measures_every_table(tmp_path: Path) -> None:
    """The SQL-sink benchmark (MariaDB in `python -m benchmarks.bench_sql`) on SQLite, tiny."""
    from benchmarks.bench_sql import measure, session_batches

    batches, duration = session_batches(3_000, 10.0, cache=tmp_path / "cache")
    assert len(batches) > 1 and duration > 10
    rates = measure(f"sqlite:///{tmp_path / 'db.sqlite'}", batches, run=1)
    assert set(rates) == {"bitfinex_trades", "bitfinex_quotes", "bitfinex_book", "all"}
    assert all(rate > 0 for rate in rates.values())
