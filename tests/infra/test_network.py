"""Network: public subnets for the collector, isolated subnets for RDS/Lambdas, endpoints, no NAT."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template
from infra.stack import MarketpipeStack

from tests.infra.conftest import logical_id, only


def test_two_public_and_two_isolated_subnets_and_no_nat(
    template: Template, resources: dict[str, Any]
) -> None:
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    subnets = [r for r in resources.values() if r["Type"] == "AWS::EC2::Subnet"]
    public = [s for s in subnets if s["Properties"].get("MapPublicIpOnLaunch") is True]
    isolated = [s for s in subnets if s["Properties"].get("MapPublicIpOnLaunch") is False]
    assert (len(public), len(isolated)) == (2, 2)
    # Isolated subnets have no default route at all (no NAT, no IGW).
    routes = [r for r in resources.values() if r["Type"] == "AWS::EC2::Route"]
    assert all("GatewayId" in r["Properties"] for r in routes)
    assert all("public" in r["Properties"]["RouteTableId"]["Ref"] for r in routes)


def test_gateway_endpoints_for_s3_and_dynamodb_on_isolated_route_tables(resources: dict[str, Any]) -> None:
    gateways = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"]["VpcEndpointType"] == "Gateway"
    ]  # fmt: skip
    services = sorted(str(g["ServiceName"]) for g in gateways)
    assert len(gateways) == 2
    assert ".dynamodb" in services[0] and ".s3" in services[1]
    for gateway in gateways:
        assert [ref["Ref"] for ref in gateway["RouteTableIds"]] == [
            ref["Ref"] for ref in gateway["RouteTableIds"] if "isolated" in ref["Ref"]
        ]
        assert len(gateway["RouteTableIds"]) == 2


def test_secrets_manager_endpoint_one_az_reachable_only_from_db_clients(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    interfaces = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"]["VpcEndpointType"] == "Interface"
    ]  # fmt: skip
    # Hourly-billed: only Secrets Manager (database credentials) and Glue (Iceberg commits) need one.
    assert len(interfaces) == 2
    (endpoint,) = [i for i in interfaces if "secretsmanager" in str(i["ServiceName"])]
    assert "secretsmanager" in str(endpoint["ServiceName"])
    assert endpoint["PrivateDnsEnabled"] is True
    assert [s["Ref"] for s in endpoint["SubnetIds"]] == [
        logical_id(stack, stack.network.vpc.isolated_subnets[0])
    ]
    endpoint_sg = logical_id(stack, stack.network.secrets_endpoint_security_group)
    sg = resources[endpoint_sg]["Properties"]
    assert "SecurityGroupIngress" not in sg  # no CIDR rule, only the SG-to-SG rules below
    ingress = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"]["Fn::GetAtt"][0] == endpoint_sg
    ]  # fmt: skip
    sources = sorted(i["SourceSecurityGroupId"]["Fn::GetAtt"][0] for i in ingress)
    assert sources == sorted(
        [
            logical_id(stack, stack.book_builder.security_group),
            logical_id(stack, stack.database.migration_security_group),
            *([logical_id(stack, stack.binance.security_group)] if stack.binance is not None else []),
        ]
    )
    assert {(i["FromPort"], i["ToPort"]) for i in ingress} == {(443, 443)}


def test_glue_endpoint_one_az_reachable_only_from_the_lake_writer(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    (endpoint,) = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint" and ".glue" in str(r["Properties"]["ServiceName"])
    ]  # fmt: skip
    assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"] is True
    assert [s["Ref"] for s in endpoint["SubnetIds"]] == [
        logical_id(stack, stack.network.vpc.isolated_subnets[0])
    ]
    endpoint_sg = logical_id(stack, stack.network.glue_endpoint_security_group)
    assert "SecurityGroupIngress" not in resources[endpoint_sg]["Properties"]
    ingress = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"]["Fn::GetAtt"][0] == endpoint_sg
    ]  # fmt: skip
    assert [i["SourceSecurityGroupId"]["Fn::GetAtt"][0] for i in ingress] == [
        logical_id(stack, stack.book_builder.security_group)
    ]
    assert {(i["FromPort"], i["ToPort"]) for i in ingress} == {(443, 443)}


def test_rejected_flows_are_logged_with_retention(resources: dict[str, Any]) -> None:
    _, flow_log = only(resources, "AWS::EC2::FlowLog")
    assert flow_log["Properties"]["TrafficType"] == "REJECT"
    assert flow_log["Properties"]["LogDestinationType"] == "cloud-watch-logs"
    _, group = only(resources, "AWS::Logs::LogGroup", contains="FlowLogs")
    assert group["Properties"]["RetentionInDays"] == 30


def test_default_security_group_is_restricted(template: Template) -> None:
    template.resource_count_is("Custom::VpcRestrictDefaultSG", 1)
