"""Bitso wire parsing and the per-second sampler, driven by hand-made frames with chosen timestamps."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from marketpipe.bitso import wire as bitso
from marketpipe.bitso.processor import (
    SAMPLER_CONN,
    BitsoProcessor,
    SamplerConfig,
    observations_from_rows,
    second_text,
    tick_frame,
    validate_window,
)
from marketpipe.errors import ConfigError
from marketpipe.records import RawFrame
from marketpipe.tables.bitso import BITSO_SPREADS

US = 1_000_000
T0 = 1_651_291_826  # 2022-04-30T04:10:26Z
WS = "run-ws-1"


def orders(book: str, bids: list[str], asks: list[str]) -> str:
    return orjson.dumps({
        "type": "orders", "book": book, "sent": 1,
        "payload": {"bids": [{"o": "x", "r": r, "a": "1", "t": 0} for r in bids],
                    "asks": [{"o": "y", "r": r, "a": "1", "t": 1} for r in asks]},
    }).decode()  # fmt: skip


def rest(bids: list[str], asks: list[str], book: str = "btc_mxn") -> str:
    side = lambda ps: [{"book": book, "price": p, "amount": "1.0"} for p in ps]  # noqa: E731
    return orjson.dumps(
        {"success": True, "payload": {"bids": side(bids), "asks": side(asks), "sequence": "42"}}
    ).decode()


class Rig:
    def __init__(self, **config: Any) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.crossings: list[Any] = []
        cfg = SamplerConfig(books=("btc_mxn",), window_seconds=600, silence_limit_ms=2000, **config)
        self.p = BitsoProcessor(
            lambda t, r: self.rows.extend(r), cfg, on_crossing=lambda c, o: self.crossings.append(c)
        )

    def ws(self, at: float, text: str, conn: str = WS) -> None:
        self.p.process(RawFrame("bitso", conn, "in", int(at * US), text))

    def rest(self, at: float, text: str) -> None:
        self.p.process(RawFrame("bitso", bitso.rest_conn("btc_mxn"), "in", int(at * US), text))

    def tick(
        self, second: int, at: float | None = None, open_conns: tuple[str, ...] = (WS,)
    ) -> dict[str, Any]:
        at = at if at is not None else second + 1.02
        before = len(self.rows)
        self.p.process(RawFrame("bitso", SAMPLER_CONN, "in", int(at * US), tick_frame(second, open_conns)))
        assert len(self.rows) == before + 1
        return dict(zip(BITSO_SPREADS.column_names, self.rows[-1], strict=True))


def test_spread_and_timestamp_format() -> None:
    assert bitso.spread_percent(Decimal("1249734.75"), Decimal("1250276.93")) == Decimal("0.0433647928")
    assert second_text(T0) == "2022-04-30T04:10:26+00:00"
    assert bitso.validate_book("btc_mxn") == "btc_mxn"
    for bad in ("BTC_MXN", "btcmxn", "btc-mxn"):
        with pytest.raises(ConfigError):
            bitso.validate_book(bad)
    for window in (600, 60, 3600):
        assert validate_window(window) == window
    for window in (10, 90, 7 * 60):
        with pytest.raises(ConfigError):
            validate_window(window)


def test_websocket_state_as_of_the_end_of_each_second() -> None:
    rig = Rig()
    rig.ws(T0 + 0.1, orders("btc_mxn", ["100.5", "100.25"], ["101", "102"]))
    rig.ws(T0 + 1.01, orders("btc_mxn", ["100.6"], ["100.9"]))  # next second, processed before the tick
    row = rig.tick(T0, at=T0 + 1.02)
    assert (row["bid"], row["ask"], row["source"]) == (100.5, 101.0, "websocket")
    assert row["spread"] == float(bitso.spread_percent(Decimal("100.5"), Decimal("101")))
    assert row["age_ms"] == 1000 - 100 and row["orderbook_timestamp"] == second_text(T0)
    assert row["window_start"] == (T0 - T0 % 600) * US
    row = rig.tick(T0 + 1)
    assert (row["bid"], row["ask"]) == (100.6, 100.9)
    rig.ws(T0 + 2.5, '{"type":"ka"}')
    row = rig.tick(T0 + 2)
    assert row["source"] == "websocket" and row["age_ms"] == 500, "a keep-alive confirms the book"


def test_silence_closed_socket_rest_and_missing() -> None:
    rig = Rig()
    rig.ws(T0 + 0.5, orders("btc_mxn", ["10"], ["11"]))
    assert rig.tick(T0 + 1)["source"] == "websocket"  # 1.5 s of silence < 2 s limit
    assert rig.tick(T0 + 2)["source"] == "missing"  # 2.5 s > limit, nothing else
    rig.rest(T0 + 3.4, rest(["10.1", "9"], ["11.5", "12"]))
    row = rig.tick(T0 + 3)
    assert (row["source"], row["bid"], row["ask"], row["age_ms"]) == ("rest", 10.1, 11.5, 600)
    row = rig.tick(T0 + 4)
    assert row["source"] == "missing" and row["bid"] is None, "a REST answer stands for its own second only"
    rig.ws(T0 + 5.5, orders("btc_mxn", ["10"], ["11"]))
    assert rig.tick(T0 + 5, open_conns=())["source"] == "missing", "the tick says the socket closed"
    rig.p.connection_closed(WS)
    rig.ws(T0 + 6.5, orders("btc_mxn", ["10"], []))
    assert rig.tick(T0 + 6)["source"] == "missing", "a one-sided book has no spread"
    assert rig.p.stats.rows == {"websocket": 1, "rest": 1, "missing": 4}


def test_crossings_and_replay_config_record() -> None:
    rig = Rig(thresholds=(Decimal("0.5"),))
    rig.ws(T0 + 0.1, orders("btc_mxn", ["99"], ["100"]))  # 1 %
    rig.tick(T0)
    rig.ws(T0 + 1.1, orders("btc_mxn", ["99.9"], ["100"]))  # 0.1 %
    rig.tick(T0 + 1)
    assert [(c.direction, c.threshold) for c in rig.crossings] == [
        ("above", Decimal("0.5")),
        ("below", Decimal("0.5")),
    ]
    # A replay reads the settings from the capture.
    rows: list[Any] = []
    replayed = BitsoProcessor(lambda t, r: rows.extend(r))
    config = SamplerConfig(
        books=("usd_mxn",), window_seconds=60, silence_limit_ms=1000, thresholds=(Decimal("2"),)
    )
    replayed.process(RawFrame("bitso", SAMPLER_CONN, "in", T0 * US, config.frame()))
    assert replayed.config == config
    replayed.process(RawFrame("bitso", SAMPLER_CONN, "in", (T0 + 2) * US, tick_frame(T0 + 1, [])))
    assert rows[0][1] == "usd_mxn" and rows[0][7] == (T0 + 1 - (T0 + 1) % 60) * US
    assert observations_from_rows(rows)[0].source == "missing"
    assert "1 seconds sampled" in replayed.summary()


def test_bad_frames_are_counted_and_skipped() -> None:
    rig = Rig()
    for text in ("not json", "[1]", '{"no":"type"}', orders("btc_mxn", ["abc"], ["1"]), '{"type":"orders"}'):
        rig.ws(T0, text)
    rig.rest(T0, "{")
    rig.rest(T0, '{"success":false,"error":{"code":"0801","message":"rate"}}')
    rig.p.process(RawFrame("bitso", SAMPLER_CONN, "in", T0 * US, '{"type":"what"}'))
    rig.p.process(RawFrame("bitso", SAMPLER_CONN, "in", T0 * US, "nope"))
    rig.p.process(RawFrame("bitso", WS, "out", T0 * US, bitso.subscribe_frame("btc_mxn")))
    assert rig.p.stats.invalid_frames == 8
    assert rig.p.stats.rate_limited == 1 and rig.p.stats.rest_errors == 1


def test_wire_records() -> None:
    ack = bitso.parse_ws('{"action":"subscribe","response":"ok","time":1,"type":"orders","book":"btc_mxn"}')
    assert isinstance(ack, bitso.SubscribeAck) and ack.ok
    err = bitso.parse_ws(
        '{"action":"subscribe","type":"orders","error":"This book is not supported - nope_usd"}'
    )
    assert isinstance(err, bitso.SubscribeError) and err.unknown_book == "nope_usd"
    assert isinstance(bitso.parse_ws('{"type":"trades","book":"b","payload":[]}'), bitso.Other)
    answer = bitso.parse_rest_book(rest(["1"], ["2"]), "btc_mxn")
    assert isinstance(answer, bitso.RestBook) and answer.sequence == 42 and answer.top.bid == Decimal(1)
    error = bitso.parse_rest_book('{"success":false,"error":"x"}', "b")
    assert isinstance(error, bitso.RestError) and not error.rate_limited
    with pytest.raises(bitso.BadFrame):
        bitso.parse_rest_book('{"success":true}', "b")
    with pytest.raises(bitso.BadFrame):
        bitso.parse_rest_book("[]", "b")
    with pytest.raises(bitso.BadFrame):
        bitso.best_prices("x", [], "r")
    assert bitso.book_of_rest_conn("rest:/v3/order_book/?book=usd_mxn&aggregate=false") == "usd_mxn"
    assert bitso.book_of_rest_conn("other") is None
    assert bitso.order_book_url("http://h/", "btc_mxn") == "http://h/v3/order_book/?book=btc_mxn"
