"""The read API: the pure handler over a real SQLite store, ``marketpipe serve`` over HTTP, and the
API Gateway v2 adapter (with the RDS secret read through moto)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from marketpipe.aws.binance_api import ApiFunction
from marketpipe.binance.api.handler import ApiRequest, handle
from marketpipe.binance.api.server import make_server
from marketpipe.binance.api.store import SqlReadStore
from marketpipe.binance.processor import BinanceProcessor
from marketpipe.cli import main
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import Table
from marketpipe.tables.binance import BINANCE_BOOK_METRICS, BINANCE_MINI_TICKERS, BINANCE_PRICE_ALERTS
from tests.unit.test_binance_metrics import exact_twa, session_frames

S = 1_000_000


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database filled by the processor from a known session (6 books, 12 tickers, 3 alerts)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'marketpipe.db'}"
    sink = SqlSink(url)

    def emit(table: Table, rows: list[tuple[object, ...]]) -> None:
        sink.write(table, rows)

    processor = BinanceProcessor(emit)
    for frame in session_frames():
        processor.process(frame)
    sink.flush()
    sink.close()
    return url


@pytest.fixture(scope="module")
def store(db_url: str) -> Iterator[SqlReadStore]:
    s = SqlReadStore(db_url)
    yield s
    s.close()


def get(store: SqlReadStore, path: str, **query: str) -> tuple[int, Any]:
    response = handle(ApiRequest("GET", path, query), store)
    return response.status, json.loads(response.json())


def test_latest_metrics_ticker_and_alerts(store: SqlReadStore) -> None:
    status, body = get(store, "/v1/binance/metrics/latest", symbol="btcusdt")
    assert status == 200 and body["symbol"] == "BTCUSDT" and body["last_update_id"] == 105
    assert body["best_bid"] == 43690.0 and body["best_ask"] == 43691.0 and body["spread"] == 1.0
    assert body["received_ts"].startswith("2026-11-18T11:07:22") and body["received_ts"].endswith("Z")
    status, body = get(store, "/v1/binance/tickers/latest", symbol="ETHUSDT")
    assert status == 200 and body["close"] == 2300.5 and body["event_ts"] == "2026-11-18T11:07:22.000000Z"
    status, body = get(store, "/v1/binance/alerts")
    assert status == 200 and [a["text"].split(" ", 1)[1] for a in body["alerts"]] == [
        "BTCUSDT price has gone above 43680 Last price: 43690",
        "BTCUSDT price has gone below 43600 Last price: 43590",
        "BTCUSDT price has gone above 43680 Last price: 43700",
    ]
    status, body = get(store, "/v1/binance/alerts", symbol="BTCUSDT", limit="1")
    assert status == 200 and len(body["alerts"]) == 1 and body["alerts"][0]["direction"] == "above"
    assert get(store, "/v1/binance/alerts", symbol="ETHUSDT")[1]["alerts"] == []


def test_average_over_a_window_matches_the_stored_average_and_an_exact_integration(
    store: SqlReadStore,
) -> None:
    latest = get(store, "/v1/binance/metrics/latest", symbol="BTCUSDT")[1]
    status, body = get(store, "/v1/binance/average", symbol="BTCUSDT", window="30")
    assert status == 200 and body["window_s"] == 30 and body["as_of"] == latest["received_ts"]
    assert body["average_price"] == pytest.approx(latest["avg_price_30s"], rel=1e-15)
    rows = SqlSink(store._sink.url.render_as_string(False)).read_rows(BINANCE_BOOK_METRICS.name)
    samples = [
        (int(r["received_ts"]), Fraction(Decimal(repr(r["price"])))) for r in rows if r["symbol"] == "BTCUSDT"
    ]
    end = samples[-1][0]
    for window in (7, 30, 60, 600):
        want = exact_twa(samples, end, window * S, 10 * S)
        got = get(store, "/v1/binance/average", symbol="BTCUSDT", window=str(window))[1]
        assert want is not None and got["average_price"] == float(want)
    assert get(store, "/v1/binance/average", symbol="BTCUSDT")[1]["window_s"] == 60


@pytest.mark.parametrize(
    ("path", "query", "status", "message"),
    [
        ("/v1/binance/metrics/latest", {}, 400, "missing parameter 'symbol'"),
        ("/v1/binance/metrics/latest", {"symbol": "BTC-USD"}, 400, "invalid Binance symbol"),
        ("/v1/binance/metrics/latest", {"symbol": "BTCUSDT", "x": "1"}, 400, "unknown parameter 'x'"),
        ("/v1/binance/average", {"symbol": "BTCUSDT", "window": "0"}, 400, "between 1 and 3600"),
        ("/v1/binance/average", {"symbol": "BTCUSDT", "window": "1m"}, 400, "must be a whole number"),
        ("/v1/binance/alerts", {"limit": "501"}, 400, "between 1 and 500"),
        ("/v1/binance/metrics/latest", {"symbol": "DOGEUSDT"}, 404, "no book metrics stored for DOGEUSDT"),
        ("/v1/binance/average", {"symbol": "DOGEUSDT"}, 404, "no book metrics stored"),
        ("/v1/binance/tickers/latest", {"symbol": "DOGEUSDT"}, 404, "no mini-ticker stored"),
        ("/v1/nothing", {}, 404, "no such endpoint"),
    ],
)  # fmt: skip
def test_bad_requests_get_readable_errors(
    store: SqlReadStore, path: str, query: dict[str, str], status: int, message: str
) -> None:
    got_status, body = get(store, path, **query)
    assert got_status == status and body["error"]["status"] == status and message in body["error"]["message"]


def test_wrong_method_failing_store_and_openapi(store: SqlReadStore) -> None:
    response = handle(ApiRequest("POST", "/v1/binance/alerts"), store)
    assert response.status == 405 and response.headers["Allow"] == "GET"

    class Broken:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any) -> Any:
                raise ConnectionError("db down")

            return fail

    response = handle(ApiRequest("GET", "/v1/binance/alerts"), Broken())
    assert response.status == 503 and "could not be read" in response.body["error"]["message"]
    status, spec = get(store, "/openapi.json")
    paths = {
        "/v1/binance/metrics/latest",
        "/v1/binance/average",
        "/v1/binance/tickers/latest",
        "/v1/binance/alerts",
    }
    assert status == 200 and set(spec["paths"]) >= paths
    validate(spec)  # a valid OpenAPI 3.1 document


def test_serve_answers_over_http(store: SqlReadStore) -> None:
    server = make_server(store, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        r = requests.get(f"{base}/v1/binance/metrics/latest?symbol=BTCUSDT", timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        assert r.json()["best_bid"] == 43690.0
        r = requests.get(f"{base}/v1/binance/average?symbol=BTCUSDT&symbol=ETHUSDT", timeout=5)
        assert r.status_code == 400 and r.json()["error"]["message"] == "parameter 'symbol' given twice"
        assert requests.head(f"{base}/openapi.json", timeout=5).status_code == 200
        assert requests.delete(f"{base}/v1/binance/alerts", timeout=5).status_code == 405
    finally:
        server.shutdown()
        server.server_close()


def test_serve_command(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--db", db_url, "--port", "0", "--duration", "0.3"]) == 0
    assert "read API on http://127.0.0.1:" in capsys.readouterr().out
    assert main(["serve", "--db", "nope://x", "--duration", "0.1"]) == 2


def event(path: str, query: dict[str, str] | None = None, method: str = "GET") -> dict[str, Any]:
    return {"version": "2.0", "rawPath": path, "queryStringParameters": query,
            "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"}}  # fmt: skip


def test_api_gateway_events(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    function = ApiFunction.from_env({"MARKETPIPE_DB_URL": db_url})
    answer = function(event("/v1/binance/tickers/latest", {"symbol": "BTCUSDT"}))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["close"] == 43690.0
    assert function(event("/v1/binance/average", {"symbol": "BTCUSDT", "window": "x"}))["statusCode"] == 400
    staged = event("/prod/v1/binance/alerts")
    staged["requestContext"]["stage"] = "prod"
    assert function(staged)["statusCode"] == 200
    assert ApiFunction.from_env({"MARKETPIPE_DB_URL": "nope://"})(event("/openapi.json"))["statusCode"] == 503

    # on AWS: the URL comes from the RDS secret
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from moto import mock_aws

    with mock_aws():
        import boto3

        secret = boto3.client("secretsmanager").create_secret(
            Name="db",
            SecretString=json.dumps({"username": "u", "password": "p", "host": "127.0.0.1", "port": 1}),
        )
        function = ApiFunction.from_env({"MARKETPIPE_DB_SECRET_ARN": secret["ARN"]})
        answer = function(event("/v1/binance/alerts"))
    assert answer["statusCode"] == 503 and "database is unavailable" in answer["body"]  # nothing on port 1


def test_store_tables_are_the_processor_tables(store: SqlReadStore) -> None:
    assert {BINANCE_BOOK_METRICS.name, BINANCE_MINI_TICKERS.name, BINANCE_PRICE_ALERTS.name} <= set(store._t)
