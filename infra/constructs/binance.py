"""Binance on AWS: metrics/alerts Lambda on Kinesis, the read API (HTTP API + Lambda), Glue tables, Athena.

* The Fargate collector carries the Binance streams (the stack adds ``binance`` to its exchanges and the
  settings below to its environment); frames reach Kinesis on one partition per connection shard.
* A Lambda consumes the stream in order (one batch per shard, no bisecting, partial batch responses,
  bounded retries and record age), with its own DynamoDB checkpoints, and writes the four Binance tables
  to the lake and RDS; price alerts go to an encrypted SNS topic. A batch it gives up on (retries or
  record age exhausted) is recorded in the stack's failed-batches bucket, like the book builder's.
* The read API is an API Gateway HTTP API (IAM-authorized, access-logged, throttled) in front of a Lambda
  that runs the same handler as ``marketpipe serve``, reading RDS.
* Glue tables with partition projection (no crawler) and two named Athena queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from constructs import Construct
from infra.config import MarketpipeConfig, log_retention
from infra.constructs.book_builder import (
    S3PutOnlyFailureDestination,
    checkpoint_table,
    failed_batches_finding,
    ordered_kinesis_source,
)
from infra.constructs.database_access import DatabaseAccess
from infra.constructs.lake import LAKE_PREFIX
from infra.constructs.layer import REPO_ROOT
from infra.constructs.scheduled_lake import (
    acknowledge_function,
    alert_topic,
    grant_objects,
    hourly_projection,
    named_query,
    parquet_table,
    table_columns,
)
from marketpipe import envnames
from marketpipe.tables.binance import BINANCE_BOOK_METRICS, BINANCE_MINI_TICKERS, BINANCE_TABLES


def named_queries() -> dict[str, tuple[str, str]]:
    """Id -> (description, Athena SQL)."""
    return {
        "OneMinuteOhlc": (
            "1-minute OHLC of every symbol from today's mini-tickers (close = last trade price). A minute"
            " without a ticker change has no row; edit dt for another day.",
            "SELECT symbol,\n"
            "       date_trunc('minute', event_ts) AS minute,\n"
            "       min_by(close, event_ts) AS open,\n"
            "       max(close) AS high,\n"
            "       min(close) AS low,\n"
            "       max_by(close, event_ts) AS close,\n"
            "       count(*) AS tickers\n"
            f"FROM {BINANCE_MINI_TICKERS.name}\n"
            "WHERE dt = CAST(current_date AS varchar)\n"
            "GROUP BY symbol, date_trunc('minute', event_ts)\n"
            "ORDER BY symbol, minute",
        ),
        "AveragePricePerMinute": (
            "Time-weighted average book price ((bid VWAP + ask VWAP) / 2) per minute and symbol today: each"
            " price weighs until the next message (at most 10 s), attributed to the minute it starts in.",
            "WITH s AS (\n"
            "  SELECT symbol, received_ts, price,\n"
            "         least(date_diff('millisecond', received_ts,\n"
            "               coalesce(lead(received_ts) OVER (PARTITION BY symbol ORDER BY received_ts),"
            " received_ts)), 10000) AS hold_ms\n"
            f"  FROM {BINANCE_BOOK_METRICS.name}\n"
            "  WHERE dt = CAST(current_date AS varchar) AND price IS NOT NULL\n"
            ")\n"
            "SELECT symbol,\n"
            "       date_trunc('minute', received_ts) AS minute,\n"
            "       sum(price * hold_ms) / nullif(sum(hold_ms), 0) AS avg_price,\n"
            "       avg(price) AS mean_of_samples,\n"
            "       count(*) AS samples\n"
            "FROM s\n"
            "GROUP BY symbol, date_trunc('minute', received_ts)\n"
            "ORDER BY symbol, minute",
        ),
    }


class BinanceMarketData(Construct):
    """Alert topic, checkpoint table, metrics Lambda + Kinesis mapping, read API, Glue tables, queries."""

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
        failure_bucket: s3.IBucket,
        glue_database_name: str,
        athena_workgroup_name: str,
        symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT", "BNBUSDT"),
        watch: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.symbols = tuple(symbols)
        self.collector_environment = {
            envnames.BINANCE_SYMBOLS: ",".join(symbols),
            envnames.BINANCE_WATCH: ",".join(watch),
        }
        retention = log_retention(config.log_retention_days)
        self.topic = alert_topic(self, "marketpipe Binance price alerts")
        self.checkpoint_table = checkpoint_table(self)
        self.security_group = database.security_group(
            self,
            "SecurityGroup",
            description="Binance Lambdas: MySQL, S3/DynamoDB gateway endpoints, Secrets Manager endpoint",
            peer_description="Binance Lambdas",
        )
        bucket = f"s3://{data_bucket.bucket_name}"
        self.metrics_function = database.function(
            self,
            security_group=self.security_group,
            tables=[self.checkpoint_table],
            construct_id="MetricsFunction",
            log_id="MetricsLogs",
            handler_dir=REPO_ROOT / "functions" / "binance_metrics",
            layer=layer,
            retention=retention,
            removal_policy=RemovalPolicy.DESTROY,
            description="Binance mini-tickers, depth20, book metrics and price alerts from Kinesis frames",
            memory_size=1024,
            timeout=Duration.seconds(120),
            environment={
                envnames.LAKE_URI: f"{bucket}/{LAKE_PREFIX}?region={stack.region}",
                **database.environment,
                envnames.CHECKPOINT_TABLE: self.checkpoint_table.table_name,
                envnames.ALERT_TOPIC_ARN: self.topic.topic_arn,
            },
        )
        self.topic.grant_publish(self.metrics_function)
        prefixes = [f"{LAKE_PREFIX}/{t.name}" for t in BINANCE_TABLES]
        self._grant_lake(data_bucket, prefixes)
        # Batches given up on (retries or record age exhausted) leave a record in the failed-batches bucket
        # (Lambda writes the batch's shard and sequence-number range there) instead of vanishing.
        self.failure_bucket = failure_bucket
        self.event_source = ordered_kinesis_source(
            stream, config, S3PutOnlyFailureDestination(failure_bucket)
        )
        self.metrics_function.add_event_source(self.event_source)
        if failure_bucket.node.default_child is not None:  # an imported bucket has no finding to name
            acknowledge_function(
                self.metrics_function,
                vpc=True,
                findings=[failed_batches_finding(failure_bucket)],
            )

        self.api_function = database.function(
            self,
            security_group=self.security_group,
            construct_id="ApiFunction",
            log_id="ApiLogs",
            handler_dir=REPO_ROOT / "functions" / "binance_api",
            layer=layer,
            retention=retention,
            removal_policy=RemovalPolicy.DESTROY,
            description="Binance read API (latest metrics, averages, mini-tickers, alerts) over RDS",
            memory_size=512,
            timeout=Duration.seconds(10),
        )
        acknowledge_function(self.api_function, vpc=True)
        access_logs = logs.LogGroup(
            self, "ApiAccessLogs", retention=retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigw.HttpApi(
            self,
            "Api",
            description="marketpipe Binance read API (OpenAPI at /openapi.json)",
            default_authorizer=authorizers.HttpIamAuthorizer(),
            create_default_stage=True,
        )
        integration = integrations.HttpLambdaIntegration("Read", self.api_function)
        for path in ("/v1/binance/{proxy+}", "/openapi.json"):
            self.api.add_routes(path=path, methods=[apigw.HttpMethod.GET], integration=integration)
        stage = self.api.default_stage.node.default_child if self.api.default_stage else None
        if isinstance(stage, apigw.CfnStage):
            stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
                destination_arn=access_logs.log_group_arn,
                format='{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","caller":'
                '"$context.identity.caller","method":"$context.httpMethod","path":"$context.path",'
                '"status":"$context.status","latencyMs":"$context.responseLatency"}',
            )
            stage.default_route_settings = apigw.CfnStage.RouteSettingsProperty(
                throttling_burst_limit=50, throttling_rate_limit=20
            )

        self.tables: dict[str, glue.CfnTable] = {}
        for table in BINANCE_TABLES:
            location = f"{bucket}/{LAKE_PREFIX}/{table.name}/"
            self.tables[table.name] = parquet_table(
                self,
                f"Table{table.name.title().replace('_', '')}",
                database_name=glue_database_name,
                name=table.name,
                description=f"marketpipe {table.name} (Parquet, partition projection)",
                location=location,
                parameters=hourly_projection(location, config.lake_start_date),
                partition_keys=[*table.partitions, "dt", "hour"],
                columns=table_columns(table),
            )
        self.named_queries: dict[str, athena.CfnNamedQuery] = {
            query_id: named_query(
                self,
                f"Query{query_id}",
                name=f"binance-{query_id}",
                description=description,
                database=glue_database_name,
                work_group=athena_workgroup_name,
                sql=sql,
            )
            for query_id, (description, sql) in named_queries().items()
        }

    def _grant_lake(self, bucket: s3.IBucket, prefixes: list[str]) -> None:
        """The four Binance tables' lake prefixes; nothing else in the bucket."""
        statements = [
            iam.PolicyStatement(
                sid="BinanceLakeObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{p}/*") for p in prefixes],
            ),
            iam.PolicyStatement(
                sid="ListBinanceLakePrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [*prefixes, *(f"{p}/*" for p in prefixes)]}},
            ),
        ]
        reason = (
            "Objects of one Binance lake table, partitioned by symbol/date/hour: the"
            " table prefix is the narrowest fixed scope."
        )
        grant_objects(
            self.metrics_function, bucket, statements, [f"{p}/*" for p in prefixes], reason, vpc=True
        )


def attach_binance(stack: Any) -> BinanceMarketData:
    """Wire Binance into a built ``MarketpipeStack``: the construct, DB and Secrets Manager access, and the
    collector carrying the Binance streams with their settings. One call from the stack enables it.

    Settings: ``binance_symbols`` and ``binance_watch`` of the config (marketpipe.toml's ``[binance]``
    ``symbols``/``watch``; context ``binanceSymbols``/``binanceWatch`` override).
    """
    symbols = list(stack.config.binance_symbols)
    watch = list(stack.config.binance_watch)
    binance = BinanceMarketData(
        stack,
        "Binance",
        config=stack.config,
        database=stack.database.access,
        stream=stack.stream.stream,
        layer=stack.layer.layer,
        data_bucket=stack.lake.data_bucket,
        failure_bucket=stack.book_builder.failure_bucket,
        glue_database_name=stack.lake.glue_database_name,
        athena_workgroup_name=stack.lake.workgroup_name,
        symbols=symbols,
        watch=watch,
    )
    stack.after_catalog(binance)
    exchanges = list(stack.config.exchanges) + ([] if "binance" in stack.config.exchanges else ["binance"])
    task = stack.collector.task_definition.node.default_child
    task.add_property_override(
        "ContainerDefinitions.0.Command",
        ["run", "--exchanges", ",".join(exchanges), "--transport", "kinesis"],
    )
    for name, value in binance.collector_environment.items():
        stack.collector.container.add_environment(name, value)
    CfnOutput(stack, "BinanceAlertTopicArn", value=binance.topic.topic_arn)
    CfnOutput(stack, "BinanceApiUrl", value=binance.api.api_endpoint)
    return binance
