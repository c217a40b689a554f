"""The Bitso simulator speaks PROTOCOLS.md §3: checked with a plain websocket client and requests."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from marketpipe.bitso.simulator import BitsoSimulator, main


async def _recv_until(ws: Any, predicate: Any, timeout: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if predicate(msg):
            return msg  # type: ignore[no-any-return]


def test_websocket_subscribe_channels_keepalive_and_errors() -> None:
    async def scenario() -> None:
        async with (
            BitsoSimulator(seed=5, updates_per_second=40, ka_interval=0.3) as sim,
            connect(sim.ws_url, close_timeout=0.2) as ws,
        ):
            for channel in ("orders", "diff-orders", "trades"):
                await ws.send(
                    orjson.dumps({"action": "subscribe", "book": "btc_mxn", "type": channel}).decode()
                )
                ack = await _recv_until(ws, lambda m: m.get("action") == "subscribe")
                assert ack["response"] == "ok" and ack["book"] == "btc_mxn" and ack["type"] == channel
            await ws.send('{"action":"subscribe","book":"btc_mxn","type":"orders"}')
            again = await _recv_until(ws, lambda m: m.get("action") == "subscribe")
            assert again["response"] == "Already subscribed to channel: orders:btc_mxn"
            await ws.send('{"action":"subscribe","book":"nope_usd","type":"orders"}')
            err = await _recv_until(ws, lambda m: m.get("action") == "subscribe")
            assert err["error"] == "This book is not supported - nope_usd"
            orders = await _recv_until(ws, lambda m: m.get("type") == "orders" and "payload" in m)
            bids = [Decimal(o["r"]) for o in orders["payload"]["bids"]]
            asks = [Decimal(o["r"]) for o in orders["payload"]["asks"]]
            assert 1 <= len(bids) <= 20 and bids == sorted(bids, reverse=True) and max(bids) < min(asks)
            assert Decimal("1000000") < max(bids) < Decimal("1500000")
            assert orders["payload"]["bids"][0]["s"] == "undefined"
            first = await _recv_until(ws, lambda m: m.get("type") == "diff-orders")
            second = await _recv_until(ws, lambda m: m.get("type") == "diff-orders")
            assert second["sequence"] == first["sequence"] + 1
            assert all(len(e["a"].split(".")[1]) == 8 for e in first["payload"] if "a" in e)
            sim.inject("sequence_gap", book="btc_mxn")
            previous = second["sequence"]  # diffs already in flight when the fault lands arrive in order
            for _ in range(10):
                third = await _recv_until(ws, lambda m: m.get("type") == "diff-orders")
                if third["sequence"] != previous + 1:
                    break
                previous = third["sequence"]
            fourth = await _recv_until(ws, lambda m: m.get("type") == "diff-orders")
            assert third["sequence"] == previous + 2, "exactly one diff withheld"
            assert fourth["sequence"] == third["sequence"] + 1
            await _recv_until(ws, lambda m: m.get("type") == "ka")
            await _recv_until(ws, lambda m: m.get("type") == "trades", timeout=5)
            await ws.send('{"action":"unsubscribe","book":"btc_mxn","type":"trades"}')
            assert (await _recv_until(ws, lambda m: m.get("action") == "unsubscribe"))["response"] == "ok"
            await ws.send('{"action":"subscribe","type":"orders"}')
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011

    asyncio.run(scenario())


def test_faults_drop_refuse_silence_and_widen() -> None:
    async def scenario() -> None:
        async with BitsoSimulator(seed=6, updates_per_second=30, holes_per_minute=0) as sim:
            async with connect(sim.ws_url, close_timeout=0.2) as ws:
                dropped = time.monotonic()
                sim.inject("drop", duration=2.0)  # generous: the refused attempt below comes well before
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 2)
            with pytest.raises(InvalidStatus):
                await connect(sim.ws_url, close_timeout=0.2)
            await asyncio.sleep(dropped + 2.1 - time.monotonic())
            async with connect(sim.ws_url, close_timeout=0.2) as ws:
                await ws.send('{"action":"subscribe","book":"usd_mxn","type":"orders"}')
                await _recv_until(ws, lambda m: m.get("action") == "subscribe")
                # Frames published before the silence may already be on their way: skip those (by their
                # "sent" stamp); the first one published after it arrives only once the silence is over.
                cutoff = time.time_ns() // 1_000_000 + 1
                sim.inject("silence", duration=0.8)
                started = time.monotonic()
                while orjson.loads(await asyncio.wait_for(ws.recv(), 5)).get("sent", cutoff) < cutoff:
                    pass
                assert time.monotonic() - started >= 0.7
                sim.inject("widen", book="usd_mxn", spread=1.2, duration=2)
                await asyncio.sleep(0.3)
                bid, ask = (Decimal(x) for x in sim.true_top("usd_mxn"))
                assert (ask - bid) * 100 / ask > Decimal("1.1")
                assert Decimal(17) < bid < Decimal(20)
            with pytest.raises(ValueError):
                sim.inject("explode")
            with pytest.raises(ValueError):
                sim.inject("widen")
            with pytest.raises(ValueError):
                sim.inject("widen", book="nope")
            assert sim.status()["connections_refused"] == 1

    asyncio.run(scenario())


def test_rest_order_book_errors_rate_limit_and_control() -> None:
    async def scenario() -> None:
        async with BitsoSimulator(seed=7, rest_limit_per_minute=5, lockout_seconds=0.5) as sim:
            api = sim.api_url

            def get(path: str) -> requests.Response:
                return requests.get(api + path, timeout=3)

            book = await asyncio.to_thread(get, "/v3/order_book/?book=btc_mxn")
            body = book.json()
            assert book.status_code == 200 and body["success"] is True
            payload = body["payload"]
            assert isinstance(payload["sequence"], str) and payload["updated_at"].endswith("+00:00")
            assert len(payload["bids"]) <= 50 and all(isinstance(e["price"], str) for e in payload["bids"])
            prices = [Decimal(e["price"]) for e in payload["bids"]]
            assert prices == sorted(set(prices), reverse=True)
            full = (await asyncio.to_thread(get, "/v3/order_book/?book=btc_mxn&aggregate=false")).json()
            assert all("oid" in e for e in full["payload"]["asks"])
            unknown = await asyncio.to_thread(get, "/v3/order_book/?book=nope_usd")
            assert unknown.status_code == 400
            assert unknown.json()["error"] == {
                "code": "0301",
                "details": [],
                "message": "Unknown order book nope_usd",
            }
            missing = await asyncio.to_thread(get, "/v3/order_book/")
            assert missing.json()["error"]["message"] == "Unknown order book missing"
            books = (await asyncio.to_thread(get, "/v3/available_books/")).json()
            assert [b["book"] for b in books["payload"]] == ["btc_mxn", "usd_mxn"]
            limited = await asyncio.to_thread(get, "/v3/order_book/?book=btc_mxn")  # 6th within a minute
            assert limited.status_code == 420 and limited.json()["error"]["code"] == "0801"
            await asyncio.sleep(0.6)  # lock-out over, but the window still holds 5 requests
            assert (await asyncio.to_thread(get, "/v3/order_book/?book=usd_mxn")).status_code == 420
            assert sim.rest_statuses()[420] == 2
            status = (await asyncio.to_thread(get, "/_sim/status")).json()
            assert status["rest_statuses"]["420"] == 2
            top = (await asyncio.to_thread(get, "/_sim/book/usd_mxn")).json()
            assert (top["bid"], top["ask"]) == sim.true_top("usd_mxn")
            fault = await asyncio.to_thread(
                requests.post, api + "/_sim/fault/widen", json={"book": "btc_mxn", "spread": 2}, timeout=3
            )
            assert fault.json() == {"ok": True, "fault": "widen"}
            bad = await asyncio.to_thread(requests.post, api + "/_sim/fault/nope", timeout=3)
            assert bad.status_code == 400
            assert (await asyncio.to_thread(get, "/nowhere")).status_code == 404
            assert (await asyncio.to_thread(get, "/_sim/nowhere")).status_code == 404

    asyncio.run(scenario())


def test_main_runs_in_the_foreground(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--duration", "0.3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "export MARKETPIPE_BITSO_WS_URL=ws://127.0.0.1:" in out and "/_sim/fault/" in out
