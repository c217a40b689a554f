"""End to end on generated data: quarantine vs the generator's fault list, every question vs an
independent plain-Python computation over the raw CSVs, idempotent re-runs, day-by-day == backfill."""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from marketpipe.errors import ConfigError
from marketpipe.etl import cli
from marketpipe.etl.generator import FAULTS_FILE, GeneratorConfig, generate
from marketpipe.etl.queries import LEDGER_QUESTIONS, load_queries
from marketpipe.etl.runner import EtlConfig, run_etl
from marketpipe.query import register as register_query
from marketpipe.query import run_query

START = date(2020, 3, 1)
DAYS = 75
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Oracle:
    """The raw CSVs minus the known-bad lines, parsed without any marketpipe code."""

    users: set[str] = field(default_factory=set)
    deposits: list[dict[str, object]] = field(default_factory=list)
    withdrawals: list[dict[str, object]] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)
    faults: set[tuple[str, int, str]] = field(default_factory=set)


def _ts(text: str) -> datetime:
    assert text.endswith("+00")
    body = text[:-3]
    return datetime.strptime(body, "%Y-%m-%d %H:%M:%S.%f" if "." in body else "%Y-%m-%d %H:%M:%S")


def build_oracle(folder: Path) -> Oracle:
    oracle = Oracle()
    with open(folder / FAULTS_FILE, newline="") as f:
        oracle.faults = {(r["source"], int(r["line"]), r["reason"]) for r in csv.DictReader(f)}
    bad = {(s, n) for s, n, _ in oracle.faults}
    targets = {
        "user": None,
        "deposit": oracle.deposits,
        "withdrawal": oracle.withdrawals,
        "event": oracle.events,
    }
    for source, out in targets.items():
        with open(folder / f"{source}.csv", newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if (source, line) in bad:
                    continue
                if out is None:
                    oracle.users.add(row["user_id"].strip())
                    continue
                rec: dict[str, object] = {
                    "id": int(row["id"]),
                    "ts": _ts(row["event_timestamp"]),
                    "day": row["event_timestamp"][:10],
                    "user": row["user_id"].strip(),
                }
                if source == "event":
                    rec["name"] = row["event_name"]
                else:
                    rec["amount"] = Decimal(row["amount"])
                    rec["currency"] = row["currency"].strip().lower()
                    rec["status"] = row["tx_status"]
                out.append(rec)
    return oracle


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    generate(str(folder), GeneratorConfig(users=400, start=START, days=DAYS, seed=11, dirty_rate=0.004))
    return folder


@pytest.fixture(scope="module")
def oracle(raw: Path) -> Oracle:
    return build_oracle(raw)


def _config(raw: Path, out: Path, start: date | None = None, end: date | None = None) -> EtlConfig:
    return EtlConfig(
        input_uri=str(raw),
        lake_uri=str(out / "lake"),
        quarantine_uri=str(out / "ledger" / "quarantine"),
        csv_uri=str(out / "csv" / "ledger"),
        start=start,
        end=end,
    )


@pytest.fixture(scope="module")
def backfill(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("backfill")
    summary = run_etl(_config(raw, out))
    return out, summary


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _days(oracle: Oracle) -> list[str]:
    return sorted({str(r["day"]) for r in oracle.deposits + oracle.withdrawals + oracle.events})


def _ask(out: Path, name: str, **params: str) -> list[tuple[object, ...]]:
    spec = LEDGER_QUESTIONS.queries[name]
    return run_query(LEDGER_QUESTIONS, str(out / "lake"), spec, spec.bind(params)).rows


# ---------------------------------------------------------------- quarantine and counts


def test_quarantine_matches_the_generators_fault_list(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, summary = backfill
    found = set()
    for path in (out / "ledger" / "quarantine").rglob("*.csv"):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                found.add((path.stem, int(row["line"]), row["reason"]))
    assert found == oracle.faults
    expected = Counter((s, r) for s, _, r in oracle.faults)
    got = Counter({(s, r): n for s, reasons in summary.quarantined.items() for r, n in reasons.items()})
    assert got == expected
    assert summary.quarantined_total == len(oracle.faults)
    # every rule the generator knows is exercised
    assert {r for _, r in expected} >= {
        "bad_timestamp", "unknown_user", "negative_amount", "bad_amount", "duplicate_id", "bad_id",
        "bad_currency", "bad_status", "bad_event_name", "malformed_row",
    }  # fmt: skip


def test_quarantine_file_keeps_the_original_values(backfill: tuple[Path, object], raw: Path) -> None:
    out, _ = backfill
    with open(raw / "deposit.csv", newline="") as f:
        lines = {n: row for n, row in enumerate(csv.reader(f), start=1)}
    checked = 0
    for path in (out / "ledger" / "quarantine").rglob("deposit.csv"):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["reason"] != "malformed_row":
                    original = lines[int(row["line"])]
                    assert [row[c] for c in ("id", "event_timestamp", "user_id", "amount")] == original[:4]
                    checked += 1
    assert checked > 0


def test_fact_rows_equal_valid_input_rows_per_day(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, summary = backfill
    per_day = Counter(str(r["day"]) for r in oracle.deposits + oracle.withdrawals)
    for day in _days(oracle):
        table = pq.read_table(out / "lake" / "ledger" / "fact_transaction" / f"dt={day}")
        assert table.num_rows == per_day[day]
    assert summary.rows_written["fact_transaction"] == len(oracle.deposits) + len(oracle.withdrawals)
    assert summary.rows_written["fact_event"] == len(oracle.events)
    assert summary.rows_written["dim_user"] == len(oracle.users)


def test_csv_output_values(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    dep = oracle.deposits[0]
    path = out / "csv" / "ledger" / "fact_transaction" / f"fact_transaction-{dep['day']}.csv"
    with open(path, newline="") as f:
        rows = {(r["transaction_type"], int(r["transaction_id"])): r for r in csv.DictReader(f)}
    row = rows[("deposit", dep["id"])]
    assert Decimal(row["amount"]) == dep["amount"]
    assert row["user_id"] == dep["user"]
    assert row["event_ts"] == dep["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # type: ignore[attr-defined]
    with open(out / "csv" / "ledger" / "dim_user.csv", newline="") as f:
        assert {r["user_id"] for r in csv.DictReader(f)} == oracle.users


# ---------------------------------------------------------------- the questions


def test_users_active_on_day(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    for day in _days(oracle)[::7]:
        expected = sorted({str(r["user"]) for r in oracle.deposits + oracle.withdrawals if r["day"] == day})
        assert [r[0] for r in _ask(out, "users_active_on_day", day=day)] == expected


def test_users_never_deposited(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    deposited = {r["user"] for r in oracle.deposits if r["status"] == "complete"}
    expected = sorted(oracle.users - deposited)  # type: ignore[operator]
    assert [r[0] for r in _ask(out, "users_never_deposited")] == expected


def test_users_with_more_than_5_deposits(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    for as_of in _days(oracle)[20::15]:
        counts = Counter(
            r["user"] for r in oracle.deposits if r["status"] == "complete" and r["day"] <= as_of
        )  # type: ignore[operator]
        expected = {u: n for u, n in counts.items() if n > 5}
        got = {r[0]: r[1] for r in _ask(out, "users_with_more_than_5_deposits", as_of=as_of)}
        assert got == expected
    assert expected, "the data should have some heavy depositors"


def test_last_login_per_user(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    last: dict[str, datetime] = {}
    for r in oracle.events:
        if r["name"] == "login":
            u, ts = str(r["user"]), r["ts"]
            assert isinstance(ts, datetime)
            last[u] = max(last.get(u, ts), ts)
    got = {r[0]: r[1] for r in _ask(out, "last_login_per_user")}
    assert got == {u: last.get(u) for u in oracle.users}


def test_logins_of_user_between(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    busiest = Counter(r["user"] for r in oracle.events if r["name"] == "login").most_common(1)[0][0]
    start, end = (START + timedelta(days=10)).isoformat(), (START + timedelta(days=40)).isoformat()
    expected = sorted(
        (r["ts"], r["id"])
        for r in oracle.events
        if r["user"] == busiest and r["name"] == "login" and start <= r["day"] <= end  # type: ignore[operator]
    )
    got = _ask(out, "logins_of_user_between", user_id=str(busiest), start=start, end=end)
    assert [(r[1], r[0]) for r in got] == expected
    assert expected


def test_currencies_deposited_and_withdrawn_on_day(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    for day in _days(oracle)[::9]:
        for name, rows in (("currencies_deposited_on_day", oracle.deposits),
                           ("currencies_withdrawn_on_day", oracle.withdrawals)):  # fmt: skip
            expected = sorted({r["currency"] for r in rows if r["day"] == day and r["status"] == "complete"})
            assert [r[0] for r in _ask(out, name, day=day)] == expected


def test_total_deposited_on_day(backfill: tuple[Path, object], oracle: Oracle) -> None:
    out, _ = backfill
    checked = 0
    for day in _days(oracle)[::5]:
        for currency in ("mxn", "btc", "zzz"):
            hits = [
                r
                for r in oracle.deposits
                if r["day"] == day and r["currency"] == currency and r["status"] == "complete"
            ]
            total = sum((r["amount"] for r in hits), Decimal(0))  # type: ignore[misc]
            [(count, amount)] = _ask(out, "total_deposited_on_day", currency=currency.upper(), day=day)
            assert (count, amount) == (len(hits), total)
            checked += len(hits)
    assert checked > 0


# ---------------------------------------------------------------- idempotency


def test_rerun_is_byte_identical(raw: Path, tmp_path: Path) -> None:
    run_etl(_config(raw, tmp_path))
    first = _digest(tmp_path)
    run_etl(_config(raw, tmp_path))
    assert _digest(tmp_path) == first
    # re-running one day inside the range changes nothing either
    run_etl(_config(raw, tmp_path, START + timedelta(days=30), START + timedelta(days=30)))
    assert _digest(tmp_path) == first


def test_day_by_day_equals_backfill(raw: Path, backfill: tuple[Path, object], tmp_path: Path) -> None:
    out, summary = backfill
    assert summary.start is not None and summary.end is not None  # type: ignore[attr-defined]
    day = summary.end  # type: ignore[attr-defined]
    while day >= summary.start:  # type: ignore[attr-defined]  # newest first: order must not matter
        run_etl(_config(raw, tmp_path, day, day))
        day -= timedelta(days=1)
    assert _digest(tmp_path) == _digest(out)


# ---------------------------------------------------------------- CLI and Lambda


def _cli(*argv: str) -> int:
    """What ``marketpipe`` does: argparse + register + handler, ConfigError -> exit 2."""
    from marketpipe.cli import query_questions

    parser = argparse.ArgumentParser(prog="marketpipe")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli.register(subparsers)
    register_query(subparsers, query_questions)
    args = parser.parse_args(list(argv))
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2


def test_cli_generate_etl_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, data = tmp_path / "raw", tmp_path / "data"
    assert _cli("ledger-generate", "--out", str(raw), "--users", "60", "--days", "20", "--seed", "3") == 0
    assert "deliberately bad" in capsys.readouterr().out
    assert _cli("etl", "--input", str(raw), "--data-dir", str(data), "--no-progress") == 0
    text = capsys.readouterr().out
    assert "ledger ETL 2020-01-" in text and "quarantined:" in text
    assert _cli("etl", "--input", str(raw), "--data-dir", str(data), "--date", "2020-01-05", "--json") == 0
    assert '"days": 1' in capsys.readouterr().out
    assert _cli("query", "users_never_deposited", "--data-dir", str(data)) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0] == "user_id" and table.rstrip().endswith("rows)")
    assert _cli("query", "total_deposited_on_day", "--data-dir", str(data), "--param", "currency=mxn",
                "--param", "day=2020-01-10", "--format", "json") == 0  # fmt: skip
    assert '"total_amount"' in capsys.readouterr().out
    assert _cli("query", "currencies_deposited_on_day", "--lake", str(data / "lake"), "--param",
                "day=2020-01-10", "--format", "csv") == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("currency_code\n")
    assert _cli("query", "--list") == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in load_queries())
    assert _cli("query", "users_active_on_day", "--sql") == 0
    assert "fact_daily_user_activity" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("query", "nope"), "unknown query"),
        (("query",), "give a query name"),
        (("query", "users_active_on_day"), "missing --param day"),
        (("query", "users_active_on_day", "--param", "day=2020-02-31"), "expected a date"),
        (("query", "users_active_on_day", "--param", "day=2020-01-01", "--param", "x=1"), "unknown param"),
        (("query", "users_active_on_day", "--param", "day"), "expected KEY=VALUE"),
        (("query", "total_deposited_on_day", "--param", "currency=m'x", "--param", "day=2020-01-01"),
         "expected a currency"),
        (("query", "logins_of_user_between", "--param", "user_id=a b", "--param", "start=2020-01-01",
          "--param", "end=2020-01-02"), "expected a user id"),
        (("etl", "--input", "/nonexistent/ledger"), "does not exist"),
        (("etl", "--input", ".", "--date", "2020-1-1"), "invalid date"),
        (("ledger-generate", "--out", "/tmp/x", "--users", "0"), "--users"),
    ],
)  # fmt: skip
def test_cli_errors_exit_2(argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(*argv) == 2
    assert message in capsys.readouterr().out


def test_cli_query_before_etl_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("query", "users_never_deposited", "--data-dir", str(tmp_path)) == 2
    assert "run `marketpipe etl` first" in capsys.readouterr().out


def test_lambda_handler_runs_the_scheduled_day(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(
        "ledger_handler", REPO / "functions" / "ledger_etl" / "handler.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("LEDGER_RAW_URI", str(raw))
    monkeypatch.setenv("LEDGER_LAKE_URI", str(tmp_path / "lake"))
    monkeypatch.setenv("LEDGER_QUARANTINE_URI", str(tmp_path / "quarantine"))
    monkeypatch.setenv("LEDGER_LOOKBACK_DAYS", "1")
    event = {"detail-type": "Scheduled Event", "source": "aws.events", "time": "2020-03-11T01:30:00Z"}
    summary = module.handler(event, None)
    assert (summary["start"], summary["end"], summary["days"]) == ("2020-03-09", "2020-03-10", 2)
    assert (
        tmp_path / "lake" / "ledger" / "fact_transaction" / "dt=2020-03-10" / "part-00000.parquet"
    ).exists()
    assert not (tmp_path / "lake" / "ledger" / "fact_transaction" / "dt=2020-03-11").exists()
