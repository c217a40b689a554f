"""EventBridge schedule -> expire old snapshots of the lake's Iceberg tables. Thin by design: the logic is in
``marketpipe.aws.lake_tables``."""

import os
from typing import Any

from marketpipe.aws import lake_tables


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return lake_tables.handle_maintenance(event, os.environ)
