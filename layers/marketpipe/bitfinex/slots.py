"""Kinesis slots: how the collector cuts many Bitfinex symbols into connections and partition keys.

Bitfinex numbers the frames of a connection with one ``SEQ_ALL`` counter across all its channels, so the
book builder can only check a connection's sequence if one partition key carries all of that
connection's frames. A slot is therefore one connection and one key (``bitfinex:slot-000``). Hundreds of
symbols cannot each have a connection (20 new connections a minute, PROTOCOLS.md §1.11), and a slot
cannot hold more symbols than its book-builder checkpoint can carry (one DynamoDB item): the size below
is the smaller of the two limits. Pure: the collector, the service and the CDK app share it.
"""

from __future__ import annotations

from collections.abc import Sequence

from marketpipe.bitfinex.wire import MAX_SUBSCRIPTIONS_PER_CONNECTION
from marketpipe.errors import ConfigError

CHANNELS_PER_SYMBOL = 2  # book + trades
SLOT_STATE_BUDGET = 280_000
"""Compressed book-builder checkpoint bytes a slot may plan for: 80 % of the 350 000 bytes the
checkpoint store accepts (``aws.checkpoints.MAX_STATE_BYTES``; a DynamoDB item holds 400 KB)."""
BUSY_BOOK_STATE_BYTES = 45_000
"""Measured checkpoint share of one busy 100-level book (``benchmarks/slot_state.py``, docs/AWS.md):
~80 book frames/s with a checksum only every 8 s (the longest gap observed live, PROTOCOLS.md §1.10),
so up to ~650 unverified 404-column book rows waiting in the state, and 2 000 remembered trade ids."""
SYMBOLS_PER_SLOT = min(
    MAX_SUBSCRIPTIONS_PER_CONNECTION // CHANNELS_PER_SYMBOL, SLOT_STATE_BUDGET // BUSY_BOOK_STATE_BYTES
)
"""Symbols of one slot (6, 12 channels). The 25-channel cap alone would allow 12, but 12 busy books
measured up to 478 KiB of checkpoint (391 KiB with the store's trimmed trade ids), over the limit; 6 busy
books measured 259 KiB at most."""
SLOT_PREFIX = "slot-"


def slot_symbols(wire_symbols: Sequence[str], size: int = SYMBOLS_PER_SLOT) -> list[list[str]]:
    """The symbols, deduplicated and sorted, cut into consecutive slots of ``size``.

    Sorted, so the same symbol list gives the same slots in every process and after every restart (the
    book builder keeps one checkpoint per slot). A changed list re-cuts the slots from the first changed
    position on (docs/AWS.md says what that costs during a deployment).
    """
    if size < 1:
        raise ConfigError(f"a slot holds at least one symbol, not {size}")
    symbols = sorted(set(wire_symbols))
    return [symbols[i : i + size] for i in range(0, len(symbols), size)]


def slot_count(symbols: int, size: int = SYMBOLS_PER_SLOT) -> int:
    """Slots (connections, partition keys) for ``symbols`` distinct symbols."""
    return -(-symbols // size)


def slot_name(index: int) -> str:
    """Partition name of slot ``index``: ``slot-000``, ``slot-001``… (the key: ``bitfinex:slot-000``).
    Zero-padded so that keys sort in slot order; never mistaken for a ``BASE-QUOTE`` symbol."""
    return f"{SLOT_PREFIX}{index:03d}"
