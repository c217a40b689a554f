"""Bitso spread monitor on AWS: two EventBridge schedules -> one Lambda; S3 files, Glue, Athena, SNS alerts.

Every minute the Lambda holds the Bitso websocket for that minute (REST as fallback within the rate
limit), samples each second, sends threshold crossings to the SNS topic and stores the minute as a
staging chunk. Every 10 minutes (one minute after the window, so its last chunk is complete) the same
function writes the window's file per book into the lake: ``lake/bitso_spreads/book=…/dt=…/hour=…/``,
described to Athena by a Glue table with partition projection (no crawler, no partition loading).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3

from constructs import Construct
from infra.constructs.scheduled_lake import (
    alert_topic,
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
from marketpipe.tables.bitso import BITSO_SPREADS

HANDLER_DIR = Path(__file__).resolve().parents[2] / "functions" / "bitso_spreads"
STAGING_PREFIX = "bitso/staging"
STATE_KEY = "bitso/state/thresholds.json"


def named_queries(thresholds: Sequence[str]) -> dict[str, tuple[str, str]]:
    """The markets team's two questions in Athena SQL: id -> (description, SQL)."""
    shares = ",\n".join(
        f"       round(100.0 * count_if(spread > {t}) / nullif(count(spread), 0), 3)"
        f" AS pct_above_{t.replace('.', '_')}"
        for t in thresholds
    )
    return {
        "ShareAboveThresholdsPerHour": (
            "Per book and UTC hour of yesterday: share of observed seconds whose spread was above each alert"
            " threshold (missing seconds are counted apart, never as below). Edit dt for another day.",
            "SELECT book, dt, hour,\n"
            "       count(*) AS seconds,\n"
            "       count(spread) AS observed_seconds,\n"
            "       count(*) - count(spread) AS missing_seconds,\n"
            f"{shares}\n"
            f"FROM {BITSO_SPREADS.name}\n"
            "WHERE dt = CAST(current_date - INTERVAL '1' DAY AS varchar)\n"
            "GROUP BY book, dt, hour\n"
            "ORDER BY book, hour",
        ),
        "WidestSpreadsOfDay": (
            "The 20 widest spreads of yesterday (UTC) per book, with the prices and the data source; edit dt"
            " for another day. Reads one day partition per book.",
            "SELECT book, orderbook_timestamp, spread, bid, ask, source, age_ms\n"
            "FROM (\n"
            "  SELECT *, row_number() OVER (PARTITION BY book ORDER BY spread DESC, orderbook_timestamp)"
            " AS rank\n"
            f"  FROM {BITSO_SPREADS.name}\n"
            "  WHERE dt = CAST(current_date - INTERVAL '1' DAY AS varchar) AND spread IS NOT NULL\n"
            ")\n"
            "WHERE rank <= 20\n"
            "ORDER BY book, spread DESC",
        ),
    }


class BitsoSpreads(Construct):
    """Schedules, the sampling/compaction Lambda, the Glue table, two named queries and the alert topic."""

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
        books: Sequence[str] = ("btc_mxn", "usd_mxn"),
        thresholds: Sequence[str] = ("1.0", "0.5", "0.1"),
        window_seconds: int = 600,
        start_date: str = "2026-01-01",
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        bucket = f"s3://{data_bucket.bucket_name}"
        region = f"?region={stack.region}"
        table_prefix = f"{lake_prefix}/{BITSO_SPREADS.name}"

        self.topic = alert_topic(self, "marketpipe Bitso spread alerts")
        self.function = python_function(
            self,
            handler_dir=HANDLER_DIR,
            layer=layer,
            description="marketpipe Bitso spreads: sample each second of a minute; write 10-minute files",
            memory_size=512,
            timeout=Duration.seconds(90),
            # One sampler per minute plus the overlap of the next one and a compaction; never a crowd
            # of invocations sharing one IP's 60 REST requests a minute.
            reserved_concurrent_executions=3,
            retry_attempts=0,
            environment={
                envnames.BITSO_BOOKS: ",".join(books),
                envnames.SPREAD_THRESHOLDS: ",".join(thresholds),
                envnames.BITSO_WINDOW_SECONDS: str(window_seconds),
                envnames.BITSO_STAGING_URI: f"{bucket}/{STAGING_PREFIX}{region}",
                envnames.BITSO_STATE_URI: f"{bucket}/{STATE_KEY}{region}",
                envnames.BITSO_LAKE_URI: f"{bucket}/{lake_prefix}{region}",
                envnames.ALERT_TOPIC_ARN: self.topic.topic_arn,
            },
        )
        self.topic.grant_publish(self.function)
        self._grant(data_bucket, table_prefix)
        if isinstance(data_bucket, s3.Bucket):
            data_bucket.add_lifecycle_rule(
                id="expire-bitso-staging", prefix=f"{STAGING_PREFIX}/", expiration=Duration.days(7)
            )

        self.sample_rule = scheduled_rule(
            self,
            "EveryMinute",
            self.function,
            description="Sample every second of the starting minute (Bitso spreads)",
            every=events.Schedule.rate(Duration.minutes(1)),
            event={"action": "sample", "time": events.EventField.time},
            retry_attempts=0,  # a minute retried later samples the wrong seconds
            max_event_age=Duration.seconds(60),
        )
        self.compact_rule = scheduled_rule(
            self,
            "EveryTenMinutes",
            self.function,
            description="Write the 10-minute Bitso spread file per book, one minute after the window",
            every=events.Schedule.cron(minute="1/10"),
            event={"action": "compact", "time": events.EventField.time},
            retry_attempts=2,
            max_event_age=Duration.minutes(9),
        )
        self.errors_alarm = errors_alarm(
            self,
            self.function,
            "The Bitso spread Lambda failed (minutes missing or a window file not written)",
            period=Duration.minutes(5),
            threshold=3,
        )

        location = f"{bucket}/{table_prefix}/"
        self.table = parquet_table(
            self,
            "Table",
            database_name=glue_database_name,
            name=BITSO_SPREADS.name,
            description="Bitso spread, one row per book per UTC second; 10-minute files; spread in %",
            location=location,
            parameters=hourly_projection(location, start_date, {"book": ",".join(books)}),
            partition_keys=(*BITSO_SPREADS.partitions, "dt", "hour"),
            columns=table_columns(BITSO_SPREADS),
        )
        self.named_queries: dict[str, athena.CfnNamedQuery] = {
            query_id: named_query(
                self,
                f"Query{query_id}",
                name=f"bitso-{query_id}",
                description=description,
                database=glue_database_name,
                work_group=athena_workgroup_name,
                sql=sql,
            )
            for query_id, (description, sql) in named_queries(thresholds).items()
        }

    def _grant(self, bucket: s3.IBucket, table_prefix: str) -> None:
        """Staging chunks, the alert state and this table's lake prefix; nothing else in the bucket."""
        prefixes = [f"{STAGING_PREFIX}/*", STATE_KEY, f"{table_prefix}/*"]
        statements = [
            iam.PolicyStatement(
                sid="BitsoFiles",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(p) for p in prefixes],
            ),
            iam.PolicyStatement(
                sid="ListBitsoPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["bitso/*", f"{table_prefix}/*", table_prefix]}},
            ),
        ]
        reason = (
            "Objects under one named prefix of the monitor (minute chunks or its table's"
            " partitions): the object names are timestamps, the prefix is the narrowest fixed scope."
        )
        grant_objects(self.function, bucket, statements, prefixes, reason)
