"""The Fargate collector: the same ``marketpipe run`` as locally, with the Kinesis transport.

One long-lived task holds the exchange websockets (Lambda's 15-minute limit rules it out). It sits in
a public subnet with a public IP and no inbound rule, which reaches the exchanges without a NAT
gateway. The image is built from the repository root at deploy time; ``cdk synth`` only hashes it.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from constructs import Construct
from infra.config import MarketpipeConfig, log_retention
from infra.constructs.layer import REPO_ROOT
from infra.nag import arn_finding
from marketpipe import envnames

METRICS_NAMESPACE = "marketpipe"
DOCKERFILE = "functions/collector/Dockerfile"
# Mirrors .dockerignore: CDK fingerprints the build context at synth, so keep it to what COPY uses.
IMAGE_EXCLUDES = [
    ".git", ".venv", "node_modules", "cdk.out", "data", "tests", "docs", "benchmarks",
    "**/__pycache__", "**/*.egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
    "build", "layers/marketpipe/*.so", "layers/marketpipe/_cbook.c",  # this machine's own build of the book
]  # fmt: skip


class Collector(Construct):
    """ECS cluster, Fargate service (desired 1, circuit breaker + rollback), least-privilege task role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MarketpipeConfig,
        vpc: ec2.IVpc,
        stream: kinesis.IStream,
        data_bucket: s3.IBucket,
        raw_uri: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=config.collector_cpu,
            memory_limit_mib=config.collector_memory_mb,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.X86_64,
            ),
        )
        self.environment = {
            envnames.KINESIS_STREAM: stream.stream_name,
            envnames.RAW_URI: raw_uri,
            envnames.SYMBOLS: ",".join(config.symbols),
            "AWS_REGION": Stack.of(self).region,
        }
        self.container = self.task_definition.add_container(
            "collector",
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT),
                file=DOCKERFILE,
                platform=ecr_assets.Platform.LINUX_AMD64,
                exclude=IMAGE_EXCLUDES,
            ),
            command=["run", "--exchanges", ",".join(config.exchanges), "--transport", "kinesis"],
            environment=self.environment,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="collector", log_group=self.log_group),
            # SIGTERM first: the collector flushes every received frame before it exits.
            stop_timeout=Duration.seconds(60),
            readonly_root_filesystem=False,
        )
        Validations.of(self.task_definition).acknowledge(
            Acknowledgment(
                id="AwsSolutions-ECS2",
                reason="Environment holds only non-secret wiring (stream name, raw URI, symbols, region);"
                " the collector needs no secrets.",
            )
        )

        task_role = self.task_definition.task_role
        # Sequential PutRecord or one-record-per-key PutRecords: both on this stream only.
        task_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PutFramesOnStream",
                actions=["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary"],
                resources=[stream.stream_arn],
            )
        )
        # Raw capture archive: write-only, and only under raw/.
        task_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ArchiveRawFrames",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[data_bucket.arn_for_objects("raw/*")],
            )
        )
        # PutMetricData has no resource type; the namespace condition is the only way to scope it.
        task_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PublishMarketpipeMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        Validations.of(task_role).acknowledge(
            Acknowledgment(
                id=arn_finding("AwsSolutions-IAM5", data_bucket, "/raw/*"),
                reason="Raw capture objects are named raw/<exchange>/<date>/<hour>.jsonl(.gz): a prefix is"
                " the narrowest scope; the actions are write-only.",
            ),
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="cloudwatch:PutMetricData supports no resource ARNs; it is scoped by the"
                " cloudwatch:namespace condition to 'marketpipe'.",
            ),
        )
        execution_role = self.task_definition.obtain_execution_role()
        Validations.of(execution_role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="ecr:GetAuthorizationToken (added by CDK for the image pull) has no resource-level"
                " permissions; the repository actions are scoped to the CDK assets repository.",
            )
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Collector: no inbound; outbound HTTPS/WSS to exchanges and AWS APIs",
            allow_all_outbound=True,
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=1,
            assign_public_ip=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[self.security_group],
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            # Start the new task before stopping the old: no gap in capture. The book builder follows
            # one connection at a time and switches only at a snapshot, so two producers are safe.
            min_healthy_percent=100,
            max_healthy_percent=200,
            enable_execute_command=False,
            platform_version=ecs.FargatePlatformVersion.LATEST,
        )
