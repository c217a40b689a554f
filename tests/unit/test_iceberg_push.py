"""``marketpipe lake push``: a local Parquet lake into Iceberg tables, every row exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pyiceberg")

from marketpipe.cli import main
from marketpipe.sinks.iceberg_sink import IcebergSink
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.tables.bitfinex import BITFINEX_QUOTES, BITFINEX_TABLES, BITFINEX_TRADES

DAY_US = 86_400 * 1_000_000
T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z: the rows below span two UTC days


def quotes() -> list[tuple[object, ...]]:
    return [
        (symbol, None, T0 + i * 60_000_000, i, "bid", 100.0 + i, 1, 0.5, "add")
        for symbol in ("BTC-USD", "ETH-USD")
        for i in range(200)  # 200 minutes: across midnight UTC
    ]


def trades() -> list[tuple[object, ...]]:
    return [("BTC-USD", 7 + i, T0 + i, 50_000.0, 0.01, "buy", T0 + i + 5) for i in range(3)]


@pytest.fixture
def local_lake(tmp_path: Path) -> Path:
    lake = LakeSink(str(tmp_path / "data" / "lake"))
    lake.write(BITFINEX_QUOTES, quotes())
    lake.write(BITFINEX_TRADES, trades())
    lake.close()
    return tmp_path / "data"


def stored(uri: str, name: str) -> list[dict[str, object]]:
    sink = IcebergSink(uri, BITFINEX_TABLES)
    rows = sink.catalog.load_table(("marketpipe", name)).scan().to_arrow().to_pylist()
    return sorted(rows, key=repr)


def test_push_copies_every_row_once_and_again_adds_nothing(
    local_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'catalog.db'}?warehouse=file://{tmp_path / 'warehouse'}"
    # the AWS pipeline already holds some of these rows (the first 50 BTC-USD quotes)
    aws = IcebergSink(uri, BITFINEX_TABLES)
    aws.write_at("bitfinex:slot-000", 1, BITFINEX_QUOTES, quotes()[:50])
    aws.flush()

    assert main(["lake", "push", "--to", uri, "--data-dir", str(local_lake)]) == 0
    out = capsys.readouterr().out
    assert "5 table-symbol-days, 403 rows read, 353 appended, 50 already there" in out
    expected = LakeSink(str(local_lake / "lake"))
    for table in (BITFINEX_QUOTES, BITFINEX_TRADES):
        local_rows = sorted(expected.read_table(table.name).to_pylist(), key=repr)
        assert stored(uri, table.name) == local_rows, table.name

    assert main(["lake", "push", "--to", uri, "--data-dir", str(local_lake), "--symbols", "ETH-USD"]) == 0
    assert "2 table-symbol-days, 200 rows read, 0 appended, 200 already there" in capsys.readouterr().out
    assert len(stored(uri, BITFINEX_QUOTES.name)) == 400


def test_push_refuses_tables_that_are_not_iceberg_tables(
    local_lake: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'c.db'}?warehouse=file://{tmp_path / 'w'}"
    argv = ["lake", "push", "--to", uri, "--data-dir", str(local_lake), "--tables"]
    assert main([*argv, "bitso_spreads"]) == 2
    assert "bitso_spreads is not an Iceberg table" in capsys.readouterr().err
    assert main([*argv, "nope"]) == 2
    assert "nope is no table" in capsys.readouterr().err
    assert main(["lake", "push", "--to", "hive://x", "--data-dir", str(local_lake)]) == 2
    assert "expected glue" in capsys.readouterr().err
