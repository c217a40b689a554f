"""Alert channels against real receivers: an HTTP server on loopback and SNS (moto) with an SQS subscriber."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from marketpipe.alerts.channels import (
    AlertDispatcher,
    LogChannel,
    SmsChannel,
    WebhookChannel,
    sms_channel_from_env,
)
from marketpipe.alerts.webhook import Webhook, WebhookError
from marketpipe.bitso.service import sns_channel, spread_message
from marketpipe.bitso.thresholds import Crossing
from marketpipe.errors import ConfigError

CROSSING = Crossing("btc_mxn", Decimal("0.5"), "above", Decimal("0.6123456789"), 1_651_291_826)


def message() -> Any:
    return spread_message(
        CROSSING, exchange="bitso", orderbook_timestamp="2022-04-30T04:10:26+00:00", bid=Decimal("1249000"),
        ask=Decimal("1256693.10"), source="websocket",
    )  # fmt: skip


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([])
    yield r
    r.server.shutdown()


def test_message_text_and_body() -> None:
    m = message()
    assert m.text == (
        "ALERT bitso btc_mxn spread 0.6123456789 % rose above 0.5 % at 2022-04-30T04:10:26+00:00 "
        "(bid 1249000, ask 1256693.10, websocket)"
    )
    assert m.body["spread"] == "0.6123456789" and m.body["event"] == "spread_alert" and m.is_alert
    back = spread_message(
        Crossing("btc_mxn", Decimal("0.5"), "below", Decimal("0.4"), 5), exchange="bitso",
        orderbook_timestamp="t", bid=1, ask=2, source="rest",
    )  # fmt: skip
    assert (
        back.text.startswith("NOTICE bitso btc_mxn spread 0.4 % fell back below 0.5 %") and back.key != m.key
    )


def test_webhook_retries_5xx_and_429_with_the_same_key(receiver: Receiver) -> None:
    receiver.statuses[:] = [503, 429, 200]
    hook = Webhook(receiver.url, sleep=lambda s: None)
    assert hook.post(message().body, "k1") == 3
    assert [h["Idempotency-Key"] for h, _ in receiver.requests] == ["k1"] * 3
    assert receiver.requests[0][1]["book"] == "btc_mxn"
    assert hook.describe() == f"webhook {receiver.url.split('/')[2]}", "no token in logs"


def test_webhook_gives_up_and_does_not_retry_a_refusal(receiver: Receiver) -> None:
    receiver.statuses[:] = [400]
    with pytest.raises(WebhookError, match="not retried"):
        Webhook(receiver.url, sleep=lambda s: None).post({}, "k")
    receiver.statuses[:] = [500, 500]
    with pytest.raises(WebhookError, match="gave up after 2"):
        Webhook(receiver.url, attempts=2, sleep=lambda s: None).post({}, "k")
    with pytest.raises(WebhookError, match="ConnectionError"):
        Webhook("http://127.0.0.1:9/x", attempts=2, sleep=lambda s: None).post({}, "k")
    with pytest.raises(ConfigError):
        Webhook("ftp://x")


def test_dispatcher_delivers_everywhere_despite_a_failing_channel(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def deliver(self, message: Any) -> None:
            raise RuntimeError("down")

        def describe(self) -> str:
            return "broken"

        def close(self) -> None:
            pass

    class Phone:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def send(self, text: str) -> list[str]:
            self.texts.append(text)
            return ["uuid"]

        def describe(self) -> str:
            return "+*******0199"

    phone = Phone()
    dispatcher = AlertDispatcher(
        [LogChannel(), Broken(), WebhookChannel(Webhook(receiver.url)), SmsChannel(phone)]
    )
    assert "broken" in dispatcher.describe() and "SMS (+*******0199)" in dispatcher.describe()
    with caplog.at_level("INFO"):
        dispatcher.dispatch(message())
        dispatcher.close()
    assert dispatcher.delivered == 3 and dispatcher.failed == 1
    assert len(receiver.requests) == 1 and phone.texts == [message().text]
    assert "ALERT bitso btc_mxn" in caplog.text and "alert not delivered to broken" in caplog.text


def test_sms_is_optional() -> None:
    assert sms_channel_from_env({}) is None


def test_sns_channel_publishes_to_the_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from moto import mock_aws

    with mock_aws():
        import boto3

        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        channel = sns_channel(topic)
        channel.deliver(message())
        assert channel.describe() == "SNS alerts"
        [received] = sqs.receive_message(QueueUrl=queue)["Messages"]
        body = json.loads(received["Body"])
        assert body["book"] == "btc_mxn" and body["threshold"] == "0.5" and body["key"] == message().key
