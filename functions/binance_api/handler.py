"""API Gateway HTTP API (v2 events) -> the Binance read API over RDS. Thin by design: the logic is in
``marketpipe.aws.binance_api``."""

import os
from typing import Any

from marketpipe.aws import binance_api


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return binance_api.handle(event, os.environ)
