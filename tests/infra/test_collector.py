"""Collector: Fargate service (desired 1, rollback), public IP, least-privilege task role, image asset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template
from infra.constructs.collector import DOCKERFILE
from infra.stack import MarketpipeStack

from tests.infra.conftest import REPO_ROOT, as_list, build, logical_id, only, policy_statements


def test_cluster_has_container_insights(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )


def test_service_runs_one_task_in_a_public_subnet_with_rollback(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    _, service = only(resources, "AWS::ECS::Service")
    props = service["Properties"]
    assert props["DesiredCount"] == 1
    assert props["LaunchType"] == "FARGATE"
    assert props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED"
    assert all("publicSubnet" in s["Ref"] for s in network["Subnets"])
    # No inbound rule on the collector's security group.
    sg = resources[logical_id(stack, stack.collector.security_group)]["Properties"]
    assert "SecurityGroupIngress" not in sg
    assert not [
        r for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"]["Fn::GetAtt"][0] == logical_id(stack, stack.collector.security_group)
    ]  # fmt: skip


def test_container_runs_marketpipe_with_kinesis_transport_and_wiring_env(
    stack: MarketpipeStack, template: Template
) -> None:
    stream_id = logical_id(stack, stack.stream.stream)
    bucket_id = logical_id(stack, stack.lake.data_bucket)
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Cpu": "256",
            "Memory": "512",
            "RuntimePlatform": {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Command": ["run", "--exchanges", "bitfinex,binance", "--transport", "kinesis"],
                        "StopTimeout": 60,
                        "Environment": Match.array_with(
                            [
                                {"Name": "MARKETPIPE_KINESIS_STREAM", "Value": {"Ref": stream_id}},
                                {
                                    "Name": "MARKETPIPE_RAW_URI",
                                    "Value": {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, "/raw"]]},
                                },
                                {"Name": "MARKETPIPE_SYMBOLS", "Value": "BTC-USD,ETH-USD"},
                                {"Name": "AWS_REGION", "Value": Match.any_value()},
                            ]
                        ),
                        "LogConfiguration": {
                            "LogDriver": "awslogs",
                            "Options": Match.object_like(
                                {"awslogs-group": {"Ref": logical_id(stack, stack.collector.log_group)}}
                            ),
                        },
                    }
                )
            ],
        },
    )
    log_group = stack.resolve(stack.collector.log_group.node.default_child.retention_in_days)  # type: ignore[union-attr]
    assert log_group == 30


def test_task_role_is_scoped_to_the_stream_the_raw_prefix_and_the_namespace(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    role_id = logical_id(stack, stack.collector.task_definition.task_role)
    statements = {s["Sid"]: s for s in policy_statements(resources, role_id)}
    assert set(statements) == {"PutFramesOnStream", "ArchiveRawFrames", "PublishMarketpipeMetrics"}

    kinesis = statements["PutFramesOnStream"]
    assert sorted(as_list(kinesis["Action"])) == [
        "kinesis:DescribeStreamSummary", "kinesis:PutRecord", "kinesis:PutRecords"
    ]  # fmt: skip
    assert kinesis["Resource"] == {"Fn::GetAtt": [logical_id(stack, stack.stream.stream), "Arn"]}

    raw = statements["ArchiveRawFrames"]
    assert sorted(as_list(raw["Action"])) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert raw["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [logical_id(stack, stack.lake.data_bucket), "Arn"]}, "/raw/*"]]
    }

    metrics = statements["PublishMarketpipeMetrics"]
    assert metrics["Action"] == "cloudwatch:PutMetricData"
    assert metrics["Resource"] == "*"  # PutMetricData has no resource type ...
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "marketpipe"}}  # ... so this


def test_image_is_built_from_the_repo_root_with_the_collector_dockerfile(stack: MarketpipeStack) -> None:
    assembly = stack.node.root.synth()  # type: ignore[attr-defined]  # cached: same assembly as the template
    assets = json.loads((Path(assembly.directory) / f"{stack.artifact_id}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == DOCKERFILE
    assert image["source"]["platform"] == "linux/amd64"
    # The staged build context holds only what the Dockerfile copies (.dockerignore + excludes).
    context = Path(assembly.directory) / image["source"]["directory"]
    staged = {p.name for p in context.iterdir()}
    assert {"pyproject.toml", "setup.py", "layers", "functions"} <= staged
    package = {p.name for p in (context / "layers" / "marketpipe").iterdir()}
    assert "_cbook.pyx" in package and not any(n.endswith((".so", ".c")) for n in package)
    assert not staged & {".venv", "node_modules", "cdk.out", "data", ".git", "tests"}


def test_dockerfile_installs_the_package_and_runs_the_kinesis_collector() -> None:
    dockerfile = (REPO_ROOT / DOCKERFILE).read_text()
    assert "COPY pyproject.toml setup.py README.md ./" in dockerfile
    assert "COPY layers/ ./layers/" in dockerfile
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in dockerfile  # compiler stage
    assert "assert b.COMPILED" in dockerfile  # the image refuses to build without the compiled book
    assert 'ENTRYPOINT ["marketpipe"]' in dockerfile
    assert '"--transport", "kinesis"' in dockerfile
    assert "USER 10001" in dockerfile
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*"  # whitelist: .venv, node_modules, cdk.out, data never sent
    assert "!layers/marketpipe/**" in ignore and "!pyproject.toml" in ignore and "!setup.py" in ignore


def test_symbols_all_reaches_the_task_as_all() -> None:
    app, stack = build({"symbols": "all", "shardCount": 3}, nag=True)
    app.synth()  # cdk-nag runs here: the stack for 'all' is as clean as the default one
    (container,) = Template.from_stack(stack).find_resources("AWS::ECS::TaskDefinition").values()
    environment = container["Properties"]["ContainerDefinitions"][0]["Environment"]
    assert {"Name": "MARKETPIPE_SYMBOLS", "Value": "all"} in environment
    stream = Template.from_stack(stack).find_resources("AWS::Kinesis::Stream")
    assert [s["Properties"]["ShardCount"] for s in stream.values()] == [3]
