"""The raw capture, archived to S3 in the local line format (the write-ahead log of the AWS pipeline).

Objects are ``<prefix>/<exchange>/<YYYY-MM-DD>/<HH>/<run>-<part>.jsonl.gz``: one gzip file per exchange
and UTC hour per upload, uploaded every minute and on stop. ``<run>`` starts with the collector's
start time, so sorted object names are in capture order within an hour and a second collector (ECS
deployment overlap) never overwrites the first one's objects. After ``aws s3 sync s3://<bucket>/raw
data/raw``, ``marketpipe replay data/raw`` rebuilds every table from it, like a local capture.

Gzip compression runs on the caller's thread (cheap, like the local capture); uploads run on a worker
thread and are retried with backoff until they succeed or ``close`` gives up after its timeout.
"""

from __future__ import annotations

import gzip
import io
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from marketpipe.errors import ConfigError
from marketpipe.net.backoff import Backoff, retry
from marketpipe.timeutil import us_to_datetime

log = logging.getLogger(__name__)

US_PER_HOUR = 3_600_000_000


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes); ConfigError otherwise."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    return parsed.netloc, parsed.path.strip("/")


class _Part:
    """One object being written: an in-memory gzip stream of raw-capture lines."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.gzip = gzip.GzipFile(fileobj=self.buffer, mode="wb", compresslevel=6, mtime=0)
        self.lines = 0

    def finish(self) -> bytes:
        self.gzip.close()
        return self.buffer.getvalue()


class S3RawArchive:
    """Appends raw-capture lines per (exchange, UTC hour) and uploads them as numbered parts."""

    def __init__(
        self,
        client: Any,
        uri: str,
        *,
        upload_every: float = 60.0,
        run_id: str | None = None,
        backoff_initial: float = 0.5,
        backoff_cap: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.upload_every = upload_every
        started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = run_id or f"{started}-{uuid.uuid4().hex[:8]}"
        self._backoff_initial, self._backoff_cap = backoff_initial, backoff_cap
        self._clock = clock
        self._parts: dict[tuple[str, int], _Part] = {}
        self._part_no = 0
        self._last_upload = clock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-archive")
        self._uploads: list[Future[None]] = []
        self._lock = threading.Lock()
        self._give_up_at: float | None = None
        self.objects_uploaded = 0
        self.lines_written = 0

    def key_for(self, exchange: str, hour: int, part: int) -> str:
        dt = us_to_datetime(hour * US_PER_HOUR)
        name = f"{exchange}/{dt:%Y-%m-%d}/{dt:%H}/{self.run_id}-{part:06d}.jsonl.gz"
        return f"{self.prefix}/{name}" if self.prefix else name

    def write_line(self, exchange: str, received_ts: int, line: bytes) -> None:
        """Append one raw-capture line (no newline); starts an upload when a minute has passed."""
        key = (exchange, received_ts // US_PER_HOUR)
        part = self._parts.get(key)
        if part is None:
            part = self._parts[key] = _Part()
        part.gzip.write(line + b"\n")
        part.lines += 1
        self.lines_written += 1
        self.flush()

    def flush(self) -> None:
        """Upload the open parts if ``upload_every`` has passed since the last upload (non-blocking)."""
        if self._clock() - self._last_upload >= self.upload_every:
            self._upload_all()

    def close(self, timeout: float | None = 60.0) -> bool:
        """Upload everything and wait; False (logged) when an upload did not finish in time."""
        self._upload_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._give_up_at = deadline
        ok = True
        for future in self._uploads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.result(timeout=remaining)
            except Exception as exc:
                ok = False
                log.error("raw archive upload did not finish: %s", exc or exc.__class__.__name__)
        self._uploads = []
        self._pool.shutdown(wait=ok, cancel_futures=not ok)
        return ok

    def _upload_all(self) -> None:
        self._last_upload = self._clock()
        parts, self._parts = self._parts, {}
        for (exchange, hour), part in sorted(parts.items()):
            self._part_no += 1
            key = self.key_for(exchange, hour, self._part_no)
            self._uploads.append(self._pool.submit(self._put, key, part.finish(), part.lines))
        self._uploads = [f for f in self._uploads if not f.done() or f.exception() is not None]

    def _put(self, key: str, body: bytes, lines: int) -> None:
        def put() -> None:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/gzip")

        def until_close_gives_up(_exc: Exception) -> bool:
            # network, throttling (SlowDown), 5xx: keep the frames, retry until close's deadline passes
            return self._give_up_at is None or time.monotonic() <= self._give_up_at

        retry(
            put,
            attempts=None,
            backoff=Backoff(self._backoff_initial, self._backoff_cap),
            retry_on=until_close_gives_up,
            on_retry=lambda _attempt, exc, delay: log.warning(
                "raw archive upload of %s failed (%s); retrying in %.1f s", key, exc, delay
            ),
        )
        with self._lock:
            self.objects_uploaded += 1
        log.debug("raw archive: %d lines -> s3://%s/%s", lines, self.bucket, key)
