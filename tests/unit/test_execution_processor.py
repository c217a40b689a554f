"""Captured book bodies -> snapshot and quote facts, dimension rows; settings and market parsing."""

from __future__ import annotations

import gzip
from decimal import Decimal
from typing import Any

import orjson
import pytest

from marketpipe.errors import ConfigError
from marketpipe.execution import archive
from marketpipe.execution.model import session_of, time_keys
from marketpipe.execution.processor import (
    ExecutionProcessor,
    config_frame,
    market_of_conn,
    parse_market,
    parse_markets,
    parse_notionals,
    usd_comparison,
)
from marketpipe.execution.service import next_boundary, settings_from
from marketpipe.execution.walk import build_book, walk_book
from marketpipe.records import RawFrame
from marketpipe.tables import TABLES, Table
from marketpipe.tables.execution import (
    EXECUTION_DIM_DATE,
    EXECUTION_DIM_EXCHANGE,
    EXECUTION_DIM_MARKET,
    EXECUTION_DIM_MINUTE,
    EXECUTION_QUOTES,
    EXECUTION_SNAPSHOTS,
)
from marketpipe.timeutil import iso_to_us

TS = iso_to_us("2026-11-22T04:10:26.123456Z")
CB_BODY = orjson.dumps(
    {
        "bids": [["59999.99", "0.5", 3], ["59999.00", "2.0", 1]],
        "asks": [["60000.01", "1.0", 2], ["60001.00", "1.5", 4]],
        "sequence": 13051505638,
        "auction_mode": False,
        "auction": None,
        "time": "2026-11-22T04:10:26.100000Z",
    }
).decode()
BN_BODY = (
    '{"lastUpdateId":1027024,"bids":[["3000.00000000","10.00000000"]],'
    '"asks":[["3000.01000000","1.00000000"]]}'
)


class Collect:
    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {}

    def __call__(self, table: Table, rows: list[tuple[Any, ...]]) -> None:
        self.rows.setdefault(table.name, []).extend(rows)

    def dicts(self, table: Table) -> list[dict[str, Any]]:
        return [dict(zip(table.column_names, r, strict=True)) for r in self.rows.get(table.name, [])]


def frame(conn: str, text: str, ts: int = TS) -> RawFrame:
    return RawFrame("execution", conn, "in", ts, text)


def test_coinbase_body_gives_one_snapshot_and_a_quote_per_side_and_notional() -> None:
    out = Collect()
    proc = ExecutionProcessor(out)
    proc.process(frame("rest:coinbase:/products/BTC-USD/book?level=2", CB_BODY))
    (snap,) = out.dicts(EXECUTION_SNAPSHOTS)
    assert snap["exchange"] == "coinbase" and snap["market"] == "BTC-USD" and snap["quote"] == "USD"
    assert snap["best_bid"] == 59999.99 and snap["best_ask"] == 60000.01 and snap["mid"] == 60000.0
    assert snap["spread_bps"] == pytest.approx(0.02 / 60000 * 10_000)
    assert snap["sequence"] == 13051505638 and snap["exchange_ts"] == iso_to_us("2026-11-22T04:10:26.1Z")
    assert snap["bid_depth_quote"] == pytest.approx(59999.99 * 0.5 + 59999 * 2)
    assert snap["date_key"] == "2026-11-22" and snap["minute_of_day"] == 250
    assert snap["minute_key"] == "2026-11-22T04:10Z" and snap["crossed"] == 0 and snap["auction_mode"] == 0
    assert snap["raw_bytes"] == len(CB_BODY)
    quotes = out.dicts(EXECUTION_QUOTES)
    assert [(q["side"], q["notional"]) for q in quotes] == [
        ("buy", 100000.0), ("buy", 50000.0), ("sell", 100000.0), ("sell", 50000.0)
    ]  # fmt: skip
    book, _ = build_book(
        [("59999.99", "0.5"), ("59999.00", "2.0")], [("60000.01", "1.0"), ("60001.00", "1.5")]
    )
    for q in quotes:
        fill = walk_book(book, q["side"], Decimal(int(q["notional"])))
        assert q["avg_price"] == float(fill.avg_price) and q["base_filled"] == float(fill.base_filled)
        assert q["worst_price"] == float(fill.worst_price) and q["deep_enough"] == int(fill.deep_enough)
        assert q["slippage_bps"] == float(fill.slippage_bps) and q["levels_used"] == fill.levels_used
        assert q["quote"] == "USD" and q["base"] == "BTC"
    buy100 = quotes[0]
    assert buy100["deep_enough"] == 1 and buy100["levels_used"] == 2 and buy100["shortfall_quote"] == 0
    sell100 = quotes[2]  # bids hold 29,999.995 + 119,998 = 149,997.995: enough
    assert sell100["deep_enough"] == 1
    assert proc.stats.snapshots == 1 and proc.stats.quotes == 4


def test_binance_body_thin_for_the_notionals_and_dims_emitted_once() -> None:
    out = Collect()
    proc = ExecutionProcessor(out)
    conn = "rest:binance:/api/v3/depth?symbol=ETHUSDT&limit=1000"
    proc.process(frame(conn, BN_BODY))
    proc.process(frame(conn, BN_BODY, TS + 60_000_000))
    snaps = out.dicts(EXECUTION_SNAPSHOTS)
    assert [s["market"] for s in snaps] == ["ETH-USDT", "ETH-USDT"] and snaps[0]["exchange_ts"] is None
    assert snaps[0]["sequence"] == 1027024 and snaps[0]["quote"] == "USDT"
    quotes = out.dicts(EXECUTION_QUOTES)
    buy = quotes[0]
    assert buy["deep_enough"] == 0 and buy["quote_spent"] == 3000.01 and buy["base_filled"] == 1.0
    assert buy["shortfall_quote"] == pytest.approx(100000 - 3000.01)
    assert proc.stats.not_deep_enough == 8
    assert out.dicts(EXECUTION_DIM_EXCHANGE)[0]["exchange"] == "binance"
    (market,) = out.dicts(EXECUTION_DIM_MARKET)
    assert market["exchange_symbol"] == "ETHUSDT" and "par" in market["usd_comparison"]
    assert [d["date_key"] for d in out.dicts(EXECUTION_DIM_DATE)] == ["2026-11-22"]
    (date,) = out.dicts(EXECUTION_DIM_DATE)
    assert date["day_name"] == "Sunday" and date["is_weekend"] == 1 and date["quarter"] == 4
    assert [m["hhmm"] for m in out.dicts(EXECUTION_DIM_MINUTE)] == ["04:10", "04:11"]
    assert "2 book snapshots (binance:ETHUSDT 2)" in proc.summary()


def test_config_record_sets_the_notionals_and_bad_records_are_counted() -> None:
    out = Collect()
    proc = ExecutionProcessor(out)
    proc.process(frame("config", config_frame([Decimal(1000)])))
    proc.process(frame("rest:binance:/api/v3/depth?symbol=ETHUSDT&limit=1000", BN_BODY))
    assert [(q["side"], q["notional"], q["deep_enough"]) for q in out.dicts(EXECUTION_QUOTES)] == [
        ("buy", 1000.0, 1), ("sell", 1000.0, 1)
    ]  # fmt: skip
    proc.process(frame("config", "{not json"))
    proc.process(frame("rest:binance:/api/v3/depth?symbol=ETHUSDT&limit=1000", '{"code":-1121}'))
    proc.process(frame("rest:kraken:/0/public/Depth", BN_BODY))
    proc.process(frame("ws", "{}"))
    assert proc.stats.invalid == 4 and proc.stats.snapshots == 1
    assert proc.notionals == (Decimal(1000),)


def test_replay_notionals_flag_fixes_the_notionals_over_the_config_records() -> None:
    """``replay --execution-notionals``: the capture's config records are noted, not obeyed."""
    from marketpipe.capabilities import check_replay_settings
    from marketpipe.execution.service import create_replayer, replay_settings_from

    assert replay_settings_from({}) is None  # the environment's notionals are for live runs only
    assert replay_settings_from({"opt_execution_notionals": "250_000, 1e5,250000"}) == (
        Decimal(250000),
        Decimal(100000),
    )
    with pytest.raises(ConfigError, match="--execution-notionals: invalid notional 'x'"):
        check_replay_settings({"opt_execution_notionals": "1,x"})
    check_replay_settings({})
    out = Collect()
    proc = create_replayer(out, {"opt_execution_notionals": "250000,100000"})
    proc.process(frame("config", config_frame([Decimal(100000), Decimal(50000)])))
    proc.process(frame("rest:coinbase:/products/BTC-USD/book?level=2", CB_BODY))
    proc.process(frame("config", config_frame([Decimal(1000)]), TS + 1))
    proc.process(frame("rest:coinbase:/products/BTC-USD/book?level=2", CB_BODY, TS + 2))
    notionals = [(q["received_ts"], q["notional"]) for q in out.dicts(EXECUTION_QUOTES)]
    assert notionals == [
        (ts, n) for ts in (TS, TS + 2) for _ in ("buy", "sell") for n in (250000.0, 100000.0)
    ]
    assert "re-priced at notionals 250000, 100000 (captured: 100000, 50000; 1000)" in proc.summary()
    assert (
        "re-priced" not in create_replayer(out).summary()
        and "re-priced" not in create_replayer(out, {}).summary()
    )


def test_crossed_and_empty_books_are_counted() -> None:
    out = Collect()
    proc = ExecutionProcessor(out)
    proc.process(frame("rest:binance:/api/v3/depth?symbol=BTCUSDT&limit=5", '{"bids":[],"asks":[]}'))
    crossed = '{"lastUpdateId":1,"bids":[["101","1"]],"asks":[["100","1"]]}'
    proc.process(frame("rest:binance:/api/v3/depth?symbol=BTCUSDT&limit=5", crossed, TS + 1))
    assert proc.stats.empty_sides == 2 and proc.stats.crossed == 1
    empty, cross = out.dicts(EXECUTION_SNAPSHOTS)
    assert empty["mid"] is None and empty["spread_bps"] is None and empty["bid_levels"] == 0
    assert cross["crossed"] == 1 and cross["spread_bps"] < 0 and cross["auction_mode"] == 0
    auction = CB_BODY.replace('"auction_mode":false', '"auction_mode":true')
    proc.process(frame("rest:coinbase:/products/BTC-USD/book?level=2", auction, TS + 2))
    assert out.dicts(EXECUTION_SNAPSHOTS)[-1]["auction_mode"] == 1
    assert all(q["crossed"] == 1 for q in out.dicts(EXECUTION_QUOTES)[4:8])


def test_markets_notionals_and_settings() -> None:
    btc = parse_market("binance:btcusdt")
    assert (btc.exchange, btc.symbol, btc.market, btc.base, btc.quote) == (
        "binance", "BTCUSDT", "BTC-USDT", "BTC", "USDT"
    )  # fmt: skip
    assert parse_market("Coinbase:eth-usd").spec == "coinbase:ETH-USD"
    for bad in ("kraken:XBTUSD", "BTC-USD", "coinbase:BTCUSD", "binance:BTC"):
        with pytest.raises(ConfigError):
            parse_market(bad)
    with pytest.raises(ConfigError, match="twice"):
        parse_markets(["coinbase:BTC-USD", "coinbase:btc-usd"])
    with pytest.raises(ConfigError):
        parse_markets([])
    assert parse_notionals(["100_000", "50000", "100000"]) == (Decimal(100000), Decimal(50000))
    for bad in (["0"], ["-5"], ["abc"], [], ["inf"]):
        with pytest.raises(ConfigError):
            parse_notionals(bad)
    assert market_of_conn("rest:coinbase:/products/ETH-USD/book?level=2").market == "ETH-USD"  # type: ignore[union-attr]
    assert market_of_conn("rest:coinbase:/products") is None
    assert market_of_conn("rest:binance:/api/v3/ticker") is None
    assert usd_comparison("USD") == "USD" and "not comparable" in usd_comparison("EUR")

    env = {"MARKETPIPE_EXECUTION_NOTIONALS": "25000", "MARKETPIPE_COINBASE_API_URL": "http://cb"}
    s = settings_from({"opt_execution_markets": "binance:BTCUSDT", "opt_execution_interval": 5}, env)
    assert [m.spec for m in s.markets] == ["binance:BTCUSDT"] and s.notionals == (Decimal(25000),)
    assert s.interval == 5 and s.coinbase_url == "http://cb" and s.venues() == ["binance"]
    assert settings_from({"opt_execution_binance_limit": 500}, {}).binance_depth_limit == 500
    for options in (
        {"opt_execution_interval": 0.5},
        {"opt_execution_interval": "x"},
        {"opt_execution_binance_limit": 0},
        {"opt_execution_binance_limit": "x"},
    ):
        with pytest.raises(ConfigError):
            settings_from(options, {})
    assert next_boundary(125.0, 60) == 180.0 and next_boundary(120.0, 60) == 180.0


def test_time_keys_and_sessions() -> None:
    keys = time_keys(iso_to_us("2026-01-05T23:59:59.999999Z"))
    assert (keys.date_key, keys.minute_of_day, keys.minute_key) == ("2026-01-05", 1439, "2026-01-05T23:59Z")
    assert [session_of(h) for h in (0, 8, 13, 21)] == ["asia", "europe", "us", "late"]
    for table in (EXECUTION_SNAPSHOTS, EXECUTION_QUOTES, EXECUTION_DIM_MARKET):
        assert TABLES[table.name] is table


def test_raw_snapshot_object_is_gzip_of_replayable_capture_lines(tmp_path: Any) -> None:
    f = frame("rest:coinbase:/products/BTC-USD/book?level=2", CB_BODY)
    path = archive.write_snapshot(str(tmp_path), "coinbase", "BTC-USD", f, [Decimal(5)])
    assert path == (
        f"{tmp_path}/execution_raw/exchange=coinbase/dt=2026-11-22/hour=04/BTC-USD-20261122T041026.123456Z.jsonl.gz"
    )
    with open(path, "rb") as fh:
        data = fh.read()
    lines = [orjson.loads(line) for line in gzip.decompress(data).splitlines()]
    assert lines[0]["conn"] == "config" and orjson.loads(lines[0]["frame"])["notionals"] == ["5"]
    assert lines[1]["frame"] == CB_BODY and lines[1]["received_ts"] == "2026-11-22T04:10:26.123456Z"
    assert len(data) < len(CB_BODY) + 400
    again = archive.write_snapshot(str(tmp_path), "coinbase", "BTC-USD", f, [Decimal(5)])
    with open(again, "rb") as fh:
        assert again == path and fh.read() == data  # deterministic: a retry replaces the same object
