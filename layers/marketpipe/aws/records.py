"""Kinesis record format and partition keys (pure functions: shared by the collector and the Lambdas).

A record is a micro-batch of frames of one partition key: raw-capture lines
(:meth:`marketpipe.records.RawFrame.to_line`), so a record's payload is a valid
piece of a raw capture file. Records whose plain text would exceed the Kinesis limit are gzipped
(detected on read by the gzip magic bytes); everything else stays readable in the console.
"""

from __future__ import annotations

import gzip
import logging

from marketpipe.records import RawFrame

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000_000
"""Kinesis allows 1 MiB (data + partition key) per record; keep a margin for the key."""
_GZIP_MAGIC = b"\x1f\x8b"


def stream_key(exchange: str, partition: str) -> str:
    """Partition key: ``<exchange>:<partition>``, e.g. ``bitfinex:slot-000`` (one websocket connection of
    a few books, ``marketpipe.bitfinex.slots``) or ``binance:shard-0`` (one combined-stream connection)."""
    return f"{exchange}:{partition}"


def encode_record(lines: list[bytes], max_bytes: int = MAX_RECORD_BYTES) -> bytes:
    """Join lines into one record payload; gzip it only when plain text would not fit."""
    data = b"\n".join(lines) + b"\n"
    if len(data) <= max_bytes:
        return data
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    if len(packed) > max_bytes:
        raise ValueError(f"{len(lines)} frame(s) do not fit one record even gzipped ({len(packed)} bytes)")
    return packed


def decode_record(data: bytes) -> list[RawFrame]:
    """Frames of one record, in order; a damaged line is logged and skipped (like replay does)."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            log.warning("damaged gzipped Kinesis record skipped (%d bytes): %s", len(data), exc)
            return []
    frames = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            frames.append(RawFrame.from_line(line))
        except ValueError as exc:
            text = line[:200].decode("utf-8", "replace")
            log.warning("bad frame line in a Kinesis record skipped (%s): %s", exc, text)
    return frames
