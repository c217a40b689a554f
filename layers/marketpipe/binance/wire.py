"""Binance spot websocket streams (PROTOCOLS.md §2): combined-stream frames <-> typed records.

Prices and quantities stay :class:`~decimal.Decimal` from the wire so VWAPs, spreads and averages are
exact before they are stored as doubles.

Symbols are kept as Binance writes them (``BTCUSDT``): splitting them into ``BASE-QUOTE`` needs the
exchange's symbol list (``exchangeInfo``), and a guessed split is wrong for some symbols.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from marketpipe.errors import ConfigError
from marketpipe.tables.binance import DEPTH_LEVELS
from marketpipe.wire import BadFrame, json_object

EXCHANGE = "binance"
DEFAULT_WS_URL = "wss://stream.binance.com:9443"
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
ALL_MINI_TICKERS = "!miniTicker@arr"
SERVER_SHUTDOWN_STREAM = "!serverShutdown"
MAX_STREAMS_PER_CONNECTION = 1024

_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")


def validate_symbol(symbol: str) -> str:
    """``btcusdt`` or ``BTCUSDT`` -> ``BTCUSDT``; anything else is a ConfigError."""
    upper = symbol.strip().upper()
    if not _SYMBOL.match(upper):
        raise ConfigError(f"invalid Binance symbol {symbol!r}: expected letters and digits such as BTCUSDT")
    return upper


def depth_stream(symbol: str) -> str:
    return f"{symbol.lower()}@depth{DEPTH_LEVELS}@100ms"


def mini_ticker_stream(symbol: str) -> str:
    return f"{symbol.lower()}@miniTicker"


def combined_url(base_url: str, streams: Sequence[str]) -> str:
    """``wss://host:9443`` + streams -> ``wss://host:9443/stream?streams=a/b/c``."""
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


def shard_streams(streams: Sequence[str], per_connection: int) -> list[list[str]]:
    """Split streams over connections, at most ``per_connection`` (≤ 1,024, Binance's limit) each."""
    if not 1 <= per_connection <= MAX_STREAMS_PER_CONNECTION:
        raise ConfigError(
            f"streams per connection must be between 1 and {MAX_STREAMS_PER_CONNECTION}, got {per_connection}"
        )
    unique = list(dict.fromkeys(streams))
    return [unique[i : i + per_connection] for i in range(0, len(unique), per_connection)]


@dataclass(frozen=True, slots=True)
class MiniTicker:
    event_ms: int
    symbol: str
    close: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    base_volume: Decimal
    quote_volume: Decimal


@dataclass(frozen=True, slots=True)
class MiniTickers:
    stream: str
    tickers: tuple[MiniTicker, ...]


@dataclass(frozen=True, slots=True)
class Depth:
    """A complete top-N snapshot (the payload has no symbol: it comes from the stream name)."""

    symbol: str
    last_update_id: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    event_ms: int


@dataclass(frozen=True, slots=True)
class ControlReply:
    """Answer to a SUBSCRIBE/UNSUBSCRIBE/… request: ``result`` or an ``error``."""

    id: Any
    result: Any
    error: str | None


Message = MiniTickers | Depth | ServerShutdown | ControlReply


def _dec(value: Any, name: str) -> Decimal:
    if not isinstance(value, str):
        raise BadFrame(f"{name} is not a decimal string")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise BadFrame(f"{name} is not a number: {value!r}") from exc
    if not result.is_finite():
        raise BadFrame(f"{name} is not finite")
    return result


def _ticker(obj: Any) -> MiniTicker:
    if not isinstance(obj, dict) or obj.get("e") != "24hrMiniTicker":
        raise BadFrame("not a 24hrMiniTicker object")
    event, symbol = obj.get("E"), obj.get("s")
    if not isinstance(event, int) or not isinstance(symbol, str):
        raise BadFrame("mini ticker without E or s")
    return MiniTicker(
        event,
        symbol,
        _dec(obj.get("c"), "c"),
        _dec(obj.get("o"), "o"),
        _dec(obj.get("h"), "h"),
        _dec(obj.get("l"), "l"),
        _dec(obj.get("v"), "v"),
        _dec(obj.get("q"), "q"),
    )


def _levels(value: Any, name: str) -> tuple[tuple[Decimal, Decimal], ...]:
    if not isinstance(value, list):
        raise BadFrame(f"{name} is not a list")
    out = []
    for level in value:
        if not isinstance(level, list) or len(level) < 2:
            raise BadFrame(f"{name} level is not [price, qty]")
        out.append((_dec(level[0], "price"), _dec(level[1], "qty")))
    return tuple(out)


def symbol_of_stream(stream: str) -> str:
    """``btcusdt@depth20@100ms`` -> ``BTCUSDT``."""
    return stream.split("@", 1)[0].upper()


def parse_payload(stream: str, data: Any) -> Message:
    """One payload of a known stream (combined envelope removed, or the stream of a raw connection)."""
    if isinstance(data, dict) and data.get("e") == "serverShutdown":
        return ServerShutdown(int(data.get("E") or 0))
    if "@depth" in stream:
        if not isinstance(data, dict) or not isinstance(data.get("lastUpdateId"), int):
            raise BadFrame("depth payload without lastUpdateId")
        return Depth(
            symbol_of_stream(stream),
            data["lastUpdateId"],
            _levels(data.get("bids"), "bids"),
            _levels(data.get("asks"), "asks"),
        )
    if "miniTicker" in stream:
        items = data if isinstance(data, list) else [data]
        return MiniTickers(stream, tuple(_ticker(t) for t in items))
    raise BadFrame(f"unsupported stream {stream!r}")


def parse(text: str) -> Message:
    """A combined-stream frame (``{"stream":…,"data":…}``) or a control answer."""
    msg = json_object(text)
    if "stream" in msg and "data" in msg:
        stream = msg["stream"]
        if not isinstance(stream, str):
            raise BadFrame("stream is not a string")
        return parse_payload(stream, msg["data"])
    if msg.get("e") == "serverShutdown":
        return ServerShutdown(int(msg.get("E") or 0))
    if "id" in msg and ("result" in msg or "error" in msg):
        error = msg.get("error")
        text_error = None
        if error is not None:
            text_error = str(error.get("msg", error)) if isinstance(error, dict) else str(error)
        return ControlReply(msg["id"], msg.get("result"), text_error)
    raise BadFrame("unknown message shape")


def decimal_text(value: Decimal, places: int = 8) -> str:
    """Binance's wire form: fixed 8 decimals (``"43680.01000000"``)."""
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def streams_for(symbols: Iterable[str], *, all_tickers: bool = True) -> list[str]:
    """The run's streams: every mini-ticker, then one depth20 stream per symbol."""
    streams = [ALL_MINI_TICKERS] if all_tickers else []
    return streams + [depth_stream(s) for s in symbols]
