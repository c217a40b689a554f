"""Lake: private/encrypted/TLS-only buckets, raw lifecycle, Glue tables from TABLES, Athena, queries."""

from __future__ import annotations

from typing import Any

import pytest
from infra.constructs.lake import lake_tables, named_queries
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


def test_glue_table_per_lake_table_with_columns_generated_from_tables(resources: dict[str, Any]) -> None:
    tables = _glue_tables(resources)
    assert (
        set(tables)
        == {t.name for t in lake_tables()}
        == {"bitfinex_trades", "bitfinex_quotes", "bitfinex_book"}
    )
    for name, props in tables.items():
        table = TABLES[name]
        columns = props["TableInput"]["StorageDescriptor"]["Columns"]
        expected = [{"Name": c.name, "Type": GLUE_TYPES[c.kind]} for c in table.columns if c.name != "symbol"]
        assert columns == expected
        assert [k["Name"] for k in props["TableInput"]["PartitionKeys"]] == ["symbol", "dt", "hour"]
        assert props["DatabaseName"] == "marketpipe"
    assert len(tables["bitfinex_book"]["TableInput"]["StorageDescriptor"]["Columns"]) == 403
    trades = {
        c["Name"]: c["Type"] for c in tables["bitfinex_trades"]["TableInput"]["StorageDescriptor"]["Columns"]
    }
    assert trades == {
        "trade_id": "bigint", "exchange_ts": "timestamp", "price": "double", "amount": "double",
        "side": "string", "received_ts": "timestamp",
    }  # fmt: skip


def test_glue_tables_use_partition_projection_on_the_lake_layout(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    bucket = logical_id(stack, stack.lake.data_bucket)
    for name, props in _glue_tables(resources).items():
        params = props["TableInput"]["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.symbol.type"] == "enum"
        assert params["projection.symbol.values"] == "BTC-USD,ETH-USD"
        assert params["projection.dt.type"] == "date"
        assert params["projection.dt.format"] == "yyyy-MM-dd"
        assert params["projection.hour.type"] == "integer"
        assert params["projection.hour.range"] == "0,23"
        assert params["projection.hour.digits"] == "2"
        assert params["classification"] == "parquet"
        template = params["storage.location.template"]
        assert template == {
            "Fn::Join": [
                "",
                ["s3://", {"Ref": bucket}, f"/lake/{name}/symbol=${{symbol}}/dt=${{dt}}/hour=${{hour}}"],
            ]
        }
        serde = props["TableInput"]["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        assert serde.endswith("ParquetHiveSerDe")
    # No crawler: projection replaces it.
    assert not [r for r in resources.values() if r["Type"] == "AWS::Glue::Crawler"]


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
    # Every query prunes partitions on symbol and dt.
    for query in queries.values():
        sql = query["Properties"]["QueryString"]
        assert "symbol = 'BTC-USD'" in sql and "dt " in sql


def test_named_query_sql_is_generated_for_any_depth() -> None:
    sql = named_queries("ETH-USD", 3)["DepthOverTime"][1]
    assert "coalesce(ask_3_size, 0)" in sql and "ask_4_size" not in sql and "'ETH-USD'" in sql
    assert dumps(sql)  # serializable as-is into the template
