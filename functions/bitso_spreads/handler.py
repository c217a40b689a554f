"""Bitso spread Lambda: EventBridge each minute (sample) and each 10 minutes (compact the lake file)."""

from __future__ import annotations

import json
import os
from typing import Any

from marketpipe.services.bitso import handle_lambda_event


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    summary = handle_lambda_event(event, os.environ)
    print(json.dumps({"bitso_spreads": summary}, default=str))  # one structured log line for Logs Insights
    return summary
