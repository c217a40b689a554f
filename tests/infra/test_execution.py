"""Execution price on AWS: minute schedule -> Lambda, scoped IAM, six projected Glue tables, named queries."""

from __future__ import annotations

from typing import Any

from infra.constructs.execution import STATE_KEY
from infra.stack import MarketpipeStack

from marketpipe.execution.queries import QUERIES
from marketpipe.tables.execution import EXECUTION_QUOTES, EXECUTION_TABLES
from tests.infra.conftest import as_list, dumps, logical_id, policy_statements


def _function(stack: MarketpipeStack, resources: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = resources[logical_id(stack, stack.execution.function)]["Properties"]
    return props


def test_function_runs_the_thin_handler_alone_with_its_settings(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    props = _function(stack, resources)
    assert props["Handler"] == "handler.handler" and props["Runtime"] == "python3.12"
    assert props["ReservedConcurrentExecutions"] == 1, "one poller: one IP's rate limits, no racing writes"
    assert props["Timeout"] < 60 and len(props["Layers"]) == 1
    env = props["Environment"]["Variables"]
    assert (
        env["MARKETPIPE_EXECUTION_MARKETS"]
        == "coinbase:BTC-USD,coinbase:ETH-USD,binance:BTCUSDT,binance:ETHUSDT"
    )
    assert env["MARKETPIPE_EXECUTION_NOTIONALS"] == "100000,50000"
    data = logical_id(stack, stack.lake.data_bucket)
    assert data in dumps(env["MARKETPIPE_EXECUTION_LAKE_URI"]) and "/lake?region=" in dumps(
        env["MARKETPIPE_EXECUTION_LAKE_URI"]
    )
    assert f"/{STATE_KEY}?region=" in dumps(env["MARKETPIPE_EXECUTION_STATE_URI"])
    assert "VpcConfig" not in props, "reaches the exchanges directly, like the Bitso sampler"


def test_every_minute_one_event_without_retries(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    rule = resources[logical_id(stack, stack.execution.rule)]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    (target,) = rule["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 60
    assert logical_id(stack, stack.execution.function) in dumps(target["Arn"])
    assert target["InputTransformer"]["InputPathsMap"] == {"time": "$.time"}


def test_iam_reaches_only_the_execution_prefixes(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    role = logical_id(stack, stack.execution.function.role)
    statements = {s.get("Sid"): s for s in policy_statements(resources, role)}
    objects = statements["ExecutionObjects"]
    assert sorted(as_list(objects["Action"])) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    text = dumps(objects["Resource"])
    for table in EXECUTION_TABLES:
        assert f"/lake/{table.name}/*" in text
    assert "/lake/execution_raw/*" in text and f"/{STATE_KEY}" in text
    assert len(as_list(objects["Resource"])) == len(EXECUTION_TABLES) + 2, "no bucket-wide wildcard"
    listing = statements["ListExecutionPrefixes"]
    assert listing["Action"] == "s3:ListBucket" and "s3:prefix" in dumps(listing["Condition"])
    assert not any(a.startswith(("athena:", "glue:", "kinesis:")) for s in statements.values()
                   for a in as_list(s["Action"]))  # fmt: skip


def test_glue_tables_are_projected_parquet_with_the_model_columns(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    tables = {
        r["Properties"]["TableInput"]["Name"]: r["Properties"]["TableInput"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"].startswith("execution_")
    }
    assert set(tables) == {t.name for t in EXECUTION_TABLES}
    quotes = tables[EXECUTION_QUOTES.name]
    assert [k["Name"] for k in quotes["PartitionKeys"]] == ["exchange", "dt", "hour"]
    columns = [c["Name"] for c in quotes["StorageDescriptor"]["Columns"]]
    assert columns == [c.name for c in EXECUTION_QUOTES.columns if c.name != "exchange"]
    types = {c["Name"]: c["Type"] for c in quotes["StorageDescriptor"]["Columns"]}
    assert (
        types["avg_price"] == "double" and types["received_ts"] == "timestamp" and types["quote"] == "string"
    )
    params = quotes["Parameters"]
    assert (
        params["projection.enabled"] == "true" and params["projection.exchange.values"] == "coinbase,binance"
    )
    assert dumps(params["storage.location.template"]).endswith(
        'execution_quotes/exchange=${exchange}/dt=${dt}/hour=${hour}"]]}'
    )
    market = tables["execution_dim_market"]
    assert [k["Name"] for k in market["PartitionKeys"]] == ["dt", "hour"]
    assert market["Parameters"]["projection.dt.range"] == "2020-01-01,NOW"


def test_named_queries_are_the_local_query_texts(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    named = {
        r["Properties"]["Name"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Athena::NamedQuery" and r["Properties"]["Name"].startswith("execution-")
    }
    assert set(named) == {name.replace("_", "-") for name in QUERIES}
    for name, spec in QUERIES.items():
        query = named[name.replace("_", "-")]
        assert query["QueryString"] == spec.sql and "dt = ?" in query["QueryString"]
        assert "day" in query["Description"]
