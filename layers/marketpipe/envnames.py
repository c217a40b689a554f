"""Names of the environment variables a deployment sets: the one contract between ``infra/`` and the code.

The CDK constructs write these names into each Lambda's and the collector task's environment; the
Lambda modules (``marketpipe.aws.*``), the collector's Kinesis transport and the service settings
readers look them up by the same constants. Many are shared with ``marketpipe run`` (settings such as
the Bitso books or the Binance watch list, and the SMS numbers), and the last section holds the names only
a local run reads (endpoints, tuning), so every ``MARKETPIPE_*`` name is written once, here.

It imports nothing, so the CDK app and the Lambda layer can both import it cheaply.
"""

# ------------------------------------------------------------------ the collector task (Fargate)
KINESIS_STREAM = "MARKETPIPE_KINESIS_STREAM"
"""Stream the collector publishes frames to (``--transport kinesis``)."""
RAW_URI = "MARKETPIPE_RAW_URI"
"""``s3://bucket/raw``: the collector's raw-capture archive."""
SYMBOLS = "MARKETPIPE_SYMBOLS"
"""Bitfinex symbols, comma list (also read by ``marketpipe run``)."""

# ------------------------------------------------------------------ database (RDS MySQL)
DB_SECRET_ARN = "MARKETPIPE_DB_SECRET_ARN"
"""The RDS-generated secret (``username``, ``password``, ``host``, ``port``, ``dbname``)."""
DB_NAME = "MARKETPIPE_DB_NAME"
"""Database name; overrides the secret's ``dbname``."""
DB_URL = "MARKETPIPE_DB_URL"
"""A SQLAlchemy URL used instead of the secret (the read API against a local database, tests)."""

# ------------------------------------------------------------------ Kinesis consumers
LAKE_URI = "MARKETPIPE_LAKE_URI"
"""``s3://bucket/lake?region=…``: the lake the book builder and the Binance metrics write."""
ICEBERG_CATALOG = "MARKETPIPE_ICEBERG_CATALOG"
"""``glue://<database>?warehouse=s3://bucket/iceberg``: the Iceberg tables the book builder appends to
(``sinks.iceberg_sink.CatalogSpec``); unset, it writes the Parquet layout under the lake URI."""
ICEBERG_SNAPSHOT_HOURS = "MARKETPIPE_ICEBERG_SNAPSHOT_HOURS"
"""Age beyond which the lake maintenance Lambda expires Iceberg snapshots (default 1)."""
CHECKPOINT_TABLE = "MARKETPIPE_CHECKPOINT_TABLE"
"""DynamoDB table of the consumer's checkpoints (one item per partition key)."""

# ------------------------------------------------------------------ alerts
ALERT_TOPIC_ARN = "MARKETPIPE_ALERT_TOPIC_ARN"
"""SNS topic for Bitso spread and Binance price alerts (also honoured by ``marketpipe run``)."""
IDEMPOTENCY_TABLE = "MARKETPIPE_IDEMPOTENCY_TABLE"
"""DynamoDB table of the notifier's Powertools idempotency records and outage start times."""
PLIVO_SECRET_ARN = "MARKETPIPE_PLIVO_SECRET_ARN"
"""Plivo credentials (JSON ``auth_id``, ``auth_token``, optional ``src``)."""
ALERT_SMS_TO = "MARKETPIPE_ALERT_SMS_TO"
"""Destination number(s) of the SMS alerts (also read by ``marketpipe run`` / ``marketpipe check``)."""
ALERT_SMS_FROM = "MARKETPIPE_ALERT_SMS_FROM"
"""Source number when the Plivo secret has no ``src``."""
PLIVO_API_URL = "MARKETPIPE_PLIVO_API_URL"
"""Plivo API base URL (the loopback fake in tests and demos); unset on AWS."""

# ------------------------------------------------------------------ Bitso spreads
BITSO_BOOKS = "MARKETPIPE_BITSO_BOOKS"
SPREAD_THRESHOLDS = "MARKETPIPE_SPREAD_THRESHOLDS"
BITSO_WINDOW_SECONDS = "MARKETPIPE_BITSO_WINDOW_SECONDS"
BITSO_STAGING_URI = "MARKETPIPE_BITSO_STAGING_URI"
"""Per-minute staging chunks, compacted into the lake file of each window."""
BITSO_STATE_URI = "MARKETPIPE_BITSO_STATE_URI"
"""JSON object holding the threshold tracker between invocations."""
BITSO_LAKE_URI = "MARKETPIPE_BITSO_LAKE_URI"

# ------------------------------------------------------------------ Binance
BINANCE_SYMBOLS = "MARKETPIPE_BINANCE_SYMBOLS"
BINANCE_WATCH = "MARKETPIPE_BINANCE_WATCH"
BINANCE_API_URL = "MARKETPIPE_BINANCE_API_URL"
"""Binance REST base URL (e.g. https://data-api.binance.vision where api.binance.com answers 451)."""

# ------------------------------------------------------------------ execution prices
EXECUTION_MARKETS = "MARKETPIPE_EXECUTION_MARKETS"
EXECUTION_NOTIONALS = "MARKETPIPE_EXECUTION_NOTIONALS"
EXECUTION_LAKE_URI = "MARKETPIPE_EXECUTION_LAKE_URI"
EXECUTION_STATE_URI = "MARKETPIPE_EXECUTION_STATE_URI"
"""JSON object of the venues' pauses (a ban, a Retry-After), epoch seconds per venue."""

# ------------------------------------------------------------------ ledger ETL
LEDGER_RAW_URI = "LEDGER_RAW_URI"
LEDGER_LAKE_URI = "LEDGER_LAKE_URI"
LEDGER_QUARANTINE_URI = "LEDGER_QUARANTINE_URI"
LEDGER_CSV_URI = "LEDGER_CSV_URI"
"""Optional: also write the model as CSV there."""
LEDGER_LOOKBACK_DAYS = "LEDGER_LOOKBACK_DAYS"

# ------------------------------------------------------------------ AWS Lambda Powertools (its names)
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
SQL_TABLES = "MARKETPIPE_SQL_TABLES"
"""Book builder: the tables that also go to SQL, comma list or ``all`` (the lake always gets all)."""
SQL_SYMBOLS = "MARKETPIPE_SQL_SYMBOLS"
"""Book builder: the symbols whose rows also go to SQL, comma list or ``all``."""

# ------------------------------------------------------------------ marketpipe run (local settings)
CONFIG = "MARKETPIPE_CONFIG"
"""The config file ``marketpipe run``/``config``/``check`` read when ``--config`` is not given (default
``./marketpipe.toml`` if present)."""
BINANCE_WS_URL = "MARKETPIPE_BINANCE_WS_URL"
BITFINEX_API_URL = "MARKETPIPE_BITFINEX_API_URL"
BITFINEX_WS_URL = "MARKETPIPE_BITFINEX_WS_URL"
BITSO_API_URL = "MARKETPIPE_BITSO_API_URL"
BITSO_WS_URL = "MARKETPIPE_BITSO_WS_URL"
COINBASE_API_URL = "MARKETPIPE_COINBASE_API_URL"
"""The endpoints above point ``marketpipe run`` anywhere (tests, ``--simulate``, a proxy); defaults are
the real exchanges."""
BINANCE_MAX_CONNECTION_AGE = "MARKETPIPE_BINANCE_MAX_CONNECTION_AGE"
BINANCE_MAX_HOLD_MS = "MARKETPIPE_BINANCE_MAX_HOLD_MS"
BINANCE_STREAMS_PER_CONNECTION = "MARKETPIPE_BINANCE_STREAMS_PER_CONNECTION"
BITSO_LOCKOUT_SECONDS = "MARKETPIPE_BITSO_LOCKOUT_SECONDS"
BITSO_REST_PER_MINUTE = "MARKETPIPE_BITSO_REST_PER_MINUTE"
BITSO_SILENCE_LIMIT = "MARKETPIPE_BITSO_SILENCE_LIMIT"
BITSO_STALE_AFTER = "MARKETPIPE_BITSO_STALE_AFTER"
EXECUTION_BINANCE_LIMIT = "MARKETPIPE_EXECUTION_BINANCE_LIMIT"
EXECUTION_INTERVAL = "MARKETPIPE_EXECUTION_INTERVAL"
STATUS_INTERVAL = "MARKETPIPE_STATUS_INTERVAL"
"""Seconds between ``marketpipe run``'s status lines (default 30; 0 turns them off)."""
WEBHOOK_URLS = "MARKETPIPE_WEBHOOK_URLS"
PLIVO_AUTH_ID = "PLIVO_AUTH_ID"
PLIVO_AUTH_TOKEN = "PLIVO_AUTH_TOKEN"
"""Plivo credentials for ``marketpipe run``/``check`` (on AWS they come from Secrets Manager instead)."""
PLIVO_PLACEHOLDER_AUTH_ID = "REPLACE_WITH_PLIVO_AUTH_ID"
"""The ``auth_id`` of the Plivo secret the stack creates, until the operator puts the real one in: the
notifier Lambda logs the text instead of calling Plivo while it is there."""
