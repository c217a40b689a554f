"""The checkpointed, ordered Kinesis consumer behind the book builder and the Binance metrics Lambdas.

A batch holds the records of one shard, in stream order, for several partition keys (one book, one
Binance connection shard). Each key has a DynamoDB checkpoint (:mod:`marketpipe.aws.checkpoints`): the
sequence number of its last applied record and the processor state after it. One invocation:

1. decodes the records and drops those of keys this consumer does not own (other exchanges share the
   stream and have their own consumers);
2. walks the rest **in stream order**. The first time a key is met its checkpoint is loaded, its
   processor restored, and its records at or before the checkpoint are skipped (an earlier try of this
   batch applied them). Each record's frames go through the key's processor and the rows it emits go
   to the sinks;
3. stops at the first record that fails (checkpoint unreadable, processor or sink error): nothing at or
   after it is applied, for any key;
4. commits what it applied before it: flushes the sinks, then moves each touched key's checkpoint
   (conditional on the one loaded) to its last applied record;
5. answers ``batchItemFailures`` with the failed record, so Lambda retries the shard from exactly there.

**Failure semantics (one rule for every consumer): the batch is applied in stream order up to the
first failure; everything before it is committed, nothing at or after it is attempted.** Why this one:

* Lambda resumes a Kinesis shard at the lowest reported sequence number and re-delivers everything
  after it, so "stop at the first failure" is the only rule under which a record is never overtaken by
  a later one of its key (ordered processing; Powertools' ``BatchProcessor`` would carry on).
* Committing the prefix means a poison record stops the shard *at itself*: what came before it is
  durable, retries cost only the records from it on, and when retries or record age run out the range
  Lambda gives up on (sent to the on-failure destination) starts at the poison record, not at some
  earlier record that was fine. The alternative of failing a whole key's part of the batch makes a
  retry redo good work, and delays every other key's records behind it for nothing.
* Walking in stream order (not key by key) makes the rule literal for every key: after a failure at
  ``r`` no key applies anything past ``r``, so alerts and rows never get ahead of a retry.

To commit the prefix of the key that failed, its processor is restored again from the checkpoint and
fed the records before the failed one (their rows are already in the sinks): the failed record may have
changed the processor's state half-way. If the flush fails nothing is committed and the response names
the lowest record this invocation tried to apply; if one key's checkpoint write fails (a stale
invocation that lost the race, DynamoDB unavailable) the other keys still commit and the response names
that key's first record. One ``itemIdentifier`` is returned: Lambda retries from the lowest one it is
given, so listing every later record of the shard as well would change nothing.

Rows are durable before a checkpoint moves, and sinks are idempotent (natural keys, upserts,
deterministic lake files; an append-only Iceberg table is told each row's key and record position
and keeps a watermark per key), so a crash between the two only re-applies records whose rows the sinks
already hold; the conditional checkpoint write keeps a stale or duplicate invocation from moving a key
backwards. Side effects that are not idempotent (alerts) are handed to :meth:`KinesisConsumer.committed`
only once the checkpoint covering them is written.
"""

from __future__ import annotations

import base64
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from marketpipe.aws.checkpoints import Checkpoint, CheckpointStore
from marketpipe.records import Row
from marketpipe.sinks.base import PositionedSink, Sink
from marketpipe.tables import Table

log = logging.getLogger(__name__)

Emitted = list[tuple[Table, list[Row]]]


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    partition_key: str
    sequence_number: str
    data: bytes

    @property
    def position(self) -> int:
        """Sequence numbers compare as integers (they have ~56 digits: never as strings)."""
        return int(self.sequence_number)


def parse_event(event: Mapping[str, Any]) -> list[KinesisRecord]:
    """The records of a Kinesis event, in stream order."""
    return [
        KinesisRecord(k["partitionKey"], k["sequenceNumber"], base64.b64decode(k["data"]))
        for k in (r["kinesis"] for r in event.get("Records", []))
    ]


class KeyRun(Protocol):
    """One partition key's processor during an invocation, restored from its checkpoint."""

    def apply(self, record: KinesisRecord) -> Emitted:
        """Feed one record; the rows it produced, to be written to every sink."""

    def export(self, history: int) -> dict[str, Any]:
        """The state to checkpoint, remembering at most ``history`` items per stream (smaller when the
        state is too large: see ``CheckpointStore.save``)."""


@dataclass
class BatchResult:
    """What one invocation did (logged, turned into metrics, and handy in tests)."""

    records: int = 0
    ignored: int = 0
    """Records of keys this consumer does not own."""
    skipped: int = 0
    """Records at or before their key's checkpoint: applied by an earlier try."""
    applied: int = 0
    """Records committed by this invocation."""
    errors: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    """Consumer-specific counts (resyncs, alerts…), of committed records only."""
    checkpoint_bytes: dict[str, int] = field(default_factory=dict)
    failed_at: str | None = None

    def count(self, name: str, value: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value


@dataclass
class _Key:
    """A key's progress in this invocation."""

    checkpoint: Checkpoint
    run: KeyRun
    applied: list[KinesisRecord] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)


class KinesisConsumer(ABC):
    """The batch loop; subclasses say which keys they own and how a key's processor is restored.

    One instance per Lambda container: sinks (SQL connection pool) and clients survive warm invocations.
    Processor state never lives here: it is loaded from the checkpoint on every batch.
    """

    name = "consumer"

    def __init__(self, checkpoints: CheckpointStore, open_sinks: Callable[[], Sequence[Sink]]) -> None:
        self.checkpoints = checkpoints
        self._open_sinks = open_sinks
        self._sinks: list[Sink] | None = None
        self.last_result = BatchResult()

    # ------------------------------------------------------------------ what a consumer supplies

    @abstractmethod
    def accepts(self, key: str) -> bool:
        """Whether this consumer owns the partition key."""

    @abstractmethod
    def restore(self, checkpoint: Checkpoint) -> KeyRun:
        """A processor for ``checkpoint.stream_key`` continuing from the checkpoint's state (None: fresh)."""

    def committed(self, key: str, run: KeyRun, result: BatchResult) -> None:  # noqa: B027 - optional hook
        """Called once the checkpoint covering ``run``'s records is written (alerts, statistics)."""

    def finished(self, result: BatchResult) -> None:  # noqa: B027 - optional hook
        """Called at the end of every invocation (metrics)."""

    # ------------------------------------------------------------------ the loop

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Process one Kinesis batch; returns the partial-batch response Lambda expects."""
        started = time.perf_counter()
        records = parse_event(event)
        result = BatchResult(records=len(records))
        keys: dict[str, _Key] = {}
        failed: KinesisRecord | None = None
        for record in records:
            key = record.partition_key
            if not self.accepts(key):
                result.ignored += 1
                continue
            if not self._apply(record, keys, result):
                failed = record
                break
        failed = self._commit(keys, failed, result)
        if failed is not None:
            result.failed_at = failed.sequence_number
        self.last_result = result
        self.finished(result)
        log.info(
            "%s batch: %d records (%d not ours, %d already applied, %d applied) in %.3f s; rows %s; %s",
            self.name,
            result.records,
            result.ignored,
            result.skipped,
            result.applied,
            time.perf_counter() - started,
            result.rows or "none",
            f"retry from {result.failed_at}" if result.failed_at else "ok",
        )
        return {"batchItemFailures": [] if failed is None else [{"itemIdentifier": failed.sequence_number}]}

    def _apply(self, record: KinesisRecord, keys: dict[str, _Key], result: BatchResult) -> bool:
        """Apply one record (loading its key first if needed); False when it failed."""
        key = record.partition_key
        state = keys.get(key)
        try:
            if state is None:
                checkpoint = self.checkpoints.load(key)
                state = keys[key] = _Key(checkpoint, self.restore(checkpoint))
            if record.position <= state.checkpoint.position:
                result.skipped += 1
                return True
            sinks = self._current_sinks()
            emitted = state.run.apply(record)
            for table, rows in emitted:
                for sink in sinks:
                    if isinstance(sink, PositionedSink):
                        sink.write_at(key, record.position, table, rows)
                    else:
                        sink.write(table, rows)
        except Exception:
            log.exception("%s: record %s failed; the shard stops here", key, record.sequence_number)
            result.errors += 1
            for sink in self._sinks or []:  # what the failed record wrote so far must not be committed
                if isinstance(sink, PositionedSink):
                    sink.discard(key, record.position)
            return False
        state.applied.append(record)
        for table, rows in emitted:
            state.rows[table.name] = state.rows.get(table.name, 0) + len(rows)
        return True

    def _commit(
        self, keys: dict[str, _Key], failed: KinesisRecord | None, result: BatchResult
    ) -> KinesisRecord | None:
        """Flush, then move each touched key's checkpoint; returns the record to retry from, if any."""
        touched = {k: s for k, s in keys.items() if s.applied}
        if failed is not None and failed.partition_key in touched:
            state = touched[failed.partition_key]
            try:  # the failed record may have changed the processor half-way: rebuild it without it
                state.run = self.restore(state.checkpoint)
                for record in state.applied:
                    state.run.apply(record)
            except Exception:
                log.exception(
                    "%s: cannot rebuild the state before %s", failed.partition_key, failed.sequence_number
                )
                result.errors += 1
                failed = state.applied[0]
                del touched[failed.partition_key]
        if touched:
            try:
                for sink in self._sinks or []:
                    sink.flush()
            except Exception:
                log.exception("could not flush the sinks; nothing of this batch is committed")
                result.errors += 1
                self._discard_sinks()
                return min((s.applied[0] for s in touched.values()), key=lambda r: r.position)
        for key, state in touched.items():
            last = state.applied[-1]
            try:
                size = self.checkpoints.save(state.checkpoint, last.sequence_number, state.run.export)
            except Exception:
                log.exception("%s: could not move the checkpoint to %s", key, last.sequence_number)
                result.errors += 1
                if failed is None or state.applied[0].position < failed.position:
                    failed = state.applied[0]
                continue
            result.applied += len(state.applied)
            result.checkpoint_bytes[key] = size
            for name, count in state.rows.items():
                result.rows[name] = result.rows.get(name, 0) + count
            try:
                self.committed(key, state.run, result)
            except Exception:  # the records are committed: a failed side effect must not replay them
                log.exception("%s: post-commit step failed", key)
                result.errors += 1
        if failed is not None:
            self._discard_sinks()
        return failed

    # ------------------------------------------------------------------ sinks

    def _current_sinks(self) -> list[Sink]:
        if self._sinks is None:
            self._sinks = list(self._open_sinks())
        return self._sinks

    def _discard_sinks(self) -> None:
        """Drop sinks with whatever they buffered: the retry rebuilds those rows from the records."""
        sinks, self._sinks = self._sinks or [], None
        for sink in sinks:
            engine = getattr(sink, "engine", None)
            if engine is not None:
                engine.dispose()
