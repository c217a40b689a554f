"""``marketpipe status``: rows written through the real sinks, read back as a user would see them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from marketpipe.alerts.journal import AlertJournal, journal_path, read_journal
from marketpipe.alerts.message import AlertMessage
from marketpipe.cli import main
from marketpipe.liveness.checker import StateStore
from marketpipe.liveness.state import LivenessState, Observation, observe
from marketpipe.records import Row
from marketpipe.sinks.csv_sink import CsvSink
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.status import collect, render, to_json
from marketpipe.tables import TABLES, Kind, Table
from marketpipe.timeutil import now_us, us_to_iso

S = 1_000_000
DAY = 86_400 * S


def make_row(table: Table, i: int, received_us: int) -> Row:
    """A plausible, unique row of any table arriving at ``received_us``."""
    values: list[Any] = []
    for column in table.columns:
        if column.name == "orderbook_timestamp":
            values.append(datetime.fromtimestamp(received_us // S, UTC).isoformat())
        elif column.name == "window_start":
            values.append(received_us // (600 * S) * 600 * S)
        elif column.kind in (Kind.TS_US, Kind.TS_MS):
            values.append(received_us)
        elif column.kind is Kind.INT:
            values.append(i)
        elif column.kind is Kind.FLOAT:
            values.append(100.0 + i)
        elif column.name == "side":
            values.append("buy")
        else:
            values.append("BTC-USD" if column.name == "symbol" else "btc_mxn")
    return tuple(values)


@pytest.fixture
def stored(tmp_path: Path) -> dict[str, Any]:
    """Three tables written through every sink: 5 rows today and 3 yesterday each (one second apart)."""
    now = now_us()
    today_start = now // DAY * DAY
    if now - today_start < 60 * S:  # just after midnight: "today" would hold too little time
        pytest.skip("too close to midnight UTC")
    names = ("bitfinex_trades", "bitso_spreads", "binance_book_metrics")
    sinks = [
        CsvSink(tmp_path),
        SqlSink(f"sqlite:///{tmp_path / 'marketpipe.db'}"),
        LakeSink(str(tmp_path / "lake")),
    ]
    newest = now - 30 * S
    for name in names:
        table = TABLES[name]
        yesterday = [make_row(table, i, today_start - (100 - i) * S) for i in range(3)]
        today = [make_row(table, 10 + i, newest - (4 - i) * S) for i in range(5)]
        for sink in sinks:
            sink.write(table, yesterday + today)
    for sink in sinks:
        sink.close()
    return {"names": names, "newest": newest, "dir": tmp_path}


def test_status_shows_each_tables_newest_row_and_rows_today_per_store(
    stored: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--data-dir", str(stored["dir"])]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("TABLE"))
    assert header.split() == ["TABLE", "NEWEST", "ROW", "(UTC)", "AGE", "TODAY", "DB", "TODAY", "CSV",
                              "TODAY", "LAKE", "TOTAL", "DB"]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[lines.index(header) + 1 :] if line.strip()}
    newest = us_to_iso(stored["newest"])[:19].replace("T", " ") + "Z"
    for name in stored["names"]:
        cells = rows[name].split()
        assert cells[-4:] == ["5", "5", "5", "8"], rows[name]  # today: db, csv, lake; total in db
        if name != "bitso_spreads":  # bitso rows are dated by their whole second
            assert " ".join(cells[1:3]) == newest
            assert cells[3] in ("30s", "31s", "32s")
    # aligned columns: the right-aligned counts end in the same place on every line
    table_lines = [header, *(rows[n] for n in stored["names"])]
    assert len({len(line) for line in table_lines}) == 1
    assert len({line.index(" 5 ") for line in table_lines[1:]}) == 1
    assert "LIVENESS  no state" in out and "LAST ALERTS  none recorded" in out


def test_status_json_has_stable_keys_and_counts_equal_to_what_is_stored(
    stored: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir: Path = stored["dir"]
    assert main(["status", "--data-dir", str(data_dir), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert set(doc) == {"at", "day", "data_dir", "db", "lake", "empty", "tables", "raw", "liveness", "alerts",
                        "errors"}  # fmt: skip
    assert doc["empty"] is False and doc["errors"] == [] and doc["liveness"] is None and doc["alerts"] == []
    tables = {t["table"]: t for t in doc["tables"]}
    assert list(tables) == list(stored["names"])  # catalog order
    with sqlite3.connect(data_dir / "marketpipe.db") as db:
        for name in stored["names"]:
            t = tables[name]
            assert set(t) == {
                "table",
                "newest",
                "newest_age_s",
                "rows_today",
                "rows_total",
                "newest_by_store",
            }
            total = db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
            assert t["rows_total"] == {"db": total, "csv": None, "lake": None} and total == 8
            assert t["rows_today"] == {"db": 5, "csv": 5, "lake": 5}
            assert 29 <= t["newest_age_s"] < 60
            if name != "bitso_spreads":
                assert t["newest"] == us_to_iso(stored["newest"])
                assert t["newest_by_store"] == {"db": t["newest"], "csv": t["newest"], "lake": t["newest"]}


def test_an_empty_data_dir_says_so_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "nothing-here"
    assert main(["status", "--data-dir", str(empty)]) == 0
    assert "nothing stored yet" in capsys.readouterr().out
    assert not empty.exists()  # reading created nothing
    assert main(["status", "--data-dir", str(empty), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["empty"] is True and doc["tables"] == [] and doc["raw"] == [] and doc["alerts"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--db", "sqlite:///{dir}/missing.db"], "does not exist"),
        (["--db", "mysql+pymysql://u:secret@127.0.0.1:1/x"], "cannot connect"),
        (["--alerts", "-1"], "--alerts must be 0 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{dir}", str(tmp_path)) for a in argv]
    assert main(["status", "--data-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert "marketpipe: error: " in err and message in err and "secret" not in err and "Traceback" not in err


def test_an_unreadable_part_is_listed_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "check-state.json").write_text("{not json")
    assert main(["status", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "error: cannot read liveness: state file" in out


def test_liveness_state_and_last_alerts_newest_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = now_us()
    state = observe(LivenessState(), Observation(now - 600 * S, True), "host", 60)
    down = Observation(now - 120 * S, False, "bitfinex stream stopped", stopped_since_us=now - 180 * S)
    state = observe(state, down, "host", 60)
    StateStore(tmp_path / "check-state.json").save(state)
    journal = AlertJournal(journal_path(tmp_path), "bitso")
    for i in range(3):
        journal.deliver(AlertMessage(f"ALERT bitso btc_mxn spread {i}", {}, f"k{i}", True))
    journal.deliver(AlertMessage("NOTICE bitso btc_mxn back below", {}, "k3", False))
    with open(journal_path(tmp_path), "ab") as f:
        f.write(b"{damaged\n")

    report = collect(tmp_path, alerts=5)
    doc = to_json(report)
    assert doc["liveness"]["status"] == "failing" and doc["liveness"]["what"] == "bitfinex stream stopped"
    assert doc["liveness"]["last_message"]["kind"] == "failure"
    assert [a["source"] for a in doc["alerts"]] == ["liveness", "bitso", "bitso", "bitso", "bitso"]
    last = doc["alerts"][-1]
    assert last == {
        "at": last["at"],
        "source": "bitso",
        "kind": "notice",
        "text": "NOTICE bitso btc_mxn back below",
        "delivery": None,
    }
    assert doc["alerts"][0]["delivery"] == "pending"  # the checker had not sent it yet
    text = render(report)
    assert "failure (pending)" in text
    assert "LIVENESS  FAILING since " in text and "bitfinex stream stopped" in text
    assert "LAST ALERTS (5)" in text and text.index("spread 1") < text.index("back below")
    assert read_journal(journal_path(tmp_path), 2)[-1]["text"] == "NOTICE bitso btc_mxn back below"
    assert main(["status", "--data-dir", str(tmp_path), "--alerts", "0", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["alerts"] == []


def test_raw_capture_reference_tables_and_re_priced_csv_files(tmp_path: Path) -> None:
    """The raw capture per exchange; reference rows by their total only; an ``.unordered`` CSV day file
    (rows added below the watermark, as a re-pricing does) still gives its newest row."""
    from marketpipe.records import RawFrame
    from marketpipe.sinks.raw_capture import RawCaptureWriter

    now = now_us()
    capture = RawCaptureWriter(tmp_path)
    capture.write(RawFrame("bitfinex", "c1", "in", now - 5 * S, '[1,"hb"]'))
    capture.close()
    dims = TABLES["execution_dim_exchange"]
    quotes = TABLES["execution_quotes"]
    sinks = [CsvSink(tmp_path), SqlSink(f"sqlite:///{tmp_path / 'marketpipe.db'}")]
    for sink in sinks:
        sink.write(
            dims, [(venue, venue.title(), "/book", "full", "10/s", 0) for venue in ("binance", "coinbase")]
        )
        sink.write(quotes, [make_row(quotes, 1, now - 10 * S)])
        sink.close()
    day_file = next((tmp_path / "csv" / "execution_quotes").glob("*.csv"))
    with open(day_file, "a", newline="") as f:  # a re-priced row of an earlier time, after the newest
        row = make_row(quotes, 2, now - 60 * S)
        kinds = [c.kind for c in quotes.columns]
        f.write(
            ",".join(us_to_iso(v) if k is Kind.TS_US else str(v) for v, k in zip(row, kinds, strict=True))
        )
        f.write("\r\n,,,damaged\r\n")
    day_file.with_name(day_file.name + ".unordered").touch()

    doc = to_json(collect(tmp_path))
    tables = {t["table"]: t for t in doc["tables"]}
    assert tables["execution_dim_exchange"]["rows_total"] == {"db": 2, "csv": 2, "lake": None}
    assert tables["execution_dim_exchange"]["newest"] is None
    assert tables["execution_dim_exchange"]["rows_today"] == {"db": None, "csv": None, "lake": None}
    assert tables["execution_quotes"]["newest_by_store"]["csv"] == us_to_iso(now - 10 * S)
    assert tables["execution_quotes"]["rows_today"]["csv"] == 3  # lines: a damaged one counts too
    assert doc["raw"] == [
        {
            "exchange": "bitfinex",
            "newest": us_to_iso(now - 5 * S),
            "newest_age_s": doc["raw"][0]["newest_age_s"],
            "files_today": 1,
            "bytes_today": doc["raw"][0]["bytes_today"],
        }
    ]
    text = render(collect(tmp_path))
    raw_line = next(line for line in text.splitlines() if line.startswith("bitfinex "))
    assert raw_line.endswith(f"1 file(s), {doc['raw'][0]['bytes_today']} B")
