"""The one Kinesis consumer's failure rule, with in-memory checkpoints and a toy processor: applied in
stream order up to the first failure, everything before it committed, nothing at or after it applied."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from marketpipe.aws.checkpoints import Checkpoint, CheckpointConflict, CheckpointStore
from marketpipe.aws.kinesis_consumer import BatchResult, Emitted, KeyRun, KinesisConsumer, KinesisRecord
from marketpipe.records import Row
from marketpipe.tables import Table


class MemoryCheckpoints(CheckpointStore):
    """DynamoDB's conditional put, in a dict."""

    def __init__(self) -> None:
        super().__init__("memory", client=object())
        self.items: dict[str, tuple[str, dict[str, Any]]] = {}
        self.refuse: set[str] = set()

    def load(self, stream_key: str) -> Checkpoint:
        if stream_key not in self.items:
            return Checkpoint(stream_key, None, None)
        sequence_number, state = self.items[stream_key]
        return Checkpoint(stream_key, sequence_number, dict(state))

    def save(self, previous: Checkpoint, sequence_number: str, export: Any) -> int:
        current = self.items.get(previous.stream_key, (None, None))[0]
        if previous.stream_key in self.refuse or current != previous.sequence_number:
            raise CheckpointConflict(previous.stream_key)
        self.items[previous.stream_key] = (sequence_number, export(0))
        return 1


class Sink:
    name = "memory"

    def __init__(self) -> None:
        self.flushes = 0
        self.fail_flush = False

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        pass

    def flush(self) -> None:
        if self.fail_flush:
            raise OSError("store unavailable")
        self.flushes += 1

    def close(self) -> None:
        pass


@dataclass
class ToyRun:
    """State: the payloads applied so far; a payload ``boom`` fails while ``broken`` is set."""

    seen: list[str]
    broken: set[str]
    effects: list[str] = field(default_factory=list)

    def apply(self, record: KinesisRecord) -> Emitted:
        text = record.data.decode()
        self.seen.append(f"{text}-half")  # a half-applied record changes the state before failing
        if text in self.broken:
            raise ValueError("poison")
        self.seen[-1] = text
        self.effects.append(text)
        return []

    def export(self, history: int) -> dict[str, Any]:
        return {"seen": list(self.seen)}


class Toy(KinesisConsumer):
    def __init__(self, checkpoints: CheckpointStore, sink: Sink) -> None:
        super().__init__(checkpoints, lambda: [sink])
        self.broken: set[str] = set()
        self.sent: list[str] = []  # side effects, released only after their commit

    def accepts(self, key: str) -> bool:
        return key.startswith("toy:")

    def restore(self, checkpoint: Checkpoint) -> ToyRun:
        return ToyRun(list((checkpoint.state or {}).get("seen", [])), self.broken)

    def committed(self, key: str, run: KeyRun, result: BatchResult) -> None:
        assert isinstance(run, ToyRun)
        self.sent += run.effects


def event(*records: tuple[str, int, str]) -> dict[str, Any]:
    return {
        "Records": [
            {"kinesis": {"partitionKey": key, "sequenceNumber": str(seq),
                         "data": base64.b64encode(text.encode()).decode()}}
            for key, seq, text in records
        ]
    }  # fmt: skip


BATCH = (("toy:a", 1, "a1"), ("toy:b", 2, "b2"), ("other:x", 3, "x3"), ("toy:a", 4, "a4"),
         ("toy:b", 5, "b5"), ("toy:a", 6, "a6"))  # fmt: skip


def test_stops_at_the_first_failure_in_stream_order_and_commits_what_came_before() -> None:
    store, sink = MemoryCheckpoints(), Sink()
    consumer = Toy(store, sink)
    consumer.broken = {"a4"}
    assert consumer.handle(event(*BATCH)) == {"batchItemFailures": [{"itemIdentifier": "4"}]}
    # a committed up to its last good record, without the half-applied one; b did not go past 4
    assert store.items["toy:a"] == ("1", {"seen": ["a1"]})
    assert store.items["toy:b"] == ("2", {"seen": ["b2"]})
    assert consumer.sent == ["a1", "b2"] and sink.flushes == 1
    result = consumer.last_result
    assert (result.applied, result.ignored, result.errors, result.failed_at) == (2, 1, 1, "4")

    consumer.broken = set()  # Lambda re-delivers from 4 on
    assert consumer.handle(event(*BATCH[3:])) == {"batchItemFailures": []}
    assert store.items["toy:a"] == ("6", {"seen": ["a1", "a4", "a6"]})
    assert store.items["toy:b"] == ("5", {"seen": ["b2", "b5"]})
    assert consumer.sent == ["a1", "b2", "a4", "a6", "b5"]  # in order per key

    assert consumer.handle(event(*BATCH)) == {"batchItemFailures": []}  # a duplicate delivery
    assert consumer.last_result.skipped == 5 and consumer.last_result.applied == 0
    assert consumer.sent == ["a1", "b2", "a4", "a6", "b5"]


def test_a_failed_checkpoint_write_retries_that_key_while_the_others_commit() -> None:
    store, sink = MemoryCheckpoints(), Sink()
    consumer = Toy(store, sink)
    store.refuse = {"toy:b"}
    assert consumer.handle(event(*BATCH)) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert store.items["toy:a"][0] == "6" and "toy:b" not in store.items
    assert consumer.sent == ["a1", "a4", "a6"]  # b's effects wait for its checkpoint
    store.refuse = set()
    assert consumer.handle(event(*BATCH[1:])) == {"batchItemFailures": []}
    assert store.items["toy:b"] == ("5", {"seen": ["b2", "b5"]})
    assert consumer.sent == ["a1", "a4", "a6", "b2", "b5"]


def test_a_failed_flush_commits_nothing_and_retries_from_the_first_record_tried() -> None:
    store, sink = MemoryCheckpoints(), Sink()
    consumer = Toy(store, sink)
    consumer.handle(event(BATCH[0]))
    sink.fail_flush = True
    assert consumer.handle(event(*BATCH)) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert store.items == {"toy:a": ("1", {"seen": ["a1"]})} and consumer.sent == ["a1"]


def test_an_unreadable_checkpoint_is_a_failure_at_that_keys_first_record() -> None:
    class Unreadable(MemoryCheckpoints):
        def load(self, stream_key: str) -> Checkpoint:
            if stream_key == "toy:b":
                raise ConnectionError("DynamoDB unavailable")
            return super().load(stream_key)

    store = Unreadable()
    consumer = Toy(store, Sink())
    assert consumer.handle(event(*BATCH)) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert store.items == {"toy:a": ("1", {"seen": ["a1"]})}
