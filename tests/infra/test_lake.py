"""Lake: private/encrypted/TLS-only buckets, raw lifecycle, Glue tables from TABLES, Athena, queries."""

from __future__ import annotations

from typing import Any

import pytest
from infra.constructs.lake import ICEBERG_TABLES, named_queries
from infra.constructs.scheduled_lake import GLUE_TYPES
from infra.stack import MarketpipeStack

from marketpipe.tables import TABLES
from tests.infra.conftest import as_list, dumps, logical_id

BUCKETS = (
    "lake.access_logs_bucket",
    "lake.data_bucket",
    "lake.results_bucket",
    "book_builder.failure_bucket",
)


def _bucket(stack: MarketpipeStack, resources: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    owner, attr = path.split(".")
    lid = logical_id(stack, getattr(getattr(stack, owner), attr))
    return lid, resources[lid]


def _glue_tables(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["TableInput"]["Name"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"].startswith("bitfinex_")
    }


@pytest.mark.parametrize("path", BUCKETS)
def test_every_bucket_is_private_encrypted_and_tls_only(
    stack: MarketpipeStack, resources: dict[str, Any], path: str
) -> None:
    lid, bucket = _bucket(stack, resources, path)
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": lid}
    ]
    assert len(policies) == 1
    deny_http = [
        s for s in policies[0]
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool") == {"aws:SecureTransport": "false"}
    ]  # fmt: skip
    assert deny_http, "bucket must refuse plain HTTP"
    if path != "lake.access_logs_bucket":
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {
            "Ref": logical_id(stack, stack.lake.access_logs_bucket)
        }


def test_data_bucket_is_versioned_retained_and_tiers_the_raw_archive(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    _, bucket = _bucket(stack, resources, "lake.data_bucket")
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["DeletionPolicy"] == "Retain"
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    raw = rules["raw-archive-tiering"]
    assert raw["Prefix"] == "raw/"
    assert raw["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 30}]
    assert "ExpirationInDays" not in raw  # the raw capture is the write-ahead log: kept by default
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    lake = rules["expire-noncurrent-lake-versions"]
    assert (lake["Prefix"], lake["NoncurrentVersionExpiration"]) == ("lake/", {"NoncurrentDays": 1})


def test_no_cloudformation_glue_table_for_the_iceberg_tables(resources: dict[str, Any]) -> None:
    """pyiceberg creates the Bitfinex tables as Iceberg tables: a CfnTable of the same name would be
    replaced, and at a stack update deleted by name, by CloudFormation."""
    assert _glue_tables(resources) == {}
    assert {t.name for t in ICEBERG_TABLES} == {"bitfinex_trades", "bitfinex_quotes", "bitfinex_book"}
    # Still no crawler anywhere: Iceberg needs none, the Parquet tables use partition projection.
    assert not [r for r in resources.values() if r["Type"] == "AWS::Glue::Crawler"]


def test_glue_tables_are_generated_from_tables_with_partition_projection(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    """The Parquet tables (Binance's here) keep their CloudFormation Glue table and projection."""
    parquet = {
        r["Properties"]["TableInput"]["Name"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"] in TABLES
    }
    assert parquet, "the Parquet tables of the other capabilities are unchanged"
    for name, props in parquet.items():
        table = TABLES[name]
        columns = props["TableInput"]["StorageDescriptor"]["Columns"]
        expected = [
            {"Name": c.name, "Type": GLUE_TYPES[c.kind]}
            for c in table.columns
            if c.name not in table.partitions
        ]
        assert columns == expected
        params = props["TableInput"]["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.dt.type"] == "date"
        assert props["DatabaseName"] == "marketpipe"
        serde = props["TableInput"]["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        assert serde.endswith("ParquetHiveSerDe")


def test_lake_table_names_still_list_the_book_builder_tables(stack: MarketpipeStack) -> None:
    """The dashboard and liveness alarms graph RowsWritten per table, Iceberg or not."""
    assert stack.lake.table_names == ["bitfinex_trades", "bitfinex_quotes", "bitfinex_book"]


def test_athena_workgroup_enforces_encrypted_results_in_its_bucket(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    (workgroup,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Athena::WorkGroup"]
    assert workgroup["Name"] == "marketpipe"
    config = workgroup["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["ResultConfiguration"]["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    assert config["ResultConfiguration"]["OutputLocation"] == {
        "Fn::Join": ["", ["s3://", {"Ref": logical_id(stack, stack.lake.results_bucket)}, "/results/"]]
    }
    assert config["BytesScannedCutoffPerQuery"] == 10 * 1024**3
    assert config["EngineVersion"]["SelectedEngineVersion"] == "Athena engine version 3"


def test_named_queries_answer_the_three_questions(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    queries = {
        r["Properties"]["Name"]: r for r in resources.values()
        if r["Type"] == "AWS::Athena::NamedQuery" and r["Properties"]["Name"].startswith("marketpipe-")
    }  # fmt: skip
    assert set(queries) == {
        "marketpipe-LatestBook",
        "marketpipe-TradesPerMinuteVwap",
        "marketpipe-DepthOverTime",
    }
    workgroup = logical_id(stack, stack.lake.workgroup)
    for query in queries.values():
        assert query["Properties"]["Database"] == "marketpipe"
        assert query["Properties"]["WorkGroup"] == "marketpipe"
        assert workgroup in as_list(query["DependsOn"])
    latest = queries["marketpipe-LatestBook"]["Properties"]["QueryString"]
    assert "FROM bitfinex_book" in latest and "ORDER BY received_ts DESC" in latest and "LIMIT 1" in latest
    vwap = queries["marketpipe-TradesPerMinuteVwap"]["Properties"]["QueryString"]
    assert "sum(price * amount) / sum(amount) AS vwap" in vwap
    assert "date_trunc('minute', exchange_ts)" in vwap
    depth = queries["marketpipe-DepthOverTime"]["Properties"]["QueryString"]
    assert "coalesce(bid_10_size, 0)" in depth and "coalesce(bid_11_size, 0)" not in depth
    assert "coalesce(ask_1_size, 0)" in depth
    # Every query prunes the hidden partitions: day(received_ts) by a received_ts range, bucket(symbol)
    # by the symbol; the Iceberg tables have no dt/hour columns.
    for query in queries.values():
        sql = query["Properties"]["QueryString"]
        assert "symbol = 'BTC-USD'" in sql
        assert "received_ts >= date_trunc('day', current_timestamp)" in sql
        assert "dt " not in sql and "hour" not in sql
    assert "INTERVAL '1' DAY" in latest  # today and yesterday (UTC)


def test_named_query_sql_is_generated_for_any_depth() -> None:
    sql = named_queries("ETH-USD", 3)["DepthOverTime"][1]
    assert "coalesce(ask_3_size, 0)" in sql and "ask_4_size" not in sql and "'ETH-USD'" in sql
    assert dumps(sql)  # serializable as-is into the template
