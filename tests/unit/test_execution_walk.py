"""Walk-the-book pricing against an independent exact computation (fractions, cumulative depth)."""

from __future__ import annotations

import bisect
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpipe.execution.walk import Book, Level, build_book, depth_quote, walk_book

prices = st.decimals(min_value="0.01", max_value="100000", places=2, allow_nan=False, allow_infinity=False)
sizes = st.decimals(min_value="0.00000001", max_value="50", places=8, allow_nan=False, allow_infinity=False)
notionals = st.decimals(min_value="0.01", max_value="10000000", places=2, allow_nan=False)
levels = st.lists(st.tuples(prices, sizes), max_size=40)


def reference(side_levels: list[tuple[Fraction, Fraction]], notional: Fraction) -> dict[str, object]:
    """Exact fill from cumulative quote depth: find the level where the notional runs out."""
    cumulative: list[Fraction] = []
    total = Fraction(0)
    for price, size in side_levels:
        total += price * size
        cumulative.append(total)
    k = bisect.bisect_left(cumulative, notional)  # first level whose cumulative depth reaches it
    if k >= len(side_levels):
        base = sum((s for _, s in side_levels), Fraction(0))
        spent, used = total, len(side_levels)
    else:
        before = cumulative[k - 1] if k else Fraction(0)
        base = sum((s for _, s in side_levels[:k]), Fraction(0)) + (notional - before) / side_levels[k][0]
        spent, used = notional, k + 1
    return {
        "base": base,
        "spent": spent,
        "used": used,
        "worst": side_levels[used - 1][0] if used else None,
        "avg": spent / base if base else None,
        "deep": total >= notional,
    }


def exact_side(pairs: list[tuple[Decimal, Decimal]], descending: bool) -> list[tuple[Fraction, Fraction]]:
    merged: dict[Fraction, Fraction] = {}
    for p, s in pairs:
        merged[Fraction(p)] = merged.get(Fraction(p), Fraction(0)) + Fraction(s)
    return sorted(merged.items(), reverse=descending)


def close(a: Decimal | None, b: Fraction | None, rel: Fraction = Fraction(1, 10**30)) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(Fraction(a) - b) <= rel * abs(b)


@settings(max_examples=300, deadline=None)
@given(bids=levels, asks=levels, notional=notionals)
def test_fill_matches_the_exact_cumulative_depth_computation(bids, asks, notional) -> None:
    book, dropped = build_book([(str(p), str(s)) for p, s in bids], [(str(p), str(s)) for p, s in asks])
    assert dropped == 0
    exact_bids, exact_asks = exact_side(bids, True), exact_side(asks, False)
    mid = (exact_bids[0][0] + exact_asks[0][0]) / 2 if exact_bids and exact_asks else None
    for side, exact in (("buy", exact_asks), ("sell", exact_bids)):
        fill = walk_book(book, side, notional)
        ref = reference(exact, Fraction(notional))
        assert fill.levels_used == ref["used"]
        assert fill.deep_enough is ref["deep"]
        assert fill.worst_price == (None if ref["worst"] is None else Decimal(ref["worst"].numerator)
                                    / Decimal(ref["worst"].denominator))  # fmt: skip
        assert close(fill.quote_spent, ref["spent"])  # type: ignore[arg-type]
        assert close(fill.base_filled, ref["base"])  # type: ignore[arg-type]
        assert close(fill.avg_price, ref["avg"])  # type: ignore[arg-type]
        assert close(fill.mid, mid)
        if fill.avg_price is None or mid is None:
            assert fill.slippage_bps is None
        else:
            avg = Fraction(fill.avg_price)
            expected = (avg - mid) / mid * 10_000 if side == "buy" else (mid - avg) / mid * 10_000
            assert abs(Fraction(fill.slippage_bps) - expected) <= Fraction(1, 10**25) * (abs(expected) + 1)
            if not book.crossed:
                assert fill.slippage_bps >= 0  # a cost, never a gain, on a sane book
        if fill.avg_price is not None:
            best = exact[0][0]
            # the average lies between the best and the worst level touched
            assert min(best, ref["worst"]) * (1 - Fraction(1, 10**30)) <= Fraction(fill.avg_price)  # type: ignore[type-var]
            assert Fraction(fill.avg_price) <= max(best, ref["worst"]) * (1 + Fraction(1, 10**30))  # type: ignore[type-var]


@settings(max_examples=100, deadline=None)
@given(asks=st.lists(st.tuples(prices, sizes), min_size=1, max_size=30), a=notionals, b=notionals)
def test_a_bigger_buy_never_gets_a_better_average_price(asks, a, b) -> None:
    book, _ = build_book([], [(str(p), str(s)) for p, s in asks])
    small, big = sorted((a, b))
    # exact in rational arithmetic; the 40-digit division may round the last digit either way
    small_avg, big_avg = walk_book(book, "buy", small).avg_price, walk_book(book, "buy", big).avg_price
    assert Fraction(small_avg) <= Fraction(big_avg) * (1 + Fraction(1, 10**35))


def test_hand_computed_buy_and_sell() -> None:
    book, _ = build_book([("99", "1"), ("98", "3")], [("101", "2"), ("100", "1")])  # asks unsorted
    buy = walk_book(book, "buy", Decimal(250))
    # 100 at 100 (1 BTC), then 150 of the 202 available at 101 (150/101 BTC)
    base = 1 + Fraction(150, 101)
    assert buy.levels_used == 2 and buy.worst_price == Decimal(101) and buy.deep_enough
    assert close(buy.base_filled, base) and buy.quote_spent == 250
    assert close(buy.avg_price, Fraction(250) / base)
    assert buy.mid == Decimal("99.5")
    assert close(buy.slippage_bps, (Fraction(250) / base - Fraction(199, 2)) / Fraction(199, 2) * 10_000)
    sell = walk_book(book, "sell", Decimal(400))  # 99 + 294 = 393 visible: not deep enough
    assert not sell.deep_enough and sell.quote_spent == 393 and sell.base_filled == 4
    assert sell.shortfall_quote == 7 and sell.worst_price == 98 and sell.levels_used == 2
    assert sell.avg_price == Decimal("98.25")
    assert close(sell.slippage_bps, (Fraction(199, 2) - Fraction(393, 4)) / Fraction(199, 2) * 10_000)


def test_exact_fill_of_a_whole_level_stops_there() -> None:
    book, _ = build_book([], [("100", "1"), ("200", "1")])
    fill = walk_book(book, "buy", Decimal(100))
    assert fill.levels_used == 1 and fill.worst_price == 100 and fill.base_filled == 1 and fill.deep_enough


def test_empty_book_prices_nothing() -> None:
    book, _ = build_book([], [])
    for side in ("buy", "sell"):
        fill = walk_book(book, side, Decimal(100_000))
        assert fill.avg_price is None and fill.worst_price is None and fill.slippage_bps is None
        assert fill.base_filled == 0 and fill.quote_spent == 0 and not fill.deep_enough
        assert fill.levels_used == 0 and fill.mid is None and fill.shortfall_quote == 100_000


def test_one_sided_book_has_a_price_but_no_mid() -> None:
    book, _ = build_book([], [("60000", "10")])
    fill = walk_book(book, "buy", Decimal(60_000))
    assert fill.avg_price == 60_000 and fill.mid is None and fill.slippage_bps is None and fill.deep_enough


def test_crossed_book_is_flagged_and_shows_a_negative_cost() -> None:
    book, _ = build_book([("101", "5")], [("100", "5")])
    assert book.crossed
    buy = walk_book(book, "buy", Decimal(100))
    assert buy.avg_price == 100 and buy.mid == Decimal("100.5") and buy.slippage_bps is not None
    assert buy.slippage_bps < 0


def test_bad_levels_are_dropped_and_counted() -> None:
    book, dropped = build_book(
        [("100", "0"), ("-1", "2"), ("abc", "1"), ("99", "1"), ("99", "2"), ("NaN", "1")],
        [("Infinity", "1"), ("101", "1")],
    )
    assert dropped == 5
    assert book.bids == (Level(Decimal(99), Decimal(3)),)
    assert book.asks == (Level(Decimal(101), Decimal(1)),)
    assert depth_quote(book.bids) == 297


def test_notional_must_be_positive() -> None:
    with pytest.raises(ValueError):
        walk_book(Book((), ()), "buy", Decimal(0))


@settings(max_examples=100, deadline=None)
@given(asks=st.lists(st.tuples(prices, sizes), min_size=1, max_size=30))
def test_deep_enough_exactly_at_the_visible_depth(asks) -> None:
    book, _ = build_book([], [(str(p), str(s)) for p, s in asks])
    total = depth_quote(book.asks)
    whole = walk_book(book, "buy", total)  # the whole visible side: deep enough, every level used
    assert whole.deep_enough and whole.levels_used == len(book.asks) and whole.shortfall_quote == 0
    assert whole.base_filled == sum(level.size for level in book.asks)
    short = walk_book(book, "buy", total + Decimal("0.01"))  # one cent more: not deep enough
    assert not short.deep_enough and short.shortfall_quote == Decimal("0.01")
    assert short.quote_spent == total and short.worst_price == book.asks[-1].price
