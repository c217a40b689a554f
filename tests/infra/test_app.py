"""The whole app: synthesizes like ``cdk synth``, env-agnostic, outputs, Plivo settings, overrides."""

from __future__ import annotations

import json
import re
from typing import Any

from infra.stack import LEDGER_ETL_MODULE, MarketpipeStack

from marketpipe.envnames import PLIVO_PLACEHOLDER_AUTH_ID as PLACEHOLDER_AUTH_ID
from tests.infra.conftest import REPO_ROOT, build, logical_id


def test_app_synthesizes_one_env_agnostic_stack(stack: MarketpipeStack) -> None:
    assembly = stack.node.root.synth()  # type: ignore[attr-defined]
    (artifact,) = assembly.stacks
    assert artifact.stack_name == "Marketpipe"
    template = json.dumps(artifact.template)
    assert not re.search(r"\b\d{12}\b", template), "no account id baked into the template"
    outputs = artifact.template["Outputs"]
    for name in (
        "StreamName",
        "DataBucketName",
        "LakeUri",
        "DbSecretArn",
        "PlivoSecretArn",
        "AthenaWorkgroup",
        "IcebergCatalog",
    ):
        assert name in outputs


def test_every_function_directory_is_deployed_once(stack: MarketpipeStack) -> None:
    """Each ``functions/<name>/handler.py`` is the code of exactly one Lambda (matched by asset hash:
    the fingerprint of the directory), so a new function cannot be written and never deployed."""
    from aws_cdk import FileSystem
    from aws_cdk import aws_lambda as lambda_

    deployed = [
        str(code.asset_hash)  # type: ignore[attr-defined]
        for c in stack.node.find_all()
        if isinstance(c, lambda_.Function) and (code := c.node.try_find_child("Code")) is not None
    ]
    directories = sorted(p.parent for p in (REPO_ROOT / "functions").glob("*/handler.py"))
    assert {"lake_tables", "lake_maintenance", "db_migrate", "book_builder"} <= {d.name for d in directories}
    for directory in directories:
        if directory.name in ("ledger_etl",) and stack.ledger_etl is None:
            continue
        assert deployed.count(FileSystem.fingerprint(str(directory))) == 1, directory.name


def test_plivo_secret_is_a_generated_placeholder(stack: MarketpipeStack, resources: dict[str, Any]) -> None:
    secret = resources[logical_id(stack, stack.plivo.secret)]["Properties"]
    generate = secret["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {"auth_id": PLACEHOLDER_AUTH_ID}
    assert generate["GenerateStringKey"] == "auth_token"
    assert stack.plivo.alarm_phone_number == ""


def test_ledger_etl_is_attached_when_its_module_exists(stack: MarketpipeStack) -> None:
    import importlib.util

    present = importlib.util.find_spec(LEDGER_ETL_MODULE) is not None
    assert (stack.ledger_etl is not None) == present


def test_context_overrides_reach_every_construct_and_still_pass_cdk_nag() -> None:
    app, stack = build(
        {
            "symbols": "BTC-USD,SOL-USD",
            "shardCount": "2",
            "dbInstanceClass": "t4g.small",
            "dbDeletionProtection": "false",
            "dbMultiAz": "true",
            "alarmPhoneNumber": "+15555550100",
            "rawArchiveExpirationDays": "400",
        },
        nag=True,
    )
    template = app.synth().get_stack_artifact(stack.artifact_id).template  # cdk-nag runs here
    resources = template["Resources"]

    def props(construct: Any) -> dict[str, Any]:
        return resources[logical_id(stack, construct)]["Properties"]

    assert props(stack.stream.stream)["ShardCount"] == 2
    db = props(stack.database.instance)
    assert (db["DBInstanceClass"], db["DeletionProtection"], db["MultiAZ"]) == ("db.t4g.small", False, True)
    assert stack.plivo.alarm_phone_number == "+15555550100"
    env = props(stack.collector.task_definition)["ContainerDefinitions"][0]["Environment"]
    assert {"Name": "MARKETPIPE_SYMBOLS", "Value": "BTC-USD,SOL-USD"} in env
    # The symbols' tables are Iceberg tables (hidden bucket(symbol) partitions, created by pyiceberg):
    # no Glue table of CloudFormation's projects the symbol list any more.
    tables = [r["Properties"]["TableInput"] for r in resources.values() if r["Type"] == "AWS::Glue::Table"]
    assert not [t["Name"] for t in tables if t["Name"].startswith("bitfinex_")]
    assert "BTC-USD,SOL-USD" not in json.dumps(tables)
    raw_rule = next(
        r
        for r in props(stack.lake.data_bucket)["LifecycleConfiguration"]["Rules"]
        if r["Id"] == "raw-archive-tiering"
    )
    assert raw_rule["ExpirationInDays"] == 400
    body = json.dumps(props(stack.dashboard.dashboard))
    assert "slot-000" in body and "slot-001" not in body  # the two symbols share one connection slot
