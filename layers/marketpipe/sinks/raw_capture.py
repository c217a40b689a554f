"""Raw capture: the write-ahead log of every frame, ``raw/<exchange>/<YYYY-MM-DD>/<HH>.jsonl[.gz]``.

Frames are stored as their exact text so replay sees the exact number tokens. Files are only ever
appended to (a gzip file gets a new gzip member per writer session), so a restart never rewrites
what was captured. Reading is forgiving: a damaged line is logged and skipped, never fatal.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame
from marketpipe.timeutil import us_to_datetime

log = logging.getLogger(__name__)

US_PER_HOUR = 3_600_000_000
_MAX_OPEN = 8
_LOG_TEXT = 200


class _CaptureFile:
    """An open capture file: the OS file plus, for .gz, the gzip stream on top of it."""

    def __init__(self, path: Path, compress: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.raw = open(path, "ab")  # noqa: SIM115 - kept open across writes
        self.stream: IO[bytes] | gzip.GzipFile = self.raw
        if compress:
            self.stream = gzip.GzipFile(fileobj=self.raw, mode="ab", compresslevel=6)

    def flush(self) -> None:
        if self.stream is not self.raw:
            self.stream.flush()  # Z_SYNC_FLUSH: everything so far is decodable
        self.raw.flush()

    def close(self) -> None:
        if self.stream is not self.raw:
            self.stream.close()  # writes the gzip trailer; does not close raw
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()


class RawCaptureWriter:
    """Appends :class:`RawFrame` records as JSON lines, one file per exchange and UTC hour."""

    def __init__(self, data_dir: Path, compress: bool = False) -> None:
        self.root = Path(data_dir) / "raw"
        self.compress = compress
        self.suffix = ".jsonl.gz" if compress else ".jsonl"
        self._files: OrderedDict[tuple[str, int], _CaptureFile] = OrderedDict()

    def path_for(self, exchange: str, received_ts: int) -> Path:
        dt = us_to_datetime(received_ts)
        return self.root / exchange / dt.strftime("%Y-%m-%d") / f"{dt:%H}{self.suffix}"

    def _file(self, exchange: str, hour: int) -> _CaptureFile:
        key = (exchange, hour)
        f = self._files.get(key)
        if f is None:
            f = self._files[key] = _CaptureFile(self.path_for(exchange, hour * US_PER_HOUR), self.compress)
            while len(self._files) > _MAX_OPEN:
                _, old = self._files.popitem(last=False)
                old.close()
        else:
            self._files.move_to_end(key)
        return f

    def write(self, frame: RawFrame) -> None:
        line = frame.to_line()
        self._file(frame.exchange, frame.received_ts // US_PER_HOUR).stream.write(line + b"\n")

    def flush(self) -> None:
        """Push everything written to the OS (survives a process crash)."""
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        """Finish every file and fsync it (survives a machine crash)."""
        while self._files:
            _, f = self._files.popitem(last=False)
            f.close()


def capture_files(paths: Iterable[Path]) -> list[Path]:
    """Files named by ``paths``: files as given, directories expanded to their capture files by path."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))]
            out.extend(sorted(found))
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigError(f"raw capture file not found: {path}")
    return out


class ReadProgress:
    """How far a reader of capture files got, in bytes of the files (compressed bytes for ``.gz``),
    for a progress bar: ask :attr:`bytes_read` now and then; nothing is counted per frame."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.total = sum(path.stat().st_size for path in files)
        self._done = 0
        self._current: IO[bytes] | None = None

    @property
    def bytes_read(self) -> int:
        current = self._current
        return min(self.total, self._done + (current.tell() if current is not None else 0))


def _lines(path: Path, progress: ReadProgress | None = None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        if progress is not None:
            progress._current = f
        try:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    try:
                        yield from gz
                    except (EOFError, OSError) as exc:  # truncated or damaged member (crash while writing)
                        log.warning("%s: compressed stream damaged, rest of file skipped: %s", path, exc)
            else:
                yield from f
        finally:
            if progress is not None:
                progress._current = None
                progress._done += os.fstat(f.fileno()).st_size


def iter_raw_frames(paths: Iterable[Path], progress: ReadProgress | None = None) -> Iterator[RawFrame]:
    """Frames from capture files and directories (sorted by path), skipping damaged lines.

    Raises :class:`ConfigError` at the call (before any frame) when a path does not exist.
    ``progress`` (made for the same files) follows the reading.
    """
    return _iter_frames(capture_files(paths), progress)


def _iter_frames(files: list[Path], progress: ReadProgress | None = None) -> Iterator[RawFrame]:
    for path in files:
        for lineno, line in enumerate(_lines(path, progress), start=1):
            if not line.strip():
                continue
            try:
                yield RawFrame.from_line(line)
            except ValueError as exc:
                text = line.decode("utf-8", errors="replace").rstrip("\n")
                if len(text) > _LOG_TEXT:
                    text = text[:_LOG_TEXT] + "…"
                log.warning("%s:%d: bad capture line skipped (%s): %s", path, lineno, exc, text)
