"""Progress bars for finite work: replay's bar follows the capture bytes read; quiet off a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketpipe import progress
from marketpipe.config import RunConfig
from marketpipe.records import RawFrame
from marketpipe.replay import replay
from marketpipe.sinks.raw_capture import RawCaptureWriter, ReadProgress, capture_files, iter_raw_frames

HOUR_US = 3_600_000_000
T0 = 1_795_839_026_000_000


def write_capture(root: Path, compress: bool, frames: int = 3000) -> list[Path]:
    writer = RawCaptureWriter(root, compress=compress)
    for i in range(frames):  # several hourly files
        writer.write(RawFrame("kraken", "c1", "in", T0 + i * (HOUR_US // 1000), f'[{i},"hb","padding"]'))
    writer.close()
    return capture_files([root / "raw"])


@pytest.mark.parametrize("compress", [False, True])
def test_read_progress_follows_the_files_to_their_full_size(tmp_path: Path, compress: bool) -> None:
    files = write_capture(tmp_path, compress)
    assert len(files) > 1
    reading = ReadProgress(files)
    assert reading.total == sum(p.stat().st_size for p in files) and reading.bytes_read == 0
    seen = []
    for n, _frame in enumerate(iter_raw_frames(files, reading)):
        if n % 500 == 0:
            seen.append(reading.bytes_read)
    assert seen == sorted(seen) and 0 < seen[-1] <= reading.total
    assert reading.bytes_read == reading.total  # every file read to its end


def test_no_bar_off_a_terminal_or_when_not_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert progress.wanted(True) is False
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert progress.wanted(True) is True and progress.wanted(False) is False
    with progress.progress_bar(100, "x", enabled=False) as bar:
        bar.update_to(50)  # a no-op


def test_replay_draws_its_bar_to_the_end_and_keeps_log_lines_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_capture(tmp_path / "live", compress=False, frames=40_000)
    config = RunConfig(data_dir=tmp_path / "out", sinks=["csv"])
    replay(files, config, processes=1, progress=True)
    err = capsys.readouterr().err
    assert "replay: 100%" in err, err[-500:]
    size = sum(p.stat().st_size for p in files) / 1024 / 1024
    assert f"{size:.2f}M/{size:.2f}M" in err

    replay(files, config, processes=1, progress=False)
    assert "replay:" not in capsys.readouterr().err
