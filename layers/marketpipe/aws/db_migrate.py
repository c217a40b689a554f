"""The schema-migration Lambda: a CloudFormation custom resource (via the CDK Provider framework).

Create and Update run :func:`marketpipe.aws.migrate.migrate` (every table of the catalog exists
afterwards); Delete does nothing: dropping tables with the stack would destroy data the snapshot
policy keeps. The provider framework sends the response to CloudFormation, so this only returns the
physical id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marketpipe import envnames

PHYSICAL_ID = "marketpipe-mysql-schema"


def handle(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    if event.get("RequestType") in ("Create", "Update"):
        from marketpipe.aws.migrate import migrate

        migrate(env[envnames.DB_SECRET_ARN], env.get(envnames.DB_NAME) or None)
    return {"PhysicalResourceId": PHYSICAL_ID}
