"""Execution-price Lambda: each minute fetch the Coinbase and Binance books, price them, write the lake."""

from __future__ import annotations

import json
import os
from typing import Any

from marketpipe.services.execution import handle_lambda_event


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    summary = handle_lambda_event(event, os.environ)
    print(json.dumps({"execution": summary}, default=str))  # one structured log line for Logs Insights
    return summary
