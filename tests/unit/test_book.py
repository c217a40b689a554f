"""The order book and the Bitfinex checksum (PROTOCOLS.md §1.10), for both book implementations.

Every book test runs against the pure-Python reference and the compiled book; a property test also
drives both with the same random operations and compares every result, row and checksum.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpipe import book as book_module
from marketpipe.book import PyOrderBook, py_apply_update, to_signed32
from marketpipe.jsnum import js_num_str

IMPLEMENTATIONS = [PyOrderBook]
if book_module.COMPILED:
    IMPLEMENTATIONS.append(book_module.OrderBook)


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def book_class(request: pytest.FixtureRequest) -> type[PyOrderBook]:
    return request.param


VECTORS = json.loads((Path(__file__).parent.parent / "data" / "checksum_vectors.json").read_text())["vectors"]


def book_from(book_class: type[PyOrderBook], snapshot: list[list[float]]) -> PyOrderBook:
    book = book_class()
    for level in snapshot:
        book.apply(*level)
    return book


def test_worked_example_a(book_class: type[PyOrderBook]) -> None:
    book = book_from(
        book_class,
        [[7254.7, 3, 3.3], [7254.6, 1, 0.00005], [7254.5, 2, 1.25], [7255.1, 1, -0.5], [7255.2, 4, -12]],
    )
    assert book.checksum_text() == "7254.7:3.3:7255.1:-0.5:7254.6:0.00005:7255.2:-12:7254.5:1.25"
    assert book.checksum() == 1795807381
    book.apply(7254.6, 0, 1)
    book.apply(7255, 1, -0.75)
    assert book.checksum_text() == "7254.7:3.3:7255:-0.75:7254.5:1.25:7255.1:-0.5:7255.2:-12"
    assert book.checksum() == -1830443905


def test_worked_example_b_full_window(book_class: type[PyOrderBook]) -> None:
    levels = [[60000 - i, 1 + i % 3, round(0.01 * (i + 1), 10)] for i in range(30)]
    levels += [[60001 + i, 1 + i % 2, -round(0.02 * (i + 1), 10)] for i in range(30)]
    book = book_from(book_class, levels)
    assert len(book.checksum_text().split(":")) == 100
    assert book.checksum() == 1615103343
    book.apply(60000, 0, 1)
    book.apply(60001, 3, -0.5)
    book.apply(59999.5, 1, 4.2e-7)
    assert book.checksum_text().startswith("59999.5:4.2e-7:60001:-0.5:59999:0.02:60002:-0.04:")
    assert book.checksum() == 961506193


def test_node_models_vector(book_class: type[PyOrderBook]) -> None:
    book = book_from(book_class, [[6000, 1, 1], [5900, 2, 2], [6100, 3, -3], [6200, 4, -4]])
    assert book.checksum_text() == "6000:1:6100:-3:5900:2:6200:-4"
    assert book.checksum() == 1756193398


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_library_verification_vectors(book_class: type[PyOrderBook], vector: dict) -> None:
    book = book_class(depth=25)
    for level in orjson.loads(vector["snapshot"])[1]:
        book.apply(*level)
    for update in vector["updates"]:
        book.apply(*orjson.loads(update)[1])
    assert book.checksum() == vector["expected"]


def test_naive_python_formatting_would_fail_vector_2(book_class: type[PyOrderBook]) -> None:
    """Guard: the trap is real (str(float) gives 1047676584 on this vector)."""
    vector = VECTORS[1]
    book = book_class(depth=25)
    for level in orjson.loads(vector["snapshot"])[1]:
        book.apply(*level)
    for update in vector["updates"]:
        book.apply(*orjson.loads(update)[1])
    naive = ":".join(str(float(t)) for t in book.checksum_text().split(":"))
    assert to_signed32(zlib.crc32(naive.encode())) != vector["expected"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (6000.0, "6000"),
        (0.00005, "0.00005"),
        (0.0000886, "0.0000886"),
        (0.000001, "0.000001"),
        (7e-7, "7e-7"),
        (4.2e-7, "4.2e-7"),
        (-12.0, "-12"),
        (1e21, "1e+21"),
        (-0.5, "-0.5"),
        (123456789.123, "123456789.123"),
        (60000, "60000"),
        (1.5e-10, "1.5e-10"),
        (2.5e25, "2.5e+25"),
    ],
)
def test_js_number_text(value: float, text: str) -> None:
    assert js_num_str(value) == text


def test_js_number_text_rejects_non_finite() -> None:
    with pytest.raises(ValueError):
        js_num_str(float("nan"))


JS_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d*[1-9])?(e[+-][1-9]\d*)?$")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_js_text_round_trips_and_is_canonical(value: float) -> None:
    text = js_num_str(value)
    assert float(text) == value
    assert JS_NUMBER.match(text), text
    assert "e" not in text or abs(value) < 1e-6 or abs(value) >= 1e21


def test_delete_markers_and_no_ops(book_class: type[PyOrderBook]) -> None:
    book = book_from(book_class, [[100, 1, 1.5], [101, 1, -2]])
    assert not book.apply(99, 0, 1)  # deleting an absent level is a no-op
    assert not book.apply(100, 2, 1.5)  # same amount: nothing changed
    assert book.apply(100, 0, 1)
    assert book.best_bid() is None
    assert book.best_ask() == (101, 2)
    assert book.apply(101, 0, -1)
    assert len(book) == 0


def test_change_detection_only_counts_top_depth(book_class: type[PyOrderBook]) -> None:
    book = book_class(depth=2)
    for i in range(5):
        book.apply(100 - i, 1, 1)
    assert not book.apply(96, 1, 3)  # 5th best bid
    assert book.apply(99, 1, 3)  # 2nd best
    assert not book.apply(97, 0, 1)  # deleting the 4th
    assert book.apply(100, 0, 1)  # deleting the best shifts the top
    assert book.level_values(2) == [99, 3, 98, 1, None, None, None, None]


# ---------------------------------------------------------------- property: book vs. a naive model

level_price = st.integers(min_value=1, max_value=60).map(lambda i: round(100 + i * 0.5, 1))
amount = st.one_of(
    st.sampled_from([0.00005, 4.2e-7, 1.0, 2.0, 12.0, 0.1, 1.25]),
    st.floats(min_value=1e-8, max_value=1e4, allow_nan=False).map(lambda x: float(f"{x:.8g}")),
)
event = st.tuples(level_price, st.integers(min_value=0, max_value=5), amount, st.booleans())


def naive_checksum(bids: dict[float, float], asks: dict[float, float]) -> int:
    """Independent implementation straight from the spec text."""
    top_bids = sorted(bids.items(), key=lambda kv: -kv[0])[:25]
    top_asks = sorted(asks.items(), key=lambda kv: kv[0])[:25]
    parts: list[str] = []
    for i in range(25):
        if i < len(top_bids):
            parts += [js_num_str(top_bids[i][0]), js_num_str(top_bids[i][1])]
        if i < len(top_asks):
            parts += [js_num_str(top_asks[i][0]), js_num_str(-top_asks[i][1])]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


@pytest.mark.parametrize("book_class", IMPLEMENTATIONS)
@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=120))
def test_book_matches_naive_model(
    book_class: type[PyOrderBook], events: list[tuple[float, int, float, bool]]
) -> None:
    book = book_class(depth=10)
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for price, count, size, is_bid in events:
        wire_amount = size if is_bid else -size
        if count == 0:
            wire_amount = 1 if is_bid else -1
        before = (sorted(bids.items(), reverse=True)[:10], sorted(asks.items())[:10])
        changed = book.apply(price, count, wire_amount)
        side = bids if is_bid else asks
        if count > 0:
            side[price] = size
        else:
            side.pop(price, None)
        after = (sorted(bids.items(), reverse=True)[:10], sorted(asks.items())[:10])
        assert changed == (before != after)
        assert book.checksum() == naive_checksum(bids, asks)
    assert book.top_bids(10) == sorted(bids.items(), reverse=True)[:10]
    assert book.top_asks(10) == sorted(asks.items())[:10]


# ---------------------------------------------------------------- property: compiled book == reference

wire_price = st.one_of(level_price, st.integers(min_value=95, max_value=135))  # ints: "7255" on the wire
wire_level = st.tuples(wire_price, st.integers(min_value=-1, max_value=3), amount, st.booleans())


@pytest.mark.skipif(not book_module.COMPILED, reason="the compiled book was not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(wire_level, max_size=200), st.integers(min_value=1, max_value=12))
def test_compiled_book_behaves_exactly_like_the_reference(
    levels: list[tuple[float, int, float, bool]], depth: int
) -> None:
    compiled, reference = book_module.OrderBook(depth), PyOrderBook(depth)
    for price, count, size, is_bid in levels:
        wire_amount = size if is_bid else -size
        assert compiled.apply(price, count, wire_amount) == reference.apply(price, count, wire_amount)
        row, expected = compiled.row(("BTC-USD", 1)), reference.row(("BTC-USD", 1))
        assert row == expected
        assert all(type(a) is type(b) for a, b in zip(row, expected, strict=True))  # 7255 stays an int
        assert compiled.checksum_text() == reference.checksum_text()
    assert compiled.levels() == reference.levels()
    assert (compiled.best_bid(), compiled.best_ask()) == (reference.best_bid(), reference.best_ask())
    assert compiled.top_asks(3) == reference.top_asks(3)
    assert len(compiled) == len(reference)
    compiled.clear()
    assert len(compiled) == 0 and compiled.row(()) == (None,) * 4 * depth


def test_compiled_book_is_built() -> None:
    """The install step compiles the book wherever a C compiler exists; CI must not silently lose it."""
    assert book_module.COMPILED, "marketpipe._cbook is missing: pip install could not compile it"


@pytest.mark.parametrize("book_class", IMPLEMENTATIONS)
def test_malformed_levels_raise_type_errors(book_class: type[PyOrderBook]) -> None:
    """The processor turns these into 'invalid frame' log lines; the book must not accept them."""
    book = book_class()
    with pytest.raises(TypeError):
        book.apply(7255.0, None, 1.0)  # type: ignore[arg-type]
    assert len(book) == 0


@pytest.mark.skipif(not book_module.COMPILED, reason="the compiled book was not built")
@settings(max_examples=2_000, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(min_value=-1e5, max_value=1e5).map(lambda x: round(x, 8)),
        st.integers(min_value=-(10**25), max_value=10**25),
        st.integers(min_value=-(10**22), max_value=10**22).map(float),
    )
)
def test_compiled_js_text_equals_the_reference(value: float) -> None:
    from marketpipe._cbook import js_num_text

    assert js_num_text(value) == js_num_str(value)


update_body = st.one_of(
    wire_level.map(lambda lv: [lv[0], lv[1], lv[2] if lv[3] else -lv[2]]),
    st.lists(wire_level.map(lambda lv: [lv[0], lv[1], lv[2] if lv[3] else -lv[2]]), min_size=1, max_size=4),
    st.just([[100.5, 1]]),  # a level too short: counted, not applied
)


@pytest.mark.skipif(not book_module.COMPILED, reason="the compiled book was not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(update_body, max_size=60), st.sampled_from(["update", "snapshot"]))
def test_compiled_apply_update_equals_the_reference(bodies: list[Any], set_action: str) -> None:
    compiled, reference = book_module.OrderBook(10), PyOrderBook(10)
    compiled_quotes: list[tuple[Any, ...]] = []
    reference_quotes: list[tuple[Any, ...]] = []
    for seq, body in enumerate(bodies):
        head = ("ETH-USD", 1_700_000_000_000_000 + seq, 1_700_000_000_000_123 + seq, seq)
        assert book_module.apply_update(compiled, body, compiled_quotes, head, set_action) == py_apply_update(
            reference, body, reference_quotes, head, set_action
        )
        assert compiled.row(head) == reference.row(head)
    assert compiled_quotes == reference_quotes


@pytest.mark.skipif(not book_module.COMPILED, reason="the compiled book was not built")
def test_processor_stores_identical_rows_with_either_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole generated session (snapshots, bulk and single updates, deletes, checksums, trades)."""
    from benchmarks.generate_session import generate

    from marketpipe.bitfinex import processor as processor_module
    from marketpipe.sinks.raw_capture import iter_raw_frames

    generate(tmp_path, frames=3_000, seed=11)
    frames = list(iter_raw_frames([tmp_path]))

    def rows_with(book_class: type[PyOrderBook], apply: Any) -> list[tuple[str, list[Any]]]:
        monkeypatch.setattr(processor_module, "OrderBook", book_class)
        monkeypatch.setattr(processor_module, "apply_update", apply)
        out: list[tuple[str, list[Any]]] = []
        processor = processor_module.BitfinexProcessor(
            lambda table, rows: out.append((table.name, list(rows)))
        )
        for frame in frames:
            processor.process(frame)
        processor.finish()
        assert processor.stats.checksum_ok > 10 and not processor.stats.checksum_mismatches
        return out

    compiled = rows_with(book_module.OrderBook, book_module.apply_update)
    reference = rows_with(PyOrderBook, py_apply_update)
    assert compiled == reference
    assert [type(v) for _, rows in compiled for row in rows for v in row] == [
        type(v) for _, rows in reference for row in rows for v in row
    ]
    assert sum(len(rows) for name, rows in compiled if name == "bitfinex_book") > 1_000
