"""The S3 data lake and raw archive, its Glue database and the Athena workgroup.

The book builder's Bitfinex tables are Apache Iceberg tables under ``iceberg/`` (``ICEBERG_TABLES``),
created at deploy time by pyiceberg and kept by :mod:`infra.constructs.iceberg_lake`: CloudFormation
creates no Glue table of theirs (it cannot express their partition spec). The other capabilities'
Parquet tables are catalogued by their own constructs (partition projection, no crawler).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3

from constructs import Construct
from infra.config import MarketpipeConfig
from infra.constructs.buckets import secure_bucket
from infra.constructs.scheduled_lake import named_query
from marketpipe.tables import BITFINEX_BOOK, BITFINEX_TRADES, Table
from marketpipe.tables.bitfinex import BITFINEX_TABLES

LAKE_PREFIX = "lake"
RAW_PREFIX = "raw"
ICEBERG_PREFIX = "iceberg"
ICEBERG_TABLES: tuple[Table, ...] = tuple(BITFINEX_TABLES)
"""The book builder's tables: Iceberg tables at ``s3://<bucket>/iceberg/<table>`` (hidden partitions)."""


def _depth_sum(side: str, levels: int) -> str:
    return " + ".join(f"coalesce({side}_{i}_size, 0)" for i in range(1, levels + 1))


def named_queries(symbol: str, depth_levels: int) -> dict[str, tuple[str, str]]:
    """The three questions users ask first, in Athena (Trino) SQL: id -> (description, SQL).

    The tables are Iceberg tables partitioned by day(received_ts) and bucket(symbol): a ``received_ts``
    range prunes days and ``symbol =`` prunes buckets (there are no ``dt``/``hour`` columns)."""
    today = "date_trunc('day', current_timestamp)"  # 00:00 UTC today (Athena sessions are UTC)
    return {
        "LatestBook": (
            f"Latest top-100 order book of {symbol} (edit the symbol); scans today and yesterday only",
            f"SELECT *\nFROM {BITFINEX_BOOK.name}\n"
            f"WHERE symbol = '{symbol}'\n"
            f"  AND received_ts >= {today} - INTERVAL '1' DAY\n"
            "ORDER BY received_ts DESC\nLIMIT 1",
        ),
        "TradesPerMinuteVwap": (
            f"Trades per minute with volume and VWAP for {symbol}, today (UTC)",
            "SELECT symbol,\n"
            "       date_trunc('minute', exchange_ts) AS minute,\n"
            "       count(*) AS trades,\n"
            "       sum(amount) AS volume,\n"
            "       sum(price * amount) / sum(amount) AS vwap,\n"
            "       min(price) AS low,\n"
            "       max(price) AS high\n"
            f"FROM {BITFINEX_TRADES.name}\n"
            f"WHERE symbol = '{symbol}' AND received_ts >= {today}\n"
            "GROUP BY symbol, date_trunc('minute', exchange_ts)\n"
            "ORDER BY minute",
        ),
        "DepthOverTime": (
            f"Depth (sum of sizes in the top {depth_levels} levels per side) per minute for {symbol}, today",
            "SELECT symbol,\n"
            "       date_trunc('minute', received_ts) AS minute,\n"
            f"       avg({_depth_sum('bid', depth_levels)}) AS bid_depth_top{depth_levels},\n"
            f"       avg({_depth_sum('ask', depth_levels)}) AS ask_depth_top{depth_levels},\n"
            "       count(*) AS book_updates\n"
            f"FROM {BITFINEX_BOOK.name}\n"
            f"WHERE symbol = '{symbol}' AND received_ts >= {today}\n"
            "GROUP BY symbol, date_trunc('minute', received_ts)\n"
            "ORDER BY minute",
        ),
    }


class Lake(Construct):
    """Data bucket (``raw/`` archive, ``lake/`` Parquet, ``iceberg/`` tables), access logs, the Glue
    database, Parquet Glue tables and Athena."""

    def __init__(self, scope: Construct, construct_id: str, *, config: MarketpipeConfig) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        # Server access logs for every other bucket. It cannot log to itself, hence the acknowledgment.
        self.access_logs_bucket = secure_bucket(
            self,
            "AccessLogsBucket",
            access_logs=None,
            retain=config.retain_data,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365))],
        )
        Validations.of(self.access_logs_bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the server-access-log destination; logging it to itself would loop.",
            )
        )

        raw_rules = [
            s3.LifecycleRule(
                id="raw-archive-tiering",
                prefix=f"{RAW_PREFIX}/",
                transitions=[
                    s3.Transition(
                        storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                        transition_after=Duration.days(config.raw_archive_transition_days),
                    )
                ],
                expiration=(
                    Duration.days(config.raw_archive_expiration_days)
                    if config.raw_archive_expiration_days
                    else None
                ),
            ),
            # Lake merges rewrite each 60 s window file several times (deterministic names): every
            # rewrite leaves a noncurrent version, so lake/ keeps them one day only. The rest of the
            # bucket (the raw archive above all) keeps overwritten/deleted versions for 30 days.
            s3.LifecycleRule(
                id="expire-noncurrent-lake-versions",
                prefix=f"{LAKE_PREFIX}/",
                noncurrent_version_expiration=Duration.days(1),
            ),
            s3.LifecycleRule(
                id="expire-noncurrent-versions",
                noncurrent_version_expiration=Duration.days(30),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            ),
        ]
        # Versioned: the raw capture is the write-ahead log; a bad deploy must not be able to lose it.
        self.data_bucket = secure_bucket(
            self,
            "DataBucket",
            access_logs=self.access_logs_bucket,
            retain=config.retain_data,
            versioned=True,
            lifecycle_rules=raw_rules,
        )
        self.results_bucket = secure_bucket(
            self,
            "AthenaResultsBucket",
            access_logs=self.access_logs_bucket,
            # Same policy as the data: CloudFormation cannot delete a non-empty bucket, and a failed
            # `cdk destroy` is worse than a leftover bucket that expires its own objects.
            retain=config.retain_data,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-results",
                    expiration=Duration.days(config.athena_results_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        self.lake_uri = f"s3://{self.data_bucket.bucket_name}/{LAKE_PREFIX}"
        self.raw_uri = f"s3://{self.data_bucket.bucket_name}/{RAW_PREFIX}"
        self.iceberg_warehouse = f"s3://{self.data_bucket.bucket_name}/{ICEBERG_PREFIX}"

        self.glue_database_name = config.glue_database_name
        self.glue_database = glue.CfnDatabase(
            self,
            "GlueDatabase",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.glue_database_name,
                description="marketpipe lake: Iceberg tables (Bitfinex) and Parquet tables (partition"
                " projection, no crawler)",
            ),
        )

        self.table_names: list[str] = [t.name for t in ICEBERG_TABLES]
        """Every table the book builder writes to the lake (the dashboard's and liveness' RowsWritten)."""

        self.workgroup_name = config.glue_database_name
        self.workgroup = athena.CfnWorkGroup(
            self,
            "Workgroup",
            name=self.workgroup_name,
            description="marketpipe lake queries; results encrypted, scans capped",
            recursive_delete_option=True,
            state="ENABLED",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=config.athena_bytes_scanned_cutoff_gb * 1024**3,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results_bucket.bucket_name}/results/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )

        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        example = "BTC-USD" if config.all_symbols else config.symbols[0]  # "all": no list at synth
        for query_id, (description, sql) in named_queries(example, config.depth_levels).items():
            query = named_query(
                self,
                f"Query{query_id}",
                name=f"marketpipe-{query_id}",
                description=description,
                database=self.glue_database_name,
                work_group=self.workgroup_name,
                sql=sql,
            )
            query.node.add_dependency(self.workgroup)
            query.node.add_dependency(self.glue_database)
            self.named_queries[query_id] = query
