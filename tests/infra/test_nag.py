"""cdk-nag AwsSolutions on the whole app: synth passes, and every acknowledgment carries a reason.

cdk-nag 3.x runs as a policy-validation plugin: ``app.synth()`` raises on any unacknowledged finding,
so a passing synth *is* the assertion. The negative test proves the plugin is really active.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from tests.infra.conftest import build

ACK_METADATA = "aws:cdk:acknowledged-rules"


def test_whole_app_passes_aws_solutions_checks() -> None:
    app, stack = build(nag=True)
    assembly = app.synth()  # raises ValidationFailed on any unacknowledged AwsSolutions finding
    assert assembly.get_stack_artifact(stack.artifact_id).template["Resources"]
    acknowledged: dict[str, str] = {}
    for construct in stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == ACK_METADATA:
                for rule, reason in entry.data.items():
                    acknowledged[f"{construct.node.path} {rule}"] = reason
    ours = {k: v for k, v in acknowledged.items() if "AwsSolutions-" in k}
    assert len(ours) >= 15
    for finding, reason in ours.items():
        assert len(reason.split()) >= 6, f"acknowledgment without a real reason: {finding}"
    # The acknowledgments are specific findings, not blanket rule suppressions, for IAM wildcards.
    assert all("[" in k for k in ours if "AwsSolutions-IAM5" in k)


def test_app_plugin_rejects_an_unacknowledged_finding() -> None:
    """The same app factory with one careless bucket added must fail synthesis."""
    app, stack = build(nag=True)
    s3.Bucket(stack, "CarelessBucket")  # no access logs, no TLS enforcement
    with pytest.raises(RuntimeError, match=r"CarelessBucket(.|\n)*AwsSolutions-S1'"):
        app.synth()


def test_plugin_names_the_rule(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Insecure")
    s3.Bucket(stack, "NoLogsNoTls")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="AwsSolutions-S10"):
        app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-S1" in report and "AwsSolutions-S10" in report
