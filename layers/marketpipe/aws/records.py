"""Kinesis record format and partition keys (pure functions: shared by the collector and the Lambda).

A record is a micro-batch of frames of one partition key: raw-capture lines
(:meth:`marketpipe.records.RawFrame.to_line`), so a record's payload is a valid
piece of a raw capture file. Records whose plain text would exceed the Kinesis limit are gzipped
(detected on read by the gzip magic bytes); everything else stays readable in the console.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable

from marketpipe.bitfinex import wire as bfx
from marketpipe.records import RawFrame, parse_rest_conn

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000_000
"""Kinesis allows 1 MiB (data + partition key) per record; keep a margin for the key."""
_GZIP_MAGIC = b"\x1f\x8b"


def stream_key(exchange: str, symbol: str) -> str:
    """Partition key of one book: ``bitfinex:BTC-USD`` (normalized symbol, as in the tables)."""
    return f"{exchange}:{symbol}"


def rest_wire(conn: str) -> str | None:
    """Wire symbol of a REST backfill capture conn (``rest:/v2/trades/tBTCUSD/hist?...``), else None."""
    rest = parse_rest_conn(conn)
    return None if rest is None or rest[0] is not None else bfx.wire_of_trades_hist_path(rest[1])


def bitfinex_keys(frame: RawFrame, wires_of_conn: Iterable[str]) -> list[str]:
    """Partition keys of one Bitfinex frame: the symbols its connection (or REST path) carries."""
    wire = rest_wire(frame.conn)
    wires = [wire] if wire is not None else list(wires_of_conn)
    return [stream_key(frame.exchange, bfx.normalize_symbol(w)) for w in wires]


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
