"""CloudFormation custom resource (CDK Provider framework) -> the MySQL schema. Thin by design: the logic is
in ``marketpipe.aws.db_migrate``."""

import os
from typing import Any

from marketpipe.aws import db_migrate


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return db_migrate.handle(event, os.environ)
