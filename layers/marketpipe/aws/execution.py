"""The execution-price Lambda: each minute fetch the Coinbase and Binance books, price them, write the lake.

The domain call is :func:`marketpipe.execution.service.price_minute` (the same clients and processor as
``marketpipe run``). This adapter reads the settings from the environment and carries the venues'
pauses (a Binance ban, a Retry-After) between invocations in a small JSON object at
``MARKETPIPE_EXECUTION_STATE_URI`` (local path or ``s3://…``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marketpipe import envnames

if TYPE_CHECKING:
    from marketpipe.execution.clients import BookClient


def load_pauses(uri: str | None) -> dict[str, float]:
    """Epoch seconds until which each venue must not be asked (empty without a state object)."""
    if not uri:
        return {}
    from marketpipe.lake import open_location

    data = open_location(uri).read_json()
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_pauses(uri: str | None, pauses: Mapping[str, float]) -> None:
    if uri:
        from marketpipe.lake import open_location

        open_location(uri).write_json(dict(pauses))


def handle(
    event: dict[str, Any], env: Mapping[str, str], clients: Mapping[str, BookClient] | None = None
) -> dict[str, Any]:
    """EventBridge ``{"time": ...}`` -> one poll of every market; the summary is also logged as one JSON
    line (CloudWatch Logs Insights). ``clients`` replaces the REST clients (tests)."""
    from marketpipe.execution.service import build_clients, price_minute, settings_from

    settings = settings_from({}, env)
    lake_uri = env[envnames.EXECUTION_LAKE_URI]
    state_uri = env.get(envnames.EXECUTION_STATE_URI)
    # Tight enough that both venues finish inside the 50 s function timeout in the worst case:
    # 3 attempts x 5 s + backoff per market, the venues side by side.
    if clients is None:
        clients = build_clients(settings, max_wait=10.0, timeout=5.0, max_attempts=3)
    pauses = load_pauses(state_uri)
    summary = price_minute(settings, clients, lake_uri, pauses, event.get("time"))
    save_pauses(state_uri, pauses)
    print(json.dumps({"execution": summary}, default=str))
    return summary
