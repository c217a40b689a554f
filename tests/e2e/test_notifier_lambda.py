"""The notifier Lambda handler, called as a function: moto DynamoDB (idempotency) and Secrets Manager,
the real Plivo SDK against the loopback fake. SNS delivering the same ALARM twice, then OK, must text
exactly twice."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("moto")
from moto import mock_aws

from marketpipe.simulator.plivo import FakePlivo

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = "marketpipe-alarm-idempotency"
ALARM = "Marketpipe-liveness-bitfinex"
REGION = "us-east-1"


def _handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "notifier_handler", REPO_ROOT / "functions/notifier/handler.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LambdaContext:
    """What Powertools reads from the Lambda context (remaining time bounds an in-progress record)."""

    function_name = "notifier"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def sns_event(state: str, old: str, at: str, reason: str = "Threshold Crossed") -> dict[str, Any]:
    message = {
        "AlarmName": ALARM,
        "AlarmDescription": "bitfinex: market data stopped (no frames in or no rows written)",
        "AWSAccountId": "123456789012",
        "NewStateValue": state,
        "NewStateReason": reason,
        "StateChangeTime": at,
        "Region": "US East (N. Virginia)",
        "AlarmArn": f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{ALARM}",
        "OldStateValue": old,
    }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": f"arn:aws:sns:{REGION}:123456789012:liveness",
                    "Subject": f'{state}: "{ALARM}" in US East (N. Virginia)',
                    "Message": json.dumps(message),
                    "Timestamp": "2026-11-22T04:10:30.000Z",
                },
            }
        ]
    }


@pytest.fixture
def plivo(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlivo]:
    """moto DynamoDB + Secrets Manager with the Lambda's resources, and the fake Plivo; env set."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": "notifier",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(), FakePlivo() as fake:
        import boto3

        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        credentials = {"auth_id": fake.auth_id, "auth_token": fake.auth_token, "src": "+15550000001"}
        secret = boto3.client("secretsmanager").create_secret(
            Name="plivo", SecretString=json.dumps(credentials)
        )
        monkeypatch.setenv("MARKETPIPE_IDEMPOTENCY_TABLE", TABLE)
        monkeypatch.setenv("MARKETPIPE_PLIVO_SECRET_ARN", secret["ARN"])
        monkeypatch.setenv("MARKETPIPE_ALERT_SMS_TO", "+15550000002")
        monkeypatch.setenv("MARKETPIPE_PLIVO_API_URL", fake.url)
        yield fake


def test_same_alarm_twice_then_ok_sends_exactly_two_sms(plivo: FakePlivo) -> None:
    handler = _handler().handler
    alarm = sns_event("ALARM", "OK", "2026-11-22T04:10:26.123+0000", "2 datapoints were missing (breaching)")
    assert handler(alarm, LambdaContext()) == {"sent": 1, "skipped": 0, "duplicates": 0}
    assert handler(alarm, LambdaContext()) == {
        "sent": 0,
        "skipped": 0,
        "duplicates": 1,
    }  # SNS delivered it again
    ok = sns_event("OK", "ALARM", "2026-11-22T04:22:56.500+0000")
    assert handler(ok, LambdaContext()) == {"sent": 1, "skipped": 0, "duplicates": 0}
    assert handler(ok, LambdaContext())["duplicates"] == 1

    texts = plivo.texts()
    assert len(texts) == 2, texts
    assert texts[0] == (
        "marketpipe DOWN (AWS US East (N. Virginia)): bitfinex: market data stopped (no frames in or no rows"
        " written). Since 2026-11-22 04:10:26Z. Alarm Marketpipe-liveness-bitfinex: 2 datapoints were missing"
        " (breaching)"
    )
    assert texts[1] == (
        "marketpipe RECOVERED (AWS US East (N. Virginia)): bitfinex: market data stopped (no frames in or no"
        " rows written) - OK again at 2026-11-22 04:22:56Z."
        " Outage lasted 12m30s (since 2026-11-22 04:10:26Z)."
    )
    assert all(m.dst == ["+15550000002"] and m.src == "+15550000001" for m in plivo.messages)


def test_a_new_alarm_episode_texts_again_and_a_failed_send_is_retried(plivo: FakePlivo) -> None:
    handler = _handler().handler
    handler(sns_event("ALARM", "OK", "2026-11-22T04:10:26.123+0000"), LambdaContext())
    plivo.fail_next(400)  # Plivo refuses: the Lambda fails, SNS/Lambda retries the same notification
    second = sns_event("ALARM", "OK", "2026-11-22T05:00:00.000+0000")
    with pytest.raises(Exception, match="refused"):
        handler(second, LambdaContext())
    assert (
        handler(second, LambdaContext())["sent"] == 1
    )  # the retry sends (the failed attempt left no record)
    assert len(plivo.texts()) == 2


def test_ok_after_insufficient_data_sends_nothing(plivo: FakePlivo) -> None:
    handler = _handler().handler
    assert (
        handler(sns_event("OK", "INSUFFICIENT_DATA", "2026-11-22T04:00:00.000+0000"), LambdaContext())[
            "skipped"
        ]
        == 1
    )
    assert plivo.requests == []
