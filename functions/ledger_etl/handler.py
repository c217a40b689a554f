"""EventBridge daily (or a manual backfill event) -> one ledger ETL run on S3. Thin by design: the logic is
in ``marketpipe.aws.ledger_etl``."""

import os
from typing import Any

from marketpipe.aws import ledger_etl


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return ledger_etl.handle(event, os.environ)
