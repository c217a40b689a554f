"""An independent reading of a Bitfinex raw capture, used to judge what marketpipe stored.

Deliberately written differently from the product: the standard ``json`` module with number tokens
kept as text (PROTOCOLS.md §1.10 reference approach), plain dicts, sorting on demand, and no shared
code with ``marketpipe.book`` or the processor. For every book frame it records the resulting top-100
state and whether a later checksum confirmed it (with no sequence gap in between) or refuted it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from marketpipe.records import RawFrame


class Token(float):
    """A float that remembers its JSON text."""

    raw: str

    def __new__(cls, text: str) -> Token:
        obj = float.__new__(cls, text)
        obj.raw = text
        return obj


def loads(text: str) -> Any:
    return json.loads(text, parse_float=Token, parse_int=Token)


def _state(bids: dict[float, Token], asks: dict[float, Token], depth: int = 100) -> tuple[Any, ...]:
    out: list[Any] = []
    for prices, book in ((sorted(bids, reverse=True), bids), (sorted(asks), asks)):
        top = prices[:depth]
        for p in top:
            out += [float(p), abs(float(book[p]))]
        out += [None, None] * (depth - len(top))
    return tuple(out)


def _checksum(bids: dict[float, Token], asks: dict[float, Token], prices: dict[float, Token]) -> int:
    b = sorted(bids, reverse=True)[:25]
    a = sorted(asks)[:25]
    parts: list[str] = []
    for i in range(25):
        if i < len(b):
            parts += [prices[b[i]].raw, bids[b[i]].raw]
        if i < len(a):
            parts += [prices[a[i]].raw, asks[a[i]].raw]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= (1 << 31) else crc


@dataclass
class _Chan:
    symbol: str
    kind: str
    bids: dict[float, Token] = field(default_factory=dict)
    asks: dict[float, Token] = field(default_factory=dict)
    prices: dict[float, Token] = field(default_factory=dict)
    got_snapshot: bool = False
    unconfirmed: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)
    broken: bool = False


@dataclass
class Judgement:
    confirmed: dict[tuple[str, int], tuple[Any, ...]] = field(default_factory=dict)
    """(symbol, received_ts) -> top-100 levels of states a later checksum confirmed."""
    refuted: set[tuple[str, int]] = field(default_factory=set)
    checksums_ok: int = 0
    checksum_mismatches: int = 0
    gaps: int = 0
    trade_ids: dict[str, set[int]] = field(default_factory=dict)


def judge(frames: Iterable[RawFrame]) -> Judgement:
    result = Judgement()
    conns: dict[str, dict[str, Any]] = {}
    for frame in frames:
        if frame.direction != "in":
            continue
        if frame.conn.startswith("rest:"):
            symbol = frame.conn.split("/")[3]
            try:
                body = json.loads(frame.frame)
            except ValueError:
                continue
            if isinstance(body, list) and body and body[0] != "error":
                result.trade_ids.setdefault(_norm(symbol), set()).update(int(t[0]) for t in body)
            continue
        try:
            msg = loads(frame.frame)
        except ValueError:
            continue
        conn = conns.setdefault(frame.conn, {"flags": 0, "seq": None, "chans": {}})
        if isinstance(msg, dict):
            if msg.get("event") == "conf" and msg.get("status") == "OK":
                conn["flags"] = int(msg["flags"])
            elif msg.get("event") == "subscribed" and msg.get("channel") in ("book", "trades"):
                conn["chans"][int(msg["chanId"])] = _Chan(_norm(msg["symbol"]), msg["channel"])
            elif msg.get("event") == "info" and msg.get("code") in (20051, 20061):
                for chan in conn["chans"].values():
                    _refute(result, chan)
                    chan.broken = True
            continue
        if not isinstance(msg, list) or len(msg) < 2:
            continue
        items = list(msg)
        if conn["flags"] & 32768:
            items.pop()
        if conn["flags"] & 65536:
            seq = int(items.pop())
            if conn["seq"] is not None and seq != conn["seq"] + 1:
                result.gaps += 1
                for chan in conn["chans"].values():
                    _refute(result, chan)
                    chan.broken = True
            conn["seq"] = seq
        chan = conn["chans"].get(int(items[0]))
        if chan is None:
            continue
        body = items[1]
        if chan.kind == "trades":
            entries = [items[2]] if body in ("te", "tu") else (body if isinstance(body, list) else [])
            result.trade_ids.setdefault(chan.symbol, set()).update(int(e[0]) for e in entries)
            continue
        if body == "hb":
            continue
        if body == "cs":
            if chan.broken or not chan.got_snapshot:
                continue
            if _checksum(chan.bids, chan.asks, chan.prices) == int(items[2]):
                result.checksums_ok += 1
                for ts, state in chan.unconfirmed:
                    result.confirmed[(chan.symbol, ts)] = state
                chan.unconfirmed.clear()
            else:
                result.checksum_mismatches += 1
                _refute(result, chan)
                chan.broken = True
            continue
        is_snapshot = not chan.got_snapshot
        if is_snapshot:
            chan.bids.clear()
            chan.asks.clear()
            entries = body
            chan.got_snapshot = True
        else:
            entries = body if body and isinstance(body[0], list) else [body]
        if chan.broken:
            continue
        before = _state(chan.bids, chan.asks)
        for price, count, amount in (e[:3] for e in entries):
            side = chan.bids if amount > 0 else chan.asks
            if count > 0:
                side[float(price)] = amount
                chan.prices[float(price)] = price
            else:
                side.pop(float(price), None)
        after = _state(chan.bids, chan.asks)
        if is_snapshot or after != before:
            chan.unconfirmed.append((frame.received_ts, after))
    return result


def _refute(result: Judgement, chan: _Chan) -> None:
    for ts, _ in chan.unconfirmed:
        result.refuted.add((chan.symbol, ts))
    chan.unconfirmed.clear()


def _norm(wire: str) -> str:
    body = wire[1:] if wire.startswith("t") else wire
    base, quote = body.split(":") if ":" in body else (body[:3], body[3:])
    alias = {"UST": "USDT"}
    return f"{alias.get(base, base)}-{alias.get(quote, quote)}"
