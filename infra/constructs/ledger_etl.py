"""The daily ledger ETL: EventBridge schedule -> Lambda over S3, Glue tables and Athena named queries.

Glue columns come from ``marketpipe.etl.model`` and the named queries are the very ``.sql`` files
``marketpipe query`` runs locally, so the catalog and the questions cannot drift from what the ETL
writes. Daily tables use partition projection on ``dt``: a new day is queryable the moment its file lands.
"""

from __future__ import annotations

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
    named_query,
    parquet_table,
    python_function,
    scheduled_rule,
)
from marketpipe import envnames
from marketpipe.etl.model import LEDGER_PREFIX, PARTITION_COLUMN, TABLES, ModelTable
from marketpipe.etl.queries import load_queries

HANDLER_DIR = Path(__file__).resolve().parents[2] / "functions" / "ledger_etl"
RAW_PREFIX = f"{LEDGER_PREFIX}/raw"
QUARANTINE_PREFIX = f"{LEDGER_PREFIX}/quarantine"


def table_parameters(table: ModelTable, location: str, first_day: str) -> dict[str, str]:
    """Parquet table properties, plus ``dt`` date projection for the daily tables."""
    params = {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "SNAPPY"}
    if table.daily:
        params |= {
            "projection.enabled": "true",
            f"projection.{PARTITION_COLUMN}.type": "date",
            f"projection.{PARTITION_COLUMN}.format": "yyyy-MM-dd",
            f"projection.{PARTITION_COLUMN}.range": f"{first_day},NOW",
            f"projection.{PARTITION_COLUMN}.interval": "1",
            f"projection.{PARTITION_COLUMN}.interval.unit": "DAYS",
            "storage.location.template": f"{location}{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/",
        }
    return params


class LedgerEtl(Construct):
    """Daily batch: raw CSVs under ``ledger/raw/`` in, star-schema tables under ``ledger/<table>/`` out."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        lake_bucket: s3.IBucket,
        layer: lambda_.ILayerVersion,
        glue_database_name: str,
        athena_workgroup_name: str,
        first_day: str = "2020-01-01",
        schedule: events.Schedule | None = None,
        lookback_days: int = 2,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        bucket_uri = f"s3://{lake_bucket.bucket_name}"
        region = f"?region={stack.region}"

        self.function = python_function(
            self,
            handler_dir=HANDLER_DIR,
            layer=layer,
            description="marketpipe ledger ETL: raw deposit/withdrawal/event/user CSVs -> star schema",
            memory_size=3008,
            timeout=Duration.minutes(15),
            reserved_concurrent_executions=1,  # two runs must never rewrite the same partitions at once
            retry_attempts=2,
            environment={
                envnames.LEDGER_RAW_URI: f"{bucket_uri}/{RAW_PREFIX}{region}",
                envnames.LEDGER_LAKE_URI: f"{bucket_uri}{region}",
                envnames.LEDGER_QUARANTINE_URI: f"{bucket_uri}/{QUARANTINE_PREFIX}{region}",
                envnames.LEDGER_LOOKBACK_DAYS: str(lookback_days),
            },
        )
        self._grant(lake_bucket)

        self.rule = scheduled_rule(
            self,
            "Daily",
            self.function,
            description="Run the ledger ETL for yesterday (UTC) and the lookback days",
            every=schedule or events.Schedule.cron(minute="30", hour="1"),
            retry_attempts=2,
            max_event_age=Duration.hours(6),
        )
        self.errors_alarm = errors_alarm(
            self,
            self.function,
            "The daily ledger ETL failed (see its log group); re-run with a date event",
            period=Duration.hours(1),
            threshold=1,
        )

        self.tables: dict[str, glue.CfnTable] = {}
        for table in TABLES:
            location = f"{bucket_uri}/{LEDGER_PREFIX}/{table.name}/"
            self.tables[table.name] = parquet_table(
                self,
                f"Table-{table.name}",
                database_name=glue_database_name,
                name=table.name,
                description=f"ledger {table.kind.value}; grain: {table.grain}",
                location=location,
                parameters=table_parameters(table, location, first_day),
                partition_keys=[PARTITION_COLUMN] if table.daily else [],
                columns=[
                    glue.CfnTable.ColumnProperty(name=c.name, type=c.type.glue, comment=c.description)
                    for c in table.columns
                ],
            )

        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for spec in load_queries().values():
            params = ", ".join(f"{p.name} ({p.athena_example()})" for p in spec.params)
            description = spec.description + (f" Parameters, in order: {params}." if params else "")
            self.named_queries[spec.name] = named_query(
                self,
                f"Query-{spec.name}",
                name=f"ledger-{spec.name}",
                database=glue_database_name,
                work_group=athena_workgroup_name,
                description=description[:1024],
                sql=spec.sql,
            )

    def _grant(self, bucket: s3.IBucket) -> None:
        """Read the raw prefix; write only the ledger's own table and quarantine prefixes."""
        tables = [f"{LEDGER_PREFIX}/{t.name}/*" for t in TABLES]
        statements = [
            iam.PolicyStatement(
                sid="ReadRawLedger",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{RAW_PREFIX}/*")],
            ),
            iam.PolicyStatement(
                sid="ListLedger",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [LEDGER_PREFIX, f"{LEDGER_PREFIX}/*"]}},
            ),
            iam.PolicyStatement(
                sid="WriteLedgerTables",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(p) for p in [*tables, f"{QUARANTINE_PREFIX}/*"]],
            ),
        ]
        reason = (
            "Objects under one named ledger prefix (a table's partitions, the raw snapshot or"
            " the quarantine): the object names are dates, the prefix is the narrowest fixed scope."
        )
        grant_objects(
            self.function, bucket, statements, [f"{RAW_PREFIX}/*", f"{QUARANTINE_PREFIX}/*", *tables], reason
        )
