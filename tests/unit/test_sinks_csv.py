"""CsvSink: exact file contents, JavaScript number text, idempotency across replays and restarts."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpipe.errors import ConfigError
from marketpipe.sinks import csv_sink
from marketpipe.sinks.csv_sink import CsvSink, _FloatText
from marketpipe.tables import BITFINEX_BOOK, BITFINEX_QUOTES, BITFINEX_TRADES
from marketpipe.timeutil import iso_to_us
from tests.support.compiled import IMPLEMENTATIONS, use_implementation

T0 = iso_to_us("2026-11-22T04:10:26.123456Z")
EX0 = iso_to_us("2026-11-22T04:10:26.120Z")
TRADES_HEADER = "symbol,trade_id,exchange_ts,price,amount,side,received_ts\r\n"


def trade(trade_id: int, received: int = T0, price: float = 7255.0, amount: float = 0.00005) -> tuple:
    return ("BTC-USD", trade_id, EX0, price, amount, "buy", received + trade_id)


def trades_path(data_dir: Path, day: str = "2026-11-22") -> Path:
    return data_dir / "csv" / "bitfinex_trades" / f"bitfinex_trades-{day}.csv"


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))[1:]


def write_and_close(data_dir: Path, table, rows) -> None:
    sink = CsvSink(data_dir)
    sink.write(table, rows)
    sink.close()


@pytest.fixture(params=IMPLEMENTATIONS)
def wide_formatter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Book rows' level text through the compiled ``WideText`` and through the pure-Python diff."""
    return use_implementation(request, monkeypatch, csv_sink, "WideText")


def test_exact_header_and_lines(tmp_path: Path) -> None:
    write_and_close(tmp_path, BITFINEX_TRADES, [trade(1), trade(2, price=0.1 + 0.2, amount=1e21)])
    assert trades_path(tmp_path).read_bytes().decode() == (
        TRADES_HEADER
        + "BTC-USD,1,2026-11-22T04:10:26.120Z,7255,0.00005,buy,2026-11-22T04:10:26.123457Z\r\n"
        + "BTC-USD,2,2026-11-22T04:10:26.120Z,0.30000000000000004,1e+21,buy,2026-11-22T04:10:26.123458Z\r\n"
    )


def test_book_row_none_is_empty_and_levels_are_js_text(tmp_path: Path, wide_formatter: str) -> None:
    levels: list[float | None] = [None] * 400
    levels[0], levels[1] = 43210.5, 1.25
    levels[200], levels[201] = 43211.0, 3e-7
    row = ("ETH-USD", None, T0, 17, *levels)
    write_and_close(tmp_path, BITFINEX_BOOK, [row])
    (fields,) = read_rows(tmp_path / "csv" / "bitfinex_book" / "bitfinex_book-2026-11-22.csv")
    assert len(fields) == 404
    assert fields[:6] == ["ETH-USD", "", "2026-11-22T04:10:26.123456Z", "17", "43210.5", "1.25"]
    assert fields[204:206] == ["43211", "3e-7"]
    assert fields[6:204] == [""] * 198


def test_strings_needing_quotes_are_rfc4180_quoted(tmp_path: Path) -> None:
    write_and_close(tmp_path, BITFINEX_TRADES, [("A,B", 1, EX0, 1.0, 2.0, 'say "hi"', T0)])
    text = trades_path(tmp_path).read_text()
    assert (
        text.splitlines()[1]
        == '"A,B",1,2026-11-22T04:10:26.120Z,1,2,"say ""hi""",2026-11-22T04:10:26.123456Z'
    )
    write_and_close(tmp_path, BITFINEX_TRADES, [("A,B", 1, EX0, 1.0, 2.0, 'say "hi"', T0)])
    assert read_rows(trades_path(tmp_path)) == [
        ["A,B", "1", "2026-11-22T04:10:26.120Z", "1", "2", 'say "hi"', "2026-11-22T04:10:26.123456Z"]
    ]


def test_same_rows_twice_in_one_sink_are_stored_once(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path)
    rows = [trade(i) for i in range(1, 6)]
    sink.write(BITFINEX_TRADES, rows)
    sink.write(BITFINEX_TRADES, rows)
    sink.write(BITFINEX_TRADES, [*rows[2:], trade(6)])
    sink.close()
    assert [r[1] for r in read_rows(trades_path(tmp_path))] == ["1", "2", "3", "4", "5", "6"]


def test_restart_replay_does_not_duplicate(tmp_path: Path) -> None:
    rows = [trade(i) for i in range(1, 101)]
    write_and_close(tmp_path, BITFINEX_TRADES, rows[:60])
    write_and_close(tmp_path, BITFINEX_TRADES, rows)  # replay over the same file from a new sink
    write_and_close(tmp_path, BITFINEX_TRADES, rows)
    ids = [int(r[1]) for r in read_rows(trades_path(tmp_path))]
    assert ids == list(range(1, 101))


def test_out_of_order_rows_are_kept_once_also_after_restart(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path)
    sink.write(BITFINEX_TRADES, [trade(1), trade(2), trade(5)])
    sink.write(BITFINEX_TRADES, [trade(4), trade(2), trade(3)])  # late rows, one duplicate
    sink.close()
    assert [r[1] for r in read_rows(trades_path(tmp_path))] == ["1", "2", "5", "4", "3"]
    # The file now ends with a late row; a restart must still see 5 as stored.
    write_and_close(tmp_path, BITFINEX_TRADES, [trade(i) for i in range(1, 8)])
    assert sorted(int(r[1]) for r in read_rows(trades_path(tmp_path))) == [1, 2, 3, 4, 5, 6, 7]


def test_rows_sharing_the_watermark_value(tmp_path: Path) -> None:
    """A snapshot frame gives many quotes with one received_ts: all stored, none twice."""

    def quotes(ts: int, n: int) -> list[tuple]:
        return [("BTC-USD", EX0, ts, 9, "bid", 100.0 + i, 1, 0.5, "snapshot") for i in range(n)]

    rows = quotes(T0, 50) + quotes(T0 + 1, 50)
    write_and_close(tmp_path, BITFINEX_QUOTES, rows[:75])
    write_and_close(tmp_path, BITFINEX_QUOTES, rows)
    path = tmp_path / "csv" / "bitfinex_quotes" / "bitfinex_quotes-2026-11-22.csv"
    stored = read_rows(path)
    assert len(stored) == 100
    assert len({tuple(r) for r in stored}) == 100


def test_day_rollover_opens_a_new_file(tmp_path: Path) -> None:
    late = iso_to_us("2026-11-22T23:59:59.999999Z")
    next_day = iso_to_us("2026-11-23T00:00:00.000001Z")
    sink = CsvSink(tmp_path)
    sink.write(
        BITFINEX_TRADES,
        [("BTC-USD", 1, EX0, 1.0, 1.0, "buy", late), ("BTC-USD", 2, EX0, 1.0, 1.0, "sell", next_day)],
    )
    sink.close()
    assert [r[1] for r in read_rows(trades_path(tmp_path))] == ["1"]
    assert [r[1] for r in read_rows(trades_path(tmp_path, "2026-11-23"))] == ["2"]
    assert trades_path(tmp_path, "2026-11-23").read_text().startswith(TRADES_HEADER.rstrip())


def test_open_handles_are_bounded_and_reopened_files_still_dedupe(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path, max_open_files=2)
    days = [iso_to_us(f"2026-11-{d:02d}T12:00:00Z") for d in range(1, 6)]
    for _ in range(2):
        for ts in days:
            sink.write(BITFINEX_TRADES, [("BTC-USD", 1, EX0, 1.0, 1.0, "buy", ts)])
        assert len(sink._files) <= 2
    sink.close()
    files = sorted((tmp_path / "csv" / "bitfinex_trades").iterdir())
    assert len(files) == 5
    assert all(len(read_rows(f)) == 1 for f in files)


def test_header_mismatch_is_a_config_error(tmp_path: Path) -> None:
    path = trades_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("a,b,c\r\n1,2,3\r\n")
    sink = CsvSink(tmp_path)
    with pytest.raises(ConfigError, match="header does not match"):
        sink.write(BITFINEX_TRADES, [trade(1)])


def book_row(symbol: str, ts: int, price: float = 100.5) -> tuple:
    return (symbol, None, ts, 1, price, 1.0, *([None] * 398))


def test_symbols_interleaved_batch_by_batch_are_stored_once_in_arrival_order(tmp_path: Path) -> None:
    """The processor emits each symbol's verified rows together: symbols overlap in time across batches."""
    btc = [book_row("BTC-USD", T0 + 2 * i) for i in range(20)]
    eth = [book_row("ETH-USD", T0 + 2 * i + 1, 50.25) for i in range(20)]
    batches = [btc[:10], eth[:10], btc[10:], eth[10:]]
    sink = CsvSink(tmp_path)
    for batch in batches:
        sink.write(BITFINEX_BOOK, batch)
    sink.write(BITFINEX_BOOK, eth[5:15])  # duplicates within the same sink
    sink.close()
    path = tmp_path / "csv" / "bitfinex_book" / "bitfinex_book-2026-11-22.csv"
    first = path.read_bytes()
    stored = [(r[0], iso_to_us(r[2])) for r in read_rows(path)]
    assert stored == [(r[0], r[2]) for batch in batches for r in batch]
    sink = CsvSink(tmp_path)  # a restart replaying everything, in the same interleaving
    for batch in batches:
        sink.write(BITFINEX_BOOK, batch)
    sink.close()
    assert path.read_bytes() == first


def test_symbol_missing_from_the_tail_of_a_large_file_is_still_deduplicated(tmp_path: Path) -> None:
    eth = [("ETH-USD", i, EX0, 2.0, 1.0, "sell", T0 + i) for i in range(1, 4)]
    btc = [("BTC-USD", 1000 + i, EX0, 1.0, 0.5, "buy", T0 + 1000 + i) for i in range(6000)]
    write_and_close(tmp_path, BITFINEX_TRADES, eth + btc)  # ETH only at the start, far from the tail
    assert trades_path(tmp_path).stat().st_size > 300_000
    late_eth = ("ETH-USD", 5, EX0, 2.0, 1.0, "sell", T0 + 5)
    write_and_close(tmp_path, BITFINEX_TRADES, [*eth, late_eth, btc[-1]])
    stored = read_rows(trades_path(tmp_path))
    assert len(stored) == 3 + 6000 + 1
    assert [r[1] for r in stored if r[0] == "ETH-USD"] == ["1", "2", "3", "5"]


def test_book_rows_changing_level_by_level_are_written_value_by_value(
    tmp_path: Path, wide_formatter: str
) -> None:
    """Rows reuse the previous row's text where levels are equal: inserts, removals, in-place changes."""
    import random

    from marketpipe.jsnum import js_num_str

    rng = random.Random(5)
    bids = [[100.0 - i * 0.5, round(rng.uniform(0.001, 3), 4)] for i in range(100)]
    asks = [[101.0 + i * 0.5, 2e-6 * (i + 1)] for i in range(100)]
    rows = []
    for n in range(400):
        side = bids if rng.random() < 0.5 else asks
        level = rng.randrange(len(side)) if side else 0
        action = rng.choice(["size", "insert", "remove", "both", "same", "price"])
        if action == "size" and side:
            side[level][1] = rng.choice([0.5, 1.0, 7e-7, 12345678.0, 1e21, 0.1 + 0.2])
        elif action == "insert" and side:
            side.insert(level, [side[level][0] + 0.25, 1.5])
            del side[100:]
        elif action == "remove" and side:
            del side[level]
        elif action == "both" and bids and asks:
            bids[0][1] += 1.0
            asks[-1][1] += 1.0
        elif action == "price" and side:
            side[level][0] += 0.01
        levels: list[float | None] = []
        for book_side in (bids, asks):
            flat = [x for pair in book_side[:100] for x in pair]
            levels += flat + [None] * (200 - len(flat))
        symbol = "BTC-USD" if n % 3 else "ETH-USD"  # two interleaved streams
        rows.append((symbol, None, T0 + n, n, *levels))
    write_and_close(tmp_path, BITFINEX_BOOK, rows)
    stored = read_rows(tmp_path / "csv" / "bitfinex_book" / "bitfinex_book-2026-11-22.csv")
    assert len(stored) == len(rows)
    for fields, row in zip(stored, rows, strict=True):
        assert fields[4:] == ["" if v is None else js_num_str(v) for v in row[4:]]


_LEVEL_VALUES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 1e21, 5e-7, 0.1 + 0.2]),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([0, 1, 5, 2**53 - 1, 2**53, -(2**53)]),
)
_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["set", "insert", "remove", "same", "replace"]),
        st.integers(min_value=0, max_value=11),
        st.lists(_LEVEL_VALUES, min_size=12, max_size=12),
    ),
    max_size=30,
)


@pytest.mark.skipif(csv_sink.WideText is None, reason="the compiled book (marketpipe._cbook) was not built")
@settings(max_examples=300, deadline=None)
@given(first=st.lists(_LEVEL_VALUES, min_size=12, max_size=12), edits=_EDITS)
def test_compiled_wide_text_equals_formatting_every_value(first: list, edits: list) -> None:
    """Property: whatever changes between rows (a value, a pair inserted or removed, everything), the
    compiled diff gives the text of formatting each value, for tuples and lists alike."""
    assert csv_sink.WideText is not None
    wide = csv_sink.WideText(_FloatText(), 12)
    reference = _FloatText()
    values = list(first)
    for step, (edit, at, fresh) in enumerate([("same", 0, first), *edits]):
        if edit == "set":
            values[at] = fresh[0]
        elif edit == "insert":
            values[at:at] = fresh[:2]
            del values[12:]
        elif edit == "remove":
            del values[at : at + 2]
            values += fresh[: 12 - len(values)]
        elif edit == "replace":
            values = list(fresh)
        row = ("BTC-USD", step, *values, "tail")
        expected = ",".join(reference[v] for v in values)
        assert wide.text_of(row if step % 2 else list(row), 2) == expected


@pytest.mark.skipif(csv_sink.WideText is None, reason="the compiled book (marketpipe._cbook) was not built")
def test_compiled_wide_text_refuses_a_short_row_and_an_empty_segment() -> None:
    assert csv_sink.WideText is not None
    with pytest.raises(ValueError, match="row has 5 values, the segment needs 6"):
        csv_sink.WideText(_FloatText(), 4).text_of((1.0, 2.0, 3.0, 4.0, 5.0), 2)
    with pytest.raises(ValueError, match="at least one value"):
        csv_sink.WideText(_FloatText(), 0)


def quote_row(ts: int, notional: float, side: str = "buy") -> tuple:
    return ("coinbase", "BTC-USD", "BTC", "USD", ts, "2026-11-22", 250, "2026-11-22T04:10Z", side,
            notional, 100.5, 101.0, 0.5, notional, 0.0, 100.25, 2.5, 1, 3, 0)  # fmt: skip


def test_rows_appended_below_the_watermark_keep_a_large_file_deduplicated(tmp_path: Path) -> None:
    """A re-priced history appends a new notional's rows for old times: the file is no longer in time
    order, so its tail no longer tells what the earlier lines hold. Later writes still store nothing twice."""
    from marketpipe.tables.execution import EXECUTION_QUOTES

    times = [T0 + 1_000_000 * i for i in range(2000)]
    original = [quote_row(t, n, s) for t in times for s in ("buy", "sell") for n in (100000.0, 50000.0)]
    write_and_close(tmp_path, EXECUTION_QUOTES, original)
    path = tmp_path / "csv" / "execution_quotes" / "execution_quotes-2026-11-22.csv"
    assert path.stat().st_size > 2 * csv_sink._TAIL_BYTES
    repriced = [quote_row(t, 250000.0, s) for t in times[:1500] for s in ("buy", "sell")]
    write_and_close(tmp_path, EXECUTION_QUOTES, repriced)  # the first three quarters re-priced
    assert len(read_rows(path)) == len(original) + len(repriced)
    assert path.with_name(path.name + ".unordered").exists()
    stored = path.read_bytes()
    for again in (original[-8:], original[-400:], original[6000:6400], repriced[-4:], repriced):
        write_and_close(tmp_path, EXECUTION_QUOTES, again)  # a replay of some hours, live or re-priced
        assert path.read_bytes() == stored
