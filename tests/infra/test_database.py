"""RDS MySQL: encrypted, private, isolated, generated secret, backups, schema migration on deploy."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template
from infra.constructs.database import schema_fingerprint
from infra.stack import MarketpipeStack

from tests.infra.conftest import REPO_ROOT, as_list, logical_id, only, policy_statements


def test_instance_is_mysql8_small_encrypted_private_and_backed_up(resources: dict[str, Any]) -> None:
    _, instance = only(resources, "AWS::RDS::DBInstance")
    props = instance["Properties"]
    assert props["Engine"] == "mysql"
    assert props["EngineVersion"].startswith("8.")
    assert props["DBInstanceClass"] == "db.t4g.micro"
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert props["DeletionProtection"] is True
    assert props["BackupRetentionPeriod"] == 7
    assert props["MultiAZ"] is False
    assert props["DBName"] == "marketpipe"
    assert props["EngineLifecycleSupport"] == "open-source-rds-extended-support-disabled"
    assert instance["DeletionPolicy"] == "Snapshot"


def test_credentials_are_generated_into_secrets_manager(resources: dict[str, Any]) -> None:
    _, instance = only(resources, "AWS::RDS::DBInstance")
    # The password is a dynamic reference into the generated secret, never a literal.
    assert instance["Properties"]["MasterUsername"] == "marketpipe_admin"
    assert "resolve:secretsmanager" in str(instance["Properties"]["MasterUserPassword"])
    assert ":SecretString:password::" in str(instance["Properties"]["MasterUserPassword"])
    generated = [
        r["Properties"]["GenerateSecretString"] for r in resources.values()
        if r["Type"] == "AWS::SecretsManager::Secret" and "marketpipe_admin" in str(r["Properties"])
    ]  # fmt: skip
    assert len(generated) == 1
    assert generated[0]["GenerateStringKey"] == "password"


def test_subnet_group_uses_the_isolated_subnets(resources: dict[str, Any]) -> None:
    _, group = only(resources, "AWS::RDS::DBSubnetGroup")
    subnets = group["Properties"]["SubnetIds"]
    assert len(subnets) == 2 and all("isolatedSubnet" in s["Ref"] for s in subnets)


def test_mysql_is_reachable_only_from_named_security_groups(
    stack: MarketpipeStack, resources: dict[str, Any]
) -> None:
    db_sg = logical_id(stack, stack.database.security_group)
    assert "SecurityGroupIngress" not in resources[db_sg]["Properties"]
    rules = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Fn::GetAtt": [db_sg, "GroupId"]}
    ]  # fmt: skip
    assert sorted(r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules) == sorted(
        [
            logical_id(stack, stack.book_builder.security_group),
            logical_id(stack, stack.database.migration_security_group),
            *([logical_id(stack, stack.binance.security_group)] if stack.binance is not None else []),
        ]
    )
    assert all("CidrIp" not in r for r in rules)


def test_schema_migration_runs_on_deploy_and_when_tables_change(
    stack: MarketpipeStack, template: Template, resources: dict[str, Any]
) -> None:
    template.has_resource_properties(
        "Custom::MarketpipeSchema",
        {"SchemaFingerprint": schema_fingerprint(), "DatabaseName": "marketpipe"},
    )
    _, custom = only(resources, "Custom::MarketpipeSchema")
    assert logical_id(stack, stack.database.instance) in as_list(custom["DependsOn"])
    function = resources[logical_id(stack, stack.database.migration_function)]["Properties"]
    assert function["Environment"]["Variables"]["MARKETPIPE_DB_SECRET_ARN"] == {
        "Ref": logical_id(stack, stack.database.secret)
    }
    assert all("isolatedSubnet" in s["Ref"] for s in function["VpcConfig"]["SubnetIds"])
    # The migration role may read the DB secret and nothing else.
    statements = policy_statements(resources, logical_id(stack, stack.database.migration_function.role))
    assert statements == [
        {
            "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
            "Effect": "Allow",
            "Resource": {"Ref": logical_id(stack, stack.database.secret)},
        }
    ]


def test_migration_handler_is_thin() -> None:
    source = (REPO_ROOT / "functions" / "db_migrate" / "handler.py").read_text()
    assert "from marketpipe.aws import db_migrate" in source
    assert "return db_migrate.handle(event, os.environ)" in source


def test_fingerprint_changes_with_the_schema(monkeypatch: Any) -> None:
    from marketpipe import tables

    before = schema_fingerprint()
    trades = tables.TABLES["bitfinex_trades"]
    changed = tables.Table(
        name="bitfinex_trades",
        columns=(*trades.columns, tables.Column("extra", tables.Kind.STR)),
        key=trades.key,
        order_by=trades.order_by,
    )
    monkeypatch.setitem(tables.TABLES, "bitfinex_trades", changed)
    assert schema_fingerprint() != before
