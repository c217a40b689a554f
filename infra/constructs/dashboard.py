"""The CloudWatch dashboard and the IteratorAge alarm: is data flowing, and is the consumer keeping up?

Metric names and dimensions are the contract with the domain code (namespace ``marketpipe``):
``FramesIn`` (Exchange; and Exchange, Partition), ``CollectorHeartbeat`` (Exchange), ``RowsWritten``
(Table), ``Resyncs`` (Exchange), ``ChecksumMismatches`` (Exchange), ``Errors`` (no dimension). Widgets
list one line per configured exchange/slot/table rather than a SEARCH expression, so an expected series
that stays empty is visible as missing instead of silently absent; only with ``symbols: all``, whose
slots are cut when the collector starts, the per-slot graph is a SEARCH.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_

from constructs import Construct
from infra.config import MarketpipeConfig

NAMESPACE = "marketpipe"
PERIOD = Duration.minutes(1)


def marketpipe_metric(
    name: str, dimensions: dict[str, str] | None = None, label: str | None = None
) -> cloudwatch.Metric:
    """A per-minute Sum of one marketpipe metric."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=dimensions or {},
        statistic="Sum",
        period=PERIOD,
        label=label,
    )


class Dashboard(Construct):
    """One dashboard for the pipeline plus the alarms other capabilities can route to SNS."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MarketpipeConfig,
        stream: kinesis.IStream,
        book_builder: lambda_.IFunction,
        tables: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        exchanges = list(config.exchanges)

        self.iterator_age = stream.metric_get_records_iterator_age_milliseconds(
            statistic="Maximum", period=PERIOD
        )
        # Fires when the book builder falls behind the stream (stuck on a retried batch, throttled,
        # or failing): the frames are safe in Kinesis, but only until the retention window ends.
        self.iterator_age_alarm = cloudwatch.Alarm(
            self,
            "IteratorAgeAlarm",
            alarm_description="marketpipe book builder is behind the Kinesis stream",
            metric=self.iterator_age,
            threshold=config.iterator_age_alarm_ms,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarms: list[cloudwatch.Alarm] = [self.iterator_age_alarm]

        frames = [marketpipe_metric("FramesIn", {"Exchange": e}, e) for e in exchanges]
        slots: list[cloudwatch.IMetric] = [
            marketpipe_metric("FramesIn", {"Exchange": e, "Partition": p}, f"{e} {p}")
            for e, p in config.partitions
        ]
        if config.all_symbols and "bitfinex" in exchanges:
            search = f'{{{NAMESPACE},Exchange,Partition}} MetricName="FramesIn" Exchange="bitfinex"'
            slots = [cloudwatch.MathExpression(expression=f"SEARCH('{search}', 'Sum', 60)", period=PERIOD)]
        heartbeats = [marketpipe_metric("CollectorHeartbeat", {"Exchange": e}, e) for e in exchanges]
        rows = [marketpipe_metric("RowsWritten", {"Table": t}, t) for t in tables]
        resyncs = [marketpipe_metric("Resyncs", {"Exchange": e}, e) for e in exchanges]
        mismatches = [marketpipe_metric("ChecksumMismatches", {"Exchange": e}, e) for e in exchanges]
        errors = [
            marketpipe_metric("Errors", label="marketpipe Errors"),
            book_builder.metric_errors(period=PERIOD, statistic="Sum", label="book-builder Lambda errors"),
        ]

        def graph(
            title: str, metrics: Sequence[cloudwatch.IMetric], width: int = 8
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=list(metrics), width=width, height=6)

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{config.stack_name}-pipeline",
            default_interval=Duration.hours(3),
            widgets=[
                [
                    graph("Frames in (per minute)", frames),
                    graph("Collector heartbeat", heartbeats),
                    graph("Rows written per table", rows),
                ],
                [graph("Frames in per Kinesis partition (Bitfinex slot)", slots, width=24)],
                [
                    graph("Resyncs", resyncs),
                    graph("Checksum mismatches", mismatches),
                    graph("Errors", errors),
                ],
                [
                    cloudwatch.AlarmWidget(
                        title="Kinesis iterator age (book builder lag)",
                        alarm=self.iterator_age_alarm,
                        width=12,
                        height=6,
                    ),
                    graph(
                        "Book builder invocations / duration",
                        [
                            book_builder.metric_invocations(period=PERIOD, statistic="Sum"),
                            book_builder.metric_duration(period=PERIOD, statistic="Maximum"),
                        ],
                        width=12,
                    ),
                ],
            ],
        )
