"""Iceberg lake: the table custom resource, the snapshot-expiry schedule, the Glue table optimizers."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template
from infra.config import ConfigError
from infra.constructs.iceberg_lake import MAINTENANCE_EVERY, tables_fingerprint
from infra.stack import MarketpipeStack

from tests.infra.conftest import as_list, build, dumps, logical_id, policy_statements

TABLES = ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")


def _catalog_uri(stack: MarketpipeStack) -> dict[str, Any]:
    bucket = logical_id(stack, stack.lake.data_bucket)
    return {"Fn::Join": ["", ["glue://marketpipe?warehouse=s3://", {"Ref": bucket}, "/iceberg"]]}


def _of_type(resources: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements for a in as_list(s["Action"])}


def test_tables_custom_resource_runs_lake_tables_after_the_glue_database(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    lake = stack.iceberg_lake
    assert lake.tables_resource is not None
    (resource_id, resource) = next(iter(_of_type(resources, "Custom::MarketpipeIcebergTables").items()))
    assert resource_id == logical_id(stack, lake.tables_resource)
    assert logical_id(stack, stack.lake.glue_database) in as_list(resource["DependsOn"])
    props = resource["Properties"]
    assert props["TablesFingerprint"] == tables_fingerprint()
    assert props["Catalog"] == _catalog_uri(stack)
    # The provider framework relays to the lake_tables function (functions/lake_tables).
    framework = props["ServiceToken"]["Fn::GetAtt"][0]
    relay = resources[framework]["Properties"]["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"]
    assert relay == {"Fn::GetAtt": [logical_id(stack, lake.tables_function), "Arn"]}


def test_fingerprint_is_stable_and_short() -> None:
    assert tables_fingerprint() == tables_fingerprint()
    assert len(tables_fingerprint()) == 16


def test_both_lambdas_run_outside_the_vpc_with_the_catalog(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    lake = stack.iceberg_lake
    for function, extra in (
        (lake.tables_function, {}),
        (lake.maintenance_function, {"MARKETPIPE_ICEBERG_SNAPSHOT_HOURS": "0.5"}),
    ):
        props = resources[logical_id(stack, function)]["Properties"]
        assert "VpcConfig" not in props  # Glue and S3 only: public endpoints, no ENIs
        assert props["Environment"]["Variables"] == {
            "MARKETPIPE_ICEBERG_CATALOG": _catalog_uri(stack),
            **extra,
        }
        assert props["Layers"] == [{"Ref": logical_id(stack, stack.layer.layer)}]
        assert props["Timeout"] == 300


def test_table_creator_may_create_tables_and_maintenance_may_not(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    lake = stack.iceberg_lake
    creator = policy_statements(resources, logical_id(stack, lake.tables_function.role))
    assert {"glue:CreateTable", "glue:CreateDatabase", "glue:GetTables"} <= _actions(creator)
    assert "s3:DeleteObject" not in _actions(creator)
    maintenance = policy_statements(resources, logical_id(stack, lake.maintenance_function.role))
    assert {"glue:GetTable", "glue:UpdateTable", "s3:DeleteObject"} <= _actions(maintenance)
    assert not {"glue:CreateTable", "glue:CreateDatabase", "glue:DeleteTable"} & _actions(maintenance)
    for statements in (creator, maintenance):
        for statement in statements:
            assert "*" not in as_list(statement["Resource"]), statement
            assert not any(a.endswith(":*") for a in as_list(statement["Action"])), statement
        update = [s for s in statements if "glue:UpdateTable" in as_list(s["Action"])]
        assert update and all(f":table/marketpipe/{t}" in dumps(update) for t in TABLES)


def test_maintenance_runs_every_10_minutes_without_retries(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    rule = resources[logical_id(stack, stack.iceberg_lake.maintenance_rule)]["Properties"]
    assert rule["ScheduleExpression"] == "rate(10 minutes)" and rule["State"] == "ENABLED"
    assert MAINTENANCE_EVERY.to_minutes() == 10
    (target,) = rule["Targets"]
    assert target["Arn"] == {
        "Fn::GetAtt": [logical_id(stack, stack.iceberg_lake.maintenance_function), "Arn"]
    }
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    alarm = resources[logical_id(stack, stack.iceberg_lake.maintenance_alarm)]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": logical_id(stack, stack.iceberg_lake.maintenance_function)}}
    ]


def test_compaction_and_orphan_file_deletion_on_every_table(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    optimizers = _of_type(resources, "AWS::Glue::TableOptimizer")
    found = {(o["Properties"]["Type"], o["Properties"]["TableName"]) for o in optimizers.values()}
    assert found == {(kind, t) for kind in ("compaction", "orphan_file_deletion") for t in TABLES}
    # Snapshot expiry is the maintenance Lambda's (hourly, not days): no retention optimizer.
    role = logical_id(stack, stack.iceberg_lake.optimizer_role)
    tables = logical_id(stack, stack.iceberg_lake.tables_resource)
    for optimizer in optimizers.values():
        props = optimizer["Properties"]
        assert props["DatabaseName"] == "marketpipe"
        assert props["CatalogId"] == {"Ref": "AWS::AccountId"}
        config = props["TableOptimizerConfiguration"]
        assert config["Enabled"] is True
        assert config["RoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
        # The table exists (custom resource) and the role holds its policy before Glue checks them.
        assert tables in optimizer["DependsOn"] and role in optimizer["DependsOn"]
        if props["Type"] == "compaction":
            assert config["CompactionConfiguration"] == {"IcebergConfiguration": {"Strategy": "sort"}}
        else:
            assert config["OrphanFileDeletionConfiguration"] == {
                "IcebergConfiguration": {"OrphanFileRetentionPeriodInDays": 1}
            }


def test_optimizer_role_is_glue_with_the_documented_permissions_on_these_tables(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    role_id = logical_id(stack, stack.iceberg_lake.optimizer_role)
    trust = resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "glue.amazonaws.com"}}
    ]
    by_sid = {s["Sid"]: s for s in policy_statements(resources, role_id)}
    bucket = logical_id(stack, stack.lake.data_bucket)
    assert set(as_list(by_sid["TableFiles"]["Action"])) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert sorted(map(dumps, by_sid["TableFiles"]["Resource"])) == sorted(
        dumps({"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, f"/iceberg/{t}/*"]]}) for t in TABLES
    )
    assert by_sid["ListTableFiles"]["Resource"] == {"Fn::GetAtt": [bucket, "Arn"]}
    assert set(as_list(by_sid["CommitTables"]["Action"])) == {"glue:GetTable", "glue:UpdateTable"}
    assert all(f":table/marketpipe/{t}" in dumps(by_sid["CommitTables"]["Resource"]) for t in TABLES)
    logs = dumps(by_sid["OptimizerLogs"]["Resource"])
    assert "log-group:/aws-glue/iceberg-compaction/logs:*" in logs
    assert "log-group:/aws-glue/iceberg-orphan-file-deletion/logs:*" in logs


def test_noncurrent_iceberg_versions_expire_after_a_day(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    rules = resources[logical_id(stack, stack.lake.data_bucket)]["Properties"]["LifecycleConfiguration"][
        "Rules"
    ]
    (rule,) = [r for r in rules if r["Id"] == "expire-noncurrent-iceberg-versions"]
    assert rule["Prefix"] == "iceberg/"
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert rule["ExpiredObjectDeleteMarker"] is True


def test_iceberg_tables_false_leaves_table_creation_to_a_later_deploy() -> None:
    """The first of two deploys moving a stack off the Parquet Glue tables of the same names."""
    _, stack = build({"icebergTables": "false", "icebergSnapshotHours": "3"})
    resources = Template.from_stack(stack).to_json()["Resources"]
    assert not _of_type(resources, "Custom::MarketpipeIcebergTables")
    assert not _of_type(resources, "AWS::Glue::TableOptimizer")
    assert not [r for r in resources.values() if r["Type"] == "AWS::Glue::Table" and "bitfinex" in dumps(r)]
    mapping = resources[logical_id(stack, stack.book_builder.event_source_mapping)]
    assert not [d for d in as_list(mapping.get("DependsOn", [])) if d.startswith("IcebergLake")]
    # Paused (it keeps its position) until the next deploy creates the tables: nothing is given up.
    assert mapping["Properties"]["Enabled"] is False
    env = resources[logical_id(stack, stack.iceberg_lake.maintenance_function)]["Properties"]["Environment"]
    assert env["Variables"]["MARKETPIPE_ICEBERG_SNAPSHOT_HOURS"] == "3.0"
    assert (
        resources[logical_id(stack, stack.iceberg_lake.maintenance_rule)]["Properties"]["State"] == "DISABLED"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("icebergSnapshotHours", "0.1"),
        ("icebergSnapshotHours", "169"),
        ("icebergSnapshotHours", "soon"),
        ("icebergOrphanRetentionDays", "0"),
    ],
)
def test_iceberg_settings_are_bounded(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build({key: value})  # the configuration is read before any construct is made
