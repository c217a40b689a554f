"""SNS (CloudWatch liveness alarms) -> one SMS per alarm state change; logic in alerts.aws_notifier."""

from __future__ import annotations

import os
from typing import Any

from marketpipe.alerts.aws_notifier import handle_sns_event


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_sns_event(event, os.environ, lambda_context=context)
