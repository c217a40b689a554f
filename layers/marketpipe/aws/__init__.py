"""AWS adapters: Kinesis transport, S3 raw archive, CloudWatch metrics, DynamoDB checkpoints, Lambda logic.

The only package of marketpipe that imports ``boto3`` (always inside functions or adapters, so
``import marketpipe`` never needs it). The domain code it drives is the same as ``marketpipe run``.
"""
