"""Kinesis stream: encrypted with the AWS-managed key, provisioned shards from configuration."""

from __future__ import annotations

from aws_cdk.assertions import Template


def test_stream_is_encrypted_with_aws_managed_key(template: Template) -> None:
    template.resource_count_is("AWS::Kinesis::Stream", 1)
    template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {"StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}},
    )


def test_stream_capacity_and_retention_come_from_configuration(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {"ShardCount": 1, "RetentionPeriodHours": 24, "StreamModeDetails": {"StreamMode": "PROVISIONED"}},
    )
