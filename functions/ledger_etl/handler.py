"""Daily ledger ETL Lambda: EventBridge schedule (or a manual backfill event) -> one ETL run on S3."""

from __future__ import annotations

import json
import os
from typing import Any

from marketpipe.etl.lambda_entry import handle_event


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    summary = handle_event(event, os.environ)
    print(json.dumps({"ledger_etl": summary}))  # one structured log line for CloudWatch Logs Insights
    return summary
