"""marketpipe run --exchanges execution --simulate: rows in every store, identical replay, queries, errors."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from marketpipe.cli import main
from marketpipe.execution.processor import ExecutionProcessor
from marketpipe.execution.walk import walk_book
from marketpipe.records import RawFrame
from marketpipe.sinks.raw_capture import capture_files, iter_raw_frames


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


QUOTES_SQL = (
    "SELECT exchange, market, quote, received_ts, side, notional, avg_price, worst_price, base_filled,"
    " quote_spent, mid, slippage_bps, deep_enough, levels_used FROM execution_quotes"
    " ORDER BY exchange, market, received_ts, side, notional"
)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("execution-run")
    code = main(
        ["run", "--exchanges", "execution", "--simulate", "--duration", "4.2", "--data-dir", str(data),
         "--execution-interval", "1", "--execution-notionals", "100000,50000,1000000"]
    )  # fmt: skip
    assert code == 0
    return data


def test_every_poll_prices_every_market_side_and_notional(session: Path) -> None:
    db = session / "marketpipe.db"
    snaps = rows(db, "SELECT exchange, market, quote, received_ts FROM execution_snapshots")
    per_market: dict[tuple[str, str], int] = {}
    for exchange, market, quote, _ in snaps:
        per_market[(exchange, market)] = per_market.get((exchange, market), 0) + 1
        assert quote == ("USD" if exchange == "coinbase" else "USDT")
    assert set(per_market) == {("coinbase", "BTC-USD"), ("coinbase", "ETH-USD"),
                               ("binance", "BTC-USDT"), ("binance", "ETH-USDT")}  # fmt: skip
    polls = min(per_market.values())
    assert 2 <= polls <= 6 and max(per_market.values()) == polls  # at once, then a poll per second of 4.2 s
    quotes = rows(db, QUOTES_SQL)
    assert len(quotes) == len(snaps) * 2 * 3
    for q in quotes:
        if q[12]:  # deep enough: the whole notional was spent, slippage is a cost
            assert q[9] == pytest.approx(q[5]) and q[11] >= 0
    dims = rows(db, "SELECT exchange, market, exchange_symbol, usd_comparison FROM execution_dim_market")
    assert sorted(d[:3] for d in dims) == [
        ("binance", "BTC-USDT", "BTCUSDT"), ("binance", "ETH-USDT", "ETHUSDT"),
        ("coinbase", "BTC-USD", "BTC-USD"), ("coinbase", "ETH-USD", "ETH-USD"),
    ]  # fmt: skip


def test_rows_equal_an_independent_pricing_of_the_captured_bodies(session: Path) -> None:
    frames = list(iter_raw_frames(capture_files([session / "raw" / "execution"])))
    bodies = [f for f in frames if f.conn.startswith("rest:")]
    assert frames[0].conn == "config" and len(bodies) >= 12
    stored = {(r[0], r[1], r[3], r[4], r[5]): r for r in rows(session / "marketpipe.db", QUOTES_SQL)}
    from decimal import Decimal

    from marketpipe.execution import binance_rest, coinbase
    from marketpipe.timeutil import us_to_datetime

    for f in bodies:
        venue, _, path = f.conn.removeprefix("rest:").partition(":")
        if venue == "coinbase":
            book, market = coinbase.parse_book(f.frame).book, path.split("/")[2]
        else:
            book = binance_rest.parse_book(f.frame).book
            market = path.split("=")[1].split("&")[0].replace("USDT", "-USDT")
        when = us_to_datetime(f.received_ts).strftime("%Y-%m-%d %H:%M:%S.%f")
        for side in ("buy", "sell"):
            fill = walk_book(book, side, Decimal(100_000))
            row = stored[(venue, market, when, side, 100000.0)]
            assert row[6] == (
                None if fill.avg_price is None else pytest.approx(float(fill.avg_price), rel=1e-12)
            )
            assert row[12] == int(fill.deep_enough) and row[13] == fill.levels_used


def test_replay_of_the_capture_and_of_the_lake_archive_rebuilds_identical_rows(
    session: Path, tmp_path: Path
) -> None:
    original = rows(session / "marketpipe.db", QUOTES_SQL)
    assert main(["replay", str(session / "raw"), "--data-dir", str(tmp_path / "a")]) == 0
    assert rows(tmp_path / "a" / "marketpipe.db", QUOTES_SQL) == original
    archived = sorted((session / "lake" / "execution_raw").rglob("*.jsonl.gz"))
    assert len(archived) == len(original) // 6
    first = [orjson.loads(x) for x in gzip.decompress(archived[0].read_bytes()).splitlines()]
    assert first[0]["conn"] == "config" and first[1]["conn"].startswith("rest:")
    assert main(["replay", str(session / "lake" / "execution_raw"), "--data-dir", str(tmp_path / "b")]) == 0
    assert rows(tmp_path / "b" / "marketpipe.db", QUOTES_SQL) == original
    # replaying again into the same stores adds nothing
    assert main(["replay", str(session / "raw"), "--data-dir", str(tmp_path / "a")]) == 0
    assert rows(tmp_path / "a" / "marketpipe.db", QUOTES_SQL) == original


def test_query_answers_the_questions_from_the_lake(session: Path, capsys: pytest.CaptureFixture[str]) -> None:
    day = rows(session / "marketpipe.db", "SELECT date_key FROM execution_snapshots LIMIT 1")[0][0]
    capsys.readouterr()
    args = ["--data-dir", str(session), "--param", f"day={day}", "--format", "json"]
    assert main(["query", "execution_preferred_exchange", *args]) == 0
    best = orjson.loads(capsys.readouterr().out)
    assert best and {b["side"] for b in best} == {"buy", "sell"}
    quotes = rows(
        session / "marketpipe.db",
        "SELECT minute_key, base, side, notional, exchange, avg_price FROM execution_quotes"
        " WHERE deep_enough = 1 AND crossed = 0",
    )
    for b in best:
        candidates: dict[str, list[float]] = {}
        for minute, base, side, notional, exchange, price in quotes:
            if (minute, base, side, notional) == (
                b["minute_key"],
                b["base"],
                b["side"],
                float(b["notional"]),
            ):
                candidates.setdefault(exchange, []).append(price)
        averages = {e: sum(p) / len(p) for e, p in candidates.items()}
        pick = min(averages, key=averages.get) if b["side"] == "buy" else max(averages, key=averages.get)  # type: ignore[arg-type]
        assert b["preferred_exchange"] == pick and float(b["avg_price"]) == pytest.approx(averages[pick])
        assert b["quote"] == ("USD" if pick == "coinbase" else "USDT")
    assert main(["query", "execution_mid_per_minute", *args]) == 0
    mids = orjson.loads(capsys.readouterr().out)
    assert {m["exchange"] for m in mids} == {"coinbase", "binance"}
    assert all(float(m["min_mid"]) <= float(m["avg_mid"]) <= float(m["max_mid"]) for m in mids)
    assert main(["query", "execution_cost_summary", *args]) == 0
    assert len(orjson.loads(capsys.readouterr().out)) == 4 * 2 * 3
    assert main(["query", "execution_cost_summary", "--sql"]) == 0
    assert "FROM execution_quotes" in capsys.readouterr().out
    assert main(["query", "--list"]) == 0
    assert "execution_preferred_exchange day=<date>" in capsys.readouterr().out


def test_query_without_execution_tables_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["query", "execution_mid_per_minute", "--param", "day=2026-01-01", "--data-dir", str(tmp_path)]
    )
    assert code == 2 and "no execution tables" in capsys.readouterr().err


def test_a_refused_market_is_one_line_and_the_others_are_priced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--exchanges", "execution", "--simulate", "--duration", "2", "--data-dir", str(tmp_path),
         "--sinks", "db", "--execution-markets", "binance:DOGEUSDT,coinbase:BTC-USD"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    refused = [line for line in err.splitlines() if "DOGEUSDT refused" in line]
    assert len(refused) == 1 and refused[0].endswith("pricing the other markets"), err
    with sqlite3.connect(tmp_path / "marketpipe.db") as db:
        markets = {r[0] for r in db.execute("SELECT DISTINCT market FROM execution_quotes")}
    assert markets == {"BTC-USD"}


def test_unknown_symbol_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "--exchanges", "execution", "--simulate", "--duration", "5", "--data-dir", str(tmp_path),
         "--execution-markets", "binance:DOGEUSDT"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "execution market binance:DOGEUSDT refused by the exchange" in err and "-1121" in err
    code = main(
        ["run", "--exchanges", "execution", "--data-dir", str(tmp_path), "--execution-notionals", "0"]
    )
    assert code == 2 and "invalid notional" in capsys.readouterr().err


def test_replayer_is_the_live_processor() -> None:
    from marketpipe.execution.service import create_replayer

    out: list[Any] = []
    replayer = create_replayer(lambda t, r: out.append((t.name, r)))
    replayer.process(RawFrame("execution", "rest:binance:/api/v3/depth?symbol=BTCUSDT&limit=5", "in", 1,
                              '{"lastUpdateId":1,"bids":[["1","1"]],"asks":[["2","1"]]}'))  # fmt: skip
    replayer.finish()
    assert isinstance(replayer, ExecutionProcessor) and "1 book snapshots" in replayer.summary()
    assert [name for name, _ in out].count("execution_quotes") == 1


def test_sql_database_views_answer_like_the_lake_queries(session: Path) -> None:
    from marketpipe.execution.queries import EXECUTION_QUESTIONS, QUERIES
    from marketpipe.query import run_query

    db = session / "marketpipe.db"
    day = rows(db, "SELECT date_key FROM execution_snapshots LIMIT 1")[0][0]
    for view, query in (
        ("v_execution_mid_per_minute", "execution_mid_per_minute"),
        ("v_execution_preferred_exchange", "execution_preferred_exchange"),
    ):
        in_db = rows(db, f"SELECT * FROM {view} WHERE minute_key LIKE '{day}%'")
        in_lake = run_query(EXECUTION_QUESTIONS, str(session / "lake"), QUERIES[query], [day]).rows
        assert len(in_db) == len(in_lake) > 0
        for a, b in zip(in_db, in_lake, strict=True):
            assert [x if isinstance(x, str) else pytest.approx(x) for x in b] == list(a)
