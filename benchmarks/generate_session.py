"""Deterministic generator of a long Bitfinex websocket session, written as a real raw capture.

Why a generator: the benchmarks need a million-frame session that is (a) identical on every run and
machine, (b) exactly what the real server sends — JavaScript number text, SEQ_ALL + TIMESTAMP
trailers, checksum frames, heartbeats, trade ``te``/``tu`` pairs, a server-maintained top-100 window —
and (c) provably correct, so a replay of it must show zero gaps and zero checksum mismatches.

The generator keeps its own book per symbol as integer price ticks mapped to the *wire tokens* it
sent, and computes every ``cs`` checksum from those tokens (an independent implementation of
PROTOCOLS.md §1.10, sharing no code with ``marketpipe.book``). Each side holds 100 visible levels plus
a hidden reservoir below them; like the server, when a level leaves the top 100 a delete is sent and
when one enters, an add.

The output is a capture directory (``raw/bitfinex/<date>/<HH>.jsonl``) written with
:class:`marketpipe.sinks.raw_capture.RawCaptureWriter`, so it is byte-for-byte the format
``marketpipe replay`` reads. Generated sessions are cached under ``benchmarks/.cache/``.

Usage: ``python benchmarks/generate_session.py [--frames N] [--seed S] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from marketpipe.bitfinex import wire as bfx
from marketpipe.jsnum import js_num_str
from marketpipe.records import RawFrame
from marketpipe.sinks.raw_capture import RawCaptureWriter

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
DEFAULT_FRAMES = 1_000_000
DEFAULT_SEED = 20_260_101
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
CONN = "bench-c1"
WINDOW = 100
CHECKSUM_LEVELS = 25
RESERVOIR_MIN = 20
RESERVOIR_MAX = 80
MEAN_GAP_US = 30_000  # one market event per 30 ms (~47 book frames/s): 1M frames span ~5.8 h
CHECKSUM_EVERY_US = 2_500_000
HEARTBEAT_EVERY_US = 15_000_000
TRADE_PROBABILITY = 0.02  # per book event: trades are rarer than book changes
# Operation mix. An add inside the window pushes the 100th level out (add + delete frames); a delete
# pulls the 101st level in (delete + add). With u updates and a adds/deletes each, deletes are
# 2a / (u + 4a) of all frames: u = 0.571, a = 0.2145 gives ~30 %.
P_UPDATE = 0.571
P_ADD = 0.2145

META_NAME = "session.json"
SYMBOLS = (
    # wire symbol, book chanId, trades chanId, initial mid, tick size, tick decimals, share of events
    ("tBTCUSD", 17082, 17470, 97_000.0, 1.0, 0, 0.6),
    ("tETHUSD", 17091, 17475, 3_400.0, 0.1, 1, 0.4),
)


@dataclass(slots=True)
class _Level:
    price: str  # wire token of the price
    count: int
    amount: float  # signed, as on the wire
    amount_text: str  # wire token of the signed amount


@dataclass
class _Side:
    """One side: tick index -> level, plus the ascending tick list (best bid is last, best ask first)."""

    is_bid: bool
    levels: dict[int, _Level] = field(default_factory=dict)
    ticks: list[int] = field(default_factory=list)

    def tick_at_rank(self, rank: int) -> int:
        return self.ticks[-1 - rank] if self.is_bid else self.ticks[rank]

    def best_first(self, n: int) -> list[int]:
        return self.ticks[: -n - 1 : -1] if self.is_bid else self.ticks[:n]

    def add(self, tick: int, level: _Level) -> None:
        if tick not in self.levels:
            insort(self.ticks, tick)
        self.levels[tick] = level

    def remove(self, tick: int) -> _Level:
        del self.ticks[bisect_left(self.ticks, tick)]
        return self.levels.pop(tick)

    def deepest(self) -> int:
        return self.ticks[0] if self.is_bid else self.ticks[-1]


class _SymbolBook:
    """The server's view of one symbol's book and the frames it sends for each change."""

    def __init__(self, wire: str, mid: float, tick: float, decimals: int, rng: random.Random) -> None:
        self.wire = wire
        self.tick = tick
        self.decimals = decimals
        self.rng = rng
        self.bids = _Side(True)
        self.asks = _Side(False)
        mid_tick = round(mid / tick)
        for side, direction in ((self.bids, -1), (self.asks, 1)):
            t = mid_tick + direction
            while len(side.levels) < WINDOW + RESERVOIR_MIN + 20:
                side.add(t, self.new_level(side, t))
                t += direction * rng.choice((1, 1, 1, 2, 3))

    # ---------------------------------------------------------------- wire tokens

    def price_text(self, tick: int) -> str:
        return js_num_str(round(tick * self.tick, self.decimals))

    def random_size(self) -> float:
        """Mostly 8-decimal sizes, plus integral and tiny ones (JS prints 5e-8 as ``5e-8``)."""
        r = self.rng.random()
        if r < 0.70:
            return round(self.rng.uniform(0.0001, 3.0), 8)
        if r < 0.80:
            return float(self.rng.randint(1, 25))  # integral: JS prints "7", Python repr "7.0"
        if r < 0.90:
            return round(self.rng.randint(1, 999) * 1e-8, 8)  # tiny: "5e-8", "0.00000123"
        return round(self.rng.uniform(0.1, 50.0), self.rng.randint(1, 4))  # never rounds to 0

    def new_level(self, side: _Side, tick: int) -> _Level:
        size = self.random_size()
        amount = size if side.is_bid else -size
        return _Level(self.price_text(tick), self.rng.randint(1, 12), amount, js_num_str(amount))

    @staticmethod
    def entry(level: _Level) -> str:
        return f"[{level.price},{level.count},{level.amount_text}]"

    @staticmethod
    def delete_entry(level: _Level, is_bid: bool) -> str:
        return f"[{level.price},0,{1 if is_bid else -1}]"

    # ---------------------------------------------------------------- views

    def snapshot_payload(self) -> str:
        """Bids best-first, then asks best-first, 100 each (what the server sends on subscribe)."""
        entries = [self.entry(self.bids.levels[t]) for t in self.bids.best_first(WINDOW)]
        entries += [self.entry(self.asks.levels[t]) for t in self.asks.best_first(WINDOW)]
        return "[" + ",".join(entries) + "]"

    def checksum(self) -> int:
        """PROTOCOLS.md §1.10 over the wire tokens: interleaved top-25 bid/ask price:amount, CRC-32."""
        bids = self.bids.best_first(CHECKSUM_LEVELS)
        asks = self.asks.best_first(CHECKSUM_LEVELS)
        parts: list[str] = []
        for i in range(max(len(bids), len(asks))):
            if i < len(bids):
                level = self.bids.levels[bids[i]]
                parts += (level.price, level.amount_text)
            if i < len(asks):
                level = self.asks.levels[asks[i]]
                parts += (level.price, level.amount_text)
        value = zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value

    # ---------------------------------------------------------------- events -> payloads

    def step(self) -> tuple[list[str], int]:
        """One market event: the book payloads to send (1 or 2) and how many of them are deletes."""
        rng = self.rng
        side = self.bids if rng.random() < 0.5 else self.asks
        r = rng.random()
        if r >= P_UPDATE + P_ADD:
            return self._delete(side)
        if r >= P_UPDATE:
            added = self._add(side)
            if added is not None:
                return added
        return self._update(side), 0

    def _rank(self) -> int:
        return int(WINDOW * self.rng.random() ** 2)  # activity concentrates near the touch

    def _update(self, side: _Side) -> list[str]:
        tick = side.tick_at_rank(self._rank())
        old = side.levels[tick]
        level = self.new_level(side, tick)
        while level.amount == old.amount:
            level = self.new_level(side, tick)
        side.levels[tick] = level
        return [self.entry(level)]

    def _delete(self, side: _Side) -> tuple[list[str], int]:
        tick = side.tick_at_rank(self._rank())
        out = [self.delete_entry(side.remove(tick), side.is_bid)]
        deletes = 1
        entering = side.levels[side.tick_at_rank(WINDOW - 1)]  # the former 101st level
        out.append(self.entry(entering))
        self._keep_reservoir(side)
        return out, deletes

    def _add(self, side: _Side) -> tuple[list[str], int] | None:
        """A new level inside the window; the 100th level drops out of it (a delete is sent)."""
        other = self.asks if side.is_bid else self.bids
        touch = other.tick_at_rank(0)  # a new bid must stay below the best ask (and vice versa)
        bottom = side.tick_at_rank(WINDOW - 1)
        span = abs(touch - bottom) - 1
        if span < 1:
            return None
        for _ in range(4):
            offset = 1 + int(span * self.rng.random() ** 2)  # offset from the touch, near it mostly
            tick = touch - offset if side.is_bid else touch + offset
            if tick not in side.levels and tick != bottom:
                break
        else:
            return None
        level = self.new_level(side, tick)
        side.add(tick, level)
        leaving = side.levels[side.tick_at_rank(WINDOW)]  # pushed to rank 101
        self._keep_reservoir(side)
        return [self.entry(level), self.delete_entry(leaving, side.is_bid)], 1

    def _keep_reservoir(self, side: _Side) -> None:
        """Hidden levels below the window: refilled or trimmed without frames (the server sends none)."""
        while len(side.ticks) < WINDOW + RESERVOIR_MIN:
            deep = side.deepest() + (-1 if side.is_bid else 1) * self.rng.choice((1, 2, 3))
            side.add(deep, self.new_level(side, deep))
        while len(side.ticks) > WINDOW + RESERVOIR_MAX:
            side.remove(side.deepest())


@dataclass
class SessionInfo:
    """What was generated (written beside the capture; its presence marks a complete cache entry)."""

    book_update_frames: int
    delete_frames: int
    checksum_frames: int
    heartbeat_frames: int
    trade_frames: int
    total_frames: int
    first_us: int
    last_us: int
    seed: int

    @property
    def delete_share(self) -> float:
        return self.delete_frames / max(1, self.book_update_frames)


SymbolSpec = tuple[str, int, int, float, float, int, float]
"""wire symbol, book chanId, trades chanId, initial mid, tick size, tick decimals, share of events."""


def _write_session(
    out: Callable[[RawFrame], None],
    rng: random.Random,
    symbols: Sequence[SymbolSpec],
    conn: str,
    mean_gap_us: int,
    done: Callable[[dict[str, int], int], bool],
    checksum_every_us: int = CHECKSUM_EVERY_US,
) -> tuple[dict[str, int], int]:
    """One connection's frames, passed to ``out`` until ``done(counts, now)``; returns (counts, last µs).

    The random draws for two symbols are exactly those the 2-symbol session has always made (its
    cached captures stay valid); one symbol picks its book with the same draw, always 0.
    """
    now = START_US
    seq = 0
    counts = {"book": 0, "delete": 0, "cs": 0, "hb": 0, "trade": 0, "total": 0}

    def send(text: str) -> None:
        nonlocal now
        now += 1 + int(rng.expovariate(1.0) * 200)  # frames of one burst are µs apart
        out(RawFrame(bfx.EXCHANGE, conn, "in", now, text))
        counts["total"] += 1

    def send_array(chan: int, body: str) -> None:
        nonlocal seq
        seq += 1
        send(f"[{chan},{body},{seq},{now // 1000}]")

    send('{"event":"info","version":2,"serverId":"bench-0000","platform":{"status":1}}')
    send(f'{{"event":"conf","status":"OK","flags":{bfx.CONF_FLAGS}}}')
    books: list[_SymbolBook] = []
    for wire, book_chan, trades_chan, mid, tick, decimals, _share in symbols:
        send(
            json.dumps(
                {
                    "event": "subscribed",
                    "channel": "book",
                    "chanId": book_chan,
                    "symbol": wire,
                    "prec": "P0",
                    "freq": "F0",
                    "len": "100",
                    "pair": wire[1:],
                },
                separators=(",", ":"),
            )
        )
        send(
            json.dumps(
                {
                    "event": "subscribed",
                    "channel": "trades",
                    "chanId": trades_chan,
                    "symbol": wire,
                    "pair": wire[1:],
                },
                separators=(",", ":"),
            )
        )
        books.append(_SymbolBook(wire, mid, tick, decimals, rng))
    for book, (_w, book_chan, *_rest) in zip(books, symbols, strict=True):
        send_array(book_chan, book.snapshot_payload())
    for _w, _b, trades_chan, *_rest in symbols:
        send_array(trades_chan, "[]")  # empty trades snapshot

    # symbol i is chosen when a uniform draw falls below the running sum of shares up to it
    upto = list(accumulate(s[6] for s in symbols))
    last = len(symbols) - 1
    next_cs = [now + checksum_every_us * (i + 1) // len(symbols) for i in range(len(symbols))]
    changed = [False] * len(symbols)
    next_hb = now + HEARTBEAT_EVERY_US
    trade_id = 1_700_000_000
    while not done(counts, now):
        now += int(rng.expovariate(1.0) * mean_gap_us)
        i = min(bisect_right(upto, rng.random()), last)
        book, book_chan, trades_chan = books[i], symbols[i][1], symbols[i][2]
        payloads, deletes = book.step()
        for payload in payloads:
            send_array(book_chan, payload)
        counts["book"] += len(payloads)
        counts["delete"] += deletes
        changed[i] = True
        if rng.random() < TRADE_PROBABILITY:
            trade_id += rng.randint(1, 9)
            size = book.random_size()
            amount = size if rng.random() < 0.5 else -size
            price = book.price_text((book.asks if amount > 0 else book.bids).tick_at_rank(0))
            trade = f"[{trade_id},{now // 1000},{js_num_str(amount)},{price}]"
            send_array(trades_chan, f'"te",{trade}')
            send_array(trades_chan, f'"tu",{trade}')
            counts["trade"] += 2
        for j, (_w, chan, *_rest) in enumerate(symbols):
            if now >= next_cs[j]:
                next_cs[j] += checksum_every_us
                if changed[j]:  # the server sends no checksum for a book that didn't change
                    send_array(chan, f'"cs",{books[j].checksum()}')
                    counts["cs"] += 1
                    changed[j] = False
        if now >= next_hb:
            next_hb += HEARTBEAT_EVERY_US
            for _w, book_chan_j, trades_chan_j, *_rest in symbols:
                for chan in (book_chan_j, trades_chan_j):
                    send_array(chan, '"hb"')
                    counts["hb"] += 1
    # Close with a checksum per symbol so every generated book frame can be verified (and stored).
    for j, (_w, chan, *_rest) in enumerate(symbols):
        send_array(chan, f'"cs",{books[j].checksum()}')
        counts["cs"] += 1
    return counts, now


def generate(out_dir: Path, frames: int = DEFAULT_FRAMES, seed: int = DEFAULT_SEED) -> SessionInfo:
    """Write a capture with ``frames`` book update frames to ``out_dir/raw/...``; return its summary."""
    writer = RawCaptureWriter(out_dir)
    counts, now = _write_session(
        writer.write, random.Random(seed), SYMBOLS, CONN, MEAN_GAP_US, lambda c, _now: c["book"] >= frames
    )
    writer.close()
    info = SessionInfo(
        book_update_frames=counts["book"],
        delete_frames=counts["delete"],
        checksum_frames=counts["cs"],
        heartbeat_frames=counts["hb"],
        trade_frames=counts["trade"],
        total_frames=counts["total"],
        first_us=START_US,
        last_us=now,
        seed=seed,
    )
    (out_dir / META_NAME).write_text(json.dumps(info.__dict__, indent=2) + "\n")
    return info


# ---------------------------------------------------------------------------------------- one symbol
# per connection (the collector's Kinesis mode): the multi-symbol sessions of benchmarks/aws_scale.py

SYMBOL_MEAN_GAP_US = MEAN_GAP_US * len(SYMBOLS)
"""One event per 60 ms on each connection: the 2-symbol session's average rate per symbol (~24 book
frames/s)."""


def symbol_spec(index: int) -> SymbolSpec:
    """Symbol ``index`` of a multi-symbol session: BTC-USD, ETH-USD (as in :data:`SYMBOLS`), then
    ``tS002:USD`` (``S002-USD``), ``tS003:USD``…, with prices spread over four orders of magnitude."""
    if index < len(SYMBOLS):
        return (*SYMBOLS[index][:6], 1.0)
    mid = 10.0 ** (index % 4) * (1 + index % 7)
    decimals = 3 - index % 4
    return (f"tS{index:03d}:USD", 20_000 + 2 * index, 20_001 + 2 * index, mid, 10.0**-decimals, decimals, 1.0)


def symbol_connection(index: int, seconds: float, seed: int = DEFAULT_SEED) -> list[RawFrame]:
    """Symbol ``index`` alone on its own connection for ``seconds`` of session time, in memory.

    Each connection has its own seed (derived from ``seed`` and ``index``) and its own SEQ_ALL
    sequence, subscribes, gets its snapshot, then one market event per :data:`SYMBOL_MEAN_GAP_US` on
    average, with checksums every 2.5 s and a closing checksum (so every book frame can be verified).
    Connection ``bench-s<index>``, starting at :data:`START_US` (the start of a ten-minute lake window).
    """
    frames: list[RawFrame] = []
    end = START_US + int(seconds * 1_000_000)
    _write_session(
        frames.append,
        random.Random(seed * 1_000 + index),
        [symbol_spec(index)],
        f"bench-s{index:03d}",
        SYMBOL_MEAN_GAP_US,
        lambda _counts, now: now >= end,
    )
    return frames


def slot_connection(
    count: int,
    seconds: float,
    seed: int = DEFAULT_SEED,
    *,
    busier: float = 1.0,
    checksum_every_us: int = CHECKSUM_EVERY_US,
) -> list[RawFrame]:
    """Symbols ``0..count-1`` together on one connection, as one Kinesis slot of the collector carries them.

    Each symbol gets ``busier`` times the per-symbol rate of :func:`symbol_connection` (~24 book frames/s
    at 1.0) and a checksum every ``checksum_every_us`` (Bitfinex: ~2.5 s, gaps up to 8 s observed).
    Connection ``bench-slot``, one SEQ_ALL sequence for all the symbols.
    """
    frames: list[RawFrame] = []
    end = START_US + int(seconds * 1_000_000)
    _write_session(
        frames.append,
        random.Random(seed * 1_000 + count),
        [symbol_spec(i) for i in range(count)],
        "bench-slot",
        max(1, int(SYMBOL_MEAN_GAP_US / count / busier)),
        lambda _counts, now: now >= end,
        checksum_every_us,
    )
    return frames


def session_dir(frames: int, seed: int = DEFAULT_SEED, cache: Path = CACHE_DIR) -> Path:
    return cache / f"bitfinex-{frames}-seed{seed}"


def ensure_session(frames: int = DEFAULT_FRAMES, seed: int = DEFAULT_SEED, cache: Path = CACHE_DIR) -> Path:
    """The cached capture directory for (frames, seed), generated first if missing or incomplete."""
    out = session_dir(frames, seed, cache)
    if (out / META_NAME).exists():
        return out
    if out.exists():  # an interrupted generation: start over
        import shutil

        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    started = time.perf_counter()
    info = generate(tmp, frames, seed)
    tmp.rename(out)
    print(
        f"generated {info.total_frames:,} frames ({info.book_update_frames:,} book updates, "
        f"{info.delete_share:.1%} deletes) in {time.perf_counter() - started:.1f} s -> {out}",
        file=sys.stderr,
    )
    return out


def load_info(session: Path) -> SessionInfo:
    return SessionInfo(**json.loads((session / META_NAME).read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="book update frames")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=None, help="capture directory (default: the cache)")
    args = parser.parse_args(argv)
    if args.out is not None:
        info = generate(args.out, args.frames, args.seed)
        print(json.dumps(info.__dict__))
    else:
        print(ensure_session(args.frames, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
