"""A Kinesis slot's books in the book builder: checkpoint size and restore (benchmarks/slot_state.py).

One partition key carries all the books of one collector connection. Its checkpoint must fit one
DynamoDB item under the busiest load we plan for, and a processor restored from it after any record
must go on exactly as one that never stopped.
"""

from __future__ import annotations

from typing import Any

from benchmarks.generate_session import slot_connection
from benchmarks.slot_state import measure, new_run, records_of, trade_history

from marketpipe.aws.book_builder import BookBuilder
from marketpipe.aws.checkpoints import MAX_STATE_BYTES, Checkpoint, pack_state, unpack_state
from marketpipe.aws.kinesis_consumer import KinesisRecord
from marketpipe.bitfinex.slots import BUSY_BOOK_STATE_BYTES, SYMBOLS_PER_SLOT


def test_a_slot_of_busy_books_fits_the_checkpoint_item() -> None:
    # 12 s of session: more than the 8 s between checksums, so the state passes its largest point
    busy = measure(SYMBOLS_PER_SLOT, "busy", seconds=12)
    assert busy.frames_per_book_s > 70
    assert busy.max <= SYMBOLS_PER_SLOT * BUSY_BOOK_STATE_BYTES < MAX_STATE_BYTES


def test_a_slot_restored_from_its_checkpoint_after_every_record_emits_the_rows_of_a_continuous_run() -> None:
    frames = slot_connection(SYMBOLS_PER_SLOT, 12)
    history = trade_history(SYMBOLS_PER_SLOT, 50)
    records = [KinesisRecord("bitfinex:slot-000", str(i), data) for i, data in enumerate(records_of(frames))]

    continuous = new_run()
    for frame in history:
        continuous.processor.process(frame)
    expected: list[Any] = []
    for record in records:
        expected.extend(continuous.apply(record))

    builder = BookBuilder(None, list, emit_metrics=None)  # type: ignore[arg-type]  # restore() only
    restored = builder.restore(Checkpoint("bitfinex:slot-000", None, None))
    for frame in history:
        restored.processor.process(frame)
    got: list[Any] = []
    for record in records:
        got.extend(restored.apply(record))
        state = unpack_state(pack_state(restored.export(2_000)))  # what DynamoDB holds
        restored = builder.restore(Checkpoint("bitfinex:slot-000", record.sequence_number, state))

    assert got == expected
    tables = {table.name for table, _rows in expected}
    assert tables == {"bitfinex_book", "bitfinex_quotes", "bitfinex_trades"}
    symbols = {row[0] for table, rows in expected if table.name == "bitfinex_book" for row in rows}
    assert len(symbols) == SYMBOLS_PER_SLOT, "every book of the slot emitted rows"
