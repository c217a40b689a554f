"""Liveness alarms -> SNS -> notifier Lambda -> Plivo: one SMS when data stops, one when it flows again.

Per exchange, two metric alarms watch the contract metrics (namespace ``marketpipe``): frames the
collector received (``FramesIn`` with the Exchange dimension only: one series whatever the number of
symbols, and known before ``symbols: all`` is resolved; a metric-math alarm could sum at most ten
series) and rows the book builder wrote
(``RowsWritten``, summed over the exchange's tables). Both treat missing data as breaching: a dead
collector publishes nothing at all. A composite alarm per exchange (either child in ALARM) carries the
ALARM and OK actions, so a stopped collector, which silences both metrics, is one text, not two, and
"connected but saving nothing" (frames in, no rows) is caught as well.

The topic is encrypted with a customer-managed key (CloudWatch cannot publish with the AWS-managed SNS
key). The Lambda dedupes SNS redeliveries with Powertools idempotency on a DynamoDB table keyed on the
alarm, its new state and its change time, and reads the Plivo credentials from the existing secret.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns

from constructs import Construct
from infra.config import MarketpipeConfig, log_retention
from infra.constructs.dashboard import NAMESPACE, PERIOD
from infra.constructs.layer import REPO_ROOT
from infra.constructs.scheduled_lake import acknowledge_function, python_function
from marketpipe import envnames

HANDLER_DIR = REPO_ROOT / "functions" / "notifier"
SERVICE_NAME = "liveness-notifier"


def _sum(metric_name: str, dimensions: Sequence[dict[str, str]], label: str) -> cloudwatch.MathExpression:
    """SUM over several per-minute series: one liveness figure per exchange."""
    metrics: dict[str, cloudwatch.IMetric] = {
        f"m{i}": cloudwatch.Metric(
            namespace=NAMESPACE, metric_name=metric_name, dimensions_map=dims, statistic="Sum", period=PERIOD
        )
        for i, dims in enumerate(dimensions)
    }
    return cloudwatch.MathExpression(
        expression=f"SUM([{','.join(metrics)}])", using_metrics=metrics, period=PERIOD, label=label
    )


class Liveness(Construct):
    """Alarms per exchange, the encrypted topic, the idempotency table and the notifier Lambda."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MarketpipeConfig,
        layer: lambda_.ILayerVersion,
        plivo_secret: secretsmanager.ISecret,
        alarm_phone_number: str,
        tables: Sequence[str],
        silent_minutes: int = 2,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            description="marketpipe liveness alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes alarm notifications to the encrypted topic with this key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="marketpipe liveness",
            master_key=self.key,
            enforce_ssl=True,
        )

        self.frames_alarms: dict[str, cloudwatch.Alarm] = {}
        self.rows_alarms: dict[str, cloudwatch.Alarm] = {}
        self.alarms: dict[str, cloudwatch.CompositeAlarm] = {}
        action = cw_actions.SnsAction(self.topic)
        for exchange in config.exchanges:
            own_tables = [t for t in tables if t.startswith(f"{exchange}_")]
            frames = self._alarm(
                f"FramesIn-{exchange}",
                f"{config.stack_name}-{exchange}-frames-in",
                f"{exchange}: the collector received no frames for {silent_minutes} min",
                cloudwatch.Metric(
                    namespace=NAMESPACE,
                    metric_name="FramesIn",
                    dimensions_map={"Exchange": exchange},
                    statistic="Sum",
                    period=PERIOD,
                ),
                silent_minutes,
            )
            self.frames_alarms[exchange] = frames
            children: list[cloudwatch.IAlarm] = [frames]
            if own_tables:
                rows = self._alarm(
                    f"RowsWritten-{exchange}",
                    f"{config.stack_name}-{exchange}-rows-written",
                    f"{exchange}: no rows written for {silent_minutes} min",
                    _sum("RowsWritten", [{"Table": t} for t in own_tables], f"{exchange} rows written"),
                    silent_minutes,
                )
                self.rows_alarms[exchange] = rows
                children.append(rows)
            composite = cloudwatch.CompositeAlarm(
                self,
                f"Liveness-{exchange}",
                composite_alarm_name=f"{config.stack_name}-liveness-{exchange}",
                alarm_description=f"{exchange} market data stopped (no frames in, or no rows written)",
                alarm_rule=cloudwatch.AlarmRule.any_of(*children),
            )
            composite.add_alarm_action(action)
            composite.add_ok_action(action)
            self.alarms[exchange] = composite

        self.idempotency_table = dynamodb.Table(
            self,
            "Idempotency",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration",
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = python_function(
            self,
            construct_id="Notifier",
            handler_dir=HANDLER_DIR,
            layer=layer,
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
            description="Liveness alarm state changes -> one SMS each through Plivo",
            memory_size=256,
            # Up to 3 Plivo attempts of 15 s each plus backoff; a slow send must not be cut off mid-way.
            timeout=Duration.seconds(90),
            retry_attempts=2,
            max_event_age=Duration.hours(1),
            environment={
                envnames.IDEMPOTENCY_TABLE: self.idempotency_table.table_name,
                envnames.PLIVO_SECRET_ARN: plivo_secret.secret_arn,
                envnames.ALERT_SMS_TO: alarm_phone_number,
                envnames.POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
            },
        )
        self.function.add_event_source(event_sources.SnsEventSource(self.topic))
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="IdempotencyRecords",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[self.idempotency_table.table_arn],
            )
        )
        plivo_secret.grant_read(self.function)
        acknowledge_function(self.function)

    def _alarm(
        self, construct_id: str, name: str, description: str, metric: cloudwatch.IMetric, minutes: int
    ) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=name,
            alarm_description=description,
            metric=metric,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
