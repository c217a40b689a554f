"""Kinesis -> book builder. Thin by design: the ordering, checkpoint and sink logic live in the layer."""

from __future__ import annotations

from typing import Any

from marketpipe.aws.book_builder import process_kinesis_event


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Return the partial-batch response (``batchItemFailures``) the event source mapping expects."""
    return process_kinesis_event(event)
