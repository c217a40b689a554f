"""EventBridge each minute -> execution prices of the Coinbase and Binance books (lake). Thin by design: the
logic is in ``marketpipe.aws.execution``."""

import os
from typing import Any

from marketpipe.aws import execution


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return execution.handle(event, os.environ)
