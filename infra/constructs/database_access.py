"""Lambdas that talk to RDS MySQL, made one way (book builder, Binance metrics and API, schema migration).

Such a Lambda runs in the VPC's isolated subnets with a security group that MySQL and the Secrets
Manager endpoint admit, finds the database secret's ARN and the database name in its environment
(``marketpipe.envnames``), and may read that secret. :class:`DatabaseAccess` holds what that takes and
makes the security group and the function; the :class:`~infra.constructs.database.Database` construct
hands one out as ``database.access``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from infra.constructs.scheduled_lake import python_function
from marketpipe import envnames


@dataclass(frozen=True)
class DatabaseAccess:
    """The VPC placement, the secret and the database name, and how to open MySQL to a security group."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    secret: secretsmanager.ISecret
    db_name: str
    allow: Callable[[ec2.IConnectable, str], None]
    """Opens MySQL and the Secrets Manager endpoint to one security group (``description`` names it)."""

    @property
    def environment(self) -> dict[str, str]:
        """The variables the Lambda modules read the database from."""
        return {envnames.DB_SECRET_ARN: self.secret.secret_arn, envnames.DB_NAME: self.db_name}

    def security_group(
        self, scope: Construct, construct_id: str, *, description: str, peer_description: str
    ) -> ec2.SecurityGroup:
        """A Lambda security group (all outbound: gateway and interface endpoints) that MySQL and the
        Secrets Manager endpoint admit; ``peer_description`` labels those ingress rules."""
        group = ec2.SecurityGroup(
            scope, construct_id, vpc=self.vpc, description=description, allow_all_outbound=True
        )
        self.allow(group, peer_description)
        return group

    def function(
        self,
        scope: Construct,
        *,
        security_group: ec2.ISecurityGroup,
        environment: Mapping[str, str] | None = None,
        tables: Sequence[dynamodb.ITable] = (),
        **props: Any,
    ) -> lambda_.Function:
        """:func:`python_function` in the isolated subnets with ``security_group``, the database variables
        added to ``environment`` (at the end, unless ``environment`` already places them), read/write on
        its DynamoDB ``tables``, and read access to the database secret."""
        function = python_function(
            scope,
            vpc=self.vpc,
            vpc_subnets=self.subnets,
            security_groups=[security_group],
            environment={**(environment or {}), **self.environment},
            **props,
        )
        for table in tables:
            table.grant_read_write_data(function)
        self.secret.grant_read(function)
        return function
