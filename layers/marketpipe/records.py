"""The shared vocabulary: raw frames and their capture line, table rows and the emit callback.

The raw-capture line is the write-ahead log: every writer (local capture files, the Kinesis records,
the S3 raw archive, the execution snapshots in the lake) and every reader (replay, the Lambdas, the
liveness check) goes through :meth:`RawFrame.to_line` and :meth:`RawFrame.from_line`, so the format
is defined here and nowhere else::

    {"exchange": "bitfinex", "conn": "<connection id>", "dir": "in"|"out",
     "received_ts": "<ISO 8601 UTC, microseconds, Z>", "frame": "<the frame text exactly>"}

A REST body is captured like a frame, with a conn built by :func:`rest_conn` (``rest:<path>`` or
``rest:<venue>:<path>``) and read back by :func:`parse_rest_conn`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from marketpipe.timeutil import iso_to_us, us_to_iso

if TYPE_CHECKING:
    from marketpipe.tables import Table

Direction = Literal["in", "out"]

Row = tuple[Any, ...]
"""One table row: plain values in the table's column order (see :mod:`marketpipe.tables`)."""

Emit = Callable[["Table", list[Row]], None]
"""Where a processor hands its rows: to the sinks live and in replay, to a buffer in the Lambdas."""


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One websocket frame (or REST body) exactly as sent or received: the write-ahead log entry.

    ``received_ts`` is integer microseconds since the epoch (UTC); ``frame`` is the exact text so that
    replay sees the exact number tokens.
    """

    exchange: str
    conn: str
    direction: Direction
    received_ts: int
    frame: str

    def to_line(self) -> bytes:
        """The raw-capture line (without the newline): byte for byte what every capture holds."""
        return orjson.dumps(
            {
                "exchange": self.exchange,
                "conn": self.conn,
                "dir": self.direction,
                "received_ts": us_to_iso(self.received_ts),
                "frame": self.frame,
            }
        )

    @classmethod
    def from_line(cls, line: bytes | str) -> RawFrame:
        """Inverse of :meth:`to_line`; ValueError (with the reason) for anything else."""
        obj: Any = orjson.loads(line)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        try:
            exchange, conn, direction, ts, frame = (
                obj["exchange"], obj["conn"], obj["dir"], obj["received_ts"], obj["frame"]
            )  # fmt: skip
        except KeyError as exc:
            raise ValueError(f"missing key {exc}") from None
        if not (isinstance(exchange, str) and isinstance(conn, str) and isinstance(frame, str)):
            raise ValueError("exchange, conn and frame must be strings")
        if direction not in ("in", "out"):
            raise ValueError(f"dir must be 'in' or 'out', not {direction!r}")
        if not isinstance(ts, str):
            raise ValueError("received_ts must be an ISO 8601 string")
        return cls(exchange, conn, direction, iso_to_us(ts), frame)


REST_CONN_PREFIX = "rest:"
"""Capture conn of a REST body, so that replay sees backfills and polled books too."""


def rest_conn(path: str, venue: str | None = None) -> str:
    """Capture conn of a REST body: ``rest:/v2/trades/tBTCUSD/hist?…`` (the exchange's own API) or
    ``rest:coinbase:/products/BTC-USD/book?level=2`` (a capability polling several venues).

    ``path`` is the request path with its query string, starting with ``/``.
    """
    if not path.startswith("/"):
        raise ValueError(f"REST capture path must start with '/': {path!r}")
    if venue is None:
        return f"{REST_CONN_PREFIX}{path}"
    if not venue or ":" in venue or "/" in venue:
        raise ValueError(f"invalid venue for a REST capture conn: {venue!r}")
    return f"{REST_CONN_PREFIX}{venue}:{path}"


def is_rest_conn(conn: str) -> bool:
    return conn.startswith(REST_CONN_PREFIX)


def parse_rest_conn(conn: str) -> tuple[str | None, str] | None:
    """``(venue or None, path with query)`` of a REST capture conn; None for any other conn."""
    if not conn.startswith(REST_CONN_PREFIX):
        return None
    rest = conn[len(REST_CONN_PREFIX) :]
    if rest.startswith("/"):
        return None, rest
    venue, sep, path = rest.partition(":")
    if not sep or not venue or "/" in venue:
        return None, rest
    return venue, path
