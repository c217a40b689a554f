"""The book-builder Lambda: Kinesis frames in, verified books out to the Iceberg lake and MySQL.

Ordering is the whole point, so the event source is configured for it: one batch per shard at a time
(ParallelizationFactor 1), no bisecting (a split batch would replay frames out of order), partial
batch responses so Lambda resumes at the first failed record, bounded retries and record age so a
poison record cannot stall a shard forever, and an S3 on-failure destination that keeps the payload
metadata of whatever was given up on. Book state survives cold starts in a DynamoDB checkpoint table
keyed by stream key, checked against sequence numbers on every batch by the domain code.

The lake is the Iceberg tables of ``MARKETPIPE_ICEBERG_CATALOG`` (Glue database, ``s3://<bucket>/iceberg``;
:mod:`infra.constructs.iceberg_lake`): the function may read and commit those three tables and their
files only. ``MARKETPIPE_LAKE_URI`` and the ``lake/`` grants stay for the Parquet layout, which the
function writes when the catalog variable is unset.
"""

from __future__ import annotations

import jsii
from aws_cdk import Acknowledgment, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3

from constructs import Construct
from infra.config import MarketpipeConfig, log_retention
from infra.constructs.buckets import secure_bucket
from infra.constructs.database_access import DatabaseAccess
from infra.constructs.iceberg_lake import IcebergCatalog
from infra.constructs.lake import LAKE_PREFIX
from infra.constructs.layer import REPO_ROOT
from infra.constructs.scheduled_lake import acknowledge_function
from infra.nag import arn_finding
from marketpipe import envnames

METRICS_NAMESPACE = "marketpipe"
SERVICE_NAME = "book-builder"


@jsii.implements(lambda_.IEventSourceDlq)
class S3PutOnlyFailureDestination:
    """S3 on-failure destination granting only what Lambda needs (s3:PutObject, s3:ListBucket).

    ``aws_lambda_event_sources.S3OnFailureDestination`` works for Kinesis but grants the function full
    read/write (``s3:GetObject*``, ``s3:DeleteObject*``, ``s3:List*``...) on the bucket; the function
    itself never reads failed batches, so this binds the same destination with write-only rights.
    """

    def __init__(self, bucket: s3.IBucket) -> None:
        self.bucket = bucket

    def bind(
        self, _target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction
    ) -> lambda_.DlqDestinationConfig:
        target_handler.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteFailedBatches",
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects("*")],
            )
        )
        target_handler.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListFailedBatches", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]
            )
        )
        return lambda_.DlqDestinationConfig(destination=self.bucket.bucket_arn)


def failed_batches_finding(bucket: s3.IBucket) -> Acknowledgment:
    """cdk-nag's IAM5 on ``S3PutOnlyFailureDestination``'s object wildcard, with the reason."""
    return Acknowledgment(
        id=arn_finding("AwsSolutions-IAM5", bucket, "/*"),
        reason="Lambda names the on-failure objects itself (aws/lambda/<mapping>/<shard>/...);"
        " the grant is s3:PutObject only, on a bucket dedicated to failed batches.",
    )


def checkpoint_table(scope: Construct) -> dynamodb.Table:
    """``Checkpoints``: the consumer's state per stream key, so it survives cold starts."""
    return dynamodb.Table(
        scope,
        "Checkpoints",
        partition_key=dynamodb.Attribute(name="stream_key", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=RemovalPolicy.DESTROY,
    )


def ordered_kinesis_source(
    stream: kinesis.IStream,
    config: MarketpipeConfig,
    on_failure: lambda_.IEventSourceDlq | None = None,
    *,
    enabled: bool = True,
) -> event_sources.KinesisEventSource:
    """In order per partition key (Lambda keeps it at any parallelization factor), no bisecting,
    partial batch responses, bounded retries and age. Disabled, the mapping keeps its position."""
    return event_sources.KinesisEventSource(
        stream,
        starting_position=lambda_.StartingPosition.TRIM_HORIZON,
        batch_size=config.batch_size,
        max_batching_window=Duration.seconds(config.max_batching_window_seconds),
        parallelization_factor=config.parallelization_factor,
        bisect_batch_on_error=False,
        report_batch_item_failures=True,
        retry_attempts=config.retry_attempts,
        max_record_age=Duration.seconds(config.max_record_age_seconds),
        on_failure=on_failure,
        enabled=enabled,
    )


class BookBuilder(Construct):
    """Checkpoint table, failure bucket, the function in isolated subnets, and its Kinesis mapping."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MarketpipeConfig,
        database: DatabaseAccess,
        stream: kinesis.IStream,
        layer: lambda_.ILayerVersion,
        data_bucket: s3.IBucket,
        lake_uri: str,
        iceberg: IcebergCatalog,
        access_logs_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.checkpoint_table = checkpoint_table(self)
        self.failure_bucket = secure_bucket(
            self,
            "FailedBatches",
            access_logs=access_logs_bucket,
            retain=config.retain_data,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-failed-batches",
                    expiration=Duration.days(config.failed_batch_expiration_days),
                )
            ],
        )
        self.security_group = database.security_group(
            self,
            "SecurityGroup",
            description="Book builder: MySQL, S3/DynamoDB gateway endpoints, Secrets Manager endpoint",
            peer_description="book builder",
        )
        self.function = database.function(
            self,
            security_group=self.security_group,
            tables=[self.checkpoint_table],
            handler_dir=REPO_ROOT / "functions" / "book_builder",
            layer=layer,
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
            description="Rebuilds verified order books from Kinesis frames; writes the lake and MySQL",
            memory_size=config.book_builder_memory_mb,
            timeout=Duration.seconds(config.book_builder_timeout_seconds),
            environment={
                envnames.LAKE_URI: lake_uri,
                **iceberg.environment,
                **database.environment,
                envnames.CHECKPOINT_TABLE: self.checkpoint_table.table_name,
                envnames.SQL_TABLES: config.sql_scope[0],
                envnames.SQL_SYMBOLS: config.sql_scope[1],
                envnames.POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
                envnames.POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
            },
        )
        self.log_group = self.function.log_group
        # Lake files are merged (read, dedupe, rewrite) under lake/ only; the raw/ archive stays out of
        # reach. Explicit actions instead of grant_read_write's s3:GetObject*/s3:List* wildcards.
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="LakeObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[data_bucket.arn_for_objects(f"{LAKE_PREFIX}/*")],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListLakePrefix",
                actions=["s3:ListBucket"],
                resources=[data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{LAKE_PREFIX}/*", f"{LAKE_PREFIX}"]}},
            )
        )

        # Appends and their exactly-once watermarks: read and commit the three tables, nothing else.
        iceberg_findings = iceberg.grant(self.function)  # reads and commits; the deploy step creates

        # Paused while a deploy leaves the Iceberg tables to the next one (icebergTables=false).
        self.event_source = ordered_kinesis_source(
            stream, config, S3PutOnlyFailureDestination(self.failure_bucket), enabled=config.iceberg_tables
        )
        self.function.add_event_source(self.event_source)
        self.event_source_mapping = next(
            c for c in self.function.node.children if isinstance(c, lambda_.EventSourceMapping)
        )
        """Depend on this to start reading the stream only once something exists (the Iceberg tables)."""

        self._acknowledge(data_bucket, iceberg_findings)

    def _acknowledge(self, data_bucket: s3.IBucket, iceberg_findings: list[Acknowledgment]) -> None:
        acknowledge_function(
            self.function,
            vpc=True,
            findings=[
                *iceberg_findings,
                Acknowledgment(
                    id=arn_finding("AwsSolutions-IAM5", data_bucket, f"/{LAKE_PREFIX}/*"),
                    reason="Lake objects are partitioned by table/symbol/date/hour: the lake/ prefix is"
                    " the narrowest fixed scope; the raw/ archive is not reachable.",
                ),
                failed_batches_finding(self.failure_bucket),
            ],
        )
