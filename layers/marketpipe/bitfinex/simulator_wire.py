"""Bitfinex v2 wire text for the simulator: flags, JS-formatted entries and the book checksum.

Every number goes on the wire through :func:`marketpipe.jsnum.js_num_str_cached` (JavaScript
``Number#toString``), never ``json.dumps(float)``: the real server is a JavaScript process, and the
checksum is defined over the exact text of each token. The checksum here is computed from the very
same token strings that the frame builders emit (PROTOCOLS.md §1.10).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

from marketpipe.bitfinex.market import Trade, WireEntry
from marketpipe.jsnum import js_num_str_cached

__all__ = [
    "BOOK_LENGTHS",
    "BOOK_PRECISIONS",
    "BULK_UPDATES",
    "CHECKSUM_DEPTH",
    "OB_CHECKSUM",
    "SEQ_ALL",
    "TIMESTAMP",
    "book_checksum",
    "checksum_text",
    "entries_text",
    "entry_text",
    "normalize_symbol",
    "pair_of",
    "to_signed32",
    "trade_text",
]

TIMESTAMP = 32768
SEQ_ALL = 65536
OB_CHECKSUM = 131072
BULK_UPDATES = 536870912

BOOK_LENGTHS = ("1", "25", "100", "250")
BOOK_PRECISIONS = ("P0", "P1", "P2", "P3", "P4")
CHECKSUM_DEPTH = 25

num = js_num_str_cached


def normalize_symbol(symbol: str) -> str:
    """Trading symbols are acked with their ``t`` prefix even when sent without it."""
    if symbol[:1] in ("t", "f") and symbol[1:2].isupper():
        return symbol
    return "t" + symbol


def pair_of(symbol: str) -> str:
    """The ``pair`` field of an ack: the symbol without its ``t`` prefix."""
    return symbol[1:] if symbol[:1] == "t" else symbol


def entry_text(entry: WireEntry) -> str:
    """``[PRICE,COUNT,AMOUNT]`` with JavaScript number text."""
    return f"[{num(entry.price)},{entry.order_count},{num(entry.amount)}]"


def entries_text(entries: Iterable[WireEntry]) -> str:
    """``[[P,C,A],...]`` as in a snapshot or a bulk update."""
    return "[" + ",".join(entry_text(entry) for entry in entries) + "]"


def trade_text(trade: Trade) -> str:
    """``[ID,MTS,AMOUNT,PRICE]`` with JavaScript number text."""
    return f"[{trade.id},{trade.mts},{num(trade.amount)},{num(trade.price)}]"


def to_signed32(value: int) -> int:
    """CRC32 as the signed 32-bit integer Bitfinex sends."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def checksum_text(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> str:
    """Interleave the top 25 bids and asks (price, signed amount tokens) and join with ``:``."""
    parts: list[str] = []
    for i in range(CHECKSUM_DEPTH):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    return ":".join(parts)


def book_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """Signed CRC32 of :func:`checksum_text`; tokens best first, ask amounts negative."""
    return to_signed32(zlib.crc32(checksum_text(bids, asks).encode("utf-8")))


def book_tokens(levels: Iterable[tuple[float, int, float]], sign: int) -> list[tuple[str, str]]:
    """``(price, count, size)`` levels as the ``(price, signed amount)`` tokens put on the wire."""
    return [(num(price), num(sign * size)) for price, _count, size in levels]
