"""The OpenAPI 3.1 description of the read API (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

MAX_WINDOW_S = 3600
"""Longest averaging window the API accepts (seconds)."""
MAX_ALERTS = 500
DEFAULT_ALERTS = 20

_SYMBOL = {
    "name": "symbol",
    "in": "query",
    "required": True,
    "description": "Binance symbol, e.g. BTCUSDT (case-insensitive)",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{2,20}$"},
}
_ERROR = {
    "description": "Error with a readable message",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _num(description: str) -> dict[str, Any]:
    return {"type": ["number", "null"], "description": description}


def _get(summary: str, params: list[dict[str, Any]], schema: str, not_found: bool = True) -> dict[str, Any]:
    ref = f"#/components/schemas/{schema}"
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}},
        "400": _ERROR,
        "503": _ERROR,
    }
    if not_found:
        responses["404"] = _ERROR
    return {"get": {"summary": summary, "parameters": params, "responses": responses}}


def openapi_document() -> dict[str, Any]:
    metrics_props = {
        "symbol": {"type": "string"},
        "received_ts": {"type": "string", "format": "date-time"},
        "last_update_id": {"type": "integer"},
        "best_bid": _num("best bid price"),
        "best_ask": _num("best ask price"),
        "spread": _num("best ask - best bid"),
        "spread_pct": _num("spread * 100 / mid, mid = (best bid + best ask) / 2"),
        "bid_vwap": _num("volume-weighted average price of the 20 bid levels"),
        "ask_vwap": _num("volume-weighted average price of the 20 ask levels"),
        "price": _num("(bid_vwap + ask_vwap) / 2"),
        "avg_price_30s": _num("time-weighted average of price over the last 30 s"),
        "avg_price_1m": _num("time-weighted average of price over the last minute"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "marketpipe Binance read API",
            "version": "1.0.0",
            "description": "Book metrics, average prices, mini-tickers and price-level alerts recorded by "
            "marketpipe from Binance spot streams.",
        },
        "paths": {
            "/v1/binance/metrics/latest": _get("Newest book metrics of a symbol", [_SYMBOL], "Metrics"),
            "/v1/binance/average": _get(
                "Time-weighted average book price over a window ending at the newest metrics",
                [
                    _SYMBOL,
                    {
                        "name": "window",
                        "in": "query",
                        "required": False,
                        "description": "window length in seconds (default 60)",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_S, "default": 60},
                    },
                ],
                "Average",
            ),
            "/v1/binance/tickers/latest": _get("Newest 24 h mini-ticker of a symbol", [_SYMBOL], "Ticker"),
            "/v1/binance/alerts": _get(
                "Newest price-level alerts",
                [
                    {**_SYMBOL, "required": False},
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_ALERTS,
                            "default": DEFAULT_ALERTS,
                        },
                    },
                ],
                "Alerts",
                not_found=False,
            ),
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
                        }
                    },
                },
                "Metrics": {"type": "object", "properties": metrics_props},
                "Average": {
                    "type": "object",
                    "properties": {
                        "symbol": {"type": "string"},
                        "window_s": {"type": "integer"},
                        "as_of": {"type": "string", "format": "date-time"},
                        "average_price": _num("time-weighted average book price"),
                        "samples": {"type": "integer", "description": "metrics rows inside the window"},
                        "method": {"type": "string"},
                    },
                },
                "Ticker": {
                    "type": "object",
                    "properties": {
                        "symbol": {"type": "string"},
                        "event_ts": {"type": "string", "format": "date-time"},
                        "received_ts": {"type": "string", "format": "date-time"},
                        **{
                            k: {"type": "number"}
                            for k in ("close", "open", "high", "low", "base_volume", "quote_volume")
                        },
                    },
                },
                "Alerts": {
                    "type": "object",
                    "properties": {
                        "symbol": {"type": ["string", "null"]},
                        "alerts": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "time": {"type": "string", "format": "date-time"},
                                    "symbol": {"type": "string"},
                                    "level": {"type": "number"},
                                    "direction": {"type": "string", "enum": ["above", "below"]},
                                    "last_price": {"type": "number"},
                                    "text": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            }
        },
    }
