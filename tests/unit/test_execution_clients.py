"""Coinbase and Binance book clients against the loopback simulators: limits, retries, 429, 418, refusals."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests

from marketpipe.execution import binance_rest, clients, coinbase
from marketpipe.execution.binance_simulator import BinanceRestSimulator
from marketpipe.execution.coinbase_simulator import CoinbaseRestSimulator
from marketpipe.net.rest import Banned, RateLimited, Rejected, RestError
from tests.support.fake_time import FakeTime

MINUTE = 1_790_000_040.0
"""A UTC minute start (1_790_000_040 = 60 x 29_833_334)."""


@contextmanager
def serving(sim: Any) -> Iterator[Any]:
    """Run a simulator's server on its own event loop in a thread (the clients are synchronous)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(5)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def coinbase_client(
    sim: CoinbaseRestSimulator, t: FakeTime | None = None, **kw: Any
) -> clients.CoinbaseBookClient:
    if t is not None:
        kw.update(clock=t.time, sleep=t.sleep)
    return clients.CoinbaseBookClient(sim.api_url, **kw)


def binance_client(sim: BinanceRestSimulator, t: FakeTime, **kw: Any) -> clients.BinanceBookClient:
    return clients.BinanceBookClient(sim.api_url, clock=t.time, sleep=t.sleep, wall=t.time, **kw)


# --------------------------------------------------------------------------------------------- Coinbase
def test_coinbase_book_is_a_realistic_deep_level2_book() -> None:
    with serving(CoinbaseRestSimulator(thin_probability=0.0)) as sim:
        path, answer = coinbase_client(sim).fetch_book("BTC-USD")
    assert path == "/products/BTC-USD/book?level=2"
    body = orjson.loads(answer.text)
    assert set(body) >= {"bids", "asks", "sequence", "auction_mode", "time"}
    assert len(body["bids"][0]) == 3 and isinstance(body["bids"][0][2], int)
    snap = coinbase.parse_book(answer.text)
    book = snap.book
    assert 50_000 < float(book.best_bid) < 70_000 and book.best_ask - book.best_bid == Decimal("0.01")
    assert not book.crossed and len(book.bids) == len(book.asks) == 1000
    assert snap.sequence == body["sequence"] and snap.exchange_ts is not None
    assert body["bids"][0][0].count(".") == 1 and len(body["bids"][0][0].split(".")[1]) == 2


def test_coinbase_unknown_product_is_rejected_at_once() -> None:
    with serving(CoinbaseRestSimulator()) as sim:
        client = coinbase_client(sim)
        with pytest.raises(Rejected) as info:
            client.fetch_book("DOGE-EUR")
        assert info.value.status == 404 and "NotFound" in str(info.value)
        assert sim.requests == 1  # not retried


def test_coinbase_server_errors_are_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    with serving(CoinbaseRestSimulator()) as sim:
        sim.inject_status(503, 2)
        client = coinbase_client(sim, t)
        with caplog.at_level(logging.WARNING, "marketpipe.execution"):
            _, answer = client.fetch_book("ETH-USD")
        assert sim.answers == {503: 2, 200: 1}
    assert coinbase.parse_book(answer.text).book.best_bid is not None
    assert len(t.sleeps) == 2 and all(0 < s <= 8 for s in t.sleeps)
    assert "HTTP 503" in caplog.text and "retry 1/3" in caplog.text
    assert client.errors == {503: 2}


def test_coinbase_gives_up_after_the_attempts_and_says_why() -> None:
    t = FakeTime()
    with serving(CoinbaseRestSimulator()) as sim:
        sim.inject_status(500, 10)
        with pytest.raises(RestError, match="gave up after 4 attempts: HTTP 500"):
            coinbase_client(sim, t).fetch_book("BTC-USD")
        assert sim.answers == {500: 4}


def test_coinbase_simulator_refuses_bursts_and_the_client_stays_under_the_limit() -> None:
    with serving(CoinbaseRestSimulator(levels=5, clock=lambda: 0.0)) as sim:  # a frozen bucket never refills
        with requests.Session() as s:
            statuses = [s.get(sim.api_url + "/products/BTC-USD/book?level=1").status_code for _ in range(20)]
        assert statuses == [200] * 15 + [429] * 5
        refused = requests.get(sim.api_url + "/products/BTC-USD/book?level=2", timeout=5)
        assert refused.status_code == 429 and refused.json() == {"message": "Public rate limit exceeded"}
    with serving(CoinbaseRestSimulator(levels=5, burst=10)) as sim:
        client = coinbase_client(sim)  # real clock: 25 requests at 10/s
        for _ in range(25):
            client.fetch_book("BTC-USD")
        assert sim.answers == {200: 25}


def test_coinbase_bad_level_is_refused() -> None:
    with serving(CoinbaseRestSimulator()) as sim:
        answer = requests.get(sim.api_url + "/products/BTC-USD/book?level=7", timeout=5)
        assert answer.status_code == 400 and answer.json() == {"message": "Invalid level"}
        assert requests.get(sim.api_url + "/time", timeout=5).status_code == 404


def test_coinbase_429_without_retry_after_backs_off_then_succeeds() -> None:
    t = FakeTime()
    with serving(CoinbaseRestSimulator(burst=1, rate=0.001)) as sim:
        client = coinbase_client(sim, t, max_attempts=2)
        client.fetch_book("BTC-USD")
        with pytest.raises(RestError, match="HTTP 429"):
            client.fetch_book("BTC-USD")  # the simulator's bucket does not refill on fake time
        assert sim.answers == {200: 1, 429: 2}
        assert client.resume_at > t.now - 10


def test_connection_errors_are_retried_then_reported() -> None:
    t = FakeTime()
    client = clients.CoinbaseBookClient("http://127.0.0.1:9", clock=t.time, sleep=t.sleep, timeout=1)
    with pytest.raises(RestError, match="ConnectionError"):
        client.fetch_book("BTC-USD")
    assert client.errors == {0: 4} and len(t.sleeps) == 3


# --------------------------------------------------------------------------------------------- Binance
def test_binance_depth_counts_weight_from_the_header() -> None:
    t = FakeTime()
    with serving(BinanceRestSimulator(wall=t.time, thin_probability=0.0)) as sim:
        client = binance_client(sim, t)
        path, answer = client.fetch_book("BTCUSDT")
        assert path == "/api/v3/depth?symbol=BTCUSDT&limit=1000"
        assert answer.headers["X-MBX-USED-WEIGHT-1M"] == "50" and client.used_weight == 50
        client.fetch_book("ETHUSDT")
        assert client.used_weight == 100
    snap = binance_rest.parse_book(answer.text)
    assert len(snap.book.bids) == 1000 and snap.last_update_id is not None
    assert orjson.loads(answer.text)["bids"][0][0].endswith("000000")  # Binance's 8-decimal text


def test_binance_invalid_symbol_is_rejected_with_its_code(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    with (
        serving(BinanceRestSimulator(wall=t.time)) as sim,
        caplog.at_level(logging.ERROR, "marketpipe.execution"),
        pytest.raises(Rejected) as info,
    ):
        binance_client(sim, t).fetch_book("FOOUSDT")
    assert info.value.status == 400 and info.value.code == -1121
    assert "HTTP 400 (Invalid symbol., code -1121); not retried" in caplog.text


def test_binance_own_budget_waits_for_the_next_minute_without_a_429() -> None:
    t = FakeTime(start=MINUTE + 10)
    with serving(BinanceRestSimulator(wall=t.time, weight_limit=6000)) as sim:
        client = binance_client(sim, t, weight_budget=100, max_wait=60)
        for _ in range(3):
            client.fetch_book("BTCUSDT")
        assert sim.answers == {200: 3}
    assert t.sleeps == [pytest.approx(50.0)]  # 10 s into the minute: wait the remaining 50


def test_binance_429_retry_after_is_honoured() -> None:
    t = FakeTime(start=MINUTE + 30)
    with serving(BinanceRestSimulator(wall=t.time, weight_limit=100)) as sim:
        client = binance_client(sim, t, max_wait=60)
        client.fetch_book("BTCUSDT")
        client.fetch_book("BTCUSDT")
        client.used_weight = 0  # as if another process shared the IP: the client cannot know
        client.fetch_book("ETHUSDT")  # 429 Retry-After 30, then the next minute answers
        assert sim.answers == {200: 3, 429: 1} and sim.answers.get(418) is None
    assert 30.0 in t.sleeps


def test_binance_long_retry_after_skips_and_sends_nothing_until_it_passes() -> None:
    t = FakeTime(start=MINUTE + 10)
    with serving(BinanceRestSimulator(wall=t.time, weight_limit=50)) as sim:
        client = binance_client(sim, t, max_wait=10)
        client.fetch_book("BTCUSDT")
        client.used_weight = 0
        with pytest.raises(RateLimited):
            client.fetch_book("BTCUSDT")
        sent = sim.requests
        with pytest.raises(RateLimited):
            client.fetch_book("BTCUSDT")
        assert sim.requests == sent and sim.answers.get(418) is None
        t.now += 60
        client.fetch_book("BTCUSDT")
        assert sim.answers[200] == 2


def test_binance_ban_after_ignored_429s_stops_all_polling_until_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = FakeTime(start=MINUTE + 10)
    with serving(BinanceRestSimulator(wall=t.time, weight_limit=50, ban_after=2, ban_seconds=300)) as sim:
        url = sim.api_url + "/api/v3/depth?symbol=BTCUSDT&limit=1000"
        naive = [requests.get(url, timeout=5) for _ in range(3)]  # a client that ignores 429
        assert [r.status_code for r in naive] == [200, 429, 429]
        assert naive[1].headers["Retry-After"] == "50"
        client = binance_client(sim, t)
        with caplog.at_level(logging.ERROR, "marketpipe.execution"), pytest.raises(Banned):
            client.fetch_book("BTCUSDT")
        assert "HTTP 418 IP ban" in caplog.text and client.banned_until == pytest.approx(t.now + 300)
        sent = sim.requests
        with pytest.raises(Banned, match="banned"):
            client.fetch_book("ETHUSDT")
        t.now += 299
        with pytest.raises(Banned):
            client.fetch_book("ETHUSDT")
        assert sim.requests == sent  # nothing sent while banned
        t.now += 2
        client.fetch_book("ETHUSDT")
        assert sim.answers[418] == 1 and sim.answers[200] == 2


def test_binance_limits_and_symbols() -> None:
    assert [binance_rest.request_weight(n) for n in (1, 100, 101, 500, 1000, 5000)] == [5, 5, 25, 25, 50, 250]
    assert binance_rest.split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert binance_rest.split_symbol("ETHBTC") == ("ETH", "BTC")
    assert binance_rest.split_symbol("BTCTUSD") == ("BTC", "TUSD")
    assert binance_rest.symbol_of_path("/api/v3/depth?symbol=ETHUSDT&limit=500") == "ETHUSDT"
    from marketpipe.errors import ConfigError

    with pytest.raises(ConfigError):
        binance_rest.validate_symbol("BTC-USDT")
    with pytest.raises(ConfigError):
        clients.BinanceBookClient(depth_limit=6000)
    with pytest.raises(ConfigError):
        clients.BinanceBookClient(weight_budget=7000)
    with pytest.raises(ConfigError):
        coinbase.validate_product("BTCUSD")


def test_binance_simulator_limit_and_path_errors() -> None:
    t = FakeTime()
    with serving(BinanceRestSimulator(wall=t.time, thin_probability=0.0)) as sim:
        bad = requests.get(sim.api_url + "/api/v3/depth?symbol=BTCUSDT&limit=x", timeout=5)
        assert bad.status_code == 400 and bad.json()["code"] == -1100
        assert requests.get(sim.api_url + "/api/v3/ticker", timeout=5).status_code == 404
        big = requests.get(sim.api_url + "/api/v3/depth?symbol=BTCUSDT&limit=9000", timeout=5)
        assert len(big.json()["bids"]) == 5000 and big.headers["X-MBX-USED-WEIGHT-1M"] == "250"


def test_simulated_books_on_demand_thin_empty_crossed() -> None:
    t = FakeTime()
    with serving(BinanceRestSimulator(wall=t.time, thin_probability=0.0)) as sim:
        client = binance_client(sim, t)
        sim.force_books("thin")
        sim.force_books("empty")
        sim.force_books("crossed")
        thin = binance_rest.parse_book(client.fetch_book("BTCUSDT")[1].text).book
        empty = binance_rest.parse_book(client.fetch_book("BTCUSDT")[1].text).book
        crossed = binance_rest.parse_book(client.fetch_book("BTCUSDT")[1].text).book
        sim.inject_status(502)
        client.fetch_book("BTCUSDT")
        assert sim.answers[502] == 1
    assert 2 <= len(thin.asks) <= 6
    from marketpipe.execution.walk import depth_quote

    assert depth_quote(thin.asks) < 50_000 and depth_quote(thin.bids) < 50_000
    assert empty.bids == () and empty.asks == ()
    assert crossed.crossed
    with pytest.raises(ValueError):
        sim.force_books("odd")


def test_parse_errors() -> None:
    with pytest.raises(ValueError):
        coinbase.parse_book('{"message":"NotFound"}')
    with pytest.raises(ValueError):
        binance_rest.parse_book("[]")
    snap = coinbase.parse_book('{"bids":[["1","2",1],["x"]],"asks":[],"time":"not a time","sequence":"7"}')
    assert snap.exchange_ts is None and snap.sequence is None and len(snap.book.bids) == 1
