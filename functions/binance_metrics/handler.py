"""Kinesis -> Binance metrics and price alerts. Thin by design: the logic lives in the layer."""

from __future__ import annotations

from typing import Any

from marketpipe.aws.binance_metrics import process_kinesis_event


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Return the partial-batch response (``batchItemFailures``) the event source mapping expects."""
    return process_kinesis_event(event)
