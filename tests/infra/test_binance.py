"""Binance on AWS: collector wiring, ordered Kinesis consumer, IAM-authorized read API, Glue projection,
Athena queries, encrypted alert topic, least-privilege grants."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from infra.constructs.binance import BinanceMarketData, named_queries
from infra.stack import MarketpipeStack

from marketpipe.tables.binance import BINANCE_TABLES
from tests.infra.conftest import build, logical_id

ACK_METADATA = "aws:cdk:acknowledged-rules"


@pytest.fixture(scope="module")
def built() -> tuple[MarketpipeStack, BinanceMarketData, Template]:
    """The real app with Binance attached exactly as the stack would, synthesized with cdk-nag on."""
    app, stack = build({"binance": "true", "binanceWatch": "BTCUSDT>43680"}, nag=True)
    binance = stack.binance
    assert binance is not None and build({"binance": "false"})[1].binance is None  # on unless opted out
    app.synth()  # raises on any unacknowledged AwsSolutions finding
    return stack, binance, Template.from_stack(stack)


@pytest.fixture(scope="module")
def stack(built: tuple[MarketpipeStack, BinanceMarketData, Template]) -> MarketpipeStack:
    return built[0]


@pytest.fixture(scope="module")
def binance(built: tuple[MarketpipeStack, BinanceMarketData, Template]) -> BinanceMarketData:
    return built[1]


@pytest.fixture(scope="module")
def template(built: tuple[MarketpipeStack, BinanceMarketData, Template]) -> Template:
    return built[2]


def test_attached_construct_passes_cdk_nag_with_reasons(binance: BinanceMarketData) -> None:
    reasons = [
        reason
        for construct in binance.node.find_all()
        for entry in construct.node.metadata
        if entry.type == ACK_METADATA
        for rule, reason in entry.data.items()
        if "AwsSolutions-" in rule
    ]
    assert reasons and all(len(r.split()) >= 6 for r in reasons)


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def test_collector_carries_binance_with_its_settings(template: Template, stack: MarketpipeStack) -> None:
    container = template.find_resources("AWS::ECS::TaskDefinition")
    (definition,) = container.values()
    spec = definition["Properties"]["ContainerDefinitions"][0]
    assert spec["Command"][:3] == ["run", "--exchanges", "bitfinex,binance"]
    env = {e["Name"]: e["Value"] for e in spec["Environment"]}
    assert env["MARKETPIPE_BINANCE_SYMBOLS"] == "BTCUSDT,ETHUSDT,BNBUSDT"
    assert env["MARKETPIPE_BINANCE_WATCH"] == "BTCUSDT>43680"


def test_metrics_lambda_consumes_the_stream_in_order(
    template: Template, stack: MarketpipeStack, binance: BinanceMarketData
) -> None:
    fn = logical_id(stack, binance.metrics_function)
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": fn},
            "ParallelizationFactor": 1,
            "BisectBatchOnFunctionError": False,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRetryAttempts": Match.any_value(),
            "MaximumRecordAgeInSeconds": Match.any_value(),
            "StartingPosition": "TRIM_HORIZON",
        },
    )
    resources = template.to_json()["Resources"]
    props = resources[fn]["Properties"]
    assert props["Handler"] == "handler.handler" and props["VpcConfig"]
    env = props["Environment"]["Variables"]
    assert set(env) >= {"MARKETPIPE_LAKE_URI", "MARKETPIPE_DB_SECRET_ARN", "MARKETPIPE_CHECKPOINT_TABLE",
                        "MARKETPIPE_ALERT_TOPIC_ARN"}  # fmt: skip
    assert env["MARKETPIPE_CHECKPOINT_TABLE"] == {"Ref": logical_id(stack, binance.checkpoint_table)}


def test_every_kinesis_event_source_has_an_on_failure_destination(
    template: Template, stack: MarketpipeStack, binance: BinanceMarketData
) -> None:
    """A batch a consumer gives up on (retries or record age exhausted) leaves a record in the
    failed-batches bucket instead of vanishing: the book builder's and the Binance metrics Lambda's."""
    mappings = template.find_resources("AWS::Lambda::EventSourceMapping")
    functions = {m["Properties"]["FunctionName"]["Ref"] for m in mappings.values()}
    assert functions >= {
        logical_id(stack, stack.book_builder.function),
        logical_id(stack, binance.metrics_function),
    }
    bucket = {"Fn::GetAtt": [logical_id(stack, stack.book_builder.failure_bucket), "Arn"]}
    for name, mapping in mappings.items():
        on_failure = mapping["Properties"].get("DestinationConfig", {}).get("OnFailure", {})
        assert on_failure.get("Destination") == bucket, f"{name} has no on-failure destination"
    # The metrics Lambda may put failure records there, and do nothing else with the bucket's objects.
    policies = template.find_resources("AWS::IAM::Policy")
    fn_role = {"Ref": logical_id(stack, binance.metrics_function.role)}
    statements = [
        st
        for p in policies.values()
        if fn_role in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    on_bucket = [st for st in statements if bucket["Fn::GetAtt"][0] in json.dumps(st["Resource"])]
    assert sorted(st["Action"] for st in on_bucket) == ["s3:ListBucket", "s3:PutObject"]


def test_metrics_lambda_may_write_only_the_binance_lake_tables(
    template: Template, stack: MarketpipeStack
) -> None:
    policies = template.find_resources("AWS::IAM::Policy")
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    lake = [s for s in statements if s.get("Sid") == "BinanceLakeObjects"]
    assert len(lake) == 1 and "s3:DeleteObject" in lake[0]["Action"]
    text = json.dumps(lake[0]["Resource"])
    assert all(f"/lake/{t.name}/*" in text for t in BINANCE_TABLES) and "/raw/" not in text
    assert not any(s.get("Action") == "s3:*" or s.get("Action") == "*" for s in statements)


def test_read_api_is_iam_authorized_logged_and_throttled(
    template: Template, stack: MarketpipeStack, binance: BinanceMarketData
) -> None:
    routes = template.find_resources("AWS::ApiGatewayV2::Route")
    keys = sorted(r["Properties"]["RouteKey"] for r in routes.values())
    assert keys == ["GET /openapi.json", "GET /v1/binance/{proxy+}"]
    assert all(r["Properties"]["AuthorizationType"] == "AWS_IAM" for r in routes.values())
    (stage,) = template.find_resources("AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["AccessLogSettings"]["DestinationArn"]
    assert stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"] == 20
    api_fn = logical_id(stack, binance.api_function)
    env = template.to_json()["Resources"][api_fn]["Properties"]["Environment"]["Variables"]
    assert set(env) == {"MARKETPIPE_DB_SECRET_ARN", "MARKETPIPE_DB_NAME"}
    assert "BinanceApiUrl" in template.to_json()["Outputs"]


def test_glue_tables_use_partition_projection(template: Template) -> None:
    tables = {t["Properties"]["TableInput"]["Name"]: t["Properties"]["TableInput"]
              for t in template.find_resources("AWS::Glue::Table").values()}  # fmt: skip
    metrics = tables["binance_book_metrics"]
    params = metrics["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.dt.type"] == "date"
    template_text = json.dumps(params["storage.location.template"])
    assert template_text.endswith('binance_book_metrics/dt=${dt}/hour=${hour}"]]}')
    assert [k["Name"] for k in metrics["PartitionKeys"]] == ["dt", "hour"]
    cols = {c["Name"]: c["Type"] for c in metrics["StorageDescriptor"]["Columns"]}
    assert (
        cols["avg_price_1m"] == "double" and cols["received_ts"] == "timestamp" and cols["symbol"] == "string"
    )
    tickers = tables["binance_mini_tickers"]
    assert [k["Name"] for k in tickers["PartitionKeys"]] == ["dt", "hour"]
    assert "projection.symbol.type" not in tickers["Parameters"]
    assert len(tables["binance_depth20"]["StorageDescriptor"]["Columns"]) == 3 + 80
    assert len([t for t in tables if t.startswith("binance_")]) == 4  # catalogued once, by this construct


def test_named_queries_and_alert_topic(template: Template) -> None:
    queries = {
        q["Properties"]["Name"]: q["Properties"]
        for q in template.find_resources("AWS::Athena::NamedQuery").values()
    }
    assert {"binance-OneMinuteOhlc", "binance-AveragePricePerMinute"} <= set(queries)
    ohlc = queries["binance-OneMinuteOhlc"]["QueryString"]
    assert "min_by(close, event_ts) AS open" in ohlc and "max_by(close, event_ts) AS close" in ohlc
    assert "date_trunc('minute', event_ts)" in ohlc
    assert "sum(price * hold_ms) / nullif(sum(hold_ms), 0)" in named_queries()["AveragePricePerMinute"][1]
    topics = [t for t in template.find_resources("AWS::SNS::Topic").values()
              if t["Properties"].get("DisplayName") == "marketpipe Binance price alerts"]  # fmt: skip
    assert len(topics) == 1 and topics[0]["Properties"]["KmsMasterKeyId"]
