"""Loader rules: the exact input shape loads unchanged; every quarantine rule with its reason."""

from __future__ import annotations

import gzip
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from marketpipe.errors import ConfigError
from marketpipe.etl.loader import (
    BAD_AMOUNT,
    NEGATIVE_AMOUNT,
    load_snapshot,
    parse_amount,
    parse_timestamp_us,
)

U1, U2 = "17b0ae6b8e4bd2f9c62f8e0d3a4d6b2c", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def _write(folder: Path, **files: str) -> Path:
    defaults = {
        "user": f"user_id\n{U1}\n{U2}\n",
        "deposit": "id,event_timestamp,user_id,amount,currency,tx_status\n",
        "withdrawal": "id,event_timestamp,user_id,amount,interface,currency,tx_status\n",
        "event": "id,event_timestamp,user_id,event_name\n",
    }
    defaults.update(files)
    for name, text in defaults.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


def test_timestamp_shape_from_the_issue() -> None:
    assert parse_timestamp_us("2020-01-10 14:11:05.63+00") == 1578665465630000
    assert parse_timestamp_us("2020-01-10 14:11:05+00") == 1578665465000000
    assert parse_timestamp_us("2020-01-10T08:11:05.123456-06:00") == 1578665465123456
    assert parse_timestamp_us("2020-01-10 14:11:05") == 1578665465000000  # no offset: UTC
    for bad in ("", "2020-13-45 25:61:00+00", "2020-02-30 10:00:00+00", "10/01/2020 14:11", "now"):
        assert parse_timestamp_us(bad) is None


def test_amounts() -> None:
    assert parse_amount("12.50") == (Decimal("12.50"), None)
    assert parse_amount("-0") == (Decimal("0"), None)
    assert parse_amount(".5") == (Decimal("0.5"), None)
    assert parse_amount("-1.5") == (None, NEGATIVE_AMOUNT)
    for bad in ("", "abc", "1,000.50", "NaN", "1e5", "12.3.4", "-", ".", "1" * 21, "0." + "1" * 19):
        assert parse_amount(bad) == (None, BAD_AMOUNT), bad


def test_exact_input_shape_loads_unchanged(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        deposit="id,event_timestamp,user_id,amount,currency,tx_status\n"
        f"1,2020-01-10 14:11:05.63+00,{U1},100.25,mxn,complete\n",
        withdrawal="id,event_timestamp,user_id,amount,interface,currency,tx_status\n"
        f"7,2020-01-10 20:00:00+00,{U2},0.00100000,app,btc,pending\n",
        event=f"id,event_timestamp,user_id,event_name\n3,2020-01-09 23:59:59.999999+00,{U1},login\n",
    )
    snap = load_snapshot(str(folder))
    assert snap.quarantine == []
    assert snap.users == tuple(sorted((U1, U2)))
    [dep, wd] = snap.transactions
    assert (dep.transaction_id, dep.user_id, dep.amount, dep.currency, dep.tx_status, dep.day) == (
        1, U1, Decimal("100.25"), "mxn", "complete", date(2020, 1, 10),
    )  # fmt: skip
    assert dep.event_us == 1578665465630000 and dep.interface is None
    assert (wd.transaction_type, wd.interface, wd.amount, wd.currency) == (
        "withdrawal",
        "app",
        Decimal("0.001"),
        "btc",
    )
    assert snap.events[0].day == date(2020, 1, 9)
    assert snap.rows_read == {"user": 2, "deposit": 1, "withdrawal": 1, "event": 1}
    assert snap.data_days() == (date(2020, 1, 9), date(2020, 1, 10))


def test_every_rule_with_its_reason_and_line(tmp_path: Path) -> None:
    ts = "2020-01-10 14:11:05.63+00"
    deposit = "\n".join([
        "id,event_timestamp,user_id,amount,currency,tx_status",
        f"1,{ts},{U1},10,mxn,complete",           # 2 ok
        f"x,{ts},{U1},10,mxn,complete",           # 3 bad_id
        f"3,yesterday,{U1},10,mxn,complete",      # 4 bad_timestamp
        f"4,{ts},nobody,10,mxn,complete",         # 5 unknown_user
        f"5,{ts},{U1},abc,mxn,complete",          # 6 bad_amount
        f"6,{ts},{U1},-3.5,mxn,complete",         # 7 negative_amount
        f"7,{ts},{U1},10,,complete",              # 8 bad_currency
        f"8,{ts},{U1},10,mxn,",                   # 9 bad_status
        f"1,{ts},{U1},10,mxn,complete",           # 10 duplicate (identical)
        f"1,{ts},{U2},99,mxn,complete",           # 11 duplicate (conflicting)
        f"9,{ts},{U1},10,mxn,complete,extra",     # 12 malformed_row
        f"10,1999-12-31 23:00:00+00,{U1},10,mxn,complete",  # 13 outside the calendar
        f"11,{ts}, {U1} ,10,BTC,Complete",        # 14 ok after normalisation
        "",
    ])  # fmt: skip
    event = f"id,event_timestamp,user_id,event_name\n1,{ts},{U1},\n2,{ts},{U1},login\n2,{ts},{U1},login\n"
    user = f"user_id\n{U1}\n{U2}\n{U1}\n \n"
    snap = load_snapshot(str(_write(tmp_path, deposit=deposit, event=event, user=user)))
    got = {(q.source, q.line): q.reason for q in snap.quarantine}
    assert got == {
        ("deposit", 3): "bad_id",
        ("deposit", 4): "bad_timestamp",
        ("deposit", 5): "unknown_user",
        ("deposit", 6): "bad_amount",
        ("deposit", 7): "negative_amount",
        ("deposit", 8): "bad_currency",
        ("deposit", 9): "bad_status",
        ("deposit", 10): "duplicate_id",
        ("deposit", 11): "duplicate_id",
        ("deposit", 12): "malformed_row",
        ("deposit", 13): "bad_timestamp",
        ("event", 2): "bad_event_name",
        ("event", 4): "duplicate_id",
        ("user", 4): "duplicate_id",
        ("user", 5): "bad_user_id",
    }
    details = {(q.source, q.line): q.detail for q in snap.quarantine}
    assert details[("deposit", 10)] == "id 1 identical to line 2"
    assert details[("deposit", 11)] == "id 1 conflicts with line 2"
    by_line = {(q.source, q.line): q for q in snap.quarantine}
    assert by_line[("deposit", 4)].day is None and by_line[("deposit", 5)].day == date(2020, 1, 10)
    assert by_line[("deposit", 6)].values == ("5", ts, U1, "abc", "mxn", "complete")
    assert [(t.transaction_id, t.currency, t.tx_status, t.user_id) for t in snap.transactions] == [
        (1, "mxn", "complete", U1),
        (11, "btc", "complete", U1),
    ]
    assert snap.rows_read["deposit"] == 13


def test_header_order_free_extra_columns_bom_gzip_and_prefixed_names(tmp_path: Path) -> None:
    (tmp_path / "user_id_sample_data.csv").write_text(f"\ufeffuser_id\n{U1}\n")
    (tmp_path / "deposit_sample_data.csv").write_text(
        "tx_status,currency,amount,user_id,event_timestamp,id,note\n"
        f"complete,mxn,5,{U1},2020-01-10 00:00:00+00,1,x\n"
    )
    with gzip.open(tmp_path / "withdrawals_sample_data.csv.gz", "wt") as f:
        f.write("id,event_timestamp,user_id,amount,interface,currency,tx_status\n")
    (tmp_path / "event_sample_data.csv").write_text("ID,Event_Timestamp,User_ID,Event_Name\n")
    snap = load_snapshot(str(tmp_path))
    assert snap.quarantine == [] and len(snap.transactions) == 1 and snap.transactions[0].amount == 5


def test_input_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_snapshot(str(tmp_path / "missing"))
    _write(tmp_path)
    (tmp_path / "event.csv").unlink()
    with pytest.raises(ConfigError, match=r"no event\.csv"):
        load_snapshot(str(tmp_path))
    (tmp_path / "event_a.csv").write_text("x\n")
    (tmp_path / "event_b.csv").write_text("x\n")
    with pytest.raises(ConfigError, match="several event files"):
        load_snapshot(str(tmp_path))
    (tmp_path / "event_b.csv").unlink()
    with pytest.raises(ConfigError, match="missing column"):
        load_snapshot(str(tmp_path))
    (tmp_path / "event_a.csv").write_text("")
    with pytest.raises(ConfigError, match="empty file"):
        load_snapshot(str(tmp_path))
