"""The model is consistent, and the ERD, Glue types and Arrow schemas all derive from it."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from marketpipe.etl import erd
from marketpipe.etl.model import (
    TABLES,
    ColumnType,
    ModelColumn,
    ModelTable,
    TableKind,
    validate_model,
)
from marketpipe.etl.transform import DailyActivity, dim_currency_table, dim_date_table
from marketpipe.query import plain_decimal


def test_model_references_are_valid() -> None:
    validate_model()
    assert {t.name for t in TABLES} == {
        "dim_date", "dim_user", "dim_currency", "fact_transaction", "fact_event", "fact_daily_user_activity",
    }  # fmt: skip


def test_bad_models_are_rejected() -> None:
    col = ModelColumn("a", ColumnType.INT, "")
    with pytest.raises(ValueError, match="duplicate"):
        ModelTable("t", TableKind.DIMENSION, "", (col, col), ("a",), False)
    with pytest.raises(ValueError, match="key column"):
        ModelTable("t", TableKind.DIMENSION, "", (col,), ("b",), False)
    with pytest.raises(ValueError, match="reserved"):
        ModelTable("t", TableKind.DIMENSION, "", (ModelColumn("dt", ColumnType.STRING, ""),), ("dt",), False)
    dim = ModelTable("d", TableKind.DIMENSION, "", (col,), ("a",), False)
    fk = ModelTable(
        "f", TableKind.FACT, "", (ModelColumn("x", ColumnType.STRING, "", references="d.a"),), (), True
    )
    with pytest.raises(ValueError, match="type differs"):
        validate_model((dim, fk))
    with pytest.raises(ValueError, match="bad reference"):
        validate_model((fk,))
    with pytest.raises(KeyError):
        dim.column("zzz")


def test_types_map_to_arrow_and_glue() -> None:
    assert ColumnType.AMOUNT.glue == "decimal(38,18)" and ColumnType.AMOUNT.arrow == pa.decimal128(38, 18)
    assert ColumnType.TIMESTAMP.arrow == pa.timestamp("us")  # tz-naive: TIMESTAMP in DuckDB and Athena
    for table in TABLES:
        assert table.arrow_schema.names == list(table.column_names)


def test_dim_date_is_a_fixed_calendar() -> None:
    table = dim_date_table()
    rows = {r["date_key"]: r for r in table.to_pylist()}
    assert len(rows) == (date(2049, 12, 31) - date(2000, 1, 1)).days + 1
    jan10 = rows[20200110]
    assert (jan10["calendar_date"], jan10["quarter"], jan10["day_name"], jan10["day_of_week"]) == (
        date(2020, 1, 10), 1, "Friday", 5,
    )  # fmt: skip
    assert rows[20200111]["is_weekend"] and rows[20201231]["iso_week"] == 53


def test_dim_currency_knows_unknown_codes() -> None:
    rows = {r["currency_code"]: r for r in dim_currency_table(["mxn", "zzz"]).to_pylist()}
    assert rows["mxn"]["currency_type"] == "fiat" and rows["btc"]["currency_name"] == "Bitcoin"
    assert rows["zzz"]["currency_type"] == "unknown"


def test_plain_decimal() -> None:
    from decimal import Decimal

    assert [plain_decimal(Decimal(x)) for x in ("12.500", "100", "0E-18", "1E-8")] == [
        "12.5",
        "100",
        "0",
        "0.00000001",
    ]


def test_snapshot_days_must_be_consecutive() -> None:
    activity = DailyActivity([], [], [])
    assert activity.day(date(2020, 1, 1)).num_rows == 0
    with pytest.raises(ValueError, match="consecutive"):
        activity.day(date(2020, 1, 3))


def test_erd_dot_is_generated_from_the_model() -> None:
    dot = erd.to_dot()
    for table in TABLES:
        assert f"<b>{table.name}</b>" in dot
        for col in table.columns:
            assert f'port="{col.name}"' in dot
    assert "dim_user:user_id -> fact_transaction:user_id;" in dot
    assert "dim_date:date_key -> fact_daily_user_activity:date_key;" in dot
    committed = Path(__file__).resolve().parents[2] / "docs" / "ledger-erd.dot"
    assert committed.read_text() == dot, "docs/ledger-erd.* is stale: python -m marketpipe.etl.erd"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_erd_renders_png(tmp_path: Path) -> None:
    assert erd.main([str(tmp_path / "erd.png")]) == 0
    assert (tmp_path / "erd.png").read_bytes()[:4] == b"\x89PNG"


def test_erd_without_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(RuntimeError, match="Graphviz"):
        erd.render(tmp_path / "x.png")
    assert (tmp_path / "x.dot").exists()
