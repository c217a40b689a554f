"""Execution price on AWS: EventBridge every minute -> Lambda -> S3 lake; Glue tables, Athena named queries.

Each minute the Lambda fetches the Coinbase and Binance level-2 books (within each exchange's limits;
a Binance ban or a Retry-After is kept in a small state object so no later invocation polls before it
ends), stores every body gzip-compressed under ``lake/execution_raw/`` and the priced facts and
dimensions as Parquet under ``lake/execution_*``. Glue tables use partition projection (no crawler),
and the questions are the very SQL texts ``marketpipe query`` runs locally on DuckDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from constructs import Construct
from marketpipe.execution.archive import RAW_PREFIX
from marketpipe.execution.model import ALL_TABLES, FACT_TABLES, MODEL_EPOCH
from marketpipe.execution.processor import DEFAULT_MARKETS, VENUES
from marketpipe.execution.queries import QUERIES
from marketpipe.tables import Kind, Table
from marketpipe.timeutil import us_to_datetime

HANDLER_DIR = Path(__file__).resolve().parents[2] / "functions" / "execution"
STATE_KEY = "execution/state/pauses.json"
GLUE_TYPES = {Kind.STR: "string", Kind.INT: "bigint", Kind.FLOAT: "double", Kind.TS_MS: "timestamp",
              Kind.TS_US: "timestamp"}  # fmt: skip
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def projection_parameters(table: Table, location: str, start_date: str) -> dict[str, str]:
    """``exchange`` (enum, facts only), ``dt`` (date) and ``hour`` projected: new files queryable at once."""
    template = "".join(f"{p}=${{{p}}}/" for p in table.partitions) + "dt=${dt}/hour=${hour}"
    params = {
        "classification": "parquet",
        "EXTERNAL": "TRUE",
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": f"{start_date},NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
        "projection.hour.type": "integer",
        "projection.hour.range": "0,23",
        "projection.hour.digits": "2",
        "storage.location.template": location + template,
    }
    for p in table.partitions:
        params[f"projection.{p}.type"] = "enum"
        params[f"projection.{p}.values"] = ",".join(VENUES)
    return params


class ExecutionPrice(Construct):
    """The minute schedule, the pricing Lambda, six Glue tables and the named questions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data_bucket: s3.IBucket,
        layer: lambda_.ILayerVersion,
        glue_database_name: str,
        athena_workgroup_name: str,
        lake_prefix: str = "lake",
        markets: Sequence[str] = DEFAULT_MARKETS,
        notionals: Sequence[str] = ("100000", "50000"),
        start_date: str = "2026-01-01",
        binance_api_url: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        bucket = f"s3://{data_bucket.bucket_name}"
        region = f"?region={stack.region}"
        self.prefixes = [f"{lake_prefix}/{t.name}" for t in ALL_TABLES] + [f"{lake_prefix}/{RAW_PREFIX}"]

        environment = {
            "MARKETPIPE_EXECUTION_MARKETS": ",".join(markets),
            "MARKETPIPE_EXECUTION_NOTIONALS": ",".join(notionals),
            "MARKETPIPE_EXECUTION_LAKE_URI": f"{bucket}/{lake_prefix}{region}",
            "MARKETPIPE_EXECUTION_STATE_URI": f"{bucket}/{STATE_KEY}{region}",
        }
        if binance_api_url:  # e.g. https://data-api.binance.vision where api.binance.com answers 451
            environment["MARKETPIPE_BINANCE_API_URL"] = binance_api_url
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH)
        self.function = lambda_.Function(
            self,
            "Function",
            description="marketpipe execution price: Coinbase and Binance books each minute -> lake",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(HANDLER_DIR)),
            layers=[layer],
            memory_size=512,
            timeout=Duration.seconds(50),
            # One poller at a time: overlapping invocations would share one IP's rate limits and race
            # on the hour files they merge into.
            reserved_concurrent_executions=1,
            retry_attempts=0,
            log_group=log_group,
            environment=environment,
        )
        self._grant(data_bucket)

        self.rule = events.Rule(
            self,
            "EveryMinute",
            description="Fetch the Coinbase and Binance books and price $100k/$50k market orders",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    event=events.RuleTargetInput.from_object({"time": events.EventField.time}),
                    retry_attempts=0,  # a late retry would price a stale minute; the next one comes anyway
                    max_event_age=Duration.seconds(60),
                )
            ],
        )
        self.errors_alarm = cloudwatch.Alarm(
            self,
            "Errors",
            alarm_description="The execution-price Lambda failed in 5 or more of the last 10 minutes",
            metric=self.function.metric_errors(period=Duration.minutes(10)),
            threshold=5,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        dims_start = us_to_datetime(MODEL_EPOCH).strftime("%Y-%m-%d")
        self.tables: dict[str, glue.CfnTable] = {}
        for table in ALL_TABLES:
            location = f"{bucket}/{lake_prefix}/{table.name}/"
            first = start_date if table in FACT_TABLES else dims_start
            self.tables[table.name] = glue.CfnTable(
                self,
                f"Table-{table.name}",
                catalog_id=stack.account,
                database_name=glue_database_name,
                table_input=glue.CfnTable.TableInputProperty(
                    name=table.name,
                    description=f"execution price: {table.name} (docs/EXECUTION.md)",
                    table_type="EXTERNAL_TABLE",
                    parameters=projection_parameters(table, location, first),
                    partition_keys=[
                        glue.CfnTable.ColumnProperty(name=name, type="string")
                        for name in (*table.partitions, "dt", "hour")
                    ],
                    storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                        location=location,
                        columns=[
                            glue.CfnTable.ColumnProperty(name=c.name, type=GLUE_TYPES[c.kind])
                            for c in table.columns
                            if c.name not in table.partitions
                        ],
                        input_format=PARQUET_INPUT,
                        output_format=PARQUET_OUTPUT,
                        serde_info=glue.CfnTable.SerdeInfoProperty(
                            serialization_library=PARQUET_SERDE, parameters={"serialization.format": "1"}
                        ),
                    ),
                ),
            )

        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for spec in QUERIES.values():
            self.named_queries[spec.name] = athena.CfnNamedQuery(
                self,
                f"Query-{spec.name}",
                name=spec.name.replace("_", "-"),
                database=glue_database_name,
                work_group=athena_workgroup_name,
                description=f"{spec.description} Parameter: day ('2026-11-22').",
                query_string=spec.sql,
            )

    def _grant(self, bucket: s3.IBucket) -> None:
        """The execution tables' prefixes, the raw archive and the pause state; nothing else."""
        objects = [f"{p}/*" for p in self.prefixes] + [STATE_KEY]
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ExecutionObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(p) for p in objects],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListExecutionPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [*self.prefixes, *objects, "execution/*"]}},
            )
        )
        if bucket.encryption_key is not None:
            bucket.encryption_key.grant_encrypt_decrypt(self.function)
        self._acknowledge(bucket, objects)

    def _acknowledge(self, bucket: s3.IBucket, objects: list[str]) -> None:
        Validations.of(self.function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="Pinned to python3.12: the shared layer's compiled wheels are built for cp312.",
            )
        )
        role = self.function.role
        if role is None:  # pragma: no cover - Function always creates a role here
            return
        findings = [
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                reason="AWS-managed policy limited to writing this function's own CloudWatch logs.",
            )
        ]
        from infra.nag import arn_finding

        if bucket.node.default_child is not None:
            findings += [
                Acknowledgment(
                    id=arn_finding("AwsSolutions-IAM5", bucket, f"/{p}"),
                    reason="Objects under one execution table's (or the raw archive's) prefix: object names"
                    " are partition values and timestamps, the prefix is the narrowest fixed scope.",
                )
                for p in objects
                if p.endswith("*")
            ]
        Validations.of(role).acknowledge(*findings)
