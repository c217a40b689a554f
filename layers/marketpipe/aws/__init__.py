"""AWS adapters: the collector's Kinesis transport and S3 raw archive, CloudWatch metrics, DynamoDB
checkpoints, the one checkpointed Kinesis consumer, Secrets Manager, and one module per Lambda.

``marketpipe.aws.<lambda>`` (``book_builder``, ``binance_metrics``, ``binance_api``, ``bitso_spreads``,
``execution``, ``ledger_etl``, ``notifier``, ``db_migrate``) exposes ``handle(event, env)``, which
``functions/<lambda>/handler.py`` calls with ``os.environ``. With the SNS alert channel
(``alerts.sns``), the only code that imports ``boto3``, always lazily (``import marketpipe`` never
needs it). The domain code it drives is the same as ``marketpipe run``.
"""
