"""AWS adapters: the collector's Kinesis transport and S3 raw archive, CloudWatch metrics, DynamoDB
checkpoints, the one checkpointed Kinesis consumer, Secrets Manager and SNS, and one module per Lambda.

``marketpipe.aws.<lambda>`` (``book_builder``, ``binance_metrics``, ``binance_api``, ``bitso_spreads``,
``execution``, ``ledger_etl``, ``notifier``, ``db_migrate``) exposes ``handle(event, env)``, which
``functions/<lambda>/handler.py`` calls with ``os.environ``. The only package of marketpipe that imports
``boto3`` (always inside functions or adapters, so ``import marketpipe`` never needs it). The domain
code it drives is the same as ``marketpipe run``.
"""
