"""CloudFormation custom resource (via the CDK Provider framework): create/upgrade the MySQL schema.

The provider framework sends the response to CloudFormation, so this handler only migrates and returns.
Delete does nothing: dropping tables with the stack would destroy data the snapshot policy keeps.
"""

from __future__ import annotations

import os
from typing import Any

from marketpipe.aws.migrate import migrate

PHYSICAL_ID = "marketpipe-mysql-schema"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("RequestType") in ("Create", "Update"):
        migrate(os.environ["MARKETPIPE_DB_SECRET_ARN"])
    return {"PhysicalResourceId": PHYSICAL_ID}
