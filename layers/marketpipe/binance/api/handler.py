"""The read API as one pure function: :func:`handle` (request + store -> response).

The same function answers ``marketpipe serve`` (stdlib HTTP server) and API Gateway HTTP API v2 events
(``functions/binance_api/handler.py``), so both behave identically and are tested once.

Routes (all ``GET``; JSON; every error is ``{"error": {"status": …, "message": …}}``):

* ``/v1/binance/metrics/latest?symbol=BTCUSDT`` — newest ``binance_book_metrics`` row;
* ``/v1/binance/average?symbol=BTCUSDT&window=60`` — time-weighted average of the book price over the
  ``window`` seconds (1–3600) ending at the newest metrics row, computed like the stored averages;
* ``/v1/binance/tickers/latest?symbol=BTCUSDT`` — newest mini-ticker;
* ``/v1/binance/alerts?symbol=BTCUSDT&limit=20`` — newest price-level alerts (symbol optional);
* ``/openapi.json`` — the OpenAPI 3.1 description.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from marketpipe.binance import wire as binance
from marketpipe.binance.api.openapi import DEFAULT_ALERTS, MAX_ALERTS, MAX_WINDOW_S, openapi_document
from marketpipe.binance.api.store import NamedRow, ReadStore
from marketpipe.binance.price_levels import PriceAlert, make_watch
from marketpipe.binance.processor import DEFAULT_MAX_HOLD_MS, time_weighted_average
from marketpipe.errors import ConfigError
from marketpipe.timeutil import us_to_iso

log = logging.getLogger("marketpipe.binance.api")


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    def json(self) -> bytes:
        return orjson.dumps(self.body)


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> ApiResponse:
    return ApiResponse(status, {"error": {"status": status, "message": message}})


def _only(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise BadRequest(400, f"unknown parameter {unknown[0]!r} (allowed: {', '.join(allowed) or 'none'})")


def _symbol(query: Mapping[str, str], required: bool = True) -> str | None:
    value = query.get("symbol")
    if value is None or value == "":
        if required:
            raise BadRequest(400, "missing parameter 'symbol' (a Binance symbol such as BTCUSDT)")
        return None
    try:
        return binance.validate_symbol(value)
    except ConfigError as exc:
        raise BadRequest(400, str(exc)) from exc


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(400, f"parameter {name!r} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(400, f"parameter {name!r} must be between {low} and {high}, got {value}")
    return value


def _ts(us: Any) -> str | None:
    return None if us is None else us_to_iso(int(us))


def _metrics(symbol: str, query: Mapping[str, str], store: ReadStore) -> ApiResponse:
    row = store.latest_metrics(symbol)
    if row is None:
        return _error(404, f"no book metrics stored for {symbol}")
    return ApiResponse(200, {**row, "received_ts": _ts(row["received_ts"])})


def _average(symbol: str, query: Mapping[str, str], store: ReadStore) -> ApiResponse:
    window = _int(query, "window", 60, 1, MAX_WINDOW_S)
    latest = store.latest_metrics(symbol)
    if latest is None:
        return _error(404, f"no book metrics stored for {symbol}")
    end = int(latest["received_ts"])
    hold = DEFAULT_MAX_HOLD_MS * 1000
    # One sample before the window may cover its start: read back by the longest hold as well.
    samples = [(t, Decimal(repr(p))) for t, p in store.prices_since(symbol, end - window * 1_000_000 - hold)]
    average = time_weighted_average(samples, end, window * 1_000_000, hold)
    in_window = sum(1 for t, _ in samples if t >= end - window * 1_000_000)
    return ApiResponse(
        200,
        {
            "symbol": symbol,
            "window_s": window,
            "as_of": _ts(end),
            "average_price": None if average is None else float(average),
            "samples": in_window,
            "method": "time-weighted mean of the book price (bid VWAP + ask VWAP) / 2; each value holds "
            f"until the next message, at most {DEFAULT_MAX_HOLD_MS} ms",
        },
    )


def _ticker(symbol: str, query: Mapping[str, str], store: ReadStore) -> ApiResponse:
    row = store.latest_ticker(symbol)
    if row is None:
        return _error(404, f"no mini-ticker stored for {symbol}")
    return ApiResponse(200, {**row, "event_ts": _ts(row["event_ts"]), "received_ts": _ts(row["received_ts"])})


def _alert_body(row: NamedRow) -> dict[str, Any]:
    watch = make_watch(str(row["symbol"]), repr(row["level"]), str(row["direction"]))
    alert = PriceAlert(watch, Decimal(repr(row["last_price"])), int(row["alert_ts"]))
    return {
        "time": _ts(row["alert_ts"]),
        "symbol": row["symbol"],
        "level": row["level"],
        "direction": row["direction"],
        "last_price": row["last_price"],
        "text": alert.text,
    }


def _alerts(query: Mapping[str, str], store: ReadStore) -> ApiResponse:
    symbol = _symbol(query, required=False)
    limit = _int(query, "limit", DEFAULT_ALERTS, 1, MAX_ALERTS)
    rows = store.recent_alerts(symbol, limit)
    return ApiResponse(200, {"symbol": symbol, "alerts": [_alert_body(r) for r in rows]})


SymbolRoute = Callable[[str, Mapping[str, str], ReadStore], ApiResponse]
_SYMBOL_ROUTES: dict[str, tuple[SymbolRoute, tuple[str, ...]]] = {
    "/v1/binance/metrics/latest": (_metrics, ("symbol",)),
    "/v1/binance/average": (_average, ("symbol", "window")),
    "/v1/binance/tickers/latest": (_ticker, ("symbol",)),
}
PATHS = (*_SYMBOL_ROUTES, "/v1/binance/alerts", "/openapi.json")


def handle(request: ApiRequest, store: ReadStore) -> ApiResponse:
    """Answer one request; never raises for bad input (400/404/405 with a readable message)."""
    path = request.path.rstrip("/") or "/"
    if path not in PATHS:
        return _error(404, f"no such endpoint {request.path!r} (see /openapi.json)")
    if request.method.upper() not in ("GET", "HEAD"):
        message = f"{request.method} not allowed; use GET"
        return ApiResponse(405, {"error": {"status": 405, "message": message}},
                           {"Content-Type": "application/json", "Allow": "GET"})  # fmt: skip
    try:
        if path == "/openapi.json":
            return ApiResponse(200, openapi_document())
        if path == "/v1/binance/alerts":
            _only(request.query, ("symbol", "limit"))
            return _alerts(request.query, store)
        route, allowed = _SYMBOL_ROUTES[path]
        _only(request.query, allowed)
        symbol = _symbol(request.query)
        assert symbol is not None
        return route(symbol, request.query, store)
    except BadRequest as exc:
        return _error(exc.status, exc.message)
    except Exception as exc:  # the store failed: say so, never a stack trace to the caller
        log.exception("read API: %s %s failed", request.method, request.path)
        return _error(503, f"the database could not be read ({type(exc).__name__}); try again")
