"""Frames -> Kinesis, per partition key in order, micro-batched, never dropped.

``PutRecords`` does not keep order inside one call, so a call carries at most one record per
partition key, and a key's next record is sent only after the previous one was accepted. Failed
entries (throttling: ``ProvisionedThroughputExceededException``, ``InternalFailure``) stay at the head
of their key and are retried with capped, jittered backoff; a failed call is retried whole. A frame
is therefore never dropped and never overtaken by a later frame of its key.

The websocket reader only appends to a bounded queue; a worker thread batches and sends. When
Kinesis is slower than the feed for long, the full queue blocks the reader (back-pressure: the
exchange's TCP window fills) rather than growing memory or dropping frames.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marketpipe.aws.records import MAX_RECORD_BYTES, encode_record
from marketpipe.net.backoff import Backoff

log = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 4_500_000  # the API allows 5 MiB per call
THROTTLING_CODES = frozenset(
    ("ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException")
)
_DRAIN_AT_ONCE = 10_000


@dataclass
class PublisherStats:
    frames_queued: int = 0
    frames_sent: int = 0
    records_sent: int = 0
    calls: int = 0
    throttled_entries: int = 0
    failed_calls: int = 0
    backpressure_waits: int = 0


@dataclass
class _Open:
    """Lines of one key waiting for their linger to end (or for the record to fill up)."""

    since: float
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


class _Control:
    """A flush/stop request travelling through the queue behind the frames it must cover."""

    def __init__(self, stop: bool) -> None:
        self.stop = stop
        self.done = threading.Event()


class KinesisPublisher:
    """Publishes raw-capture lines to one stream; ``publish`` is cheap and safe on the event loop."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        linger: float = 0.2,
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_queued_frames: int = 200_000,
        backoff_initial: float = 0.05,
        backoff_cap: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.stream_name = stream_name
        self.linger = linger
        self.max_record_bytes = max_record_bytes
        self.stats = PublisherStats()
        self._sleep = sleep
        self._backoff = Backoff(backoff_initial, backoff_cap)
        self._queue: queue.Queue[tuple[str, bytes] | _Control] = queue.Queue(maxsize=max_queued_frames)
        self._open: dict[str, _Open] = {}
        self._ready: dict[str, deque[tuple[bytes, int]]] = {}
        self._waiters: list[_Control] = []
        self._stopping = False
        self._closed = False
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="kinesis-publisher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side (event loop)

    def publish(self, key: str, line: bytes) -> None:
        """Queue one raw-capture line for ``key``; blocks only while the queue is full."""
        if self._closed:
            raise RuntimeError("publisher is closed")
        item = (key, line)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.backpressure_waits += 1
            log.warning("Kinesis is behind: %d frames queued; pausing the reader", self._queue.qsize())
            self._queue.put(item)
        self.stats.frames_queued += 1

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything published so far; True when it all reached Kinesis within ``timeout``."""
        return self._control(_Control(stop=False), timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the worker. Returns False (and logs) when frames were left unsent."""
        if self._closed:
            return True
        self._closed = True
        done = self._control(_Control(stop=True), timeout)
        if done:
            self._thread.join(timeout=5)
        else:
            self._abandoned = True  # the process is exiting: stop retrying
            log.error(
                "Kinesis publisher stopped with %d frame(s) unsent after %.0f s; the S3 raw archive has them",
                self.stats.frames_queued - self.stats.frames_sent,
                timeout or 0,
            )
        return done

    def _control(self, control: _Control, timeout: float | None) -> bool:
        if not self._thread.is_alive():
            return False
        self._queue.put(control)
        return control.done.wait(timeout)

    # ------------------------------------------------------------------ worker thread

    def _run(self) -> None:
        while not self._abandoned:
            try:
                item: tuple[str, bytes] | _Control | None = self._queue.get(timeout=self._wait_time())
            except queue.Empty:
                item = None
            drained = 0
            while item is not None:
                if isinstance(item, _Control):
                    self._seal_all()
                    self._waiters.append(item)
                    self._stopping = self._stopping or item.stop
                else:
                    self._add(*item)
                drained += 1
                if drained >= _DRAIN_AT_ONCE:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            self._seal_due()
            if self._ready:
                self._put_round()
            if self._waiters and not self._ready and not self._open and self._queue.empty():
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    waiter.done.set()
                if self._stopping:
                    return

    def _wait_time(self) -> float:
        if self._ready:
            return 0.0
        if not self._open:
            return 0.5
        oldest = min(o.since for o in self._open.values())
        return max(0.0, oldest + self.linger - time.monotonic())

    def _add(self, key: str, line: bytes) -> None:
        pending = self._open.get(key)
        if pending is not None and pending.size + len(line) + 1 > self.max_record_bytes:
            self._seal(key)
            pending = None
        if pending is None:
            pending = self._open[key] = _Open(time.monotonic())
        pending.lines.append(line)
        pending.size += len(line) + 1

    def _seal(self, key: str) -> None:
        pending = self._open.pop(key)
        data = encode_record(pending.lines, self.max_record_bytes)
        self._ready.setdefault(key, deque()).append((data, len(pending.lines)))

    def _seal_due(self) -> None:
        now = time.monotonic()
        for key in [k for k, o in self._open.items() if now - o.since >= self.linger]:
            self._seal(key)

    def _seal_all(self) -> None:
        for key in list(self._open):
            self._seal(key)

    def _put_round(self) -> None:
        """One ``PutRecords`` call with the head record of as many keys as fit; retry what failed."""
        keys: list[str] = []
        size = 0
        for key, records in self._ready.items():
            data = records[0][0]
            full = len(keys) >= MAX_RECORDS_PER_CALL or size + len(data) + len(key) > MAX_BYTES_PER_CALL
            if keys and full:
                break
            keys.append(key)
            size += len(data) + len(key)
        entries = [{"Data": self._ready[k][0][0], "PartitionKey": k} for k in keys]
        self.stats.calls += 1
        try:
            response = self.client.put_records(StreamName=self.stream_name, Records=entries)
        except Exception as exc:  # botocore ClientError/EndpointConnectionError/…: retry the whole call
            code = _error_code(exc)
            if code in THROTTLING_CODES:
                self.stats.throttled_entries += len(entries)
            else:
                self.stats.failed_calls += 1
                log.warning("PutRecords failed (%s); retrying", code or exc)
            self._pause()
            return
        failed = 0
        for key, result in zip(keys, response["Records"], strict=True):
            if result.get("ErrorCode"):
                failed += 1
                if result["ErrorCode"] in THROTTLING_CODES:
                    self.stats.throttled_entries += 1
                continue
            records = self._ready[key]
            _, frames = records.popleft()
            if not records:
                del self._ready[key]
            self.stats.records_sent += 1
            self.stats.frames_sent += frames
        if failed:
            log.info("PutRecords: %d of %d records refused (throttled); retrying them", failed, len(keys))
            self._pause()
        else:
            self._backoff.reset()

    def _pause(self) -> None:
        """Back off before a retry (Backoff bounds its exponent: a long outage never overflows it)."""
        self._sleep(self._backoff.next_delay())


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
