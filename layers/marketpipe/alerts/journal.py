"""The local record of the market alerts a run sent: ``<data-dir>/alerts.jsonl``, one JSON object a line.

The other channels deliver an alert and forget it (a log line, a webhook, a text); ``marketpipe status``
needs to say what was sent last, so ``marketpipe run`` adds this channel to each alerting service. Each
line is ``{"at": "<ISO 8601 UTC>", "source": "bitso", "alert": true, "key": "…", "text": "…"}``
(``alert`` false for a notice: a spread back below its threshold). Appended only; a reader skips damaged
lines.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from marketpipe.alerts.message import AlertMessage
from marketpipe.timeutil import now_us, us_to_iso

log = logging.getLogger("marketpipe.alerts")

JOURNAL_NAME = "alerts.jsonl"
_TAIL_BYTES = 64 * 1024


def journal_path(data_dir: Path) -> Path:
    return Path(data_dir) / JOURNAL_NAME


class AlertJournal:
    """A channel that appends every message it is given to the journal file."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = Path(path)
        self.source = source
        self._lock = threading.Lock()  # the dispatcher delivers from several threads

    def deliver(self, message: AlertMessage) -> None:
        line = orjson.dumps(
            {
                "at": us_to_iso(now_us()),
                "source": self.source,
                "alert": message.is_alert,
                "key": message.key,
                "text": message.text,
            }
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(line + b"\n")

    def describe(self) -> str:
        return f"journal ({self.path})"

    def close(self) -> None:
        pass


def read_journal(path: Path, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` entries (oldest first); none when the file does not exist."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            size = _TAIL_BYTES
            while True:
                start = max(0, end - size)
                f.seek(start)
                lines = f.read(end - start).split(b"\n")
                if start > 0:
                    lines = lines[1:]  # may be cut
                entries = [e for e in map(_entry, lines) if e is not None]
                if len(entries) >= limit or start == 0:
                    return entries[-limit:] if limit > 0 else []
                size *= 4
    except FileNotFoundError:
        return []


def _entry(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        log.debug("alert journal: damaged line skipped: %r", line[:200])
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return value
