"""The ledger ETL construct on a tiny stack: schedule -> Lambda, scoped IAM, Glue tables, named queries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template
from infra.constructs.ledger_etl import LedgerEtl

from marketpipe.etl.model import TABLES
from marketpipe.etl.queries import load_queries


def _stack(tmp: Path, *, nag: bool = False) -> tuple[Stack, LedgerEtl]:
    app = App(context={"aws:cdk:bundling-stacks": []})
    if nag:
        from cdk_nag import AwsSolutionsChecks

        Validations.of(app).add_plugins(AwsSolutionsChecks())
    stack = Stack(app, "LedgerTest", env={"account": "123456789012", "region": "eu-west-1"})
    bucket = s3.Bucket(
        stack,
        "Lake",
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
    )
    if nag:
        from aws_cdk import Acknowledgment

        Validations.of(bucket).acknowledge(
            Acknowledgment(id="AwsSolutions-S1", reason="Test-only bucket; the real lake bucket logs access.")
        )
    layer_dir = tmp / "layer" / "python"
    layer_dir.mkdir(parents=True, exist_ok=True)
    layer = lambda_.LayerVersion(stack, "Layer", code=lambda_.Code.from_asset(str(tmp / "layer")))
    etl = LedgerEtl(
        stack,
        "Ledger",
        lake_bucket=bucket,
        layer=layer,
        glue_database_name="marketpipe",
        athena_workgroup_name="wg",
    )
    return stack, etl


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stack, LedgerEtl, Template]:
    stack, etl = _stack(tmp_path_factory.mktemp("cdk"))
    return stack, etl, Template.from_stack(stack)


def _resources(template: Template, kind: str) -> dict[str, Any]:
    return template.find_resources(kind)


def test_lambda_runs_the_handler_with_the_layer(built: tuple[Stack, LedgerEtl, Template]) -> None:
    stack, _, template = built
    [fn] = _resources(template, "AWS::Lambda::Function").values()
    props = fn["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "handler.handler"
    assert props["ReservedConcurrentExecutions"] == 1
    assert len(props["Layers"]) == 1
    env = stack.resolve(props["Environment"]["Variables"])
    assert set(env) == {"LEDGER_RAW_URI", "LEDGER_LAKE_URI", "LEDGER_QUARANTINE_URI", "LEDGER_LOOKBACK_DAYS"}
    assert "/ledger/raw?region=eu-west-1" in str(env["LEDGER_RAW_URI"])


def test_daily_schedule_targets_the_lambda(built: tuple[Stack, LedgerEtl, Template]) -> None:
    _, _, template = built
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "cron(30 1 * * ? *)",
            "State": "ENABLED",
            "Targets": [Match.object_like({"Arn": Match.any_value(), "RetryPolicy": Match.any_value()})],
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Permission", {"Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com"}
    )
    template.resource_count_is("AWS::CloudWatch::Alarm", 1)


def test_iam_is_scoped_to_the_ledger_prefixes(built: tuple[Stack, LedgerEtl, Template]) -> None:
    stack, _, template = built
    statements = [
        s
        for policy in _resources(template, "AWS::IAM::Policy").values()
        for s in stack.resolve(policy["Properties"]["PolicyDocument"]["Statement"])
    ]
    by_sid = {s.get("Sid"): s for s in statements}
    assert by_sid["ReadRawLedger"]["Action"] == "s3:GetObject"
    assert "/ledger/raw/*" in str(by_sid["ReadRawLedger"]["Resource"])
    assert by_sid["ListLedger"]["Condition"] == {"StringLike": {"s3:prefix": ["ledger", "ledger/*"]}}
    write = by_sid["WriteLedgerTables"]
    assert sorted(write["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    text = str(write["Resource"])
    assert all(f"/ledger/{t.name}/*" in text for t in TABLES) and "/ledger/quarantine/*" in text
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert not any(a.endswith(":*") or a == "*" for a in actions)


def test_glue_table_per_model_table_with_projection(built: tuple[Stack, LedgerEtl, Template]) -> None:
    stack, _, template = built
    tables = {
        t["Properties"]["TableInput"]["Name"]: stack.resolve(t["Properties"]["TableInput"])
        for t in _resources(template, "AWS::Glue::Table").values()
    }
    assert set(tables) == {t.name for t in TABLES}
    for model in TABLES:
        table = tables[model.name]
        columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        assert columns == [(c.name, c.type.glue) for c in model.columns]
        params = table["Parameters"]
        location = str(table["StorageDescriptor"]["Location"])
        assert f"/ledger/{model.name}/" in location
        if model.daily:
            assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
            assert params["projection.enabled"] == "true"
            assert params["projection.dt.format"] == "yyyy-MM-dd"
            assert f"/ledger/{model.name}/dt=${{dt}}/" in str(params["storage.location.template"])
        else:
            assert not table.get("PartitionKeys")
            assert "projection.enabled" not in params


def test_named_query_per_question_with_the_same_sql(built: tuple[Stack, LedgerEtl, Template]) -> None:
    _, _, template = built
    queries = {
        q["Properties"]["Name"]: q["Properties"]
        for q in _resources(template, "AWS::Athena::NamedQuery").values()
    }
    specs = load_queries()
    assert set(queries) == {f"ledger-{n}" for n in specs}
    for name, spec in specs.items():
        props = queries[f"ledger-{name}"]
        assert props["QueryString"] == spec.sql
        assert props["Database"] == "marketpipe" and props["WorkGroup"] == "wg"
        for p in spec.params:
            assert p.name in props["Description"]


def test_cdk_nag_has_no_unacknowledged_findings(tmp_path: Path) -> None:
    stack, _ = _stack(tmp_path, nag=True)
    Template.from_stack(stack)  # raises on any unacknowledged AwsSolutions finding
