"""The per-minute Lambda handler against both simulators: lake facts, raw archive, a Binance ban honoured."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import requests

from marketpipe.execution.binance_simulator import BinanceRestSimulator
from marketpipe.execution.coinbase_simulator import CoinbaseRestSimulator
from tests.unit.test_execution_clients import serving

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "execution" / "handler.py"


def load_handler() -> Any:
    spec = importlib.util.spec_from_file_location("execution_handler", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def lake_rows(lake: Path, table: str) -> list[dict[str, Any]]:
    dataset = ds.dataset(lake / table, format="parquet", partitioning="hive")
    return dataset.to_table().to_pylist()


def test_each_invocation_writes_facts_and_raw_snapshots_and_a_ban_pauses_binance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = load_handler()
    lake, state = tmp_path / "lake", tmp_path / "state" / "pauses.json"
    with (
        serving(CoinbaseRestSimulator(thin_probability=0.0)) as cb,
        serving(
            BinanceRestSimulator(thin_probability=0.0, weight_limit=50, ban_after=2, ban_seconds=600)
        ) as bn,
    ):
        for name, value in {
            "MARKETPIPE_COINBASE_API_URL": cb.api_url,
            "MARKETPIPE_BINANCE_API_URL": bn.api_url,
            "MARKETPIPE_EXECUTION_LAKE_URI": str(lake),
            "MARKETPIPE_EXECUTION_STATE_URI": str(state),
            "MARKETPIPE_EXECUTION_MARKETS": "coinbase:BTC-USD,binance:BTCUSDT",
        }.items():
            monkeypatch.setenv(name, value)
        first = handler({"time": "2026-11-22T04:10:00Z"}, None)
        assert first["snapshots"] == 2 and first["failed"] == {} and first["skipped"] == {}
        assert first["rows"]["execution_quotes"] == 8 and '"execution": {' in capsys.readouterr().out
        quotes = lake_rows(lake, "execution_quotes")
        assert {(q["exchange"], q["market"], q["quote"]) for q in quotes} == {
            ("coinbase", "BTC-USD", "USD"), ("binance", "BTC-USDT", "USDT")
        }  # fmt: skip
        assert all(q["deep_enough"] == 1 and q["slippage_bps"] >= 0 for q in quotes)
        assert len(list((lake / "execution_raw").rglob("*.jsonl.gz"))) == 2
        assert len(lake_rows(lake, "execution_dim_market")) == 2

        # another client on the same IP ignores 429s until Binance bans the IP
        url = bn.api_url + "/api/v3/depth?symbol=BTCUSDT&limit=100"
        while requests.get(url, timeout=5).status_code != 418:
            pass
        second = handler({"time": "2026-11-22T04:11:00Z"}, None)
        assert second["snapshots"] == 1 and "HTTP 418" in second["failed"]["binance:BTCUSDT"]
        assert state.exists()
        sent = bn.requests
        third = handler({"time": "2026-11-22T04:12:00Z"}, None)
        assert bn.requests == sent  # nothing sent to Binance while banned, across invocations
        assert "paused" in third["skipped"]["binance"] and third["snapshots"] == 1
    snaps = lake_rows(lake, "execution_snapshots")
    assert sorted(s["exchange"] for s in snaps) == ["binance", "coinbase", "coinbase", "coinbase"]


def test_the_deployed_s3_uris_work_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler with the construct's S3 URIs (``?region=``) against a moto server: lake, archive, state."""
    pytest.importorskip("moto")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        handler = load_handler()
        with (
            serving(CoinbaseRestSimulator(thin_probability=0.0)) as cb,
            serving(BinanceRestSimulator()) as bn,
        ):
            monkeypatch.setenv("MARKETPIPE_COINBASE_API_URL", cb.api_url)
            monkeypatch.setenv("MARKETPIPE_BINANCE_API_URL", bn.api_url)
            monkeypatch.setenv("MARKETPIPE_EXECUTION_LAKE_URI", "s3://data/lake?region=us-east-1")
            monkeypatch.setenv(
                "MARKETPIPE_EXECUTION_STATE_URI", "s3://data/execution/state/pauses.json?region=us-east-1"
            )
            monkeypatch.setenv("MARKETPIPE_EXECUTION_MARKETS", "coinbase:ETH-USD,binance:FOOUSDT")
            summary = handler({"time": "2026-11-22T04:10:00Z"}, None)
        assert summary["snapshots"] == 1 and "-1121" in summary["failed"]["binance:FOOUSDT"]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="data")["Contents"]]
        assert any(k.startswith("lake/execution_quotes/exchange=coinbase/dt=") for k in keys)
        assert any(
            k.startswith("lake/execution_raw/exchange=coinbase/") and k.endswith(".jsonl.gz") for k in keys
        )
        assert any(k.startswith("lake/execution_dim_minute/") for k in keys)
        assert "execution/state/pauses.json" in keys  # written (empty: no pause pending)
    finally:
        server.stop()
