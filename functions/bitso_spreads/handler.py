"""EventBridge -> Bitso spread sampling (each minute) and lake compaction (each 10 minutes). Thin by design:
the logic is in ``marketpipe.aws.bitso_spreads``."""

import os
from typing import Any

from marketpipe.aws import bitso_spreads


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return bitso_spreads.handle(event, os.environ)
