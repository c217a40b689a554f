"""What the Lambda and lake constructs build alike (book builder, Binance, Bitso spreads, execution price,
ledger ETL, liveness, schema migration, the lake's own tables).

Each capability is one construct; these helpers make its parts: the Python Lambda with its log group
and the cdk-nag acknowledgments every such Lambda needs, an alert topic, an EventBridge schedule, the
errors alarm, Parquet Glue tables with partition projection, Athena named queries and the S3 grants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from aws_cdk import Acknowledgment, CustomResource, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import custom_resources as cr

from constructs import Construct
from infra.constructs.layer import ARCHITECTURE, RUNTIME
from infra.nag import arn_finding
from marketpipe.tables import Kind, Table

GLUE_TYPES = {Kind.STR: "string", Kind.INT: "bigint", Kind.FLOAT: "double", Kind.TS_MS: "timestamp",
              Kind.TS_US: "timestamp"}  # fmt: skip
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


RUNTIME_PINNED = Acknowledgment(
    id="AwsSolutions-L1",
    reason="Pinned to python3.12 on purpose: the layer's compiled wheels (pyarrow, orjson) are"
    " built for cp312 and the function must match the layer's ABI.",
)
BASIC_EXECUTION_ROLE = Acknowledgment(
    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AWSLambdaBasicExecutionRole]",
    reason="AWS-managed policy limited to writing this function's own CloudWatch logs.",
)
VPC_ACCESS_ROLE = Acknowledgment(
    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AWSLambdaVPCAccessExecutionRole]",
    reason="AWS-managed policy for the VPC ENIs Lambda creates; ENI actions take no resource ARNs.",
)


def python_function(
    scope: Construct,
    *,
    handler_dir: Path,
    layer: lambda_.ILayerVersion,
    environment: Mapping[str, str],
    construct_id: str = "Function",
    log_id: str = "Logs",
    retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    removal_policy: RemovalPolicy | None = None,
    **props: Any,
) -> lambda_.Function:
    """``Function`` (python3.12, ``handler.handler`` from ``handler_dir``, the layer) with its log group."""
    log_group = logs.LogGroup(scope, log_id, retention=retention, removal_policy=removal_policy)
    return lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler="handler.handler",
        code=lambda_.Code.from_asset(str(handler_dir)),
        layers=[layer],
        log_group=log_group,
        environment=dict(environment),
        **props,
    )


def acknowledge_function(
    function: lambda_.Function, *, vpc: bool = False, findings: Sequence[Acknowledgment] = ()
) -> None:
    """What cdk-nag finds on every marketpipe function: the pinned runtime and the AWS-managed execution
    policies (the VPC one for functions in the VPC), plus this function's own ``findings``."""
    Validations.of(function).acknowledge(RUNTIME_PINNED)
    role = function.role
    if role is None:  # pragma: no cover - Function always creates a role here
        return
    Validations.of(role).acknowledge(BASIC_EXECUTION_ROLE, *([VPC_ACCESS_ROLE] if vpc else []), *findings)


def deploy_step(
    scope: Construct,
    name: str,
    resource_id: str,
    function: lambda_.Function,
    *,
    resource_type: str,
    properties: Mapping[str, Any],
    retention: logs.RetentionDays,
    what: str,
) -> CustomResource:
    """A custom resource that runs ``function`` at deploy time through the CDK provider framework (the
    MySQL schema, the Iceberg tables): the provider ``<name>Provider`` with its log group, the resource,
    and the cdk-nag acknowledgements of the framework's own Lambda. ``properties`` changing re-runs it."""
    provider = cr.Provider(
        scope,
        f"{name}Provider",
        on_event_handler=function,
        log_group=logs.LogGroup(
            scope, f"{name}ProviderLogs", retention=retention, removal_policy=RemovalPolicy.DESTROY
        ),
    )
    resource = CustomResource(
        scope,
        resource_id,
        service_token=provider.service_token,
        resource_type=resource_type,
        properties=dict(properties),
    )
    # The provider's own Lambda ("framework-onEvent") relays CloudFormation events to ours.
    framework = cast(lambda_.Function, provider.node.find_child("framework-onEvent"))
    Validations.of(framework).acknowledge(
        Acknowledgment(
            id=arn_finding("AwsSolutions-IAM5", function, ":*"),
            reason=f"The CDK provider framework invokes any version/alias of the one {what}"
            " function; the wildcard is the qualifier, not the function.",
        )
    )
    if framework.role is not None:
        Validations.of(framework.role).acknowledge(BASIC_EXECUTION_ROLE)
    return resource


def alert_topic(scope: Construct, display_name: str) -> sns.Topic:
    """The ``Alerts`` topic, TLS-only and encrypted with the AWS-managed SNS key."""
    return sns.Topic(
        scope,
        "Alerts",
        display_name=display_name,
        master_key=kms.Alias.from_alias_name(scope, "SnsKey", "alias/aws/sns"),
        enforce_ssl=True,
    )


def scheduled_rule(
    scope: Construct,
    construct_id: str,
    function: lambda_.IFunction,
    *,
    description: str,
    every: events.Schedule,
    retry_attempts: int,
    max_event_age: Duration,
    event: Mapping[str, Any] | None = None,
) -> events.Rule:
    """An EventBridge rule invoking ``function`` (with ``event`` as input, ``time`` filled in if present)."""
    target_input = events.RuleTargetInput.from_object(dict(event)) if event is not None else None
    return events.Rule(
        scope,
        construct_id,
        description=description,
        schedule=every,
        targets=[
            targets.LambdaFunction(
                function, event=target_input, retry_attempts=retry_attempts, max_event_age=max_event_age
            )
        ],
    )


def errors_alarm(
    scope: Construct, function: lambda_.Function, description: str, period: Duration, threshold: int
) -> cloudwatch.Alarm:
    return cloudwatch.Alarm(
        scope,
        "Errors",
        alarm_description=description,
        metric=function.metric_errors(period=period),
        threshold=threshold,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


def table_columns(table: Table) -> list[glue.CfnTable.ColumnProperty]:
    """A ``marketpipe.tables.Table``'s stored columns (partition keys are directories, not columns)."""
    return [
        glue.CfnTable.ColumnProperty(name=c.name, type=GLUE_TYPES[c.kind])
        for c in table.columns
        if c.name not in table.partitions
    ]


def hourly_projection(
    location: str, start_date: str, enums: Mapping[str, str] | None = None, compression: str | None = None
) -> dict[str, str]:
    """Athena partition projection for ``<enum>=…/`` (comma-separated values), ``dt`` (date from
    ``start_date``) and ``hour`` (00-23) under ``location``: a new file is queryable at once, no crawler."""
    enums = enums or {}
    params = {"classification": "parquet", "EXTERNAL": "TRUE"}
    if compression:
        params["parquet.compression"] = compression
    params["projection.enabled"] = "true"
    for name, values in enums.items():
        params[f"projection.{name}.type"] = "enum"
        params[f"projection.{name}.values"] = values
    template = "".join(f"{name}=${{{name}}}/" for name in enums) + "dt=${dt}/hour=${hour}"
    return params | {
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


def parquet_table(
    scope: Construct,
    construct_id: str,
    *,
    database_name: str,
    name: str,
    description: str,
    location: str,
    parameters: Mapping[str, str],
    partition_keys: Sequence[str],
    columns: Sequence[glue.CfnTable.ColumnProperty],
) -> glue.CfnTable:
    """An external Parquet table at ``location``; partition keys are strings."""
    return glue.CfnTable(
        scope,
        construct_id,
        catalog_id=Stack.of(scope).account,
        database_name=database_name,
        table_input=glue.CfnTable.TableInputProperty(
            name=name,
            description=description,
            table_type="EXTERNAL_TABLE",
            parameters=dict(parameters),
            partition_keys=[glue.CfnTable.ColumnProperty(name=k, type="string") for k in partition_keys],
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                location=location,
                columns=list(columns),
                input_format=PARQUET_INPUT,
                output_format=PARQUET_OUTPUT,
                serde_info=glue.CfnTable.SerdeInfoProperty(
                    serialization_library=PARQUET_SERDE, parameters={"serialization.format": "1"}
                ),
            ),
        ),
    )


def named_query(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    description: str,
    database: str,
    work_group: str,
    sql: str,
) -> athena.CfnNamedQuery:
    return athena.CfnNamedQuery(
        scope,
        construct_id,
        name=name,
        description=description,
        database=database,
        work_group=work_group,
        query_string=sql,
    )


def grant_objects(
    function: lambda_.Function,
    bucket: s3.IBucket,
    statements: Sequence[iam.PolicyStatement],
    prefixes: Sequence[str],
    reason: str,
    *,
    vpc: bool = False,
) -> None:
    """Add the statements (and the bucket key) to the function's role and acknowledge what cdk-nag finds:
    those of ``acknowledge_function`` and one IAM5 per wildcard object ``prefixes`` entry (``reason``
    says why that prefix is the narrowest scope)."""
    for statement in statements:
        function.add_to_role_policy(statement)
    if bucket.encryption_key is not None:
        bucket.encryption_key.grant_encrypt_decrypt(function)
    findings = []
    if bucket.node.default_child is not None:  # an imported bucket has no IAM5 findings to name
        findings = [
            Acknowledgment(id=arn_finding("AwsSolutions-IAM5", bucket, f"/{p}"), reason=reason)
            for p in prefixes
            if p.endswith("*")
        ]
    acknowledge_function(function, vpc=vpc, findings=findings)
