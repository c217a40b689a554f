"""The Iceberg lake's tables and their upkeep: created at deploy, snapshots expired, files compacted.

The book builder appends to the Bitfinex tables (``marketpipe.sinks.iceberg_sink``) in the Glue Data
Catalog, with their files under ``s3://<bucket>/iceberg/<table>``. This construct owns everything else
about them (docs/AWS.md, "The Iceberg lake"):

* ``Tables``: a custom resource (CDK Provider + ``functions/lake_tables``) that creates any missing
  table with pyiceberg once the Glue database exists. CloudFormation cannot express an Iceberg
  partition spec, and a ``CfnTable`` would reset ``metadata_location`` at the next stack update.
* ``Maintenance``: ``functions/lake_maintenance`` every 10 minutes expires snapshots older than
  ``icebergSnapshotHours`` (0.5 h), which bounds the ``metadata.json`` every commit reads and rewrites.
* Glue table optimizers per table: ``compaction`` (bin-packs the small files of each append) and
  ``orphan_file_deletion`` (files no snapshot references: lost optimistic commits, files of expired
  snapshots and of compacted-away data), with a role Glue assumes. No ``retention`` optimizer: it counts
  in days, while an append every ~10 s needs snapshots expired within the hour (the Lambda above).

:class:`IcebergCatalog` is what a principal needs to use the tables (environment and IAM), shared by
the book builder and the two Lambdas here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from aws_cdk import Acknowledgment, ArnFormat, CustomResource, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3

from constructs import Construct, IDependable
from infra.config import MarketpipeConfig
from infra.constructs.lake import ICEBERG_PREFIX, ICEBERG_TABLES
from infra.constructs.layer import REPO_ROOT
from infra.constructs.scheduled_lake import (
    acknowledge_function,
    deploy_step,
    errors_alarm,
    python_function,
    scheduled_rule,
)
from infra.nag import arn_finding, resource_finding
from marketpipe import envnames
from marketpipe.sinks.iceberg_sink import SYMBOL_BUCKETS, TABLE_PROPERTIES

MAINTENANCE_EVERY = Duration.minutes(10)
"""Snapshots live at most ``icebergSnapshotHours`` + 10 min (~240 per writer at one append per 10 s,
the default): each run is one small commit per table, 144 short invocations a day."""
OPTIMIZER_TYPES = ("compaction", "orphan_file_deletion")
OPTIMIZER_LOG_GROUPS = {
    "compaction": "/aws-glue/iceberg-compaction/logs",
    "orphan_file_deletion": "/aws-glue/iceberg-orphan-file-deletion/logs",
}
"""Where Glue's table optimizers write their logs (AWS Glue, "Table optimization prerequisites")."""


def tables_fingerprint() -> str:
    """Changes whenever an Iceberg table's definition changes, which makes CloudFormation re-run the
    table custom resource (it creates missing tables; it does not evolve existing ones)."""
    shape = {
        "tables": {
            t.name: {
                "columns": [[c.name, c.kind.value, c.nullable] for c in t.columns],
                "day": t.partition_ts,
                "buckets": list(t.partitions),
            }
            for t in ICEBERG_TABLES
        },
        "symbol_buckets": SYMBOL_BUCKETS,
        "properties": TABLE_PROPERTIES,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IcebergCatalog:
    """The Glue database, the warehouse and the tables, and what using them takes (environment, IAM)."""

    bucket: s3.IBucket
    database_name: str
    warehouse: str
    """``s3://<bucket>/iceberg``: each table lives at ``<warehouse>/<table>``."""
    tables: tuple[str, ...]

    @property
    def uri(self) -> str:
        """``MARKETPIPE_ICEBERG_CATALOG`` (``marketpipe.sinks.iceberg_sink.CatalogSpec``)."""
        return f"glue://{self.database_name}?warehouse={self.warehouse}"

    @property
    def environment(self) -> dict[str, str]:
        return {envnames.ICEBERG_CATALOG: self.uri}

    @property
    def object_prefixes(self) -> list[str]:
        """One S3 prefix per table location: nothing else under the bucket, not even ``iceberg/``."""
        return [f"{ICEBERG_PREFIX}/{t}/*" for t in self.tables]

    def glue_arns(self, *, tables: bool = True) -> list[str]:
        """The catalog, the database and (``tables``) each table: Glue checks all three levels."""
        stack = Stack.of(self.bucket)
        arns = [
            stack.format_arn(service="glue", resource="catalog"),
            stack.format_arn(service="glue", resource="database", resource_name=self.database_name),
        ]
        if tables:
            arns += [
                stack.format_arn(service="glue", resource="table", resource_name=f"{self.database_name}/{t}")
                for t in self.tables
            ]
        return arns

    def grant(
        self, grantee: iam.IGrantable, *, namespace: bool = False, create: bool = False, delete: bool = True
    ) -> list[Acknowledgment]:
        """Read and commit the tables (pyiceberg's GlueCatalog), and their files; returns what cdk-nag
        then finds on the grantee's policy, acknowledged.

        ``namespace``: glue:CreateDatabase on this database only, for ``ensure_tables``' namespace check
        (the database exists: Glue answers AlreadyExists, which pyiceberg expects; without the grant it
        would answer AccessDenied). ``create``: glue:CreateTable on the three table names. ``delete``:
        s3:DeleteObject (old metadata.json files on commit; nothing for the table creator).
        """
        statements = [
            iam.PolicyStatement(
                sid="IcebergCatalog",
                # GetTables on named tables lists only those; UpdateTable is the optimistic commit.
                actions=["glue:GetDatabase", "glue:GetTables", "glue:GetTable", "glue:UpdateTable"],
                resources=self.glue_arns(),
            ),
            iam.PolicyStatement(
                sid="IcebergFiles",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    *(["s3:DeleteObject"] if delete else []),
                ],
                resources=[self.bucket.arn_for_objects(p) for p in self.object_prefixes],
            ),
            # Not limited by an s3:prefix condition: pyiceberg checks that each new metadata.json does not
            # exist yet (HeadObject), and S3 answers 404 rather than 403 only to a caller allowed to list
            # the bucket; that check carries no prefix, so a prefix-conditioned grant does not count.
            # Listing shows key names only; contents stay limited to the table prefixes above.
            iam.PolicyStatement(
                sid="IcebergListBucket", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]
            ),
        ]
        if namespace:
            statements.append(
                iam.PolicyStatement(
                    sid="IcebergNamespaceCheck",
                    actions=["glue:CreateDatabase"],
                    resources=self.glue_arns(tables=False),
                )
            )
        if create:
            statements.append(
                iam.PolicyStatement(
                    sid="IcebergCreateTables", actions=["glue:CreateTable"], resources=self.glue_arns()
                )
            )
        for statement in statements:
            grantee.grant_principal.add_to_principal_policy(statement)
        return self.acknowledgments()

    def acknowledgments(self) -> list[Acknowledgment]:
        """One IAM5 per table prefix: Iceberg names its data and metadata files itself."""
        return [
            Acknowledgment(
                id=arn_finding("AwsSolutions-IAM5", self.bucket, f"/{prefix}"),
                reason="Iceberg names each data, manifest and metadata file itself (UUIDs under the"
                " table's location): the table's own prefix is the narrowest fixed scope.",
            )
            for prefix in self.object_prefixes
        ]


class IcebergLake(Construct):
    """The table custom resource, the snapshot-expiry schedule and the Glue table optimizers."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MarketpipeConfig,
        data_bucket: s3.IBucket,
        glue_database: glue.CfnDatabase,
        glue_database_name: str,
        warehouse: str,
        layer: lambda_.ILayerVersion,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.catalog = IcebergCatalog(
            bucket=data_bucket,
            database_name=glue_database_name,
            warehouse=warehouse,
            tables=tuple(t.name for t in ICEBERG_TABLES),
        )
        self._layer = layer
        self._retention = log_retention
        # Deleted objects (orphans, old metadata.json files) become noncurrent versions of the versioned
        # data bucket: a day to undo a deletion, instead of the bucket-wide 30 days of a full copy.
        if isinstance(data_bucket, s3.Bucket):
            data_bucket.add_lifecycle_rule(
                id="expire-noncurrent-iceberg-versions",
                prefix=f"{ICEBERG_PREFIX}/",
                noncurrent_version_expiration=Duration.days(1),
                expired_object_delete_marker=True,
            )

        self.tables_resource: CustomResource | None = None
        self.optimizers: dict[tuple[str, str], glue.CfnTableOptimizer] = {}
        if config.iceberg_tables:
            self.tables_resource = self._tables(glue_database)
            self.optimizer_role = self._optimizer_role()
            self._optimizers(config.iceberg_orphan_retention_days)
        self._maintenance(config.iceberg_snapshot_hours, enabled=config.iceberg_tables)

    @property
    def ready(self) -> Sequence[IDependable]:
        """What a writer of the tables should be created after (nothing when the stack does not create
        the tables, ``icebergTables=false``)."""
        return [self.tables_resource] if self.tables_resource is not None else []

    def _function(
        self, name: str, handler: str, description: str, environment: dict[str, str]
    ) -> lambda_.Function:
        """``functions/<handler>`` outside the VPC (it needs Glue and S3 only) with the catalog variable."""
        return python_function(
            self,
            construct_id=f"{name}Function",
            log_id=f"{name}Logs",
            handler_dir=REPO_ROOT / "functions" / handler,
            layer=self._layer,
            retention=self._retention,
            removal_policy=RemovalPolicy.DESTROY,
            description=description,
            memory_size=1024,  # pyarrow + pyiceberg; more memory is also more CPU for the imports
            timeout=Duration.minutes(5),
            environment={**self.catalog.environment, **environment},
        )

    def _tables(self, glue_database: glue.CfnDatabase) -> CustomResource:
        self.tables_function = self._function(
            "Tables",
            "lake_tables",
            "Creates the marketpipe Iceberg tables (pyiceberg, Glue catalog) on deploy",
            {},
        )
        findings = self.catalog.grant(self.tables_function, namespace=True, create=True, delete=False)
        acknowledge_function(self.tables_function, findings=findings)
        resource = deploy_step(
            self,
            "Tables",
            "Tables",
            self.tables_function,
            resource_type="Custom::MarketpipeIcebergTables",
            properties={"TablesFingerprint": tables_fingerprint(), "Catalog": self.catalog.uri},
            retention=self._retention,
            what="table-creation",
        )
        resource.node.add_dependency(glue_database)
        return resource

    def _maintenance(self, snapshot_hours: float, *, enabled: bool) -> None:
        self.maintenance_function = self._function(
            "Maintenance",
            "lake_maintenance",
            "Expires old snapshots of the marketpipe Iceberg tables",
            {envnames.ICEBERG_SNAPSHOT_HOURS: str(snapshot_hours)},
        )
        findings = self.catalog.grant(self.maintenance_function)
        acknowledge_function(self.maintenance_function, findings=findings)
        self.maintenance_rule = scheduled_rule(
            self,
            "MaintenanceSchedule",
            self.maintenance_function,
            description="Expire snapshots of the Iceberg lake tables older than icebergSnapshotHours",
            every=events.Schedule.rate(MAINTENANCE_EVERY),
            retry_attempts=0,  # the next run is 10 minutes away and does the same
            max_event_age=Duration.minutes(10),
        )
        if not enabled:  # no tables to expire until the next deploy creates them
            cast(events.CfnRule, self.maintenance_rule.node.default_child).state = "DISABLED"
        self.maintenance_alarm = errors_alarm(
            self,
            self.maintenance_function,
            "Iceberg snapshot expiry failed for an hour: every commit's metadata.json keeps growing",
            period=Duration.hours(1),
            threshold=4,
        )

    def _optimizer_role(self) -> iam.Role:
        """What AWS documents for table optimizers, on these tables only: S3 read/write/delete on the
        table locations, Glue GetTable/UpdateTable, and the optimizers' own CloudWatch log groups."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "OptimizerRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description="Glue table optimizers (compaction, orphan file deletion) of the Iceberg lake",
        )
        bucket = self.catalog.bucket
        log_groups = [
            stack.format_arn(
                service="logs",
                resource="log-group",
                resource_name=f"{group}:*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for group in OPTIMIZER_LOG_GROUPS.values()
        ]
        for statement in (
            iam.PolicyStatement(
                sid="TableFiles",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(p) for p in self.catalog.object_prefixes],
            ),
            iam.PolicyStatement(
                sid="ListTableFiles", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]
            ),
            iam.PolicyStatement(
                sid="CommitTables",
                actions=["glue:GetTable", "glue:UpdateTable"],
                resources=self.catalog.glue_arns(),
            ),
            iam.PolicyStatement(
                sid="OptimizerLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=log_groups,
            ),
        ):
            role.add_to_policy(statement)
        Validations.of(role).acknowledge(
            *self.catalog.acknowledgments(),
            *(
                Acknowledgment(
                    id=resource_finding("AwsSolutions-IAM5", self, arn),
                    reason="Glue names the optimizer's log streams itself inside its fixed log group;"
                    " the grant is that one group's streams.",
                )
                for arn in log_groups
            ),
        )
        return role

    def _optimizers(self, orphan_retention_days: int) -> None:
        account = Stack.of(self).account
        for table in self.catalog.tables:
            for kind in OPTIMIZER_TYPES:
                configuration = glue.CfnTableOptimizer.TableOptimizerConfigurationProperty(
                    enabled=True,
                    role_arn=self.optimizer_role.role_arn,
                    compaction_configuration=(
                        glue.CfnTableOptimizer.CompactionConfigurationProperty(
                            # sort: rewritten files follow the tables' sort order (symbol, receive time), so
                            # each holds few symbols and a one-symbol query skips the rest by file bounds.
                            iceberg_configuration=glue.CfnTableOptimizer.IcebergCompactionConfigurationProperty(
                                strategy="sort"
                            )
                        )
                        if kind == "compaction"
                        else None
                    ),
                    orphan_file_deletion_configuration=(
                        glue.CfnTableOptimizer.OrphanFileDeletionConfigurationProperty(
                            iceberg_configuration=glue.CfnTableOptimizer.IcebergConfigurationProperty(
                                orphan_file_retention_period_in_days=orphan_retention_days
                            )
                        )
                        if kind == "orphan_file_deletion"
                        else None
                    ),
                )
                optimizer = glue.CfnTableOptimizer(
                    self,
                    f"Optimizer-{kind}-{table}",
                    catalog_id=account,
                    database_name=self.catalog.database_name,
                    table_name=table,
                    type=kind,
                    table_optimizer_configuration=configuration,
                )
                # The table must exist (custom resource) and the role hold its policy when Glue checks it.
                optimizer.node.add_dependency(*self.ready, self.optimizer_role)
                self.optimizers[(kind, table)] = optimizer
