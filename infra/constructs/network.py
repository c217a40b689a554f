"""The VPC: public subnets for the collector, isolated subnets for RDS and the Lambdas that reach it.

No NAT gateway (~$33/month each): the collector sits in a public subnet with a public IP and no
inbound rules; the in-VPC Lambdas only need AWS services, which they reach through endpoints: S3 and
DynamoDB (gateways, free), Secrets Manager and Glue (interface endpoints, one AZ each).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs

from constructs import Construct
from infra.config import MarketpipeConfig, log_retention


class Network(Construct):
    """Two AZs (RDS subnet groups need two), S3/DynamoDB gateway endpoints, Secrets Manager and Glue
    interface endpoints."""

    def __init__(self, scope: Construct, construct_id: str, *, config: MarketpipeConfig) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
        )
        # Rejected connections only: enough to see probing or misrouted traffic, cheap to ingest.
        self.flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "RejectedFlows",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        isolated = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.isolated_subnets = isolated
        self.public_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        # Gateway endpoints are free: lake writes (S3) and book checkpoints (DynamoDB).
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[isolated]
        )
        self.dynamodb_endpoint = self.vpc.add_gateway_endpoint(
            "DynamoDbEndpoint", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[isolated]
        )
        # The only interface endpoint: the database credentials live in Secrets Manager, which has no
        # gateway endpoint. One AZ keeps it at ~$7/month; the other AZ's Lambdas reach it across AZs.
        self.secrets_endpoint_security_group = ec2.SecurityGroup(
            self,
            "SecretsEndpointSg",
            vpc=self.vpc,
            description="Secrets Manager endpoint: HTTPS from the database clients only",
            allow_all_outbound=False,
        )
        self.secrets_manager_endpoint = self.vpc.add_interface_endpoint(
            "SecretsManagerEndpoint",
            service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            private_dns_enabled=True,
            subnets=ec2.SubnetSelection(subnets=[self.vpc.isolated_subnets[0]]),
            security_groups=[self.secrets_endpoint_security_group],
            open=False,
        )

        # The book builder commits to the Iceberg tables through the Glue Data Catalog API, which has no
        # gateway endpoint either (same one-AZ trade-off, ~$7/month).
        self.glue_endpoint_security_group = ec2.SecurityGroup(
            self,
            "GlueEndpointSg",
            vpc=self.vpc,
            description="Glue endpoint: HTTPS from the Iceberg lake writers only",
            allow_all_outbound=False,
        )
        self.glue_endpoint = self.vpc.add_interface_endpoint(
            "GlueEndpoint",
            service=ec2.InterfaceVpcEndpointAwsService.GLUE,
            private_dns_enabled=True,
            subnets=ec2.SubnetSelection(subnets=[self.vpc.isolated_subnets[0]]),
            security_groups=[self.glue_endpoint_security_group],
            open=False,
        )

    def allow_glue_access(self, peer: ec2.IConnectable, description: str) -> None:
        """Let one security group (a Lambda writing the Iceberg lake) reach the Glue endpoint."""
        self.glue_endpoint.connections.allow_default_port_from(peer, description)

    def allow_secrets_access(self, peer: ec2.IConnectable, description: str) -> None:
        """Let one security group (a Lambda that reads the DB secret) reach the Secrets Manager endpoint."""
        self.secrets_manager_endpoint.connections.allow_default_port_from(peer, description)
