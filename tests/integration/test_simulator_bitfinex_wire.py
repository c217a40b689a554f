"""The Bitfinex simulator on loopback, observed by an independent minimal client.

The client below shares no code with the simulator: it keeps every number as the raw JSON token it
arrived as, rebuilds books from that text and recomputes each checksum with ``zlib`` (PROTOCOLS §1.10).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from marketpipe.bitfinex.simulator import BitfinexSimulator, serve_forever

TIMESTAMP, SEQ_ALL, OB_CHECKSUM, BULK_UPDATES = 32768, 65536, 131072, 536870912
ALL_FLAGS = TIMESTAMP | SEQ_ALL | OB_CHECKSUM
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class RawFloat(float):
    raw: str


class RawInt(int):
    raw: str


def _raw_float(token: str) -> RawFloat:
    value = RawFloat(token)
    value.raw = token
    return value


def _raw_int(token: str) -> RawInt:
    value = RawInt(token)
    value.raw = token
    return value


def parse(text: str) -> Any:
    return json.loads(text, parse_float=_raw_float, parse_int=_raw_int)


def crc_signed(text: str) -> int:
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


@dataclass
class ClientBook:
    length: int
    bids: dict[float, tuple[str, str]] = field(default_factory=dict)
    asks: dict[float, tuple[str, str]] = field(default_factory=dict)
    has_snapshot: bool = False
    max_seen: int = 0

    def apply(self, entry: list[Any]) -> None:
        price, count, amount = entry
        if count > 0:
            (self.bids if amount > 0 else self.asks)[float(price)] = (price.raw, amount.raw)
        elif amount == 1:
            self.bids.pop(float(price), None)
        elif amount == -1:
            self.asks.pop(float(price), None)
        self.max_seen = max(self.max_seen, len(self.bids), len(self.asks))

    def checksum(self) -> int:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)][:25]
        asks = [self.asks[p] for p in sorted(self.asks)][:25]
        parts: list[str] = []
        for i in range(25):
            if i < len(bids):
                parts += bids[i]
            if i < len(asks):
                parts += asks[i]
        return crc_signed(":".join(parts))

    def levels(self) -> dict[float, float]:
        return {p: float(a) for p, (_, a) in {**self.bids, **self.asks}.items()}


class Observer:
    """Reads frames, checks sequence numbers, keeps books and trades per channel."""

    def __init__(self, ws: ClientConnection, flags: int = 0) -> None:
        self.ws = ws
        self.flags = flags
        self.events: list[dict[str, Any]] = []
        self.array_texts: list[str] = []
        self.seqs: list[int] = []
        self.timestamps: list[int] = []
        self.books: dict[int, ClientBook] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.trade_snapshots: dict[int, list[Any]] = {}
        self.trade_events: list[tuple[int, str, str]] = []  # chan, te|tu, payload text
        self.heartbeats: Counter[int] = Counter()
        self.checksums: list[tuple[int, int, int]] = []  # chan, sent, recomputed
        self.bulk_frames = 0
        self.arrival: list[float] = []

    @classmethod
    async def open(cls, url: str, flags: int | None = ALL_FLAGS) -> Observer:
        ws = await connect(url)
        observer = cls(ws, flags or 0)
        info = await observer.next_event()
        assert info["event"] == "info"
        if flags is not None:
            await observer.send({"event": "conf", "flags": flags})
            ack = await observer.next_event()
            assert ack == {"event": "conf", "status": "OK", "flags": flags}
        return observer

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = 5.0) -> Any:
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(text, str)
        return self.handle(text)

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.recv(max(deadline - time.monotonic(), 0.001))
            if isinstance(value, dict):
                return value

    async def subscribe(self, **request: Any) -> dict[str, Any]:
        await self.send({"event": "subscribe", **request})
        return await self.next_event()

    async def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with pytest.raises(TimeoutError):
            while True:
                await self.recv(max(deadline - time.monotonic(), 0.001))

    def handle(self, text: str) -> Any:
        value = parse(text)
        self.arrival.append(time.monotonic())
        if isinstance(value, dict):
            self.events.append(value)
            if value.get("event") == "subscribed":
                self.channels[value["chanId"]] = value
                if value["channel"] == "book":
                    self.books[value["chanId"]] = ClientBook(int(value["len"]))
            return value
        self.array_texts.append(text)
        frame = list(value)
        if self.flags & TIMESTAMP:
            self.timestamps.append(frame.pop())
        if self.flags & SEQ_ALL:
            self.seqs.append(frame.pop())
        chan, rest = frame[0], frame[1:]
        if rest[0] == "hb":
            self.heartbeats[chan] += 1
        elif rest[0] == "cs":
            self.checksums.append((chan, rest[1], self.books[chan].checksum()))
        elif rest[0] in ("te", "tu"):
            self.trade_events.append((chan, rest[0], _payload_text(text, rest[0])))
        elif chan in self.books:
            book = self.books[chan]
            payload = rest[0]
            if not book.has_snapshot:
                for entry in payload:
                    book.apply(entry)
                book.has_snapshot = True
            elif payload and isinstance(payload[0], list):
                self.bulk_frames += 1
                for entry in payload:
                    book.apply(entry)
            else:
                book.apply(payload)
        elif self.channels.get(chan, {}).get("channel") == "trades":
            self.trade_snapshots[chan] = rest[0]
        return frame

    def gaps(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in zip(self.seqs, self.seqs[1:], strict=False) if b != a + 1]


def _payload_text(frame_text: str, tag: str) -> str:
    start = frame_text.index(f'"{tag}",') + len(tag) + 3
    return frame_text[start : frame_text.index("]", start) + 1]


def fast_sim(**overrides: Any) -> BitfinexSimulator:
    options: dict[str, Any] = dict(
        seed=1234,
        updates_per_second=150.0,
        trades_per_second=15.0,
        heartbeat_interval=0.2,
        checksum_interval=0.2,
        idle_timeout=30.0,
    )
    options.update(overrides)
    return BitfinexSimulator(**options)


async def _with_sim(body: Callable[[BitfinexSimulator], Awaitable[None]], **overrides: Any) -> None:
    sim = fast_sim(**overrides)
    await sim.start()
    try:
        await body(sim)
    finally:
        await sim.stop()


# ====================================================================================== handshake
def test_info_conf_and_subscription_acks() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        async with connect(sim.ws_url) as ws:
            info = json.loads(await ws.recv())
            assert list(info) == ["event", "version", "serverId", "platform"]
            assert info["version"] == 2 and info["platform"] == {"status": 1}
            uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"
            assert re.fullmatch(uuid4, info["serverId"])
        client = await Observer.open(sim.ws_url, ALL_FLAGS | BULK_UPDATES)
        ack = await client.subscribe(
            channel="book", symbol="tBTCUSD", prec="P0", freq="F0", len="25", subId="btc-book"
        )
        assert list(ack) == ["event", "channel", "chanId", "symbol", "prec", "freq", "len", "subId", "pair"]
        assert ack["symbol"] == "tBTCUSD" and ack["pair"] == "BTCUSD" and ack["len"] == "25"
        trades = await client.subscribe(channel="trades", symbol="ETHUSD")  # no t prefix
        assert trades == {
            "event": "subscribed",
            "channel": "trades",
            "chanId": trades["chanId"],
            "symbol": "tETHUSD",
            "pair": "ETHUSD",
        }
        book100 = await client.subscribe(channel="book", symbol="tBTCUSD", len=100)  # number, defaults
        assert (book100["prec"], book100["freq"], book100["len"]) == ("P0", "F0", "100")
        ticker = await client.subscribe(channel="ticker", symbol="tBTCUSD")
        assert len({ack["chanId"], trades["chanId"], book100["chanId"], ticker["chanId"]}) == 4
        await client.pump(1.3)
        ticker_frames = [t for t in client.array_texts if t.startswith(f"[{ticker['chanId']},[")]
        assert len(ticker_frames) >= 2 and len(parse(ticker_frames[0])[1]) == 10
        await client.ws.close()

    run(_with_sim(body))


def test_snapshots_shape_and_order() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        sim.pause_market()
        client = await Observer.open(sim.ws_url, None)
        for length in (1, 25, 100, 250):
            ack = await client.subscribe(channel="book", symbol="tBTCUSD", len=str(length))
            snapshot = await client.recv()
            assert snapshot[0] == ack["chanId"] and len(snapshot) == 2
            entries = snapshot[1]
            bids = [e for e in entries if e[2] > 0]
            asks = [e for e in entries if e[2] < 0]
            assert entries == bids + asks
            # the model keeps well over 100 levels a side but fewer than 250
            if length <= 100:
                assert len(bids) == len(asks) == length
            else:
                assert 100 < len(bids) < 250 and 100 < len(asks) < 250
            assert [e[0] for e in bids] == sorted((e[0] for e in bids), reverse=True)
            assert [e[0] for e in asks] == sorted(e[0] for e in asks)
            assert all(e[1] >= 1 and len(e) == 3 for e in entries)
            assert bids[0][0] < asks[0][0]
            truth_bids, truth_asks = sim.true_book("tBTCUSD", length)
            assert [(float(p), float(a)) for p, _, a in bids] == truth_bids
            assert [(float(p), -float(a)) for p, _, a in asks] == truth_asks
        ack = await client.subscribe(channel="trades", symbol="tBTCUSD")
        snapshot = await client.recv()
        trades = snapshot[1]
        assert len(trades) == 30 and all(len(t) == 4 for t in trades)
        assert [t[0] for t in trades] == sorted((t[0] for t in trades), reverse=True)
        assert [tuple(t) for t in trades] == [tuple(t) for t in reversed(sim.trades("tBTCUSD")[-30:])]
        await client.ws.close()

    run(_with_sim(body))


# ====================================================================================== the stream
def test_stream_sequence_timestamps_checksums_windows_and_trades() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client = await Observer.open(sim.ws_url, ALL_FLAGS | BULK_UPDATES)
        chans = {}
        for symbol, length in (("tBTCUSD", "25"), ("tBTCUSD", "100"), ("tETHUSD", "1"), ("tETHUSD", "250")):
            ack = await client.subscribe(channel="book", symbol=symbol, prec="P0", freq="F0", len=length)
            chans[(symbol, length)] = ack["chanId"]
        trades_chan = (await client.subscribe(channel="trades", symbol="tBTCUSD"))["chanId"]
        started_ms = int(time.time() * 1000)
        await client.pump(2.5)
        sim.pause_market()
        await client.pump(0.5)  # trailing tu and a last checksum for the frozen book

        # sequence: every array frame numbered 1, 2, 3... ; timestamp last and plausible
        assert client.seqs[0] == 1 and client.gaps() == []
        assert len(client.seqs) == len(client.array_texts) > 300
        assert all(started_ms - 5_000 <= ts <= time.time() * 1000 + 5 for ts in client.timestamps)
        last_frame = parse(client.array_texts[-1])
        assert last_frame[-2] == client.seqs[-1] and last_frame[-1] == client.timestamps[-1]

        # checksums: many, on every book, all equal to the CRC rebuilt from the received text
        assert len(client.checksums) > 20
        assert {chan for chan, _, _ in client.checksums} == set(chans.values())
        assert [(sent, mine) for _, sent, mine in client.checksums if sent != mine] == []
        assert client.bulk_frames > 10

        # windows: never more than len levels a side, and the book equals the server's truth
        for (symbol, length), chan in chans.items():
            book = client.books[chan]
            assert book.max_seen <= int(length)
            assert book.levels() == sim.true_levels(symbol, int(length))
            assert book.checksum() == sim.true_checksum(symbol, int(length))
        assert client.books[chans[("tBTCUSD", "100")]].max_seen == 100

        # heartbeats on every channel (busy ones included)
        assert all(client.heartbeats[chan] >= 5 for chan in [*chans.values(), trades_chan])

        # JavaScript number text: no ".0" integers, no Python exponents, traps present
        numbers = [t for text in client.array_texts for t in re.findall(r"-?[0-9][0-9.e+-]*", text)]
        assert not [t for t in numbers if t.endswith(".0") or "e-0" in t or "e+0" in t]
        book_texts = "".join(t for t in client.array_texts if '"' not in t)
        assert re.search(r",-?(?:1|2|3|5|10|12|25)\]", book_texts)  # integral sizes
        assert re.search(r",-?0\.0000\d+\]|,-?\d(?:\.\d+)?e-\d\]", book_texts)  # tiny sizes
        assert re.search(r"\[60\d\d\d,", book_texts)  # integral BTC prices
        assert re.search(r"\[\d{4}\.\d,", book_texts)  # ETH prices on a 0.1 grid

        # trades: te then tu with the same payload, ids strictly increasing, REST agrees
        te = [p for chan, tag, p in client.trade_events if tag == "te" and chan == trades_chan]
        tu = [p for chan, tag, p in client.trade_events if tag == "tu" and chan == trades_chan]
        assert len(te) >= 10 and te == tu
        for payload in te:
            assert client.trade_events.index((trades_chan, "te", payload)) < client.trade_events.index(
                (trades_chan, "tu", payload)
            )
        ids = [json.loads(p)[0] for p in te]
        assert ids == sorted(set(ids))
        first, last = json.loads(te[0]), json.loads(te[-1])
        url = f"{sim.api_url}/v2/trades/tBTCUSD/hist?start={first[1]}&end={last[1]}&limit=10000&sort=1"
        response = await asyncio.to_thread(requests.get, url, timeout=5)
        assert response.status_code == 200
        rest_texts = re.findall(r"\[[^\[\]]+\]", response.text)
        socket_texts = set(te)
        assert socket_texts <= set(rest_texts)
        assert [t for t in sim.trades("tBTCUSD") if first[1] <= t[1] <= last[1]] == [
            tuple(x) for x in json.loads(response.text)
        ]
        await client.ws.close()

    run(_with_sim(body))


def test_without_flags_frames_are_bare() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client = await Observer.open(sim.ws_url, None)
        chan = (await client.subscribe(channel="book", symbol="tBTCUSD", len="25"))["chanId"]
        await client.pump(0.7)
        assert f'[{chan},"hb"]' in client.array_texts
        assert not [t for t in client.array_texts if '"cs"' in t]
        updates = [parse(t) for t in client.array_texts[1:] if '"' not in t]
        assert updates and all(len(u) == 2 and not isinstance(u[1][0], list) for u in updates)
        await client.ws.close()
        only_ts = await Observer.open(sim.ws_url, TIMESTAMP)
        await only_ts.subscribe(channel="trades", symbol="tBTCUSD")
        await only_ts.pump(0.4)
        assert only_ts.timestamps and not only_ts.seqs
        assert all(isinstance(parse(t)[-1], int) and parse(t)[-1] > 1e12 for t in only_ts.array_texts)
        await only_ts.ws.close()

    run(_with_sim(body))


# ====================================================================================== errors
def test_every_error_path() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client = await Observer.open(sim.ws_url)
        nope = await client.subscribe(channel="book", symbol="tNOPEUSD", prec="P0", len="25")
        assert nope == {
            "event": "error",
            "msg": "symbol: invalid",
            "code": 10300,
            "channel": "book",
            "symbol": "tNOPEUSD",
            "prec": "P0",
            "len": "25",
            "pair": "NOPEUSD",
        }
        bad_len = await client.subscribe(channel="book", symbol="tBTCUSD", len="7")
        assert (bad_len["code"], bad_len["msg"]) == (10300, "length: invalid")
        bad_prec = await client.subscribe(channel="book", symbol="tBTCUSD", prec="P9")
        assert (bad_prec["code"], bad_prec["msg"]) == (10300, "precision: invalid")
        raw = await client.subscribe(channel="book", symbol="tBTCUSD", prec="R0")
        assert (raw["code"], raw["msg"]) == (10300, "precision: invalid")
        bad_channel = await client.subscribe(channel="nope", symbol="tBTCUSD")
        assert (bad_channel["code"], bad_channel["msg"]) == (10300, "channel: unknown")
        ok = await client.subscribe(channel="book", symbol="tBTCUSD", prec="P0", freq="F0", len="25")
        dup = await client.subscribe(channel="book", symbol="tBTCUSD", prec="P0", freq="F0", len="25")
        assert (dup["code"], dup["msg"], dup["chanId"]) == (10301, "subscribe: dup", ok["chanId"])
        for symbol in ("tETHUSD",):
            await client.subscribe(channel="trades", symbol=symbol)
        limit = await client.subscribe(channel="book", symbol="tETHUSD", len="100")
        assert limit["code"] == 10305 and limit["msg"] == "subscribe: limit" and limit["pair"] == "ETHUSD"
        await client.send({"event": "nope"})
        assert await client.next_event() == {"event": "error", "msg": "event: invalid (nope)", "code": 10000}
        await client.send("this is not json")
        await client.send("[1,2,3]")
        await client.send({"event": "ping", "cid": 1234})
        pong = await client.next_event()
        assert pong["event"] == "pong" and pong["cid"] == 1234 and abs(pong["ts"] - time.time() * 1000) < 5000
        await client.send({"event": "unsubscribe", "chanId": 999_999_999})
        bad_unsub = await client.next_event()
        assert (bad_unsub["code"], bad_unsub["msg"]) == (10400, "unsubscribe: invalid")
        await client.send({"event": "unsubscribe", "chanId": ok["chanId"]})
        assert await client.next_event() == {"event": "unsubscribed", "status": "OK", "chanId": ok["chanId"]}
        seen = len(client.array_texts)
        await client.pump(0.5)
        assert not [t for t in client.array_texts[seen:] if t.startswith(f"[{ok['chanId']},")]
        await client.send({"event": "conf", "flags": "all"})
        assert (await client.next_event())["status"] == "FAILED"
        await client.ws.close()

    run(_with_sim(body, max_subscriptions=2))


# ====================================================================================== REST
def test_rest_history_book_errors_and_rate_limit() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        def get(path: str) -> requests.Response:
            return requests.get(sim.api_url + path, timeout=5)

        history = sim.trades("tBTCUSD")
        newest = await asyncio.to_thread(get, "/v2/trades/tBTCUSD/hist")
        rows = newest.json()
        assert newest.status_code == 200 and len(rows) == min(125, len(history))
        assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
        start, end = history[5][1], history[20][1]
        query = f"start={start}&end={end}&limit=5&sort=1"
        oldest = await asyncio.to_thread(get, f"/v2/trades/BTCUSD/hist?{query}")
        assert [tuple(r) for r in oldest.json()] == [t for t in history if start <= t[1] <= end][:5]
        unknown = await asyncio.to_thread(get, "/v2/trades/tNOPE/hist")
        assert (unknown.status_code, unknown.text) == (500, '["error",10020,"symbol: invalid"]')
        book = (await asyncio.to_thread(get, "/v2/book/tETHUSD/P0?len=25")).json()
        bids, asks = sim.true_book("tETHUSD", 25)
        assert len(book) == 50 and book[0][0] == bids[0][0] and book[25][2] == -asks[0][1]
        bad_len = await asyncio.to_thread(get, "/v2/book/tETHUSD/P0?len=7")
        assert (bad_len.status_code, bad_len.text) == (500, '["error",10020,"len: invalid"]')
        assert (await asyncio.to_thread(get, "/v2/nothing/here/x")).status_code == 404
        for _ in range(2):  # 3 trade-history calls so far; the limit is 5 a minute
            assert (await asyncio.to_thread(get, "/v2/trades/tETHUSD/hist?limit=1")).status_code == 200
        limited = await asyncio.to_thread(get, "/v2/trades/tETHUSD/hist?limit=1")
        assert (limited.status_code, limited.text) == (429, '["error",11010,"ratelimit: error"]')
        status = (await asyncio.to_thread(get, "/_sim/status")).json()
        assert status["symbols"] == ["tBTCUSD", "tETHUSD"] and status["ws_url"] == sim.ws_url

    run(_with_sim(body, rest_rate_limit_per_minute=5, updates_per_second=0.0, trades_per_second=0.0))


# ====================================================================================== faults
async def _book_client(
    sim: BitfinexSimulator, flags: int = ALL_FLAGS, length: str = "25"
) -> tuple[Observer, int]:
    client = await Observer.open(sim.ws_url, flags)
    ack = await client.subscribe(channel="book", symbol="tBTCUSD", prec="P0", freq="F0", len=length)
    await client.recv()  # snapshot
    return client, ack["chanId"]


def test_drop_frame_makes_a_sequence_gap_on_the_targeted_connection_only() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        one, _ = await _book_client(sim)
        two, _ = await _book_client(sim)
        await one.pump(0.2)
        await two.pump(0.2)
        sim.inject("drop_frame", symbol="BTCUSD", conn=2)
        await asyncio.gather(one.pump(0.6), two.pump(0.6))
        assert one.gaps() == []
        assert len(two.gaps()) == 1 and two.gaps()[0][1] == two.gaps()[0][0] + 2
        assert sim.faults_applied["drop_frame"] == 1
        assert [s.frames_dropped for s in sim.connection_stats()] == [0, 1]
        assert sim.frames_sent(2) >= len(two.events) + len(two.array_texts)

    run(_with_sim(body))


def test_corrupt_level_gives_a_checksum_mismatch_at_once() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client, _ = await _book_client(sim)
        await client.pump(0.3)
        assert client.checksums and all(sent == mine for _, sent, mine in client.checksums)
        sim.inject("corrupt_level")
        checked = len(client.checksums)
        await client.pump(0.3)
        sent, mine = client.checksums[checked][1:]
        assert sent != mine
        assert client.gaps() == []

    run(_with_sim(body))


def test_close_is_abrupt() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client, _ = await _book_client(sim)
        sim.inject("close")
        with pytest.raises(ConnectionClosed):
            await client.pump(2.0)
        assert client.ws.close_code == 1006 and client.ws.protocol.close_rcvd is None
        assert sim.open_connections == []
        later, _ = await _book_client(sim)  # the server carries on
        await later.pump(0.3)
        assert later.checksums

    run(_with_sim(body))


def test_info_20051_then_close() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client, _ = await _book_client(sim)
        sim.inject("info_20051", duration=0.3)
        event = await client.next_event()
        assert event["event"] == "info" and event["code"] == 20051
        frames_after = len(client.array_texts)
        with pytest.raises(ConnectionClosed):
            await client.pump(2.0)
        assert client.ws.close_code == 1012
        assert len(client.array_texts) == frames_after  # no data while restarting

    run(_with_sim(body))


def test_maintenance_pauses_data_then_20061_and_answers_deferred_subscriptions() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client, chan = await _book_client(sim)
        await client.pump(0.2)
        sim.inject("maintenance", duration=0.8)
        started = await client.next_event()
        assert started["code"] == 20060
        marker = len(client.array_texts)
        late = await Observer.open(sim.ws_url)  # new connection during maintenance
        assert late.events[0]["platform"] == {"status": 0}
        await client.send({"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"})
        ended = await client.next_event(3.0)
        assert ended["code"] == 20061
        during = client.array_texts[marker:]
        assert during and all(t.startswith(f'[{chan},"hb"') for t in during)
        ack = await client.next_event()
        assert ack["event"] == "subscribed" and ack["channel"] == "trades"
        assert (await late.next_event(3.0))["code"] == 20061
        await client.pump(0.3)
        assert len(client.array_texts) > len(during) + 5 and client.gaps() == []

    run(_with_sim(body))


def test_silence_stalls_everything_without_closing() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client, _ = await _book_client(sim)
        await client.pump(0.3)
        sim.inject("silence", duration=1.0)
        injected = time.monotonic()
        await client.pump(1.5)
        gap = max(b - a for a, b in zip(client.arrival, client.arrival[1:], strict=False))
        assert gap >= 0.9
        assert client.arrival[-1] - injected > 1.0  # traffic resumed on the same socket
        assert client.gaps() == [] and client.ws.close_code is None

    run(_with_sim(body))


def test_refused_subscriptions_then_success() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client = await Observer.open(sim.ws_url)
        sim.inject("refuse_subscription", symbol="tETHUSD")
        sim.inject("subscription_limit")
        limited = await client.subscribe(channel="book", symbol="tBTCUSD", len="25")
        assert (limited["code"], limited["msg"]) == (10305, "subscribe: limit")
        refused = await client.subscribe(channel="book", symbol="tETHUSD", len="25")
        assert (refused["code"], refused["msg"], refused["symbol"]) == (10300, "subscribe: failed", "tETHUSD")
        accepted = await client.subscribe(channel="book", symbol="tETHUSD", len="25")
        assert accepted["event"] == "subscribed"

    run(_with_sim(body))


def test_faults_through_the_http_control_endpoint() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client, _ = await _book_client(sim)
        url = f"{sim.api_url}/_sim/fault/drop_frame"
        params = {"symbol": "tBTCUSD", "conn": 1}
        response = await asyncio.to_thread(requests.post, url, json=params, timeout=5)
        assert response.json() == {"ok": True, "fault": "drop_frame"}
        await client.pump(0.4)
        assert len(client.gaps()) == 1
        bad = await asyncio.to_thread(requests.post, f"{sim.api_url}/_sim/fault/meteor", timeout=5)
        assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]
        closing = await asyncio.to_thread(requests.post, f"{sim.api_url}/_sim/fault/close?conn=1", timeout=5)
        assert closing.status_code == 200
        with pytest.raises(ConnectionClosed):
            await client.pump(2.0)
        truth = await asyncio.to_thread(requests.get, f"{sim.api_url}/_sim/book/BTCUSD?depth=3", timeout=5)
        book = truth.json()
        assert len(book["bids"]) == 3 and sim.faults_injected == Counter({"drop_frame": 1, "close": 1})

    run(_with_sim(body))


# ====================================================================================== lifecycle
def test_idle_sockets_are_closed_subscribed_ones_kept() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        idle = await Observer.open(sim.ws_url)
        busy, _ = await _book_client(sim)
        with pytest.raises(ConnectionClosed):
            await idle.pump(2.0)
        assert idle.ws.close_code == 1006
        await busy.pump(0.3)
        assert busy.ws.close_code is None

    run(_with_sim(body, idle_timeout=0.5))


def test_clients_vanishing_at_any_moment_never_hurt_the_server() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        for delay in (0.0, 0.01, 0.05, 0.1):
            client = await Observer.open(sim.ws_url)
            await client.send({"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "len": "250"})
            await client.send({"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"})
            await asyncio.sleep(delay)
            client.ws.transport.abort()
        sim.inject("silence", duration=0.2)
        survivor, _ = await _book_client(sim)
        await survivor.pump(0.5)
        assert survivor.checksums and survivor.gaps() == []
        assert sim.connections_accepted == 5 and sim.open_connections == [5]
        # stop() with a connected client: the client sees a clean close, the server's tasks end
        await sim.stop()
        with pytest.raises(ConnectionClosed):
            await survivor.pump(1.0)
        assert survivor.ws.close_code == 1001

    run(_with_sim(body))


def test_serve_forever_announces_urls_and_stops() -> None:
    async def scenario() -> list[str]:
        lines: list[str] = []
        stop = asyncio.Event()
        sim = fast_sim()
        task = asyncio.create_task(serve_forever(sim, stop=stop, announce=lines.append))
        while not sim.api_url:
            await asyncio.sleep(0.01)
        client = await Observer.open(sim.ws_url)
        assert client.events[0]["event"] == "info"
        stop.set()
        await task
        return lines

    lines = run(scenario())
    assert any("ws://127.0.0.1:" in line for line in lines)
    assert any("MARKETPIPE_BITFINEX_API_URL=http://127.0.0.1:" in line for line in lines)


def test_market_driven_by_hand_matches_the_client_book() -> None:
    async def body(sim: BitfinexSimulator) -> None:
        client, chan = await _book_client(sim, ALL_FLAGS | BULK_UPDATES, length="100")
        sim.advance(300)
        await client.pump(0.5)
        assert client.gaps() == [] and client.books[chan].levels() == sim.true_levels("tBTCUSD", 100)
        assert client.checksums and all(sent == mine for _, sent, mine in client.checksums)

    run(_with_sim(body, updates_per_second=0.0, trades_per_second=0.0))
