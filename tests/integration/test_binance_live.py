"""Binance against the loopback simulator: wire behaviour, connection rules, the collector, ``run``,
``replay`` and ``watch``. Timings (pings, 24-hour cut) are shrunk to fractions of a second."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import itertools
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from marketpipe.alerts.message import AlertMessage
from marketpipe.binance import wire as binance
from marketpipe.binance.collector import BinanceCollector, BinanceSettings
from marketpipe.binance.price_levels import parse_watch_list
from marketpipe.binance.service import settings_from, watch
from marketpipe.binance.simulator import BinanceSimulator
from marketpipe.cli import main
from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame
from tests.support.waiting import until


async def recv_json(ws: Any, timeout: float = 3.0) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def drain(ws: Any, seconds: float) -> list[Any]:
    """Every message received in the next ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    messages = []
    while (left := end - loop.time()) > 0:
        try:
            messages.append(await recv_json(ws, left))
        except TimeoutError:
            break
    return messages


def test_combined_and_raw_streams_speak_the_wire_format() -> None:
    async def scenario() -> None:
        async with BinanceSimulator(["BTCUSDT", "ETHUSDT"], ticker_interval=0.2, seed=1) as sim:
            url = sim.ws_url + "/stream?streams=btcusdt@depth20@100ms/!miniTicker@arr"
            async with connect(url, ping_interval=None) as ws:
                seen: dict[str, Any] = {}
                while len(seen) < 2:
                    msg = await recv_json(ws)
                    seen.setdefault(msg["stream"], msg["data"])
                depth = seen["btcusdt@depth20@100ms"]
                assert set(depth) == {"lastUpdateId", "bids", "asks"}  # no symbol, no event type
                assert len(depth["bids"]) == 20 and float(depth["bids"][0][0]) < float(depth["asks"][0][0])
                assert {t["s"] for t in seen["!miniTicker@arr"]} <= {"BTCUSDT", "ETHUSDT"}
                # only symbols that changed: freeze the market, then move BTC alone
                sim.market_frozen = True
                await drain(ws, 0.5)  # what changed before the freeze is pushed and read
                sim.set_price("BTCUSDT", "50000.5")
                arrays = [m["data"] for m in await drain(ws, 0.7) if m["stream"] == "!miniTicker@arr"]
                assert [[(t["s"], t["c"]) for t in data] for data in arrays] == [
                    [("BTCUSDT", "50000.50000000")]
                ]
                await ws.send('{"method":"SUBSCRIBE","params":["ethusdt@miniTicker"],"id":7}')
                await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":8}')
                await ws.send('{"method":"SUBSCRIBE","params":["nope@x"],"id":9}')
                await ws.send("{bad")
                replies: dict[Any, Any] = {}
                while len(replies) < 4:
                    msg = await recv_json(ws)
                    if "stream" not in msg:
                        replies[msg["id"] if msg["id"] is not None else "json"] = msg
                assert replies[7] == {"result": None, "id": 7}
                assert "ethusdt@miniTicker" in replies[8]["result"]
                assert replies[9]["error"]["code"] == 2 and replies["json"]["error"]["code"] == 3
            async with connect(sim.ws_url + "/ws/ethusdt@depth20@100ms", ping_interval=None) as ws:
                assert set(await recv_json(ws)) == {"lastUpdateId", "bids", "asks"}  # bare payload
            async with connect(sim.ws_url + "/stream?streams=nope@depth20", ping_interval=None) as ws:
                with pytest.raises(ConnectionClosed):
                    await recv_json(ws)

    asyncio.run(scenario())


async def silent_client(
    url_host: str, port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket client that completes the handshake and then never answers anything."""
    reader, writer = await asyncio.open_connection(url_host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {url_host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head
    return reader, writer


def test_unanswered_pings_the_age_limit_and_the_message_limit_close_connections() -> None:
    async def scenario() -> None:
        async with BinanceSimulator(["BTCUSDT"], ping_interval=0.2, pong_timeout=1.0, max_age=60) as sim:
            port = int(sim.ws_url.rsplit(":", 1)[1])
            _reader, writer = await silent_client("127.0.0.1", port, "/stream?streams=!miniTicker@arr")
            await until(lambda: "pong timeout" in sim.closed_reasons, "the silent client to be closed")
            assert sim.pings_sent >= 1
            writer.close()
            # a client that answers pings (websockets does) stays connected across many pings
            async with connect(
                sim.ws_url + "/stream?streams=btcusdt@depth20@100ms", ping_interval=None
            ) as ws:
                before = sim.pings_sent
                await until(lambda: sim.pings_sent - before >= 3, "three more pings")
                assert len(sim.open_connections) == 1
                await recv_json(ws)
                # more than 5 incoming messages in a second: disconnected
                for i in range(7):
                    await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await recv_json(ws)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            assert "too many incoming messages" in sim.closed_reasons
        async with BinanceSimulator(["BTCUSDT"], max_age=0.5) as sim:
            async with connect(
                sim.ws_url + "/stream?streams=btcusdt@depth20@100ms", ping_interval=None
            ) as ws:
                with pytest.raises(ConnectionClosed):
                    while True:
                        await recv_json(ws)
            assert sim.closed_reasons == ["24-hour limit"]

    asyncio.run(scenario())


class Frames:
    def __init__(self) -> None:
        self.frames: list[RawFrame] = []

    def __call__(self, frame: RawFrame) -> None:
        self.frames.append(frame)

    def depth_times(self, symbol: str = "btcusdt") -> list[int]:
        return [f.received_ts for f in self.frames if f'"{symbol}@depth20@100ms"' in f.frame]


async def run_collector(
    sim: BinanceSimulator, streams: list[str], settings: BinanceSettings,
    done: Callable[[BinanceCollector, Frames], bool], during: Callable[[], None] | None = None,
) -> tuple[BinanceCollector, Frames]:  # fmt: skip
    """Run a collector until ``done`` (after ``during``, called once depth frames flow), then stop it."""
    frames = Frames()
    settings.ws_url = sim.ws_url
    collector = BinanceCollector(streams, frames, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    try:
        if during is not None:
            await until(lambda: len(frames.depth_times()) >= 5, "depth frames")
            during()
        await until(lambda: done(collector, frames), "the scenario's end")
    finally:
        stop.set()
        await task
    return collector, frames


MAX_HOLE_MS = 500  # a 100 ms stream, room for a busy machine; `reconnects == 0` proves no connection lost


def max_gap_ms(times: list[int]) -> float:
    return max(b - a for a, b in itertools.pairwise(times)) / 1000


def test_collector_shards_answers_pings_and_rotates_before_the_cut_without_a_gap() -> None:
    async def scenario() -> None:
        async with BinanceSimulator(ping_interval=0.15, pong_timeout=1.0, max_age=1.2) as sim:
            streams = binance.streams_for(["BTCUSDT", "ETHUSDT", "BNBUSDT"])
            settings = BinanceSettings(streams_per_connection=2, max_connection_age=0.7)
            collector, frames = await run_collector(
                sim, streams, settings, lambda c, _: c.rotations >= 4 and sim.pings_sent >= 10
            )
        assert len(collector.shards) == 2
        assert collector.rotations >= 4 and collector.reconnects == 0  # never cut by the server
        assert "pong timeout" not in sim.closed_reasons and "24-hour limit" not in sim.closed_reasons
        assert sim.pings_sent >= 10
        # make-before-break: no hole in the 100 ms stream (the bound leaves room for one scheduler stall)
        assert max_gap_ms(frames.depth_times()) < MAX_HOLE_MS
        assert {f.conn.rsplit("-", 1)[0].rsplit("-", 1)[1] for f in frames.frames} == {"s0", "s1"}

    asyncio.run(scenario())


def test_collector_follows_server_shutdown_and_reconnects_after_a_cut() -> None:
    async def scenario() -> None:
        async with BinanceSimulator(["BTCUSDT"]) as sim:
            settings = BinanceSettings(backoff_initial=0.05, backoff_cap=0.1)
            collector, frames = await run_collector(
                sim, ["btcusdt@depth20@100ms"], settings,
                lambda c, f: c.shutdown_notices == 1 and len(f.depth_times()) >= 15
                and len({x.conn for x in f.frames if "depth20" in x.frame}) == 2,
                during=lambda: sim.shutdown_notice(grace=0.3),
            )  # fmt: skip
        assert collector.shutdown_notices == 1 and collector.reconnects == 0
        assert max_gap_ms(frames.depth_times()) < MAX_HOLE_MS
        assert any('"serverShutdown"' in f.frame for f in frames.frames)
        async with BinanceSimulator(["BTCUSDT"], max_age=0.4) as sim:  # the server cuts first
            settings = BinanceSettings(backoff_initial=0.05, backoff_cap=0.1)
            collector, frames = await run_collector(
                sim,
                ["btcusdt@depth20@100ms"],
                settings,
                lambda c, _: c.reconnects >= 2 and c.connections_opened >= 3,
            )
        assert collector.reconnects >= 2 and collector.connections_opened >= 3
        assert len({f.conn for f in frames.frames}) >= 3

    asyncio.run(scenario())


def test_connection_attempts_go_through_the_shared_budget_and_bad_urls_are_errors() -> None:
    async def scenario() -> None:
        settings = BinanceSettings(ws_url="ws://127.0.0.1:1", backoff_initial=0.01, backoff_cap=0.02,
                                   connects_per_window=3, connect_window=60)  # fmt: skip
        collector = BinanceCollector(["btcusdt@depth20@100ms"], Frames(), settings)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        await until(lambda: collector._attempts == 3, "three connection attempts")
        await asyncio.sleep(0.3)  # many backoff delays: a fourth attempt would have been made by now
        stop.set()
        await task
        assert collector._attempts == 3 and collector.connections_opened == 0  # the budget held
        with pytest.raises(ConfigError):
            await BinanceCollector(["x@depth20"], Frames(), BinanceSettings(ws_url="nope")).run(
                asyncio.Event()
            )

    asyncio.run(scenario())
    with pytest.raises(ConfigError):
        BinanceCollector([], Frames())


def test_settings_flags_over_env_over_defaults() -> None:
    d = settings_from({}, {})
    assert d.symbols == ("BTCUSDT", "ETHUSDT", "BNBUSDT") and d.watches == ()
    assert d.collector.streams_per_connection == 200 and d.collector.max_connection_age == 23 * 3600
    env = {"MARKETPIPE_BINANCE_SYMBOLS": "solusdt", "MARKETPIPE_BINANCE_WATCH": "BTCUSDT>1,ETHUSDT<2",
           "MARKETPIPE_BINANCE_WS_URL": "ws://x", "MARKETPIPE_WEBHOOK_URLS": "http://h/1",
           "MARKETPIPE_BINANCE_MAX_HOLD_MS": "2000"}  # fmt: skip
    s = settings_from({"opt_binance_streams_per_connection": 1024, "opt_binance_max_connection_age": 5}, env)
    assert s.symbols == ("SOLUSDT",) and [w.spec() for w in s.watches] == [
        "BTCUSDT:above:1",
        "ETHUSDT:below:2",
    ]
    assert (s.collector.ws_url, s.collector.streams_per_connection, s.collector.max_connection_age) == (
        "ws://x", 1024, 5.0,
    )  # fmt: skip
    assert s.webhooks == ("http://h/1",) and s.averages.max_hold_ms == 2000
    for bad in ({"opt_binance_symbols": "BTC-USD"}, {"opt_binance_symbols": ","},
                {"opt_binance_streams_per_connection": 1025}, {"opt_binance_max_connection_age": 90000},
                {"opt_binance_max_hold_ms": "x"}, {"opt_binance_max_hold_ms": -1},
                {"opt_binance_watch": ["BTCUSDT=1"]}, {"opt_webhooks": ["ftp://x"]}):  # fmt: skip
        with pytest.raises(ConfigError):
            settings_from(bad, {})


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


def test_run_simulated_then_replay_rebuilds_the_same_rows(tmp_path: Path) -> None:
    live = tmp_path / "live"
    code = main(["run", "--exchanges", "binance", "--simulate", "--duration", "3", "--data-dir", str(live),
                 "--binance-watch", "BTCUSDT>1000", "--binance-watch", "ETHUSDT<1"])  # fmt: skip
    assert code == 0
    db = live / "marketpipe.db"
    tickers = rows(db, "SELECT symbol, close FROM binance_mini_tickers")
    assert {s for s, _ in tickers} >= {"BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT"}  # every market
    metrics = rows(db, "SELECT symbol, best_bid, best_ask, spread, price, avg_price_30s, avg_price_1m "
                       "FROM binance_book_metrics")  # fmt: skip
    assert {m[0] for m in metrics} == {"BTCUSDT", "ETHUSDT", "BNBUSDT"} and len(metrics) >= 30
    assert all(b < a and s == pytest.approx(a - b) for _, b, a, s, *_ in metrics)
    for symbol in ("BTCUSDT", "ETHUSDT", "BNBUSDT"):
        prices = [m[4] for m in metrics if m[0] == symbol]
        averages = [avg for m in metrics if m[0] == symbol for avg in m[5:]]
        assert all(min(prices) <= avg <= max(prices) for avg in averages)  # a mean of the prices seen
    assert rows(db, "SELECT count(*) FROM binance_depth20") == [(len(metrics),)]
    alerts = rows(db, "SELECT symbol, level, direction FROM binance_price_alerts")
    assert alerts == [("BTCUSDT", 1000.0, "above")]  # once, however many tickers followed
    csv_files = sorted((live / "csv").glob("binance_*/*.csv"))
    assert {p.parent.name for p in csv_files} == {"binance_mini_tickers", "binance_depth20",
                                                  "binance_book_metrics", "binance_price_alerts"}  # fmt: skip
    with csv_files[0].open() as fh:
        assert len(list(csv.reader(fh))) > 1
    assert list((live / "lake" / "binance_book_metrics").glob("dt=*/hour=*/*.parquet"))
    again = tmp_path / "again"
    assert main(["replay", str(live / "raw"), "--data-dir", str(again), "--sinks", "db"]) == 0
    for table in ("binance_book_metrics", "binance_mini_tickers", "binance_price_alerts", "binance_depth20"):
        query = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
        assert rows(again / "marketpipe.db", query) == rows(db, query)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[AlertMessage] = []

    def deliver(self, message: AlertMessage) -> None:
        self.messages.append(message)

    def describe(self) -> str:
        return "inbox"

    def close(self) -> None:
        pass


def test_watch_prints_prices_and_alerts_once_per_crossing(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], Inbox, str]:
        out = io.StringIO()
        inbox = Inbox()
        async with BinanceSimulator(["BTCUSDT", "ETHUSDT"], ticker_interval=0.1) as sim:
            sim.market_frozen = True  # only the prices the test sets
            stop = asyncio.Event()
            task = asyncio.create_task(watch(parse_watch_list(["BTCUSDT>43680"]), ws_url=sim.ws_url,
                                             stop=stop, channels=[inbox], out=out))  # fmt: skip
            await until(lambda: sim.open_connections, "the watch connection")
            for price in ["43600", "43681.5", "43690", "43700", "43600", "43680", "43700.25"]:
                printed = len(out.getvalue().splitlines())
                sim.set_price("BTCUSDT", price)  # the next mini-ticker carries it: wait until it is printed
                await until(
                    lambda n=printed: len(out.getvalue().splitlines()) > n, f"the price {price} printed"
                )
            stop.set()
            sent = await task
        return sent, inbox, out.getvalue()

    sent, inbox, printed = asyncio.run(scenario())
    tails = [s.split(" ", 1)[1] for s in sent]
    assert tails == ["BTCUSDT price has gone above 43680 Last price: 43681.5",
                     "BTCUSDT price has gone above 43680 Last price: 43700.25"]  # fmt: skip
    assert [m.text for m in inbox.messages] == sent
    lines = printed.splitlines()
    assert lines and all(line.split()[1] == "BTCUSDT" for line in lines)  # only the watched symbol
    assert any(line.endswith(" 43690.00000000") for line in lines)


def test_watch_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["watch", "BTCUSDT", "--above", "1", "--below", "1000000", "--simulate", "--duration", "2"]) == 0
    )
    captured = capsys.readouterr()
    assert " BTCUSDT 4" in captured.out
    assert main(["watch", "BTCUSDT"]) == 2
    assert "nothing to watch" in capsys.readouterr().err
    assert main(["watch", "BTC-USD", "--above", "5"]) == 2


def test_watch_command_posts_the_alert_to_a_webhook(capsys: pytest.CaptureFixture[str]) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[tuple[str, dict[str, Any]]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Idempotency-Key"], orjson.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert (
            main(["watch", "BTCUSDT", "--above", "1", "--simulate", "--duration", "1.5", "--webhook", url])
            == 0
        )
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1  # one crossing, however many prices followed
    key, body = received[0]
    assert len(key) == 32 and body["event"] == "price_level_alert" and body["symbol"] == "BTCUSDT"
    assert body["direction"] == "above" and body["level"] == "1"
    assert body["text"].split(" ", 1)[1].startswith("BTCUSDT price has gone above 1 Last price: 4")
    assert capsys.readouterr().out.count(" BTCUSDT ") >= 1
