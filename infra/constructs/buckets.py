"""One way to make an S3 bucket, so every bucket in the stack is private, encrypted and TLS-only.

Not a capability of its own: the lake, the access-log sink and the book builder's failure bucket all
call :func:`secure_bucket` so that none of them can forget a security property.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_s3 as s3

from constructs import Construct


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    access_logs: s3.IBucket | None,
    retain: bool,
    versioned: bool = False,
    lifecycle_rules: Sequence[s3.LifecycleRule] = (),
    log_prefix: str | None = None,
) -> s3.Bucket:
    """A private SSE-S3 bucket that refuses plain HTTP and logs access to ``access_logs``.

    SSE-S3 rather than a customer key: same at-rest protection, no $1/month key and no KMS request
    charges on every Parquet read Athena makes. ``retain`` keeps data buckets on stack deletion.
    """
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=versioned,
        lifecycle_rules=list(lifecycle_rules),
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=(log_prefix or f"{construct_id.lower()}/") if access_logs else None,
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
    )
