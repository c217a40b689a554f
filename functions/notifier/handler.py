"""SNS (CloudWatch liveness alarms) -> one SMS per alarm state change (Plivo). Thin by design: the logic is
in ``marketpipe.aws.notifier`` (the context goes along for Powertools idempotency)."""

import os
from typing import Any

from marketpipe.aws import notifier


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return notifier.handle(event, os.environ, context=context)
