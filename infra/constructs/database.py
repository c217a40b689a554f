"""RDS MySQL 8 for the SQL copy of every table, and the deploy-time schema migration.

The instance lives in isolated subnets, encrypted, never public; the master credentials are generated
into Secrets Manager and read by the Lambdas at run time (nothing in the template or environment).
The schema is created by a custom resource that runs ``marketpipe.aws.migrate.migrate`` on every
deploy whose table definitions changed, so the first book-builder batch finds its tables.
"""

from __future__ import annotations

import hashlib
import json

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds

from constructs import Construct
from infra.config import MarketpipeConfig
from infra.constructs.database_access import DatabaseAccess
from infra.constructs.layer import REPO_ROOT
from infra.constructs.network import Network
from infra.constructs.scheduled_lake import acknowledge_function, deploy_step
from marketpipe.tables import TABLES

MYSQL_PORT = 3306
MASTER_USERNAME = "marketpipe_admin"


def schema_fingerprint() -> str:
    """Changes whenever a table definition changes, which makes CloudFormation re-run the migration."""
    shape = {
        name: [[c.name, c.kind.value, c.nullable] for c in table.columns] + [list(table.key)]
        for name, table in sorted(TABLES.items())
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


class Database(Construct):
    """MySQL instance, its security group, and the schema-migration custom resource."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: MarketpipeConfig,
        network: Network,
        layer: lambda_.ILayerVersion,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.database_name = config.db_name
        self._network = network
        vpc, subnets = network.vpc, network.isolated_subnets
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="MySQL: inbound only from the marketpipe Lambda security groups",
            allow_all_outbound=False,
        )
        version = rds.MysqlEngineVersion.of(config.db_engine_version, config.db_engine_version)
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=rds.DatabaseInstanceEngine.mysql(version=version),
            instance_type=ec2.InstanceType(config.db_instance_class),
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            port=MYSQL_PORT,
            credentials=rds.Credentials.from_generated_secret(MASTER_USERNAME),
            database_name=config.db_name,
            allocated_storage=config.db_allocated_storage_gb,
            max_allocated_storage=config.db_allocated_storage_gb * 5,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            publicly_accessible=False,
            multi_az=config.db_multi_az,
            deletion_protection=config.db_deletion_protection,
            backup_retention=Duration.days(config.db_backup_retention_days),
            auto_minor_version_upgrade=True,
            # Never slide silently into paid Extended Support when a major version ages out.
            engine_lifecycle_support=rds.EngineLifecycleSupport.OPEN_SOURCE_RDS_EXTENDED_SUPPORT_DISABLED,
            removal_policy=RemovalPolicy.SNAPSHOT if config.retain_data else RemovalPolicy.DESTROY,
        )
        if self.instance.secret is None:  # pragma: no cover - from_generated_secret always sets it
            raise RuntimeError("generated credentials must produce a secret")
        self.secret = self.instance.secret

        acknowledgments = [
            Acknowledgment(
                id="AwsSolutions-RDS11",
                reason="Default port kept: the instance is in isolated subnets, reachable only from the"
                " Lambdas' security groups; a non-standard port adds no protection there.",
            ),
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="No scheduled rotation yet: the book builder caches its connection per container;"
                " rotate manually (Secrets Manager console) until reconnect-on-auth-failure lands.",
            ),
        ]
        if not config.db_multi_az:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS3",
                    reason="Single-AZ by default to halve cost: MySQL is a rebuildable copy (replay from the"
                    " raw archive in S3). Set context dbMultiAz=true for production.",
                )
            )
        if not config.db_deletion_protection:
            acknowledgments.append(
                Acknowledgment(
                    id="AwsSolutions-RDS10",
                    reason="Deletion protection disabled explicitly via context dbDeletionProtection=false.",
                )
            )
        acknowledgments.append(
            Acknowledgment(
                id="CloudFormation-Validate::E9006",
                reason="EngineVersion is the major version on purpose: RDS picks the current minor and"
                " auto_minor_version_upgrade keeps it patched without template drift.",
            )
        )
        Validations.of(self.instance).acknowledge(*acknowledgments)
        Validations.of(self.secret).acknowledge(acknowledgments[1])

        self.access = DatabaseAccess(vpc, subnets, self.secret, config.db_name, self.allow_client)
        """What a Lambda that talks to this database is made with (``database_access``)."""
        self._add_migration(layer, log_retention)

    def allow_from(self, peer: ec2.IConnectable, description: str) -> None:
        """Open MySQL to one security group (never a CIDR)."""
        self.instance.connections.allow_default_port_from(peer, description)

    def allow_client(self, peer: ec2.IConnectable, description: str) -> None:
        """Lambdas in ``peer`` reach MySQL and the Secrets Manager endpoint (for the credentials)."""
        self.allow_from(peer, description)
        self._network.allow_secrets_access(peer, description)

    def _add_migration(self, layer: lambda_.ILayerVersion, log_retention: logs.RetentionDays) -> None:
        self.migration_security_group = self.access.security_group(
            self,
            "MigrationSecurityGroup",
            description="Schema migration Lambda: MySQL and Secrets Manager endpoint only",
            peer_description="schema migration",
        )
        self.migration_function = self.access.function(
            self,
            security_group=self.migration_security_group,
            construct_id="MigrationFunction",
            log_id="MigrationLogs",
            handler_dir=REPO_ROOT / "functions" / "db_migrate",
            layer=layer,
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
            description="Creates/updates the marketpipe MySQL schema on deploy",
            memory_size=512,
            timeout=Duration.minutes(5),
        )
        self.migration = deploy_step(
            self,
            "Migration",
            "Schema",
            self.migration_function,
            resource_type="Custom::MarketpipeSchema",
            properties={"SchemaFingerprint": schema_fingerprint(), "DatabaseName": self.database_name},
            retention=log_retention,
            what="migration",
        )
        self.migration.node.add_dependency(self.instance)
        acknowledge_function(self.migration_function, vpc=True)
