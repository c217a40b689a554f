"""Bitso spreads on AWS: two schedules -> the Lambda, scoped IAM, the Glue table, the queries, the topic."""

from __future__ import annotations

from typing import Any

from infra.constructs.bitso_spreads import STAGING_PREFIX, STATE_KEY
from infra.stack import MarketpipeStack

from marketpipe.tables.bitso import BITSO_SPREADS
from tests.infra.conftest import as_list, dumps, logical_id, policy_statements


def _function(stack: MarketpipeStack, resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lid = logical_id(stack, stack.bitso_spreads.function)
    return lid, resources[lid]["Properties"]


def test_function_runs_the_thin_handler_with_the_layer_and_its_settings(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    _, props = _function(stack, resources)
    assert props["Handler"] == "handler.handler" and props["Runtime"] == "python3.12"
    assert props["Timeout"] == 90, "a minute of sampling plus connect and upload"
    assert props["ReservedConcurrentExecutions"] == 3
    assert len(props["Layers"]) == 1
    env = props["Environment"]["Variables"]
    assert env["MARKETPIPE_BITSO_BOOKS"] == "btc_mxn,usd_mxn"
    assert env["MARKETPIPE_SPREAD_THRESHOLDS"] == "1.0,0.5,0.1"
    assert env["MARKETPIPE_BITSO_WINDOW_SECONDS"] == "600"
    data = logical_id(stack, stack.lake.data_bucket)
    assert data in dumps(env["MARKETPIPE_BITSO_LAKE_URI"]) and "/lake?region=" in dumps(
        env["MARKETPIPE_BITSO_LAKE_URI"]
    )
    assert f"/{STAGING_PREFIX}?region=" in dumps(env["MARKETPIPE_BITSO_STAGING_URI"])
    assert env["MARKETPIPE_ALERT_TOPIC_ARN"] == {"Ref": logical_id(stack, stack.bitso_spreads.topic)}


def test_schedules_sample_every_minute_and_compact_every_ten(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    fn, _ = _function(stack, resources)
    rules = {
        r["Properties"]["ScheduleExpression"]: r["Properties"]["Targets"]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule" and fn in dumps(r["Properties"]["Targets"])
    }
    assert set(rules) == {"rate(1 minute)", "cron(1/10 * * * ? *)"}
    sample = rules["rate(1 minute)"][0]
    assert '"action":"sample"' in sample["InputTransformer"]["InputTemplate"].replace(" ", "")
    assert sample["RetryPolicy"]["MaximumRetryAttempts"] == 0
    compact = rules["cron(1/10 * * * ? *)"][0]
    assert '"action":"compact"' in compact["InputTransformer"]["InputTemplate"].replace(" ", "")
    assert compact["InputTransformer"]["InputPathsMap"] == {"time": "$.time"}


def test_function_may_touch_only_its_prefixes_and_publish_to_its_topic(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    _, props = _function(stack, resources)
    role = props["Role"]["Fn::GetAtt"][0]
    statements = policy_statements(resources, role)
    s3_resources = [
        dumps(r) for s in statements if "s3:" in dumps(s["Action"]) for r in as_list(s["Resource"])
    ]
    assert s3_resources and all(logical_id(stack, stack.lake.data_bucket) in r for r in s3_resources)
    objects = [r for r in s3_resources if "/" in r]
    assert {
        any(p in r for r in objects) for p in (f"/{STAGING_PREFIX}/*", STATE_KEY, "/lake/bitso_spreads/*")
    } == {True}
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"]["StringLike"]["s3:prefix"]
    publish = [s for s in statements if "sns:Publish" in as_list(s["Action"])]
    assert [s["Resource"] for s in publish] == [{"Ref": logical_id(stack, stack.bitso_spreads.topic)}]
    assert not [s for s in statements if s["Resource"] == "*" and "s3:" in dumps(s["Action"])]


def test_alert_topic_is_encrypted_and_tls_only(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    lid = logical_id(stack, stack.bitso_spreads.topic)
    assert "alias/aws/sns" in dumps(resources[lid]["Properties"]["KmsMasterKeyId"])
    policies = [r for r in resources.values() if r["Type"] == "AWS::SNS::TopicPolicy" and lid in dumps(r)]
    assert any('"aws:SecureTransport": "false"' in dumps(p) for p in policies)


def test_glue_table_projects_book_day_and_hour(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    table = resources[logical_id(stack, stack.bitso_spreads.table)]["Properties"]["TableInput"]
    assert table["Name"] == "bitso_spreads"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["book", "dt", "hour"]
    columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert columns == [c.name for c in BITSO_SPREADS.columns if c.name != "book"]
    params = table["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.book.values"] == "btc_mxn,usd_mxn"
    assert params["projection.dt.type"] == "date" and params["projection.hour.digits"] == "2"
    assert dumps(params["storage.location.template"]).endswith(
        'lake/bitso_spreads/book=${book}/dt=${dt}/hour=${hour}"]]}'
    )


def test_named_queries_answer_the_markets_questions(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    queries = {
        r["Properties"]["Name"]: r["Properties"]["QueryString"]
        for r in resources.values()
        if r["Type"] == "AWS::Athena::NamedQuery" and r["Properties"]["Name"].startswith("bitso-")
    }
    assert set(queries) == {"bitso-ShareAboveThresholdsPerHour", "bitso-WidestSpreadsOfDay"}
    share = queries["bitso-ShareAboveThresholdsPerHour"]
    for t in ("1.0", "0.5", "0.1"):
        assert f"count_if(spread > {t})" in share
    assert "GROUP BY book, dt, hour" in share
    widest = queries["bitso-WidestSpreadsOfDay"]
    assert "ORDER BY spread DESC" in widest and "spread IS NOT NULL" in widest
