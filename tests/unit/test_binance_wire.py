"""Binance frames -> records, stream sharding, watch specs and price-level crossings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketpipe.binance import wire as binance
from marketpipe.binance.price_levels import PriceLevelTracker, make_watch, parse_watch, parse_watch_list
from marketpipe.errors import ConfigError


def test_combined_envelopes_parse_to_typed_records() -> None:
    depth = binance.parse('{"stream":"ethusdt@depth20@100ms","data":{"lastUpdateId":160,'
                          '"bids":[["0.0024","10"]],"asks":[["0.0026","100"],["0.0027","2"]]}}')  # fmt: skip
    assert depth == binance.Depth(
        "ETHUSDT", 160, ((Decimal("0.0024"), Decimal("10")),),
        ((Decimal("0.0026"), Decimal("100")), (Decimal("0.0027"), Decimal("2"))),
    )  # fmt: skip
    arr = binance.parse('{"stream":"!miniTicker@arr","data":[{"e":"24hrMiniTicker","E":1672515782136,'
                        '"s":"BNBBTC","c":"0.0025","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000",'
                        '"q":"18"}]}')  # fmt: skip
    assert isinstance(arr, binance.MiniTickers) and arr.tickers[0].symbol == "BNBBTC"
    assert arr.tickers[0].close == Decimal("0.0025") and arr.tickers[0].quote_volume == Decimal(18)
    one = binance.parse('{"stream":"bnbbtc@miniTicker","data":{"e":"24hrMiniTicker","E":1,"s":"BNBBTC",'
                        '"c":"1","o":"1","h":"1","l":"1","v":"1","q":"1"}}')  # fmt: skip
    assert isinstance(one, binance.MiniTickers) and len(one.tickers) == 1
    assert binance.parse('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":5}}') == (
        binance.ServerShutdown(5)
    )
    assert binance.parse('{"e":"serverShutdown","E":7}') == binance.ServerShutdown(7)
    assert binance.parse('{"result":null,"id":1}') == binance.ControlReply(1, None, None)
    err = binance.parse('{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}')
    assert isinstance(err, binance.ControlReply) and err.error == "Invalid request: invalid stream"


@pytest.mark.parametrize(
    "text",
    [
        "nope", "[1]", '{"a":1}', '{"stream":5,"data":{}}', '{"stream":"x@trade","data":{}}',
        '{"stream":"btcusdt@depth20","data":{"bids":[],"asks":[]}}',
        '{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,"bids":[["x","1"]],"asks":[]}}',
        '{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,"bids":[[1.5,"1"]],"asks":[]}}',
        '{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,"bids":[["1"]],"asks":[]}}',
        '{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,"bids":{},"asks":[]}}',
        '{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,"bids":[["NaN","1"]],"asks":[]}}',
        '{"stream":"!miniTicker@arr","data":[{"e":"trade"}]}',
        '{"stream":"!miniTicker@arr","data":[{"e":"24hrMiniTicker","s":"X"}]}',
    ],
)  # fmt: skip
def test_bad_frames_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(binance.BadFrame):
        binance.parse(text)


def test_streams_urls_and_sharding_within_the_limit() -> None:
    streams = binance.streams_for(["BTCUSDT", "ETHUSDT"])
    assert streams == ["!miniTicker@arr", "btcusdt@depth20@100ms", "ethusdt@depth20@100ms"]
    assert binance.combined_url("wss://h:9443/", streams[:2]) == (
        "wss://h:9443/stream?streams=!miniTicker@arr/btcusdt@depth20@100ms"
    )
    many = [f"s{i}usdt@depth20@100ms" for i in range(2500)]
    shards = binance.shard_streams(many + many[:3], 1024)
    assert [len(s) for s in shards] == [1024, 1024, 452] and [s for shard in shards for s in shard] == many
    for bad in (0, 1025):
        with pytest.raises(ConfigError):
            binance.shard_streams(many, bad)
    assert binance.validate_symbol("btcusdt") == "BTCUSDT"
    with pytest.raises(ConfigError):
        binance.validate_symbol("BTC-USDT")
    assert binance.decimal_text(Decimal("43680.1")) == "43680.10000000"


def test_watch_specs() -> None:
    assert parse_watch("btcusdt>43680") == make_watch("BTCUSDT", "43680", "above")
    assert parse_watch("ETHUSDT<2000.5").direction == "below"
    assert parse_watch("BNBUSDT:above:300").level == Decimal(300)
    assert len(parse_watch_list(["BTCUSDT>1,BTCUSDT>1", "ETHUSDT<2"])) == 2
    for bad in ("BTCUSDT", "BTCUSDT=5", "BTCUSDT>abc", "BTCUSDT>0", "BTC-USDT>5", "BTCUSDT>1.2.3"):
        with pytest.raises(ConfigError):
            parse_watch(bad)
    with pytest.raises(ConfigError):
        make_watch("BTCUSDT", "1", "sideways")


def test_crossings_fire_once_and_rearm_when_the_price_returns() -> None:
    tracker = PriceLevelTracker([make_watch("BTCUSDT", "100", "above"), make_watch("BTCUSDT", "90", "below")])
    prices = ["95", "101", "105", "100", "100.5", "89", "88", "91", "85"]
    fired = [[(a.watch.direction, str(a.price)) for a in tracker.observe("BTCUSDT", Decimal(p), i)]
             for i, p in enumerate(prices)]  # fmt: skip
    assert fired == [[], [("above", "101")], [], [], [("above", "100.5")], [("below", "89")], [], [],
                     [("below", "85")]]  # fmt: skip
    assert tracker.observe("ETHUSDT", Decimal(1000), 0) == [] and tracker.symbols == ("BTCUSDT",)
    message = tracker.observe("BTCUSDT", Decimal("120.50"), 1_795_000_000_123_000)[0].message()
    assert message.text == "2026-11-18T11:06:40.123Z BTCUSDT price has gone above 100 Last price: 120.5"
    assert message.body["last_price"] == "120.50" and message.is_alert and len(message.key) == 32


def test_a_price_already_beyond_the_level_alerts_at_once() -> None:
    tracker = PriceLevelTracker([make_watch("BTCUSDT", "100", "above")])
    assert len(tracker.observe("BTCUSDT", Decimal(150), 0)) == 1


@given(st.lists(st.integers(80, 120), min_size=1, max_size=60))
def test_alerts_equal_the_number_of_upward_crossings(prices: list[int]) -> None:
    tracker = PriceLevelTracker([make_watch("X1", "100", "above")])
    alerts = sum(len(tracker.observe("X1", Decimal(p), 0)) for p in prices)
    previous = [99, *prices]  # starts armed: as if the price was at or below the level
    assert alerts == sum(1 for a, b in zip(previous, prices, strict=False) if a <= 100 < b)
