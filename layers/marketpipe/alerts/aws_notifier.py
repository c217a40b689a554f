"""CloudWatch alarm -> SNS -> Lambda -> Plivo: one SMS per alarm state change, even when SNS repeats.

SNS delivers at least once, and a Lambda that fails is retried, so the same notification can arrive
twice. Each state change is sent inside a Powertools idempotent function keyed on the alarm name, its
new state and the change time (DynamoDB table): a repeat gets the stored result instead of a second
text. A send that fails raises, Powertools drops its in-progress record, and the retry sends again.

The text for ALARM says what stopped (the alarm description) and since when; for OK it says how long
the outage lasted, from the ALARM time this function stored in the same table (``outage#<alarm>``).
Credentials come from the Plivo secret (JSON ``auth_id``, ``auth_token`` and optionally ``src``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marketpipe.alerts.notifiers import LogNotifier, Notifier
from marketpipe.alerts.state import duration
from marketpipe.errors import ConfigError

log = logging.getLogger("marketpipe.alerts.aws_notifier")

ENV_TABLE = "MARKETPIPE_IDEMPOTENCY_TABLE"
ENV_SECRET = "MARKETPIPE_PLIVO_SECRET_ARN"
ENV_TO = "MARKETPIPE_ALERT_SMS_TO"
ENV_FROM = "MARKETPIPE_ALERT_SMS_FROM"
ENV_API_URL = "MARKETPIPE_PLIVO_API_URL"
KEY_EXPRESSION = "[AlarmName, NewStateValue, StateChangeTime]"
KEY_PREFIX = "marketpipe-alarm-sms"
PLACEHOLDER_AUTH_ID = "REPLACE_WITH_PLIVO_AUTH_ID"
OUTAGE_TTL_SECONDS = 90 * 86_400
_REASON_CHARS = 160


@dataclass(frozen=True)
class AlarmChange:
    """The fields of a CloudWatch alarm notification (metric or composite) that a text needs."""

    name: str
    description: str
    new_state: str
    old_state: str
    reason: str
    change_time: str
    region: str

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> AlarmChange:
        try:
            return cls(
                name=str(message["AlarmName"]),
                description=str(message.get("AlarmDescription") or message["AlarmName"]),
                new_state=str(message["NewStateValue"]),
                old_state=str(message.get("OldStateValue") or ""),
                reason=str(message.get("NewStateReason") or ""),
                change_time=str(message["StateChangeTime"]),
                region=str(message.get("Region") or ""),
            )
        except KeyError as exc:
            raise ValueError(f"not a CloudWatch alarm notification: missing {exc}") from exc

    @property
    def changed_at(self) -> datetime:
        return parse_change_time(self.change_time)


def parse_change_time(text: str) -> datetime:
    """``2026-11-22T04:10:26.123+0000`` (CloudWatch's format) -> aware datetime."""
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, pattern).astimezone(UTC)
        except ValueError:
            continue
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _ascii(text: str) -> str:
    """Keep texts in the GSM-friendly ASCII range (one segment = 160 characters, not 70)."""
    return text.encode("ascii", "replace").decode()


def alarm_text(change: AlarmChange, outage_since: str | None = None) -> str:
    """The SMS for a state change: what stopped and since when, or how long the outage lasted."""
    where = f"AWS {change.region}".strip()
    if change.new_state == "ALARM":
        reason = (
            change.reason if len(change.reason) <= _REASON_CHARS else change.reason[:_REASON_CHARS] + "..."
        )
        return _ascii(
            f"marketpipe DOWN ({where}): {change.description}. Since {_when(change.changed_at)}. "
            f"Alarm {change.name}: {reason}"
        )
    text = f"marketpipe RECOVERED ({where}): {change.description} - OK again at {_when(change.changed_at)}."
    if outage_since:
        since = parse_change_time(outage_since)
        lasted = duration((change.changed_at - since).total_seconds())
        text += f" Outage lasted {lasted} (since {_when(since)})."
    return _ascii(text)


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

    dst = env.get(ENV_TO, "").strip()
    if not dst:
        return LogNotifier("no alarm phone number configured (alarmPhoneNumber)")
    import boto3

    secrets = client or boto3.client("secretsmanager")
    secret = json.loads(secrets.get_secret_value(SecretId=secret_arn)["SecretString"])
    auth_id, token = str(secret.get("auth_id", "")), str(secret.get("auth_token", ""))
    if auth_id in ("", PLACEHOLDER_AUTH_ID):
        raise ConfigError("the Plivo secret still holds the placeholder auth_id: put the real credentials")
    src = str(secret.get("src") or env.get(ENV_FROM, "")).strip()
    if not src:
        raise ConfigError(f"no SMS source number: add 'src' to the Plivo secret or set {ENV_FROM}")
    return PlivoSms(auth_id, token, src, dst, api_url=env.get(ENV_API_URL) or None, attempts=3)


def handle_sns_event(
    event: Mapping[str, Any], env: Mapping[str, str] = os.environ, lambda_context: Any = None
) -> dict[str, Any]:
    """The notifier Lambda's whole job (the handler only passes the event and environment)."""
    table = env.get(ENV_TABLE, "")
    secret_arn = env.get(ENV_SECRET, "")
    if not table or not secret_arn:
        raise ConfigError(f"{ENV_TABLE} and {ENV_SECRET} must be set")
    return AlarmNotifier(table, lambda: plivo_from_secret(secret_arn, env)).handle(event, lambda_context)
