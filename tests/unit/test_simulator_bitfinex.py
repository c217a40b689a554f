"""Unit tests for the Bitfinex simulator's market model, wire text and checksum (no sockets)."""

from __future__ import annotations

import math
import zlib

import pytest

from marketpipe.bitfinex.market import (
    ASK,
    BID,
    INTEGRAL_SIZES,
    TINY_SIZES,
    WINDOW_LENGTHS,
    MarketModel,
    SymbolBook,
    Trade,
    WireEntry,
    base_currency,
    default_initial_price,
    tick_exponent,
)
from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.bitfinex.simulator_wire import (
    book_checksum,
    book_tokens,
    checksum_text,
    entry_text,
    normalize_symbol,
    pair_of,
    to_signed32,
    trade_text,
)


# ------------------------------------------------------------------------------ checksum (§1.10)
def test_worked_example_a_snapshot_and_updates() -> None:
    bids = [("7254.7", "3.3"), ("7254.6", "0.00005"), ("7254.5", "1.25")]
    asks = [("7255.1", "-0.5"), ("7255.2", "-12")]
    assert checksum_text(bids, asks) == "7254.7:3.3:7255.1:-0.5:7254.6:0.00005:7255.2:-12:7254.5:1.25"
    assert book_checksum(bids, asks) == 1795807381
    bids = [("7254.7", "3.3"), ("7254.5", "1.25")]
    asks = [("7255", "-0.75"), ("7255.1", "-0.5"), ("7255.2", "-12")]
    assert book_checksum(bids, asks) == -1830443905


def test_worked_example_a_from_floats_through_the_wire_formatter() -> None:
    """The simulator formats floats itself; the tokens must be the JavaScript ones."""
    entries = [WireEntry(7254.7, 3, 3.3), WireEntry(7254.6, 1, 0.00005), WireEntry(7254.5, 2, 1.25)]
    asks = [WireEntry(7255.1, 1, -0.5), WireEntry(7255.2, 4, -12.0)]
    texts = [entry_text(e) for e in entries + asks]
    assert texts == [
        "[7254.7,3,3.3]",
        "[7254.6,1,0.00005]",
        "[7254.5,2,1.25]",
        "[7255.1,1,-0.5]",
        "[7255.2,4,-12]",
    ]
    book = SymbolBook(tick_exp=-1)
    sink = book.empty_entries()
    for e in entries:
        book.set_level(BID, round(e.price * 10), e.order_count, e.amount, sink)
    for e in asks:
        book.set_level(ASK, round(e.price * 10), e.order_count, -e.amount, sink)
    tokens = book_tokens(book.top(BID, 25), BID), book_tokens(book.top(ASK, 25), ASK)
    assert book_checksum(*tokens) == 1795807381


def test_worked_example_b_full_window() -> None:
    from marketpipe.jsnum import js_num_str

    bids = {60000.0 - i: 0.01 * (i + 1) for i in range(30)}
    asks = {60001.0 + i: -0.02 * (i + 1) for i in range(30)}

    def checksum() -> int:
        b = [(js_num_str(p), js_num_str(bids[p])) for p in sorted(bids, reverse=True)][:25]
        a = [(js_num_str(p), js_num_str(asks[p])) for p in sorted(asks)][:25]
        return book_checksum(b, a)

    text = checksum_text(
        [(js_num_str(p), js_num_str(bids[p])) for p in sorted(bids, reverse=True)][:25],
        [(js_num_str(p), js_num_str(asks[p])) for p in sorted(asks)][:25],
    )
    assert text.startswith("60000:0.01:60001:-0.02:59999:0.02:60002:-0.04:59998:0.03:60003:-0.06:")
    assert text.endswith(":59976:0.25:60025:-0.5")
    assert len(text.split(":")) == 100
    assert checksum() == 1615103343
    del bids[60000.0]
    asks[60001.0] = -0.5
    bids[59999.5] = 4.2e-7
    assert checksum() == 961506193


def test_bfx_models_vector_and_signed_conversion() -> None:
    assert book_checksum([("6000", "1"), ("5900", "2")], [("6100", "-3"), ("6200", "-4")]) == 1756193398
    assert to_signed32(2464523391) == -1830443905
    assert to_signed32(zlib.crc32(b"x")) == zlib.crc32(b"x") - (1 << 32) * (zlib.crc32(b"x") >= 1 << 31)


# ------------------------------------------------------------------------------ wire text
def test_js_number_traps_in_entries_and_trades() -> None:
    assert entry_text(WireEntry(60000.0, 2, 12.0)) == "[60000,2,12]"
    assert entry_text(WireEntry(60001.0, 1, -0.00005)) == "[60001,1,-0.00005]"
    assert entry_text(WireEntry(2999.9, 1, 4.2e-7)) == "[2999.9,1,4.2e-7]"
    assert entry_text(WireEntry(3000.0, 0, -1.0)) == "[3000,0,-1]"
    assert trade_text(Trade(5, 1700000000000, -0.0000886, 60000.0)) == "[5,1700000000000,-0.0000886,60000]"


def test_symbol_normalization() -> None:
    assert normalize_symbol("BTCUSD") == "tBTCUSD"
    assert normalize_symbol("tBTCUSD") == "tBTCUSD"
    assert normalize_symbol("tAVAX:USD") == "tAVAX:USD"
    assert normalize_symbol("fUSD") == "fUSD"
    assert pair_of("tAVAX:USD") == "AVAX:USD"
    assert base_currency("tAVAX:USD") == "AVAX"
    assert base_currency("btc_mxn") == "BTC"
    assert default_initial_price("tBTCUSD") == 60_000.0
    assert default_initial_price("ETHUSD") == 3_000.0
    assert default_initial_price("tZZZUSD") == 100.0


def test_tick_grid_is_five_significant_figures() -> None:
    assert tick_exponent(60_000.0) == 0
    assert tick_exponent(3_000.0) == -1
    assert tick_exponent(0.5) == -5
    assert SymbolBook(-1).price(30001) == 3000.1
    assert SymbolBook(-5).price(50001) == 0.50001
    assert SymbolBook(1).price(6001) == 60010.0


# ------------------------------------------------------------------------------ market model
def _run_market(seed: int, steps: int) -> tuple[MarketModel, list[list[tuple[str, int, list[WireEntry]]]]]:
    model = MarketModel(
        {"tBTCUSD": 60_000.0, "tETHUSD": 3_000.0},
        seed=seed,
        trade_share=0.05,
        clock_ms=lambda: 1_700_000_000_000,
    )
    out = []
    for _ in range(steps):
        step = model.step_all()
        out.append([(s.symbol, length, e) for s in step for length, e in s.window_entries.items()])
    return model, out


def test_market_is_deterministic_for_a_seed() -> None:
    a, steps_a = _run_market(42, 300)
    b, steps_b = _run_market(42, 300)
    _, steps_c = _run_market(43, 300)
    assert steps_a == steps_b
    assert a.trades("tBTCUSD") == b.trades("tBTCUSD")
    assert steps_a != steps_c


def test_window_entries_rebuild_every_window_exactly() -> None:
    """Applying each length's entries to a client book reproduces the true top-N, never exceeding N."""
    model = MarketModel({"tBTCUSD": 60_000.0, "tETHUSD": 3_000.0}, seed=7, trade_share=0.05)
    clients = {
        (symbol, length): {
            side: {p: (c, s) for p, c, s in model.book(symbol).top(side, length)} for side in (BID, ASK)
        }
        for symbol in model.symbols
        for length in WINDOW_LENGTHS
    }
    counts = {"delete": 0, "set": 0}
    tiny = integral = 0
    for _ in range(4000):
        for step in model.step_all():
            for length, entries in step.window_entries.items():
                book = clients[(step.symbol, length)]
                for price, count, amount in entries:
                    if count == 0:
                        assert amount in (1.0, -1.0)
                        book[BID if amount == 1 else ASK].pop(price)
                        if length == 100:
                            counts["delete"] += 1
                    else:
                        book[BID if amount > 0 else ASK][price] = (count, abs(amount))
                        if length == 100:
                            counts["set"] += 1
                            tiny += abs(amount) in TINY_SIZES
                            integral += abs(amount) in INTEGRAL_SIZES
                assert len(book[BID]) <= length and len(book[ASK]) <= length
    for (symbol, length), book in clients.items():
        for side in (BID, ASK):
            truth = {p: (c, s) for p, c, s in model.book(symbol).top(side, length)}
            assert book[side] == truth, (symbol, length, side)
    share = counts["delete"] / (counts["delete"] + counts["set"])
    assert 0.2 < share < 0.45, share
    assert tiny > 10 and integral > 10


def test_book_is_deep_uncrossed_and_on_the_tick_grid() -> None:
    model, _ = _run_market(3, 2000)
    for symbol, tick_exp in (("tBTCUSD", 0), ("tETHUSD", -1)):
        book = model.book(symbol)
        assert book.depth(BID) > 100 and book.depth(ASK) > 100
        best_bid, best_ask = book.top(BID, 1)[0][0], book.top(ASK, 1)[0][0]
        assert best_bid < best_ask
        for price, count, size in book.top(BID, 250) + book.top(ASK, 250):
            ticks = price / 10.0**tick_exp
            assert math.isclose(ticks, round(ticks), abs_tol=1e-6)
            assert count >= 1 and size > 0
    assert 50_000 < model.book("tBTCUSD").top(BID, 1)[0][0] < 70_000
    assert 2_500 < model.book("tETHUSD").top(BID, 1)[0][0] < 3_500


def test_trades_hit_the_touch_and_ids_increase_across_the_market() -> None:
    model = MarketModel({"tBTCUSD": 60_000.0, "tETHUSD": 3_000.0}, seed=11, trade_share=0.5)
    assert len(model.trades("tBTCUSD")) > 10  # invented history
    for _ in range(500):
        for symbol in model.symbols:
            book = model.book(symbol)
            best_bid, best_ask = book.top(BID, 1)[0][0], book.top(ASK, 1)[0][0]
            for trade in model.step(symbol).trades:
                # a buyer lifts the best ask, a seller hits the best bid
                assert trade.price == (best_ask if trade.amount > 0 else best_bid)
    all_trades = sorted(model.trades("tBTCUSD") + model.trades("tETHUSD"), key=lambda t: t.id)
    ids = [t.id for t in all_trades]
    assert len(set(ids)) == len(ids)
    assert [t.mts for t in all_trades] == sorted(t.mts for t in all_trades)
    buys = sum(t.amount > 0 for t in all_trades)
    assert 0.25 < buys / len(all_trades) < 0.75
    window = model.trades_between("tBTCUSD", all_trades[10].mts, all_trades[-10].mts)
    assert window and all(all_trades[10].mts <= t.mts <= all_trades[-10].mts for t in window)


# ------------------------------------------------------------------------------ simulator object
def test_simulator_configuration_and_truth_accessors() -> None:
    sim = BitfinexSimulator({"BTCUSD": 60_000.0, "tXRPUSD": 0.5}, seed=5)
    assert sim.symbols == ["tBTCUSD", "tXRPUSD"]
    bids, asks = sim.true_book("XRPUSD", depth=5)
    assert len(bids) == 5 and len(asks) == 5 and bids[0][0] < asks[0][0]
    levels = sim.true_levels("tBTCUSD", 25)
    assert len(levels) == 50 and sum(v < 0 for v in levels.values()) == 25
    assert isinstance(sim.true_checksum("tBTCUSD"), int)
    assert sim.trades("tBTCUSD") and all(len(t) == 4 for t in sim.trades("tBTCUSD"))
    with pytest.raises(ValueError):
        sim.inject("meteor")
    with pytest.raises(RuntimeError):
        sim.inject("close")
    same = BitfinexSimulator(seed=5)
    assert same.server_id == BitfinexSimulator(seed=5).server_id


def test_main_builds_the_simulator_from_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from marketpipe.bitfinex import simulator as bitfinex

    seen: list[BitfinexSimulator] = []

    async def fake_serve_forever(simulator: BitfinexSimulator, **_: object) -> None:
        seen.append(simulator)

    monkeypatch.setattr(bitfinex, "serve_forever", fake_serve_forever)
    code = bitfinex.main(
        [
            "--symbols",
            "BTCUSD, tSOLUSD",
            "--seed",
            "9",
            "--port",
            "0",
            "--updates-per-second",
            "5",
            "--heartbeat-interval",
            "1",
        ]
    )
    assert code == 0
    (sim,) = seen
    assert sim.symbols == ["tBTCUSD", "tSOLUSD"] and sim.seed == 9 and sim.heartbeat_interval == 1.0
    assert 140 < sim.true_book("tSOLUSD", 1)[0][0][0] < 160
