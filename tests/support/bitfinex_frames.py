"""Builds Bitfinex wire frames (with SEQ_ALL/TIMESTAMP trailers) for processor tests."""

from __future__ import annotations

import orjson

from marketpipe.bitfinex import wire as bfx
from marketpipe.book import OrderBook
from marketpipe.jsnum import js_num_str
from marketpipe.records import RawFrame


def js_dumps(value: object) -> str:
    """JSON with JavaScript number text, like the Bitfinex server."""
    if isinstance(value, list):
        return "[" + ",".join(js_dumps(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str | dict):
        return orjson.dumps(value).decode()
    return js_num_str(value)  # type: ignore[arg-type]


class FeedBuilder:
    """One simulated connection: numbers its array frames and stamps receive times."""

    def __init__(self, conn: str = "c1", flags: int = bfx.CONF_FLAGS, start_us: int = 1_763_800_000_000_000):
        self.conn = conn
        self.flags = flags
        self.seq = 0
        self.now_us = start_us
        self.frames: list[RawFrame] = []

    def _raw(self, text: str, direction: str = "in") -> RawFrame:
        self.now_us += 1000
        frame = RawFrame("bitfinex", self.conn, direction, self.now_us, text)  # type: ignore[arg-type]
        self.frames.append(frame)
        return frame

    def event(self, payload: dict) -> RawFrame:
        return self._raw(orjson.dumps(payload).decode())

    def hello(self) -> list[RawFrame]:
        return [
            self.event({"event": "info", "version": 2, "serverId": "x", "platform": {"status": 1}}),
            self.event({"event": "conf", "status": "OK", "flags": self.flags}),
        ]

    def subscribed(self, channel: str, chan_id: int, symbol: str = "tBTCUSD", **extra: object) -> RawFrame:
        body = {
            "event": "subscribed",
            "channel": channel,
            "chanId": chan_id,
            "symbol": symbol,
            "pair": symbol[1:],
            **extra,
        }
        if channel == "book":
            body.update({"prec": "P0", "freq": "F0", "len": "100"})
        return self.event(body)

    def array(self, *items: object, skip_seq: bool = False) -> RawFrame:
        self.seq += 2 if skip_seq else 1
        parts = [js_dumps(i) for i in items]
        if self.flags & bfx.FLAG_SEQ_ALL:
            parts.append(str(self.seq))
        if self.flags & bfx.FLAG_TIMESTAMP:
            parts.append(str(self.now_us // 1000))
        return self._raw("[" + ",".join(parts) + "]")

    def checksum(self, chan_id: int, book: OrderBook) -> RawFrame:
        return self.array(chan_id, "cs", book.checksum())
