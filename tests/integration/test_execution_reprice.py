"""``marketpipe replay --execution-notionals``: re-price captured books at new notionals in every store.

New notionals' rows appear with the values of a walk of the same book computed here independently (exact
fractions); rows of the other notionals stay as they were; running it again adds nothing; the raw
capture and the lake's ``execution_raw`` archive re-price alike, in one process or several.
"""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest

from marketpipe.cli import main
from marketpipe.config import RunConfig
from marketpipe.execution.archive import write_snapshot
from marketpipe.execution.processor import config_frame
from marketpipe.records import RawFrame
from marketpipe.replay import replay
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.timeutil import iso_to_us

CB_CONN = "rest:coinbase:/products/BTC-USD/book?level=2"
BN_CONN = "rest:binance:/api/v3/depth?symbol=BTCUSDT&limit=1000"
CAPTURED = (100000.0, 50000.0)
NEW = "250000,100000"
VALUES = ("avg_price", "worst_price", "base_filled", "quote_spent", "shortfall_quote", "mid",
          "slippage_bps", "deep_enough", "levels_used", "crossed")  # fmt: skip
Key = tuple[str, str, int, str, float]


def coinbase_body(poll: int) -> str:
    """A deep book: every notional fills, 250 000 walks further than 100 000."""
    mid = 60000 + 7 * poll
    bids = [[f"{mid - 0.5 - i * 1.25:.2f}", f"{0.4 + 0.05 * i:.8f}", 2] for i in range(40)]
    asks = [[f"{mid + 0.5 + i * 1.5:.2f}", f"{0.3 + 0.07 * i:.8f}", 3] for i in range(40)]
    return orjson.dumps({"bids": bids, "asks": asks, "sequence": 1000 + poll, "auction_mode": False,
                         "auction": None, "time": "2026-11-22T04:10:26.100000Z"}).decode()  # fmt: skip


def binance_body(poll: int) -> str:
    """About 180 000 USDT a side: 50 000 and 100 000 fill, 250 000 is not deep enough."""
    mid = 60010 + 3 * poll
    bids = [[f"{mid - 1 - i:.8f}", "0.30000000"] for i in range(10)]
    asks = [[f"{mid + 1 + i:.8f}", "0.30000000"] for i in range(10)]
    return orjson.dumps({"lastUpdateId": 5000 + poll, "bids": bids, "asks": asks}).decode()


def capture_frames() -> list[RawFrame]:
    """A run's config record, then two markets polled three times in each of two hours."""
    t0 = iso_to_us("2026-11-22T04:10:00Z")
    frames = [RawFrame("execution", "config", "in", t0, config_frame([100000, 50000]))]  # type: ignore[list-item]
    for poll in range(6):
        ts = t0 + (poll // 3) * 3_600_000_000 + (poll % 3) * 60_000_000
        frames.append(RawFrame("execution", CB_CONN, "in", ts + 1000, coinbase_body(poll)))
        frames.append(RawFrame("execution", BN_CONN, "in", ts + 2000, binance_body(poll)))
    return frames


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``raw/execution/<day>/<HH>.jsonl`` and, beside it, the same snapshots as ``lake/execution_raw``."""
    root = tmp_path_factory.mktemp("reprice-capture")
    for frame in capture_frames():
        hour = datetime.fromtimestamp(frame.received_ts / 1e6, UTC).strftime("%H")
        path = root / "raw" / "execution" / "2026-11-22" / f"{hour}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(frame.to_line() + b"\n")
        if frame.conn != "config":
            venue, market = ("coinbase", "BTC-USD") if "coinbase" in frame.conn else ("binance", "BTC-USDT")
            write_snapshot(str(root / "lake"), venue, market, frame, [100000, 50000])  # type: ignore[list-item]
    return root


# ------------------------------------------------------------------ an independent walk of the book
def walk(body: str, side: str, notional: float) -> dict[str, Any]:
    """The market order priced with exact fractions straight from the body's text (README semantics)."""
    book = orjson.loads(body)
    bids = sorted(((Fraction(p), Fraction(s)) for p, s, *_ in book["bids"]), reverse=True)
    asks = sorted((Fraction(p), Fraction(s)) for p, s, *_ in book["asks"])
    mid = (bids[0][0] + asks[0][0]) / 2
    remaining, base, spent, worst, used = Fraction(notional), Fraction(0), Fraction(0), None, 0
    for price, size in asks if side == "buy" else bids:
        if remaining <= 0:
            break
        take = min(size, remaining / price)
        base, spent, remaining = base + take, spent + take * price, remaining - take * price
        worst, used = price, used + 1
    avg = spent / base
    slippage = (avg - mid) / mid * 10_000 if side == "buy" else (mid - avg) / mid * 10_000
    return {"avg_price": float(avg), "worst_price": float(worst), "base_filled": float(base),  # type: ignore[arg-type]
            "quote_spent": float(spent), "shortfall_quote": float(remaining), "mid": float(mid),
            "slippage_bps": float(slippage), "deep_enough": int(remaining == 0), "levels_used": used,
            "crossed": 0}  # fmt: skip


# ----------------------------------------------------------------- the quotes as each store holds them
def _us(value: Any) -> int:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(value.timestamp()) * 1_000_000 + value.microsecond
    text = str(value)
    return iso_to_us(text if text.endswith("Z") else text.replace(" ", "T") + "Z")


def _number(value: Any) -> Any:
    if value in ("", None):
        return None
    return float(value) if isinstance(value, str) and not value.lstrip("-").isdigit() else int(value)


def stored_quotes(data: Path) -> dict[str, list[tuple[Key, dict[str, Any]]]]:
    """Store name -> every execution quote (duplicates kept, to be counted): key and values."""
    out: dict[str, list[tuple[Key, dict[str, Any]]]] = {}
    con = sqlite3.connect(data / "marketpipe.db")
    con.row_factory = sqlite3.Row
    try:
        db = [dict(r) for r in con.execute("SELECT * FROM execution_quotes")]
    finally:
        con.close()
    lake = LakeSink(str(data / "lake")).read_table("execution_quotes").to_pylist()
    text: list[dict[str, Any]] = []
    for path in sorted((data / "csv" / "execution_quotes").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            text += [{k: _number(v) if k in VALUES else v for k, v in r.items()} for r in csv.DictReader(f)]
    for store, rows in (("db", db), ("lake", lake), ("csv", text)):
        out[store] = [
            (
                (r["exchange"], r["market"], _us(r["received_ts"]), r["side"], float(r["notional"])),
                {k: r[k] for k in VALUES},
            )
            for r in rows
        ]
    return out


def by_notional(quotes: list[tuple[Key, dict[str, Any]]]) -> dict[float, dict[Key, dict[str, Any]]]:
    keys = [key for key, _ in quotes]
    assert len(keys) == len(set(keys)), "a quote is stored twice"
    out: dict[float, dict[Key, dict[str, Any]]] = {}
    for key, values in quotes:
        out.setdefault(key[4], {})[key] = values
    return out


def table_counts(data: Path) -> dict[str, int]:
    con = sqlite3.connect(data / "marketpipe.db")
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE name LIKE 'execution_%'"
                                           " AND type = 'table'")]  # fmt: skip
        return {n: con.execute(f"SELECT COUNT(*) FROM {n}").fetchone()[0] for n in names}
    finally:
        con.close()


def csv_bytes(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data / "csv").rglob("*.csv"))}


# ------------------------------------------------------------------------------------------- the tests
def test_reprice_adds_the_new_notionals_and_keeps_the_others_in_every_store(
    capture: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert main(["replay", str(capture / "raw"), "--data-dir", str(data)]) == 0
    before = {store: by_notional(q) for store, q in stored_quotes(data).items()}
    counts = table_counts(data)
    for store, notionals in before.items():
        assert sorted(notionals) == sorted(CAPTURED), store
        assert all(len(rows) == 12 * 2 for rows in notionals.values()), store  # 12 books x 2 sides

    assert main(["replay", str(capture / "raw"), "--data-dir", str(data), "--execution-notionals", NEW]) == 0
    after = {store: by_notional(q) for store, q in stored_quotes(data).items()}
    bodies = {(f.received_ts, f.conn): f.frame for f in capture_frames() if f.conn != "config"}
    for store, notionals in after.items():
        assert sorted(notionals) == [50000.0, 100000.0, 250000.0], store
        assert notionals[100000.0] == before[store][100000.0], store  # re-priced, already there: untouched
        assert notionals[50000.0] == before[store][50000.0], store  # not re-priced: untouched
        new = notionals[250000.0]
        assert len(new) == 24, store
        for (exchange, _, ts, side, notional), values in new.items():
            body = bodies[(ts, CB_CONN if exchange == "coinbase" else BN_CONN)]
            expected = walk(body, side, notional)
            assert values == {k: pytest.approx(v, rel=1e-12, abs=1e-9) for k, v in expected.items()}
        deep = {exchange: {v["deep_enough"] for k, v in new.items() if k[0] == exchange}
                for exchange in ("coinbase", "binance")}  # fmt: skip
        assert deep == {"coinbase": {1}, "binance": {0}}, store  # 250 000 is beyond Binance's 10 levels
    grown = table_counts(data)
    assert grown == {
        **counts,
        "execution_quotes": counts["execution_quotes"] + 24,
    }  # snapshots, dims: as were

    markers = sorted(p.relative_to(data / "csv").as_posix() for p in (data / "csv").rglob("*.unordered"))
    assert markers == [
        "execution_quotes/execution_quotes-2026-11-22.csv.unordered"
    ]  # rows added for past times
    stored = csv_bytes(data)
    assert main(["replay", str(capture / "raw"), "--data-dir", str(data), "--execution-notionals", NEW]) == 0
    assert main(["replay", str(capture / "raw"), "--data-dir", str(data)]) == 0  # and the plain replay
    assert table_counts(data) == grown and csv_bytes(data) == stored
    assert {store: by_notional(q) for store, q in stored_quotes(data).items()} == after


def test_the_lake_archive_and_parallel_processes_reprice_alike(capture: Path, tmp_path: Path) -> None:
    """``replay lake/execution_raw --execution-notionals`` (the AWS side's history), in one hour first,
    then whole; and the same re-pricing of the raw capture by two replay processes."""
    archive, raw = tmp_path / "from-archive", tmp_path / "from-raw"
    source = capture / "lake" / "execution_raw"
    assert main(["replay", str(source), "--data-dir", str(archive)]) == 0
    one_hour = next(source.glob("exchange=coinbase/dt=*/hour=05"))
    assert main(["replay", str(one_hour), "--data-dir", str(archive), "--execution-notionals", NEW]) == 0
    partial = by_notional(stored_quotes(archive)["csv"])
    assert len(partial[250000.0]) == 3 * 2  # three Coinbase books of hour 05 re-priced
    assert main(["replay", str(source), "--data-dir", str(archive), "--execution-notionals", NEW]) == 0
    assert main(["replay", str(source), "--data-dir", str(archive)]) == 0  # nothing twice

    assert main(["replay", str(capture / "raw"), "--data-dir", str(raw)]) == 0
    config = RunConfig(data_dir=raw, options={"opt_execution_notionals": NEW})
    replayers = replay([capture / "raw"], config, processes=2)
    assert (
        "re-priced at notionals 250000, 100000 (captured: 100000, 50000)" in replayers["execution"].summary()
    )
    for store, quotes in stored_quotes(raw).items():
        want = by_notional(quotes)
        assert sorted(want) == [50000.0, 100000.0, 250000.0]
        assert by_notional(stored_quotes(archive)[store]) == want, store
    assert table_counts(archive) == table_counts(raw)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "--execution-notionals: invalid notional 'abc': expected a number such as 100000"),
        ("250000,0", "--execution-notionals: invalid notional '0': must be positive"),
        ("-5", "--execution-notionals: invalid notional '-5': must be positive"),
        ("nan", "--execution-notionals: invalid notional 'nan': must be positive"),
        ("1e400", "--execution-notionals: invalid notional '1e400': too large"),
        (",", "--execution-notionals: no execution notionals configured"),
    ],
)
def test_invalid_notionals_are_one_error_line_and_exit_2_before_any_store_opens(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    code = main(
        ["replay", str(capture / "raw"), "--data-dir", str(tmp_path), f"--execution-notionals={value}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err == f"marketpipe: error: {message}\n"
    assert not any(tmp_path.iterdir())
