"""The notifier Lambda: CloudWatch alarm -> SNS -> Lambda -> Plivo, one SMS per alarm state change.

SNS delivers at least once, and a Lambda that fails is retried, so the same notification can arrive
twice. Each state change is sent inside a Powertools idempotent function keyed on the alarm name, its
new state and the change time (DynamoDB table): a repeat gets the stored result instead of a second
text. A send that fails raises, Powertools drops its in-progress record, and the retry sends again.

The texts are :func:`marketpipe.liveness.alarms.alarm_text`'s; for OK the outage start is the ALARM time
this function stored in the same table (``outage#<alarm>``). Credentials come from the Plivo secret
(JSON ``auth_id``, ``auth_token`` and optionally ``src``), read through :mod:`marketpipe.aws.secrets`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from marketpipe import envnames
from marketpipe.alerts.notifiers import LogNotifier, Notifier
from marketpipe.aws.secrets import read_json_secret
from marketpipe.errors import ConfigError
from marketpipe.liveness.alarms import AlarmChange, alarm_text

log = logging.getLogger("marketpipe.aws.notifier")

KEY_EXPRESSION = "[AlarmName, NewStateValue, StateChangeTime]"
KEY_PREFIX = "marketpipe-alarm-sms"
OUTAGE_TTL_SECONDS = 90 * 86_400


class AlarmNotifier:
    """Turns SNS alarm notifications into texts, once per (alarm, new state, change time)."""

    def __init__(
        self,
        table_name: str,
        notifier_factory: Callable[[], Notifier],
        *,
        dynamodb_client: Any = None,
        expires_after_seconds: int = 7 * 86_400,
    ) -> None:
        import boto3

        self.table_name = table_name
        self.notifier_factory = notifier_factory
        self.dynamodb = dynamodb_client or boto3.client("dynamodb")
        self.expires_after_seconds = expires_after_seconds

    def handle(self, event: Mapping[str, Any], lambda_context: Any = None) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        config = IdempotencyConfig(
            event_key_jmespath=KEY_EXPRESSION,
            raise_on_no_idempotency_key=True,
            expires_after_seconds=self.expires_after_seconds,
        )
        if lambda_context is not None:
            config.register_lambda_context(lambda_context)
        persistence = DynamoDBPersistenceLayer(table_name=self.table_name, boto3_client=self.dynamodb)
        fresh: list[dict[str, Any]] = []

        @idempotent_function(
            data_keyword_argument="alarm", persistence_store=persistence, config=config, key_prefix=KEY_PREFIX
        )
        def notify_once(alarm: dict[str, Any]) -> dict[str, Any]:
            result = self._notify(AlarmChange.from_message(alarm))
            fresh.append(result)
            return result

        summary: dict[str, Any] = {"sent": 0, "skipped": 0, "duplicates": 0}
        for record in event.get("Records", []):
            message = json.loads(record["Sns"]["Message"])
            before = len(fresh)
            result = notify_once(alarm=message)
            if len(fresh) == before:
                summary["duplicates"] += 1
                log.info("duplicate notification for %s %s: already handled", message.get("AlarmName"),
                         message.get("NewStateValue"))  # fmt: skip
            elif result.get("sent"):
                summary["sent"] += 1
            else:
                summary["skipped"] += 1
        return summary

    def _notify(self, change: AlarmChange) -> dict[str, Any]:
        outage_key = {"id": {"S": f"outage#{change.name}"}}
        if change.new_state == "ALARM":
            self.dynamodb.put_item(
                TableName=self.table_name,
                Item={
                    **outage_key,
                    "since": {"S": change.change_time},
                    "expiration": {"N": str(int(time.time()) + OUTAGE_TTL_SECONDS)},
                },
            )
            text = alarm_text(change)
        elif change.new_state == "OK" and change.old_state == "ALARM":
            item = self.dynamodb.get_item(TableName=self.table_name, Key=outage_key, ConsistentRead=True)
            since = item.get("Item", {}).get("since", {}).get("S")
            text = alarm_text(change, since)
        else:
            log.info("%s: %s -> %s needs no text", change.name, change.old_state, change.new_state)
            return {"sent": False, "reason": f"{change.old_state} -> {change.new_state}"}
        notifier = self.notifier_factory()
        ids = list(notifier.send(text))
        log.info("%s %s: sent to %s: %s", change.name, change.new_state, notifier.describe(), text)
        if change.new_state == "OK":
            self.dynamodb.delete_item(TableName=self.table_name, Key=outage_key)
        return {"sent": True, "text": text, "message_ids": ids}


def plivo_from_secret(secret_arn: str, env: Mapping[str, str], client: Any = None) -> Notifier:
    """PlivoSms with credentials from Secrets Manager; the log when no destination is configured."""
    from marketpipe.alerts.sms import PlivoSms

    dst = env.get(envnames.ALERT_SMS_TO, "").strip()
    if not dst:
        return LogNotifier("no alarm phone number configured (alarmPhoneNumber)")
    secret = read_json_secret(secret_arn, client)
    auth_id, token = str(secret.get("auth_id", "")), str(secret.get("auth_token", ""))
    if auth_id in ("", envnames.PLIVO_PLACEHOLDER_AUTH_ID):
        raise ConfigError("the Plivo secret still holds the placeholder auth_id: put the real credentials")
    src = str(secret.get("src") or env.get(envnames.ALERT_SMS_FROM, "")).strip()
    if not src:
        raise ConfigError(
            f"no SMS source number: add 'src' to the Plivo secret or set {envnames.ALERT_SMS_FROM}"
        )
    return PlivoSms(auth_id, token, src, dst, api_url=env.get(envnames.PLIVO_API_URL) or None, attempts=3)


def handle(event: dict[str, Any], env: Mapping[str, str], context: Any = None) -> dict[str, Any]:
    """SNS event of alarm notifications -> ``{"sent", "skipped", "duplicates"}``. ``context`` is the
    Lambda context: Powertools idempotency bounds an in-progress record by the remaining time."""
    table = env.get(envnames.IDEMPOTENCY_TABLE, "")
    secret_arn = env.get(envnames.PLIVO_SECRET_ARN, "")
    if not table or not secret_arn:
        raise ConfigError(f"{envnames.IDEMPOTENCY_TABLE} and {envnames.PLIVO_SECRET_ARN} must be set")
    return AlarmNotifier(table, lambda: plivo_from_secret(secret_arn, env)).handle(event, context)
