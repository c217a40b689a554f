"""Bitfinex websocket v2 wire facts: flags, info codes, symbols and request frames (PROTOCOLS.md §1)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from marketpipe.errors import ConfigError
from marketpipe.records import parse_rest_conn

EXCHANGE = "bitfinex"
DEFAULT_WS_URL = "wss://api-pub.bitfinex.com/ws/2"
DEFAULT_API_URL = "https://api-pub.bitfinex.com"

FLAG_TIMESTAMP = 32768
FLAG_SEQ_ALL = 65536
FLAG_OB_CHECKSUM = 131072
FLAG_BULK_UPDATES = 536870912
CONF_FLAGS = FLAG_TIMESTAMP | FLAG_SEQ_ALL | FLAG_OB_CHECKSUM
"""What we ask for (229376). Bulk updates are not requested but are accepted if a server sends them."""

INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061

ERROR_SUBSCRIPTION_FAILED = 10300
ERROR_ALREADY_SUBSCRIBED = 10301
ERROR_SUBSCRIPTION_LIMIT = 10305

BOOK_PRECISION = "P0"
BOOK_FREQUENCY = "F0"
BOOK_LENGTH = 100
MAX_SUBSCRIPTIONS_PER_CONNECTION = 25
MAX_CONNECTIONS_PER_MINUTE = 20

_SYMBOL_RE = re.compile(r"^t?([A-Z0-9]{2,}(?::[A-Z0-9]{2,})?)$")
_CURRENCY_ALIASES = {"UST": "USDT"}
_CURRENCY_WIRE = {v: k for k, v in _CURRENCY_ALIASES.items()}


def normalize_symbol(wire_symbol: str) -> str:
    """``tBTCUSD`` -> ``BTC-USD``, ``tAVAX:USD`` -> ``AVAX-USD``, ``tBTCUST`` -> ``BTC-USDT``."""
    body = wire_symbol[1:] if wire_symbol.startswith("t") else wire_symbol
    if ":" in body:
        base, quote = body.split(":", 1)
    elif len(body) == 6:
        base, quote = body[:3], body[3:]
    else:
        return body
    return f"{_CURRENCY_ALIASES.get(base, base)}-{_CURRENCY_ALIASES.get(quote, quote)}"


def wire_symbol(symbol: str) -> str:
    """``BTC-USD``, ``BTCUSD``, ``tBTCUSD``, ``btc/usd`` -> ``tBTCUSD``; ``AVAX-USD`` -> ``tAVAX:USD``.

    Raises ConfigError for text that cannot be a Bitfinex trading pair.
    """
    text = symbol.strip().upper().replace("/", "-")
    if "-" in text:
        base, _, quote = text.partition("-")
        base, quote = _CURRENCY_WIRE.get(base, base), _CURRENCY_WIRE.get(quote, quote)
        if not (base.isalnum() and quote.isalnum()) or len(base) < 2 or len(quote) < 2:
            raise ConfigError(f"invalid Bitfinex symbol {symbol!r} (expected e.g. BTC-USD)")
        body = f"{base}{quote}" if len(base) == 3 and len(quote) == 3 else f"{base}:{quote}"
        return "t" + body
    if text.startswith("T") and symbol.strip().startswith("t"):
        text = text[1:]
    match = _SYMBOL_RE.match(text)
    if not match or (":" not in text and len(text) != 6):
        raise ConfigError(f"invalid Bitfinex symbol {symbol!r} (expected e.g. BTC-USD or tBTCUSD)")
    return "t" + match.group(1)


PAIR_LIST_PATH = "/v2/conf/pub:list:pair:exchange"
"""REST: every trading pair the exchange lists, ``[["BTCUSD","ETHUSD","AVAX:USD",…]]`` (``--symbols all``)."""


def _api_base(api_url: str) -> str:
    """The REST base without a trailing ``/v2``: it may be configured with or without it."""
    base = api_url.rstrip("/")
    return base[:-3] if base.endswith("/v2") else base


def trades_hist_url(api_url: str, wire: str) -> str:
    """REST trades history URL; the base may be given with or without the ``/v2`` suffix."""
    return f"{_api_base(api_url)}{trades_hist_path(wire)}"


def pair_list_url(api_url: str) -> str:
    return f"{_api_base(api_url)}{PAIR_LIST_PATH}"


def parse_pair_list(body: str) -> tuple[list[str], list[str]]:
    """``(wire symbols, skipped entries)`` of a :data:`PAIR_LIST_PATH` answer; wires sorted, unique.

    The answer is a list holding one list of pairs without the ``t`` prefix. An entry that is not a
    trading pair we can name (``BASE-QUOTE``) is skipped and returned, rather than failing the start.
    Raises ConfigError when the body has another shape (an error answer, an HTML page).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not (isinstance(data, list) and data and isinstance(data[0], list)):
        raise ConfigError(f"unexpected answer to {PAIR_LIST_PATH}: {body[:200]!r}")
    wires: set[str] = set()
    skipped: list[str] = []
    for pair in data[0]:
        try:
            if not isinstance(pair, str):
                raise ConfigError(f"not a pair: {pair!r}")
            wire = wire_symbol("t" + pair)
            if wire_symbol(normalize_symbol(wire)) != wire:
                raise ConfigError(f"{pair} does not survive normalization")
        except ConfigError:
            skipped.append(str(pair))
            continue
        wires.add(wire)
    return sorted(wires), skipped


def trades_hist_path(wire: str) -> str:
    """Request path of the REST trades history of one symbol (the capture conn's path, before ``?``)."""
    return f"/v2/trades/{wire}/hist"


def wire_of_trades_hist_path(path: str) -> str | None:
    """Wire symbol of a trades history request path (``/v2/trades/tBTCUSD/hist?start=…``), else None."""
    parts = path.split("?")[0].strip("/").split("/")
    if len(parts) == 4 and parts[:2] == ["v2", "trades"] and parts[3] == "hist":
        return parts[2]
    return None


def wire_of_backfill_conn(conn: str) -> str | None:
    """Wire symbol of a REST backfill capture conn (``rest:/v2/trades/tBTCUSD/hist?...``), else None."""
    rest = parse_rest_conn(conn)
    return None if rest is None or rest[0] is not None else wire_of_trades_hist_path(rest[1])


def conf_frame(flags: int = CONF_FLAGS) -> str:
    return orjson.dumps({"event": "conf", "flags": flags}).decode()


def subscribe_book_frame(wire: str, length: int = BOOK_LENGTH) -> str:
    return orjson.dumps(
        {
            "event": "subscribe",
            "channel": "book",
            "symbol": wire,
            "prec": BOOK_PRECISION,
            "freq": BOOK_FREQUENCY,
            "len": str(length),
            "subId": f"book:{wire}",
        }
    ).decode()


def subscribe_trades_frame(wire: str) -> str:
    return orjson.dumps(
        {"event": "subscribe", "channel": "trades", "symbol": wire, "subId": f"trades:{wire}"}
    ).decode()


def unsubscribe_frame(chan_id: int) -> str:
    return orjson.dumps({"event": "unsubscribe", "chanId": chan_id}).decode()


def info_code(event: dict[str, Any]) -> int | None:
    """Info/error codes arrive as int (and, in old posts, as strings): accept both."""
    code = event.get("code")
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return None
