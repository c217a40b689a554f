"""API Gateway HTTP API -> the Binance read API. Thin by design: routing and queries live in the layer."""

from __future__ import annotations

from typing import Any

from marketpipe.api.apigw import ApiFunction

_FUNCTION = ApiFunction.from_env()
"""Per container: the database connection pool survives warm invocations (opened on first request)."""


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _FUNCTION(event)
