"""Book builder: ordered Kinesis event source, checkpoint table, env contract, VPC placement, IAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template
from infra.stack import MarketpipeStack

from tests.infra.conftest import REPO_ROOT, as_list, build, dumps, logical_id, only, policy_statements


def test_event_source_mapping_preserves_order_and_bounds_failure(
    stack: MarketpipeStack, template: Template
) -> None:
    template.resource_properties_count_is(  # the book builder has exactly one mapping (Binance has its own)
        "AWS::Lambda::EventSourceMapping",
        {"FunctionName": {"Ref": logical_id(stack, stack.book_builder.function)}},
        1,
    )
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [logical_id(stack, stack.stream.stream), "Arn"]},
            "FunctionName": {"Ref": logical_id(stack, stack.book_builder.function)},
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 500,
            "MaximumBatchingWindowInSeconds": 10,
            "ParallelizationFactor": 1,
            "BisectBatchOnFunctionError": False,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumRetryAttempts": 10,
            "MaximumRecordAgeInSeconds": 21600,
            "DestinationConfig": {
                "OnFailure": {
                    "Destination": {
                        "Fn::GetAtt": [logical_id(stack, stack.book_builder.failure_bucket), "Arn"]
                    }
                }
            },
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"TumblingWindowInSeconds": Match.absent()}
    )


def test_function_environment_is_the_domain_contract(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    function = resources[logical_id(stack, stack.book_builder.function)]["Properties"]
    env = function["Environment"]["Variables"]
    assert set(env) == {
        "MARKETPIPE_LAKE_URI", "MARKETPIPE_DB_SECRET_ARN", "MARKETPIPE_DB_NAME",
        "MARKETPIPE_CHECKPOINT_TABLE", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
        "MARKETPIPE_SQL_TABLES", "MARKETPIPE_SQL_SYMBOLS", "MARKETPIPE_ICEBERG_CATALOG",
    }  # fmt: skip
    # The lake is the Iceberg tables in the lake's Glue database, files under s3://<bucket>/iceberg.
    assert env["MARKETPIPE_ICEBERG_CATALOG"] == {
        "Fn::Join": [
            "",
            [
                "glue://marketpipe?warehouse=s3://",
                {"Ref": logical_id(stack, stack.lake.data_bucket)},
                "/iceberg",
            ],
        ]
    }
    assert env["MARKETPIPE_SQL_TABLES"] == "bitfinex_trades,bitfinex_quotes,bitfinex_book"
    assert env["MARKETPIPE_SQL_SYMBOLS"] == "BTC-USD,ETH-USD"
    assert env["MARKETPIPE_LAKE_URI"] == {
        "Fn::Join": ["", ["s3://", {"Ref": logical_id(stack, stack.lake.data_bucket)}, "/lake"]]
    }
    assert env["MARKETPIPE_DB_SECRET_ARN"] == {"Ref": logical_id(stack, stack.database.secret)}
    assert env["MARKETPIPE_DB_NAME"] == "marketpipe"
    assert env["MARKETPIPE_CHECKPOINT_TABLE"] == {
        "Ref": logical_id(stack, stack.book_builder.checkpoint_table)
    }
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "marketpipe"
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["x86_64"]
    assert function["Handler"] == "handler.handler"
    assert function["Layers"] == [{"Ref": logical_id(stack, stack.layer.layer)}]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": logical_id(stack, stack.book_builder.log_group)}


def test_function_runs_in_isolated_subnets_and_may_reach_mysql(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    vpc_config = resources[logical_id(stack, stack.book_builder.function)]["Properties"]["VpcConfig"]
    assert len(vpc_config["SubnetIds"]) == 2
    assert all("isolatedSubnet" in s["Ref"] for s in vpc_config["SubnetIds"])
    sg = logical_id(stack, stack.book_builder.security_group)
    assert vpc_config["SecurityGroupIds"] == [{"Fn::GetAtt": [sg, "GroupId"]}]
    db_sg = logical_id(stack, stack.database.security_group)
    assert any(
        r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Fn::GetAtt": [db_sg, "GroupId"]}
        and r["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [sg, "GroupId"]}
        for r in resources.values()
    )


def test_checkpoint_table_is_on_demand_encrypted_with_pitr(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    table = resources[logical_id(stack, stack.book_builder.checkpoint_table)]["Properties"]
    expected = {
        "KeySchema": [{"AttributeName": "stream_key", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "stream_key", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
    }
    assert {k: table.get(k) for k in expected} == expected


def test_iam_is_scoped_to_named_resources(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    role_id = logical_id(stack, stack.book_builder.function.role)
    statements = policy_statements(resources, role_id)
    assert statements
    for statement in statements:
        assert "*" not in as_list(statement["Resource"]), statement
        for action in as_list(statement["Action"]):
            assert not action.endswith(":*"), statement
    by_sid = {s.get("Sid"): s for s in statements}
    bucket = logical_id(stack, stack.lake.data_bucket)
    assert by_sid["LakeObjects"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/lake/*"]]
    }
    assert by_sid["ListLakePrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["lake/*", "lake"]}}
    failure = logical_id(stack, stack.book_builder.failure_bucket)
    assert by_sid["WriteFailedBatches"]["Action"] == "s3:PutObject"
    assert by_sid["WriteFailedBatches"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [failure, "Arn"]}, "/*"]]
    }
    # Nothing grants the raw archive to the book builder.
    assert "/raw" not in str(statements)


def _glue_arn(kind: str, name: str = "") -> dict[str, Any]:
    suffix = f"/{name}" if name else ""
    return {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":glue:", {"Ref": "AWS::Region"}, ":",
             {"Ref": "AWS::AccountId"}, f":{kind}{suffix}"],
        ]
    }  # fmt: skip


TABLE_ARNS = [
    _glue_arn("table", f"marketpipe/{t}") for t in ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")
]
CATALOG_ARNS = [_glue_arn("catalog"), _glue_arn("database", "marketpipe")]


def _same(resources: Any, expected: list[Any]) -> bool:
    """The same resources in any order (minimizePolicies sorts them)."""
    return sorted(map(dumps, as_list(resources))) == sorted(map(dumps, expected))


def test_iam_commits_to_the_three_iceberg_tables_only(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    statements = policy_statements(resources, logical_id(stack, stack.book_builder.function.role))
    by_sid = {s.get("Sid"): s for s in statements}
    catalog = by_sid["IcebergCatalog"]
    assert set(as_list(catalog["Action"])) == {
        "glue:GetDatabase", "glue:GetTables", "glue:GetTable", "glue:UpdateTable"
    }  # fmt: skip
    assert _same(catalog["Resource"], CATALOG_ARNS + TABLE_ARNS)
    # The deploy step creates the tables: the book builder creates neither them nor the namespace.
    assert "IcebergNamespaceCheck" not in by_sid
    glue_actions = {a for s in statements for a in as_list(s["Action"]) if a.startswith("glue:")}
    assert not {"glue:CreateTable", "glue:CreateDatabase", "glue:DeleteTable"} & glue_actions
    bucket = logical_id(stack, stack.lake.data_bucket)
    files = by_sid["IcebergFiles"]
    assert set(as_list(files["Action"])) == {
        "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"
    }  # fmt: skip
    assert _same(
        files["Resource"],
        [
            {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, f"/iceberg/{t}/*"]]}
            for t in ("bitfinex_trades", "bitfinex_quotes", "bitfinex_book")
        ],
    )
    assert by_sid["IcebergListBucket"]["Resource"] == {"Fn::GetAtt": [bucket, "Arn"]}


def test_stream_is_read_only_once_the_iceberg_tables_exist(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    mapping = resources[logical_id(stack, stack.book_builder.event_source_mapping)]
    assert stack.iceberg_lake.tables_resource is not None
    assert logical_id(stack, stack.iceberg_lake.tables_resource) in as_list(mapping["DependsOn"])
    assert mapping["Properties"]["Enabled"] is True


def test_function_reaches_the_glue_endpoint(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    endpoint_sg = logical_id(stack, stack.network.glue_endpoint_security_group)
    sg = logical_id(stack, stack.book_builder.security_group)
    assert any(
        r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Fn::GetAtt": [endpoint_sg, "GroupId"]}
        and r["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [sg, "GroupId"]}
        and r["Properties"]["FromPort"] == 443
        for r in resources.values()
    )


def test_failure_bucket_is_private_encrypted_and_expires(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    bucket = resources[logical_id(stack, stack.book_builder.failure_bucket)]["Properties"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90


def test_handler_is_a_thin_adapter() -> None:
    source = (REPO_ROOT / "functions" / "book_builder" / "handler.py").read_text()
    assert "from marketpipe.aws import book_builder" in source
    assert "return book_builder.handle(event, os.environ)" in source
    code_lines = [
        line for line in source.splitlines()
        if line.strip() and not line.strip().startswith(("#", '"""', "from ", "import "))
    ]  # fmt: skip
    assert len(code_lines) <= 4, code_lines
    assert Path(REPO_ROOT / "functions" / "book_builder").is_dir()


def test_log_group_has_retention(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    _, group = only(resources, "AWS::Logs::LogGroup", contains="BookBuilderLogs")
    assert group["Properties"]["RetentionInDays"] == 30


def test_parallelization_factor_is_a_setting_of_both_ordered_sources() -> None:
    """Above 1, Lambda still keeps each partition key in order; the book builder checkpoints per key."""
    _, stack = build({"parallelizationFactor": "4"})
    mappings = [
        r["Properties"]
        for r in Template.from_stack(stack).to_json()["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert mappings and all(m["ParallelizationFactor"] == 4 for m in mappings)
