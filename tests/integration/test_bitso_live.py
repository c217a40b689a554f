"""The Bitso spread monitor end to end against the loopback Bitso, judged from outside.

One ``run_live`` session goes through: a normal websocket, a spread widened past two thresholds, the
websocket dropped (and refused for a while) so REST takes over, a rate-limit lock-out injected during
the outage, the websocket back, then a silent socket. The checks read what a user reads — the SQL
table, the CSV, the Parquet files, the webhook receiver, the simulator's request log — and recompute
every spread and every crossing independently with Decimal from the raw capture.

The scenario is driven by what happens, not by a clock: each step waits (with a generous timeout) for
the condition the next one needs — the websocket serving, REST answering, the lock-out hit, the
websocket back (its reconnect backoff is jittered) — and the run is stopped with SIGTERM, as a user
would, once the last step has been observed. The checks are relative to the recorded event times, so a
loaded machine makes the session longer, never different.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from marketpipe.bitso.simulator import BitsoSimulator
from marketpipe.config import RunConfig
from marketpipe.pipeline import run_live
from marketpipe.records import RawFrame
from marketpipe.replay import replay
from marketpipe.simulator.http import HttpRequest, HttpResponse, LoopbackHttpServer
from marketpipe.sinks.raw_capture import iter_raw_frames
from marketpipe.timeutil import now_us
from tests.support.waiting import until

BOOKS = ("btc_mxn", "usd_mxn")
THRESHOLDS = (Decimal("1.0"), Decimal("0.5"), Decimal("0.1"))
Q = Decimal("1E-10")
US = 1_000_000
LOCKOUT = 4.0
SILENCE_LIMIT = 2.0  # seconds without a frame before REST stands in (room for a stalled event loop)
SILENCE = 5.0
DROP = 8.0  # websocket refused this long: REST has time to answer, hit the lock-out and wait it out
SAFETY_STOP = 240.0  # the run's --duration, only reached if the scenario itself is stuck


@dataclass
class Session:
    data_dir: Path
    sim: BitsoSimulator
    stats: Any
    events: dict[str, float]  # step name -> time.monotonic() when it happened (faults: when injected)
    event_us: dict[str, int]  # the same, in wall-clock µs
    webhook_posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    frames: list[RawFrame] = field(default_factory=list)

    def rows(self, data_dir: Path | None = None) -> list[dict[str, Any]]:
        with sqlite3.connect((data_dir or self.data_dir) / "marketpipe.db") as db:
            db.row_factory = sqlite3.Row
            return [
                dict(r) for r in db.execute("SELECT * FROM bitso_spreads ORDER BY orderbook_timestamp, book")
            ]


def _second(ts: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(ts).timestamp())


async def _session(tmp: Path) -> Session:
    sim = BitsoSimulator(
        BOOKS, seed=11, updates_per_second=12, ka_interval=0.5, lockout_seconds=LOCKOUT, holes_per_minute=0
    )
    await sim.start()
    posts: list[tuple[str, dict[str, Any]]] = []
    failed_once: set[str] = set()

    def receive(request: HttpRequest) -> HttpResponse:
        key = request.headers.get("idempotency-key", "")
        posts.append((key, orjson.loads(request.body)))
        if key not in failed_once:  # every alert's first delivery fails: the retry must deliver it
            failed_once.add(key)
            return HttpResponse(503, '{"ok":false}')
        return HttpResponse(200, '{"ok":true}')

    hook = LoopbackHttpServer(receive)
    await hook.start()
    config = RunConfig(
        exchanges=["bitso"],
        data_dir=tmp,
        duration=SAFETY_STOP,
        flush_interval=0.2,
        options={
            "opt_bitso_window_seconds": 60,
            "opt_bitso_silence_limit": SILENCE_LIMIT,
            "opt_bitso_stale_after": 2 * SILENCE,
            "opt_bitso_lockout_seconds": LOCKOUT,
            "opt_spread_thresholds": "1.0,0.5,0.1",
            "opt_webhooks": [f"http://127.0.0.1:{hook.port}/alerts"],
        },
    )
    events: dict[str, float] = {}
    event_us: dict[str, int] = {}

    def mark(step: str) -> None:
        events[step], event_us[step] = time.monotonic(), now_us()

    def inject(fault: str, **args: Any) -> None:
        mark(fault)
        sim.inject(fault, **args)

    def rest_answers(status: int, after: float) -> list[float]:
        return [r.at for r in sim.rest_log if r.status == status and r.at > after]

    async def serving(step: str) -> None:
        """Every book subscribed on an open connection, then published on it since: ``step`` happened."""
        await until(lambda: all(sim.subscribed(b) for b in BOOKS), f"the subscriptions ({step})")
        since = now_us() // 1000

        def published(book: str) -> bool:  # nothing yet if the collector subscribed before the first step
            return bool(sim.published[book]) and sim.published[book][-1][0] > since

        await until(lambda: all(published(b) for b in BOOKS), f"the books ({step})")
        mark(step)

    async def script() -> None:
        await until(lambda: bool(sim.open_connections), "the websocket to connect")
        mark("connected")
        await serving("serving")
        await asyncio.sleep(3.0)  # websocket rows before anything happens
        inject("widen", book="btc_mxn", spread=0.7, duration=3.0)
        await asyncio.sleep(6.0)  # the widened spread and its end, sampled from the websocket
        accepted = sim.connections_accepted
        # The second before the drop is sampled at its end: drop a third of a second after a second
        # starts, so the collector has sampled the previous one before its socket closes.
        await asyncio.sleep(1.3 - (time.time() % 1.0))
        inject("drop", duration=DROP)
        await until(lambda: len(rest_answers(200, events["drop"])) >= 3, "three REST answers in the outage")
        inject("rate_limit")
        await until(lambda: bool(rest_answers(420, events["rate_limit"])), "the lock-out to be hit")
        hit = rest_answers(420, events["rate_limit"])[0]
        await until(lambda: sim.connections_accepted > accepted, "the websocket to come back")
        await serving("back")
        await asyncio.sleep(4.0)  # websocket rows after the outage
        inject("silence", duration=SILENCE)
        await asyncio.sleep(SILENCE + 5.0)  # the silence, then the socket speaking again
        await until(lambda: bool(rest_answers(200, hit + LOCKOUT)), "REST after the lock-out")
        mark("stop")

    async def drive() -> None:
        try:
            await script()
        finally:
            # Stop the run as a user would (run_live handles SIGTERM while it runs), also after a failed
            # step; not when the run ended on its own and cancelled this task.
            me = asyncio.current_task()
            handled = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
            if me is not None and not me.cancelling() and handled:
                signal.raise_signal(signal.SIGTERM)

    saved = {k: os.environ.get(k) for k in ("MARKETPIPE_BITSO_WS_URL", "MARKETPIPE_BITSO_API_URL")}
    os.environ["MARKETPIPE_BITSO_WS_URL"], os.environ["MARKETPIPE_BITSO_API_URL"] = sim.ws_url, sim.api_url
    task = asyncio.create_task(drive())
    try:
        stats = (await run_live(config))["bitso"]
        await task  # a step that never happened fails the session here, with its name
    finally:
        task.cancel()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        await hook.stop()
        await sim.stop()
    session = Session(tmp, sim, stats, events, event_us, posts)
    session.frames = list(iter_raw_frames([tmp / "raw"]))
    return session


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return asyncio.run(_session(tmp_path_factory.mktemp("bitso-live")))


def _expected_spread(bid: Decimal, ask: Decimal) -> Decimal:
    return ((ask - bid) * 100 / ask).quantize(Q)


def _best(bids: list[Decimal], asks: list[Decimal]) -> tuple[Decimal | None, Decimal | None]:
    return (max(bids) if bids else None, min(asks) if asks else None)


def _wire_tops(frames: list[RawFrame]) -> dict[str, list[tuple[int, str, Decimal | None, Decimal | None]]]:
    """Independent reading of the capture: per book, (received µs, source, best bid, best ask)."""
    tops: dict[str, list[tuple[int, str, Decimal | None, Decimal | None]]] = defaultdict(list)
    for f in frames:
        if f.direction != "in" or f.conn == "sampler":
            continue
        msg = orjson.loads(f.frame)
        if f.conn.startswith("rest:"):
            if msg.get("success"):
                book = f.conn.split("book=")[1]
                bids = [Decimal(e["price"]) for e in msg["payload"]["bids"]]
                asks = [Decimal(e["price"]) for e in msg["payload"]["asks"]]
                tops[book].append((f.received_ts, "rest", *_best(bids, asks)))
        elif msg.get("type") == "orders" and "payload" in msg:
            bids = [Decimal(e["r"]) for e in msg["payload"]["bids"]]
            asks = [Decimal(e["r"]) for e in msg["payload"]["asks"]]
            tops[msg["book"]].append((f.received_ts, "websocket", *_best(bids, asks)))
    return tops


def test_one_row_per_book_per_second_with_no_gap(session: Session) -> None:
    rows = session.rows()
    per_book: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        per_book[r["book"]].append(_second(r["orderbook_timestamp"]))
        assert r["orderbook_timestamp"].endswith("+00:00") and len(r["orderbook_timestamp"]) == 25
    assert set(per_book) == set(BOOKS)
    seconds = per_book["btc_mxn"]
    assert seconds == per_book["usd_mxn"]
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), "a second is missing or repeated"
    assert seconds[0] <= session.event_us["connected"] // US + 1, "sampled from the first whole second on"
    assert seconds[-1] >= session.event_us["stop"] // US - 1, "every second that ended before the stop"
    assert session.stats.ticks == len(seconds)


def test_spreads_match_the_wire_to_the_last_digit(session: Session) -> None:
    tops = _wire_tops(session.frames)
    checked = 0
    for r in session.rows():
        if r["source"] == "missing":
            assert r["bid"] is None and r["ask"] is None and r["spread"] is None and r["age_ms"] is None
            continue
        end = (_second(r["orderbook_timestamp"]) + 1) * US
        candidates = [t for t in tops[r["book"]] if t[0] < end and t[1] == r["source"]]
        received, _, bid, ask = candidates[-1]
        assert bid is not None and ask is not None, "a one-sided book must be recorded as missing"
        assert Decimal(repr(r["bid"])) == bid and Decimal(repr(r["ask"])) == ask, r
        assert Decimal(repr(r["spread"])) == _expected_spread(bid, ask), r
        if r["source"] == "rest":
            assert end - US <= received < end, "a REST answer may only stand for the second it arrived in"
        checked += 1
    assert checked >= 25, "most seconds carry data (the outages are a minority)"
    # What the client read is what the server published: every websocket top is one the book really had.
    published = {b: {(Decimal(x), Decimal(y)) for _, x, y in session.sim.published[b]} for b in BOOKS}
    for r in session.rows():
        if r["source"] == "websocket":
            assert (Decimal(repr(r["bid"])), Decimal(repr(r["ask"]))) in published[r["book"]]


def test_csv_and_lake_hold_the_same_rows_one_file_per_book_per_window(session: Session) -> None:
    rows = session.rows()
    csv_files = list((session.data_dir / "csv" / "bitso_spreads").glob("*.csv"))
    lines = [ln for f in csv_files for ln in f.read_text().splitlines()[1:]]
    assert len(lines) == len(rows)
    lake = session.data_dir / "lake" / "bitso_spreads"
    by_window: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in rows:
        by_window[(r["book"], _second(r["orderbook_timestamp"]) // 60 * 60)].add(r["orderbook_timestamp"])
    files = sorted(lake.rglob("*.parquet"))
    assert len(files) == len(by_window), "one file per book per window"
    from datetime import UTC, datetime

    for (book, start), stamps in by_window.items():
        dt = datetime.fromtimestamp(start, UTC)
        path = (
            lake
            / f"book={book}"
            / dt.strftime("dt=%Y-%m-%d/hour=%H")
            / dt.strftime("bitso_spreads-%Y%m%dT%H%M%S.parquet")
        )
        table = pq.read_table(path)
        assert set(table.column("orderbook_timestamp").to_pylist()) == stamps
        assert table.num_rows == len(stamps)


def test_alerts_one_per_crossing_delivered_by_webhook_with_retry(session: Session) -> None:
    expected = []
    state: dict[tuple[str, Decimal], bool] = defaultdict(bool)
    for r in session.rows():
        if r["spread"] is None:
            continue
        spread = Decimal(repr(r["spread"]))
        for t in THRESHOLDS:
            above = spread > t
            if above != state[(r["book"], t)]:
                state[(r["book"], t)] = above
                expected.append((r["book"], str(t), "above" if above else "below", r["orderbook_timestamp"]))
    delivered = {key: body for key, body in session.webhook_posts}
    got = sorted(
        (b["book"], b["threshold"], b["direction"], b["orderbook_timestamp"]) for b in delivered.values()
    )
    assert got == sorted(expected)
    widened = {(b, t, d) for b, t, d, _ in expected}
    assert {("btc_mxn", "0.5", "above"), ("btc_mxn", "0.1", "above"), ("btc_mxn", "0.5", "below")} <= widened
    assert len(session.webhook_posts) == 2 * len(delivered), "each first attempt failed and was retried once"
    assert session.stats.alerts + session.stats.notices == len(expected)
    body = next(b for b in delivered.values() if b["direction"] == "above" and b["threshold"] == "0.5")
    assert body["event"] == "spread_alert" and body["text"].startswith("ALERT bitso btc_mxn spread ")
    assert Decimal(body["spread"]) > Decimal("0.5")


def test_rest_covers_the_outage_within_the_rate_limit_and_honours_420(session: Session) -> None:
    log = session.sim.rest_log
    statuses = [r.status for r in log]
    assert statuses.count(420) == 1, "only the injected lock-out may answer 420, and it is hit once"
    hit = next(r for r in log if r.status == 420)
    assert hit.at >= session.events["rate_limit"]
    assert not [r for r in log if hit.at < r.at < hit.at + LOCKOUT - 0.05], "requests during the lock-out"
    assert [r for r in log if r.at > hit.at + LOCKOUT and r.status == 200], "REST resumed after the lock-out"
    for r in log:
        assert len([x for x in log if r.at <= x.at < r.at + 60]) <= 50
    # Every second a REST answer arrived in while the websocket was down has its REST row.
    rows = {(r["book"], _second(r["orderbook_timestamp"])): r for r in session.rows()}
    answered = [
        (f.conn.split("book=")[1], f.received_ts // US)
        for f in session.frames
        if f.conn.startswith("rest:") and orjson.loads(f.frame).get("success")
    ]
    outage = [k for k in answered if session.event_us["drop"] <= k[1] * US and k in rows]
    assert len(outage) >= 3
    for key in outage:
        assert rows[key]["source"] in ("rest", "websocket"), key
    assert sum(1 for k in outage if rows[k]["source"] == "rest") >= 3


def test_websocket_hands_over_to_rest_and_back(session: Session) -> None:
    rows = session.rows()
    serving_s, drop_s, back_s, silence_s = (
        session.event_us[step] // US for step in ("serving", "drop", "back", "silence")
    )

    def sources(first: int, end: int) -> list[tuple[str, str, str]]:
        """(second, book, source) of the rows of seconds ``[first, end)``."""
        return [
            (r["orderbook_timestamp"], r["book"], r["source"])
            for r in rows
            if first <= _second(r["orderbook_timestamp"]) < end
        ]

    def only(kind: str, seen: list[tuple[str, str, str]]) -> bool:
        return bool(seen) and all(source == kind for _, _, source in seen)

    before = sources(serving_s + 1, drop_s)
    assert only("websocket", before), f"websocket rows before the drop: {before}"
    during = [source for _, _, source in sources(drop_s + 1, drop_s + 5)]
    assert "websocket" not in during and "rest" in during, during
    back = sources(back_s + 1, silence_s)
    assert only("websocket", back), f"websocket is back after the outage: {back}"
    # Seconds entirely inside the silence, after the silence limit: never the (stale) websocket.
    t0 = session.event_us["silence"]
    silent = [
        r["source"]
        for r in rows
        if _second(r["orderbook_timestamp"]) * US >= t0 + SILENCE_LIMIT * US
        and (_second(r["orderbook_timestamp"]) + 1) * US <= t0 + SILENCE * US
    ]
    assert silent and "websocket" not in silent, "a silent socket is not used past the silence limit"
    after = sources(silence_s + int(SILENCE) + 2, 1 << 40)
    assert only("websocket", after), f"the socket is used again once it speaks: {after}"
    assert all(r["age_ms"] <= SILENCE_LIMIT * 1000 for r in rows if r["source"] == "websocket")


def test_replay_of_the_capture_rebuilds_the_same_rows(session: Session, tmp_path: Path) -> None:
    replay([session.data_dir / "raw"], RunConfig(data_dir=tmp_path))
    assert session.rows(tmp_path) == session.rows()
    replay([session.data_dir / "raw"], RunConfig(data_dir=tmp_path))  # idempotent
    assert session.rows(tmp_path) == session.rows()
