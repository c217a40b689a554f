"""Bitso wire format (PROTOCOLS.md §3): websocket and REST frames <-> typed records, Decimal prices.

Bitso sends prices as decimal strings; they stay :class:`~decimal.Decimal` from the wire to the spread
so that ``spread = (ask - bid) * 100 / ask`` is exact before its documented rounding
(:data:`SPREAD_QUANTUM`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import orjson

from marketpipe import records
from marketpipe.errors import ConfigError
from marketpipe.wire import BadFrame, json_object

EXCHANGE = "bitso"
DEFAULT_WS_URL = "wss://ws.bitso.com"
DEFAULT_API_URL = "https://api.bitso.com"
DEFAULT_BOOKS = ("btc_mxn", "usd_mxn")
ORDER_BOOK_PATH = "/v3/order_book/"
RATE_LIMIT_STATUS = 420
RATE_LIMIT_CODES = ("0801", "0802")
UNKNOWN_BOOK_CODE = "0301"
SPREAD_QUANTUM = Decimal("1E-10")
"""Spreads are percentages rounded half-even to 10 decimal places (exact in a double: <= 12 digits)."""

_BOOK = re.compile(r"^[a-z0-9]+_[a-z0-9]+$")


def validate_book(book: str) -> str:
    """``btc_mxn`` (lower case ``major_minor``); anything else is a ConfigError (Bitso rejects it)."""
    if not _BOOK.match(book):
        raise ConfigError(f"invalid Bitso book {book!r}: expected lower-case major_minor such as btc_mxn")
    return book


def spread_percent(bid: Decimal, ask: Decimal) -> Decimal:
    """``(ask - bid) * 100 / ask`` rounded half-even to :data:`SPREAD_QUANTUM`."""
    return ((ask - bid) * 100 / ask).quantize(SPREAD_QUANTUM, rounding=ROUND_HALF_EVEN)


def subscribe_frame(book: str, channel: str = "orders") -> str:
    return orjson.dumps({"action": "subscribe", "book": book, "type": channel}).decode()


def order_book_url(api_url: str, book: str) -> str:
    return f"{api_url.rstrip('/')}{ORDER_BOOK_PATH}?book={book}"


def rest_conn(book: str) -> str:
    """Capture ``conn`` of a REST order book answer: ``rest:/v3/order_book/?book=btc_mxn``."""
    return records.rest_conn(f"{ORDER_BOOK_PATH}?book={book}")


def book_of_rest_conn(conn: str) -> str | None:
    marker = "?book="
    rest = records.parse_rest_conn(conn)
    if rest is None or rest[0] is not None or marker not in rest[1]:
        return None
    return rest[1].split(marker, 1)[1].split("&", 1)[0]


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True, slots=True)
class Top:
    """Best bid and ask of a book (either may be None for an empty side)."""

    bid: Decimal | None
    ask: Decimal | None


@dataclass(frozen=True, slots=True)
class OrdersUpdate:
    """An ``orders`` frame: the top 20 orders per side, a full replacement."""

    book: str
    top: Top
    sent_ms: int | None


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    book: str | None
    channel: str
    response: str

    @property
    def ok(self) -> bool:
        return self.response == "ok"


@dataclass(frozen=True, slots=True)
class SubscribeError:
    channel: str | None
    message: str

    @property
    def unknown_book(self) -> str | None:
        match = re.search(r"not supported - (\S+)", self.message)
        return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class KeepAlive:
    pass


@dataclass(frozen=True, slots=True)
class Other:
    """A valid frame this monitor does not use (``trades``, ``diff-orders``, …)."""

    kind: str


@dataclass(frozen=True, slots=True)
class RestBook:
    book: str
    top: Top
    sequence: int | None


@dataclass(frozen=True, slots=True)
class RestError:
    code: str
    message: str

    @property
    def rate_limited(self) -> bool:
        return self.code in RATE_LIMIT_CODES


WsMessage = OrdersUpdate | SubscribeAck | SubscribeError | KeepAlive | Other


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, str | int):
        raise BadFrame(f"price is not a decimal string: {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise BadFrame(f"price is not a decimal: {value!r}") from exc
    if not result.is_finite() or result <= 0:
        raise BadFrame(f"price out of range: {value!r}")
    return result


def best_prices(bids: Any, asks: Any, price_key: str) -> Top:
    """Highest bid and lowest ask over entries (order-independent: never trust the list order)."""
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise BadFrame("bids/asks are not lists")
    try:
        bid_prices = [_decimal(entry[price_key]) for entry in bids]
        ask_prices = [_decimal(entry[price_key]) for entry in asks]
    except (KeyError, TypeError) as exc:
        raise BadFrame(f"entry without {price_key!r}") from exc
    return Top(max(bid_prices) if bid_prices else None, min(ask_prices) if ask_prices else None)


def parse_ws(text: str) -> WsMessage:
    """One websocket text frame -> record; raises :class:`BadFrame` for anything undocumented."""
    msg = json_object(text)
    kind = msg.get("type")
    if msg.get("action") == "subscribe":
        if "error" in msg:
            return SubscribeError(kind if isinstance(kind, str) else None, str(msg["error"]))
        return SubscribeAck(msg.get("book"), str(kind), str(msg.get("response", "")))
    if kind == "ka":
        return KeepAlive()
    if kind == "orders":
        book = msg.get("book")
        payload = msg.get("payload")
        if not isinstance(book, str) or not isinstance(payload, dict):
            raise BadFrame("orders frame without book or payload")
        sent = msg.get("sent")
        return OrdersUpdate(
            book,
            best_prices(payload.get("bids", []), payload.get("asks", []), "r"),
            sent if isinstance(sent, int) else None,
        )
    if isinstance(kind, str):
        return Other(kind)
    raise BadFrame("frame without type")


def parse_rest_book(text: str, book: str) -> RestBook | RestError:
    """A ``/v3/order_book/`` answer (any status) -> its best prices or the API's error."""
    msg = json_object(text)
    if msg.get("success") is not True:
        error = msg.get("error")
        if not isinstance(error, dict):
            error = {}
        return RestError(str(error.get("code", "")), str(error.get("message", "")))
    payload = msg.get("payload")
    if not isinstance(payload, dict):
        raise BadFrame("order book without payload")
    sequence = payload.get("sequence")
    return RestBook(
        book,
        best_prices(payload.get("bids", []), payload.get("asks", []), "price"),
        int(sequence) if isinstance(sequence, str | int) and str(sequence).isdigit() else None,
    )
