"""Create (or complete) the MySQL schema: every table of ``marketpipe.tables.TABLES``.

Run by the deploy-time custom resource (``functions/db_migrate``) so the first book-builder batch finds
its tables; the book builder's ``SqlSink`` also creates missing tables on first use, so a database
restored from an older snapshot heals itself. Idempotent: existing tables are left as they are.
"""

from __future__ import annotations

import logging
from typing import Any

from marketpipe.aws.secrets import database_url
from marketpipe.tables import TABLES

log = logging.getLogger(__name__)


def migrate(secret_arn: str, db_name: str | None = None, *, secrets_client: Any = None) -> list[str]:
    """Ensure every table exists in the database the secret points to; returns the table names."""
    from marketpipe.sinks.sql_sink import SqlSink

    url = database_url(secret_arn, db_name, secrets_client)
    sink = SqlSink(url, tables=[])
    try:
        sink.ensure_tables(TABLES.values())
    finally:
        sink.engine.dispose()
    names = sorted(TABLES)
    log.info("schema ready: %s", ", ".join(names))
    return names
