"""Secrets Manager, read in one place: JSON secrets cached per container, and the RDS secret as a URL.

Every Lambda that needs a credential (the database users, the notifier's Plivo account) goes through
:func:`read_json_secret`. A value is kept for :data:`MAX_AGE_SECONDS` in the container, so warm
invocations cost no API call, while a secret an operator replaced (the Plivo placeholder, a manual
rotation) is picked up within minutes without a redeploy.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

MAX_AGE_SECONDS = 300.0

_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


def read_json_secret(
    secret_arn: str, client: Any = None, *, max_age: float = MAX_AGE_SECONDS
) -> dict[str, Any]:
    """The secret's ``SecretString`` parsed as a JSON object (cached per ARN for ``max_age`` seconds)."""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(secret_arn)
    if cached is not None and now - cached[0] < max_age:
        return dict(cached[1])
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    value = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    if not isinstance(value, dict):
        raise ValueError(f"secret {secret_arn.rsplit(':', 1)[-1]} is not a JSON object")
    with _lock:
        _cache[secret_arn] = (now, value)
    return dict(value)


def forget_secrets() -> None:
    """Drop the cache, as a new container would (tests, after a rotation)."""
    with _lock:
        _cache.clear()


def database_url(secret_arn: str, db_name: str | None = None, client: Any = None) -> str:
    """SQLAlchemy URL from an RDS-generated secret (``username``, ``password``, ``host``, ``port``)."""
    from sqlalchemy.engine import URL

    secret = read_json_secret(secret_arn, client)
    url = URL.create(
        "mysql+pymysql",
        username=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret.get("port") or 3306),
        database=db_name or secret.get("dbname"),
    )
    return url.render_as_string(hide_password=False)
