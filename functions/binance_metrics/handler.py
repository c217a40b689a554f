"""Kinesis -> Binance metrics, depth20, mini-tickers and price alerts (lake, RDS, SNS). Thin by design: the
logic is in ``marketpipe.aws.binance_metrics``."""

import os
from typing import Any

from marketpipe.aws import binance_metrics


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return binance_metrics.handle(event, os.environ)
