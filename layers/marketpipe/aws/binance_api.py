"""The Binance read-API Lambda: API Gateway HTTP API (payload format 2.0) <-> the read API's pure
:func:`~marketpipe.binance.api.handler.handle` (the same one ``marketpipe serve`` runs).

On AWS the API reads RDS MySQL, where the metrics Lambda writes the Binance tables (same schema as
locally): point reads of the newest rows, which Athena could not answer in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from marketpipe import envnames
from marketpipe.aws.warm import Warm
from marketpipe.binance.api import handler as api
from marketpipe.binance.api.handler import ApiRequest, ApiResponse
from marketpipe.binance.api.store import ReadStore


def request_from_event(event: Mapping[str, Any]) -> ApiRequest:
    """``requestContext.http.method``, ``rawPath`` and ``queryStringParameters`` (repeated values arrive
    comma-joined in v2 events: kept as one value, which then fails validation with a 400)."""
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or event.get("httpMethod") or "GET")
    path = str(event.get("rawPath") or http.get("path") or "/")
    stage = (event.get("requestContext") or {}).get("stage")
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1 :]
    query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    return ApiRequest(method, path, query)


def response_to_event(response: ApiResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": response.json().decode(),
        "isBase64Encoded": False,
    }


class ApiFunction:
    """The Lambda's domain object: opens the store on first use and keeps it for warm invocations."""

    def __init__(self, open_store: Callable[[], ReadStore]) -> None:
        self._open_store = open_store
        self._store: ReadStore | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiFunction:
        def open_store() -> ReadStore:
            from marketpipe.binance.api.store import SqlReadStore

            url = env.get(envnames.DB_URL)
            if not url:
                from marketpipe.aws.secrets import database_url

                url = database_url(env[envnames.DB_SECRET_ARN], env.get(envnames.DB_NAME))
            return SqlReadStore(url)

        return cls(open_store)

    def __call__(self, event: Mapping[str, Any]) -> dict[str, Any]:
        request = request_from_event(event)
        if self._store is None:
            try:
                self._store = self._open_store()
            except Exception as exc:  # no database yet: a 503 the client can retry, not a Lambda error
                body = {
                    "error": {"status": 503, "message": f"the database is unavailable ({type(exc).__name__})"}
                }
                return response_to_event(ApiResponse(503, body))
        return response_to_event(api.handle(request, self._store))


WARM: Warm[ApiFunction] = Warm(
    (envnames.DB_URL, envnames.DB_SECRET_ARN, envnames.DB_NAME), ApiFunction.from_env
)
"""Per container: the database connection pool survives warm invocations (opened on first request)."""


def handle(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """API Gateway v2 event -> its HTTP response."""
    return WARM.get(env)(event)
