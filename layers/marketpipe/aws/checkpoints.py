"""Book-builder checkpoints in DynamoDB: what has been applied, and the state to continue from.

One item per stream key (``stream_key`` = the Kinesis partition key). It holds the sequence number of
the last applied record (a decimal string: Kinesis numbers have ~56 digits, beyond DynamoDB's numeric
precision) and the state after it (orjson + zlib, a binary attribute; measured ~10-30 KB for a
100-level book, far below the 400 KB item limit).

Every write is conditional on the sequence number it was loaded with (optimistic concurrency): a
stale or duplicate invocation can neither move a checkpoint backwards nor overwrite a newer one; it
gets :class:`CheckpointConflict` and its records are retried against the newer checkpoint.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 350_000
"""DynamoDB items are limited to 400 KB; the rest of the item and a margin fit in the difference."""


class CheckpointConflict(RuntimeError):
    """Another invocation moved the checkpoint since it was loaded."""


class CheckpointTooLarge(RuntimeError):
    """The state does not fit a DynamoDB item even with the trimmed export."""


@dataclass(frozen=True)
class Checkpoint:
    stream_key: str
    sequence_number: str | None
    """Last applied Kinesis sequence number; None when nothing has been applied yet."""
    state: dict[str, Any] | None
    size: int = 0

    @property
    def position(self) -> int:
        """Sequence number as an integer (Kinesis numbers compare numerically); -1 when empty."""
        return -1 if self.sequence_number is None else int(self.sequence_number)


def pack_state(state: dict[str, Any]) -> bytes:
    return zlib.compress(orjson.dumps(state), 6)


def unpack_state(blob: bytes) -> dict[str, Any]:
    state: dict[str, Any] = orjson.loads(zlib.decompress(blob))
    return state


class CheckpointStore:
    """DynamoDB table with partition key ``stream_key`` (S)."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.client = client
        self.table_name = table_name

    def load(self, stream_key: str) -> Checkpoint:
        item = self.client.get_item(
            TableName=self.table_name, Key={"stream_key": {"S": stream_key}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return Checkpoint(stream_key, None, None)
        blob = bytes(item["state"]["B"])
        return Checkpoint(stream_key, item["sequence_number"]["S"], unpack_state(blob), len(blob))

    def save(
        self,
        previous: Checkpoint,
        sequence_number: str,
        export: Callable[[int], dict[str, Any]],
    ) -> int:
        """Store the state after ``sequence_number`` if the item is still at ``previous``; returns bytes.

        ``export(history)`` builds the state keeping at most ``history`` remembered items per stream
        (a Bitfinex book builder: trade ids per symbol); it is called again with less history if the
        first state is too large: MySQL dedupes what is forgotten, the append-only Iceberg lake does not
        (docs/AWS.md, "The Iceberg lake"), so trimming is a last resort, logged.
        """
        if int(sequence_number) <= previous.position:
            raise CheckpointConflict(
                f"{previous.stream_key}: refusing to move the checkpoint back from "
                f"{previous.sequence_number} to {sequence_number}"
            )
        blob = b""
        for history in (2_000, 200, 0):
            blob = pack_state(export(history))
            if len(blob) <= MAX_STATE_BYTES:
                if history < 2_000:
                    key = previous.stream_key
                    log.warning("%s: checkpoint kept %d trade ids per symbol to fit", key, history)
                break
        else:
            raise CheckpointTooLarge(f"{previous.stream_key}: state is {len(blob)} bytes compressed")
        item = {
            "stream_key": {"S": previous.stream_key},
            "sequence_number": {"S": sequence_number},
            "state": {"B": blob},
            "updated_at": {"S": datetime.now(UTC).isoformat(timespec="milliseconds")},
        }
        if previous.sequence_number is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(stream_key)"}
        else:
            condition = {
                "ConditionExpression": "sequence_number = :previous",
                "ExpressionAttributeValues": {":previous": {"S": previous.sequence_number}},
            }
        try:
            self.client.put_item(TableName=self.table_name, Item=item, **condition)
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            raise CheckpointConflict(
                f"{previous.stream_key}: checkpoint moved since it was loaded at {previous.sequence_number}"
            ) from exc
        return len(blob)
