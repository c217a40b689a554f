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

from aws_cdk import Duration, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

from constructs import Construct
from infra.constructs.scheduled_lake import (
    errors_alarm,
    grant_objects,
    hourly_projection,
    named_query,
    parquet_table,
    python_function,
    scheduled_rule,
    table_columns,
)
from marketpipe import envnames
from marketpipe.execution.archive import RAW_PREFIX
from marketpipe.execution.model import MODEL_EPOCH
from marketpipe.execution.processor import DEFAULT_MARKETS, VENUES
from marketpipe.execution.queries import QUERIES
from marketpipe.tables.execution import EXECUTION_TABLES, FACT_TABLES
from marketpipe.timeutil import us_to_datetime

HANDLER_DIR = Path(__file__).resolve().parents[2] / "functions" / "execution"
STATE_KEY = "execution/state/pauses.json"


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
        tables = [f"{lake_prefix}/{t.name}" for t in EXECUTION_TABLES]
        self.prefixes = [*tables, f"{lake_prefix}/{RAW_PREFIX}"]

        environment = {
            envnames.EXECUTION_MARKETS: ",".join(markets),
            envnames.EXECUTION_NOTIONALS: ",".join(notionals),
            envnames.EXECUTION_LAKE_URI: f"{bucket}/{lake_prefix}{region}",
            envnames.EXECUTION_STATE_URI: f"{bucket}/{STATE_KEY}{region}",
        }
        if binance_api_url:  # e.g. https://data-api.binance.vision where api.binance.com answers 451
            environment[envnames.BINANCE_API_URL] = binance_api_url
        self.function = python_function(
            self,
            handler_dir=HANDLER_DIR,
            layer=layer,
            description="marketpipe execution price: Coinbase and Binance books each minute -> lake",
            memory_size=512,
            timeout=Duration.seconds(50),
            # One poller at a time: overlapping invocations would share one IP's rate limits and race
            # on the hour files they merge into.
            reserved_concurrent_executions=1,
            retry_attempts=0,
            environment=environment,
        )
        self._grant(data_bucket)

        self.rule = scheduled_rule(
            self,
            "EveryMinute",
            self.function,
            description="Fetch the Coinbase and Binance books and price $100k/$50k market orders",
            every=events.Schedule.rate(Duration.minutes(1)),
            event={"time": events.EventField.time},
            retry_attempts=0,  # a late retry would price a stale minute; the next one comes anyway
            max_event_age=Duration.seconds(60),
        )
        self.errors_alarm = errors_alarm(
            self,
            self.function,
            "The execution-price Lambda failed in 5 or more of the last 10 minutes",
            period=Duration.minutes(10),
            threshold=5,
        )

        dims_start = us_to_datetime(MODEL_EPOCH).strftime("%Y-%m-%d")
        self.tables: dict[str, glue.CfnTable] = {}
        for table in EXECUTION_TABLES:
            location = f"{bucket}/{lake_prefix}/{table.name}/"
            first = start_date if table in FACT_TABLES else dims_start
            exchanges = {p: ",".join(VENUES) for p in table.partitions}  # facts only: exchange=…/
            self.tables[table.name] = parquet_table(
                self,
                f"Table-{table.name}",
                database_name=glue_database_name,
                name=table.name,
                description=f"execution price: {table.name} (docs/EXECUTION.md)",
                location=location,
                parameters=hourly_projection(location, first, exchanges),
                partition_keys=(*table.partitions, "dt", "hour"),
                columns=table_columns(table),
            )

        self.named_queries: dict[str, athena.CfnNamedQuery] = {
            spec.name: named_query(
                self,
                f"Query-{spec.name}",
                name=spec.name.replace("_", "-"),
                database=glue_database_name,
                work_group=athena_workgroup_name,
                description=f"{spec.description} Parameter: day ('2026-11-22').",
                sql=spec.sql,
            )
            for spec in QUERIES.values()
        }

    def _grant(self, bucket: s3.IBucket) -> None:
        """The execution tables' prefixes, the raw archive and the pause state; nothing else."""
        objects = [f"{p}/*" for p in self.prefixes] + [STATE_KEY]
        statements = [
            iam.PolicyStatement(
                sid="ExecutionObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(p) for p in objects],
            ),
            iam.PolicyStatement(
                sid="ListExecutionPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [*self.prefixes, *objects, "execution/*"]}},
            ),
        ]
        reason = (
            "Objects under one execution table's (or the raw archive's) prefix: object names"
            " are partition values and timestamps, the prefix is the narrowest fixed scope."
        )
        grant_objects(self.function, bucket, statements, objects, reason)
