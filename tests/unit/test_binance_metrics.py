"""Binance book metrics, time-weighted averages and the processor, checked against exact Fractions."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpipe.binance import wire as binance
from marketpipe.binance.price_levels import parse_watch_list
from marketpipe.binance.processor import (
    CONFIG_CONN,
    AverageConfig,
    BinanceProcessor,
    RollingAverages,
    book_metrics,
    config_frame,
    time_weighted_average,
)
from marketpipe.records import RawFrame
from marketpipe.tables import Table
from marketpipe.tables.binance import (
    BINANCE_BOOK_METRICS,
    BINANCE_DEPTH20,
    BINANCE_MINI_TICKERS,
    BINANCE_PRICE_ALERTS,
)

S = 1_000_000


def exact_vwap(levels: list[tuple[str, str]]) -> Fraction:
    return Fraction(sum(Fraction(p) * Fraction(q) for p, q in levels)) / sum(Fraction(q) for _, q in levels)


def exact_twa(samples: list[tuple[int, Fraction]], end: int, window: int, hold: int) -> Fraction | None:
    """Independent: cut [end-window, end] at every sample time and hold expiry, weigh each piece by the
    value in force at its midpoint (latest sample not after it, if it has not expired)."""
    start = end - window
    cuts = sorted({start, end, *(t for t, _ in samples), *(t + hold for t, _ in samples)})
    cuts = [c for c in cuts if start <= c <= end]
    num, den = Fraction(0), Fraction(0)
    for lo, hi in itertools.pairwise(cuts):
        mid = Fraction(lo + hi, 2)
        active = [(t, v) for t, v in samples if t <= mid]
        if not active:
            continue
        t, v = max(active, key=lambda x: x[0])
        if mid < t + hold:
            num += v * (hi - lo)
            den += hi - lo
    if den == 0:
        before = [v for t, v in samples if t <= end]
        return before[-1] if before else None
    return num / den


def close(a: Decimal | float | None, b: Fraction) -> bool:
    assert a is not None
    return abs(Fraction(a) - b) <= abs(b) * Fraction(1, 10**40)


def test_metrics_of_a_book_match_an_exact_computation() -> None:
    bids = [("43650.10", "0.5"), ("43650.00", "1.25"), ("43649.90", "3")]
    asks = [("43650.30", "0.2"), ("43650.50", "0.75"), ("43651.00", "10")]
    m = book_metrics([(Decimal(p), Decimal(q)) for p, q in bids], [(Decimal(p), Decimal(q)) for p, q in asks])
    assert m.best_bid == Decimal("43650.10") and m.best_ask == Decimal("43650.30")
    assert m.spread == Decimal("0.20")
    mid = (Fraction("43650.10") + Fraction("43650.30")) / 2
    assert close(m.spread_pct, Fraction("0.20") * 100 / mid)
    bv, av = exact_vwap(bids), exact_vwap(asks)
    assert close(m.bid_vwap, bv) and close(m.ask_vwap, av) and close(m.price, (bv + av) / 2)


def test_one_sided_or_empty_books_give_nulls_not_inventions() -> None:
    m = book_metrics([(Decimal("10"), Decimal("1"))], [])
    assert (m.best_bid, m.best_ask, m.spread, m.spread_pct, m.ask_vwap, m.price) == (
        Decimal("10"), None, None, None, None, None,
    )  # fmt: skip
    assert book_metrics([], []).bid_vwap is None
    zero_qty = book_metrics([(Decimal("10"), Decimal("0"))], [(Decimal("11"), Decimal("1"))])
    assert zero_qty.bid_vwap is None and zero_qty.price is None


def test_time_weighted_average_by_hand() -> None:
    # 100 for 20 s, then 200 for 10 s, window 30 s ending at 30 s: (100*20 + 200*10) / 30
    samples = [(0, Decimal(100)), (20 * S, Decimal(200)), (30 * S, Decimal(300))]
    assert close(time_weighted_average(samples, 30 * S, 30 * S, 60 * S), Fraction(4000, 30))
    # a 1-minute window only has 30 s of history: the average is over the covered time
    assert close(time_weighted_average(samples, 30 * S, 60 * S, 60 * S), Fraction(4000, 30))
    # with a 5 s hold, 100 counts 5 s and 200 counts 5 s
    assert time_weighted_average(samples, 30 * S, 30 * S, 5 * S) == Decimal(150)
    # first sample: nothing covered yet -> that price; no sample -> None
    assert time_weighted_average(samples[:1], 0, 30 * S, 5 * S) == Decimal(100)
    assert time_weighted_average([], 0, 30 * S, 5 * S) is None


sample_lists = st.lists(
    st.tuples(st.integers(0, 120 * S), st.decimals(min_value=1, max_value=100000, places=4)),
    min_size=1,
    max_size=25,
    unique_by=lambda x: x[0],
)


@settings(max_examples=150, deadline=None)
@given(sample_lists, st.sampled_from([30, 60]), st.sampled_from([1, 5, 10, 90]))
def test_time_weighted_average_equals_an_independent_exact_integration(
    samples: list[tuple[int, Decimal]], window_s: int, hold_s: int
) -> None:
    samples.sort()
    end = samples[-1][0]
    got = time_weighted_average(samples, end, window_s * S, hold_s * S)
    want = exact_twa([(t, Fraction(v)) for t, v in samples], end, window_s * S, hold_s * S)
    assert want is not None and close(got, want)


@settings(max_examples=60, deadline=None)
@given(sample_lists)
def test_rolling_averages_forget_only_what_no_window_needs(samples: list[tuple[int, Decimal]]) -> None:
    samples.sort()
    rolling = RollingAverages(AverageConfig((30, 60), 10_000))
    for i, (t, v) in enumerate(samples):
        got30, got60 = rolling.add("X", t, v)
        history = samples[: i + 1]
        assert got30 == time_weighted_average(history, t, 30 * S, 10 * S)
        assert got60 == time_weighted_average(history, t, 60 * S, 10 * S)


def depth_frame(symbol: str, update_id: int, bids: list[list[str]], asks: list[list[str]]) -> str:
    data = {"lastUpdateId": update_id, "bids": bids, "asks": asks}
    return orjson.dumps({"stream": binance.depth_stream(symbol), "data": data}).decode()


def ticker(symbol: str, event_ms: int, close_: str) -> dict[str, object]:
    return {"e": "24hrMiniTicker", "E": event_ms, "s": symbol, "c": close_, "o": "1.0", "h": "2.0",
            "l": "0.5", "v": "100.5", "q": "150.25"}  # fmt: skip


class Collect:
    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[object, ...]]] = {}

    def __call__(self, table: Table, rows: list[tuple[object, ...]]) -> None:
        self.rows.setdefault(table.name, []).extend(rows)

    def of(self, table: Table) -> list[dict[str, object]]:
        return [dict(zip(table.column_names, r, strict=True)) for r in self.rows.get(table.name, [])]


def session_frames() -> list[RawFrame]:
    base = 1_795_000_000 * S
    watch = parse_watch_list(["BTCUSDT>43680", "BTCUSDT<43600"])
    frames = [
        RawFrame("binance", CONFIG_CONN, "in", base, config_frame(watch, AverageConfig((30, 60), 10_000)))
    ]
    prices = ["43650", "43700", "43710", "43650", "43590", "43690"]
    for i, price in enumerate(prices):
        t = base + (i + 1) * 7 * S
        tickers = [ticker("BTCUSDT", t // 1000, price), ticker("ETHUSDT", t // 1000, "2300.5")]
        text = orjson.dumps({"stream": "!miniTicker@arr", "data": tickers}).decode()
        frames.append(RawFrame("binance", "c1", "in", t, text))
        bids = [[f"{Decimal(price) - Decimal(k):.2f}", f"{k + 1}"] for k in range(20)]
        asks = [[f"{Decimal(price) + 1 + Decimal(k):.2f}", "2"] for k in range(20)]
        frames.append(RawFrame("binance", "c1", "in", t + 5000, depth_frame("btcusdt", 100 + i, bids, asks)))
    frames.append(RawFrame("binance", "c1", "in", base + 60 * S, "not json"))
    return frames


def test_processor_rows_metrics_averages_and_alerts() -> None:
    out = Collect()
    alerts: list[str] = []
    processor = BinanceProcessor(out, on_alert=lambda a: alerts.append(a.text))
    for frame in session_frames():
        processor.process(frame)
    tickers = out.of(BINANCE_MINI_TICKERS)
    assert len(tickers) == 12 and tickers[0]["symbol"] == "BTCUSDT" and tickers[0]["close"] == 43650.0
    assert tickers[1]["base_volume"] == 100.5 and tickers[1]["quote_volume"] == 150.25
    depth = out.of(BINANCE_DEPTH20)
    assert len(depth) == 6 and depth[0]["symbol"] == "BTCUSDT" and depth[0]["last_update_id"] == 100
    assert depth[0]["bid_1_price"] == 43650.0 and depth[0]["bid_20_size"] == 20.0
    assert depth[0]["ask_1_price"] == 43651.0
    metrics = out.of(BINANCE_BOOK_METRICS)
    assert [m["best_bid"] for m in metrics] == [43650.0, 43700.0, 43710.0, 43650.0, 43590.0, 43690.0]
    assert all(m["spread"] == 1.0 for m in metrics)
    # independent: price per message from Fractions, averages by exact integration over receive times
    samples = []
    for d in depth:
        bids = [(str(d[f"bid_{k}_price"]), str(d[f"bid_{k}_size"])) for k in range(1, 21)]
        asks = [(str(d[f"ask_{k}_price"]), str(d[f"ask_{k}_size"])) for k in range(1, 21)]
        samples.append((int(str(d["received_ts"])), (exact_vwap(bids) + exact_vwap(asks)) / 2))
    for i, m in enumerate(metrics):
        assert m["price"] == float(samples[i][1])
        end = samples[i][0]
        assert m["avg_price_30s"] == float(exact_twa(samples[: i + 1], end, 30 * S, 10 * S) or 0)
        assert m["avg_price_1m"] == float(exact_twa(samples[: i + 1], end, 60 * S, 10 * S) or 0)
    # one alert per crossing, re-armed when the price returns
    assert [a.split(" ", 1)[1] for a in alerts] == [
        "BTCUSDT price has gone above 43680 Last price: 43700",
        "BTCUSDT price has gone below 43600 Last price: 43590",
        "BTCUSDT price has gone above 43680 Last price: 43690",
    ]
    assert alerts[0].startswith("2026-") and alerts[0][:24].endswith("Z")
    assert [(r["direction"], r["last_price"]) for r in out.of(BINANCE_PRICE_ALERTS)] == [
        ("above", 43700.0), ("below", 43590.0), ("above", 43690.0),
    ]  # fmt: skip
    assert processor.stats.invalid_frames == 1 and "price alerts 3" in processor.summary()


def test_replay_rebuilds_identical_rows_from_the_capture_alone() -> None:
    live, replayed = Collect(), Collect()
    live_proc = BinanceProcessor(live, parse_watch_list(["BTCUSDT>43680", "BTCUSDT<43600"]))
    replay_proc = BinanceProcessor(replayed)  # learns the watch list from the config record
    for frame in session_frames():
        live_proc.process(frame)
        replay_proc.process(frame)
    assert live.rows == replayed.rows and len(replayed.rows[BINANCE_PRICE_ALERTS.name]) == 3


def test_control_replies_and_shutdowns_are_counted() -> None:
    processor = BinanceProcessor(Collect())
    for text in ('{"result":null,"id":1}', '{"error":{"code":2,"msg":"Invalid request"},"id":2}',
                 '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}'):  # fmt: skip
        processor.process(RawFrame("binance", "c", "in", 1, text))
    processor.process(RawFrame("binance", "c", "out", 2, "ignored"))
    processor.process(RawFrame("binance", CONFIG_CONN, "in", 3, '{"type":"other"}'))
    s = processor.stats
    assert (s.control_replies, s.control_errors, s.server_shutdowns, s.invalid_frames) == (2, 1, 1, 1)


@pytest.mark.parametrize("window", [(30, 60)])
def test_average_config_round_trips_through_the_capture(window: tuple[int, int]) -> None:
    processor = BinanceProcessor(Collect())
    processor.process(
        RawFrame("binance", CONFIG_CONN, "in", 1, config_frame((), AverageConfig(window, 2500)))
    )
    assert processor.averages.config == AverageConfig(window, 2500)


def test_an_older_depth_message_never_moves_the_book_back() -> None:
    out = Collect()
    processor = BinanceProcessor(out)
    book = [["100.0", "1"]], [["101.0", "1"]]
    for ts, update_id in [(1, 10), (2, 12), (3, 11), (4, 12), (5, 13)]:
        processor.process(RawFrame("binance", "c", "in", ts, depth_frame("btcusdt", update_id, *book)))
    assert [r["last_update_id"] for r in out.of(BINANCE_BOOK_METRICS)] == [10, 12, 12, 13]  # equal ids kept
    assert processor.stats.stale_depth == 1
    restored = BinanceProcessor(Collect())
    restored.restore_state(processor.export_state())
    restored.process(RawFrame("binance", "c", "in", 6, depth_frame("btcusdt", 12, *book)))
    assert restored.stats.stale_depth == 1
