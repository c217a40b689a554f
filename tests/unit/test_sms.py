"""PlivoSms with the real SDK against the fake Plivo: retries, no double sends, config, masking."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Iterator

import plivo.rest.client as plivo_client
import pytest
import requests

from marketpipe.alerts.notifiers import LogNotifier, NotifyError, mask_number, mask_numbers
from marketpipe.alerts.sms import PlivoSms, api_base_uri, sms_from_env, split_numbers
from marketpipe.errors import ConfigError
from marketpipe.simulator.plivo import TEST_AUTH_ID, TEST_AUTH_TOKEN, FakePlivo, main


@pytest.fixture
def fake() -> Iterator[FakePlivo]:
    with FakePlivo() as server:
        yield server


def sms(fake: FakePlivo, **options: object) -> PlivoSms:
    sleeps: list[float] = []
    client = sms_from_env(fake.env(dst="+15550000002,+15550000003"), sleep=sleeps.append, **options)
    assert client is not None
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def test_send_reaches_the_fake_exactly_as_the_sdk_sends_it(fake: FakePlivo) -> None:
    uuids = sms(fake).send("marketpipe DOWN")
    (request,) = fake.requests
    assert request.method == "POST" and request.path == f"/v1/Account/{TEST_AUTH_ID}/Message/"
    token = base64.b64encode(f"{TEST_AUTH_ID}:{TEST_AUTH_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {token}"
    assert request.json() == {
        "dst": "+15550000002<+15550000003",
        "src": "+15550000001",
        "text": "marketpipe DOWN",
        "type": "sms",
        "method": "POST",
        "log": "true",
        "trackable": False,
    }
    (message,) = fake.messages
    assert message.dst == ["+15550000002", "+15550000003"] and uuids == message.uuids and len(uuids) == 2
    # The SDK's process-wide default is left alone: other Plivo clients still reach the real API.
    assert plivo_client.PLIVO_API_BASE_URI == "https://api.plivo.com/v1/Account"


@pytest.mark.parametrize("statuses", [(500,), (429,), (503, 502), (500, 429, 500)])
def test_retryable_failures_then_one_message(fake: FakePlivo, statuses: tuple[int, ...]) -> None:
    client = sms(fake, backoff=1.0, max_backoff=3.0)
    fake.fail_next(*statuses)
    client.send("hello")
    assert [r.status for r in fake.requests] == [*statuses, 202]
    assert fake.texts() == ["hello"]
    sleeps = client.sleeps  # type: ignore[attr-defined]
    assert len(sleeps) == len(statuses)
    for attempt, wait in enumerate(sleeps, start=1):  # capped exponential backoff with jitter
        base = min(3.0, 2 ** (attempt - 1))
        assert base / 2 <= wait <= base


def test_gives_up_after_the_last_attempt(fake: FakePlivo, caplog: pytest.LogCaptureFixture) -> None:
    fake.fail_next(500, 500, 500)
    with caplog.at_level(logging.WARNING), pytest.raises(NotifyError) as failure:
        sms(fake, attempts=3).send("x")
    assert not failure.value.maybe_delivered
    assert fake.messages == [] and len(fake.requests) == 3
    assert "+15550000002" not in caplog.text and "+*******0002" in caplog.text


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(fake: FakePlivo, status: int) -> None:
    fake.fail_next(status)
    with pytest.raises(NotifyError, match="refused") as failure:
        sms(fake).send("x")
    assert not failure.value.maybe_delivered and len(fake.requests) == 1


def test_wrong_token_is_refused_by_the_fake(fake: FakePlivo) -> None:
    client = PlivoSms(TEST_AUTH_ID, "wrong", "+15550000001", "+15550000002", api_url=fake.url)
    with pytest.raises(NotifyError, match="AuthenticationError"):
        client.send("x")
    assert fake.requests[0].status == 401 and fake.messages == []


def test_no_answer_in_time_is_not_retried(fake: FakePlivo) -> None:
    """The request reached Plivo but the answer did not come back: resending could text twice."""
    fake.stall_next(1.0)
    with pytest.raises(NotifyError) as failure:
        sms(fake, timeout=0.2).send("maybe")
    assert failure.value.maybe_delivered
    assert fake.texts() == ["maybe"] and len(fake.requests) == 1


def test_unreachable_plivo_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens here
    client = PlivoSms(
        TEST_AUTH_ID, TEST_AUTH_TOKEN, "+15550000001", "+15550000002", api_url=f"http://127.0.0.1:{port}",
        attempts=2, sleep=lambda _s: None,
    )  # fmt: skip
    with pytest.raises(NotifyError, match="cannot connect") as failure:
        client.send("x")
    assert not failure.value.maybe_delivered


def test_sms_from_env_configuration() -> None:
    assert sms_from_env({}) is None
    with pytest.raises(ConfigError, match="MARKETPIPE_ALERT_SMS_FROM, MARKETPIPE_ALERT_SMS_TO"):
        sms_from_env({"PLIVO_AUTH_ID": TEST_AUTH_ID, "PLIVO_AUTH_TOKEN": "t"})
    env = {
        "PLIVO_AUTH_ID": TEST_AUTH_ID,
        "PLIVO_AUTH_TOKEN": "t",
        "MARKETPIPE_ALERT_SMS_FROM": "+15550000001",
    }
    with pytest.raises(ConfigError, match="must be 20 characters"):
        sms_from_env({**env, "PLIVO_AUTH_ID": "bad", "MARKETPIPE_ALERT_SMS_TO": "+15550000002"})
    with pytest.raises(ConfigError, match=r"not a phone number .*: \*\* "):
        sms_from_env({**env, "MARKETPIPE_ALERT_SMS_TO": "+15550000002,12"})
    with pytest.raises(ConfigError, match="must differ"):
        sms_from_env({**env, "MARKETPIPE_ALERT_SMS_TO": "+15550000001"})
    with pytest.raises(ConfigError, match="sender id"):
        sms_from_env(
            {
                **env,
                "MARKETPIPE_ALERT_SMS_FROM": "far-too-long-sender",
                "MARKETPIPE_ALERT_SMS_TO": "+15550000002",
            }
        )
    client = sms_from_env({**env, "MARKETPIPE_ALERT_SMS_TO": "+15550000002 <+15550000003"})
    assert client is not None and client.dst == ["+15550000002", "+15550000003"] and client.api_url is None
    assert client.describe() == "SMS via Plivo to +*******0002, +*******0003"
    with pytest.raises(ConfigError, match="empty"):
        PlivoSms(TEST_AUTH_ID, "", "+15550000001", "+15550000002")
    with pytest.raises(ConfigError, match="no SMS destination"):
        PlivoSms(TEST_AUTH_ID, "t", "+15550000001", [])
    with pytest.raises(ConfigError, match="attempts"):
        PlivoSms(TEST_AUTH_ID, "t", "+15550000001", "+15550000002", attempts=0)


def test_helpers() -> None:
    assert api_base_uri(None) == "https://api.plivo.com/v1/Account"
    assert api_base_uri("http://127.0.0.1:9/") == "http://127.0.0.1:9/v1/Account"
    assert api_base_uri("http://h/v1/Account") == "http://h/v1/Account"
    assert split_numbers("+1555 0000001, +1555<x") == ["+1555", "0000001", "+1555", "x"]
    assert mask_number("+14155550199") == "+*******0199" and mask_number("123") == "***"
    assert mask_numbers(["+1 415 555 0199"]) == "+* *** *** 0199"
    notifier = LogNotifier()
    assert notifier.send("text") == [] and notifier.sent == ["text"] and "log" in notifier.describe()


def test_fake_server_rules(fake: FakePlivo) -> None:
    auth = (TEST_AUTH_ID, TEST_AUTH_TOKEN)
    base = f"{fake.url}/v1/Account/{TEST_AUTH_ID}/Message/"

    def post(body: object, url: str = base) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(url, data=data, auth=auth, timeout=5)

    assert post(b"{not json").status_code == 400
    assert post([1]).status_code == 400
    assert post({"src": "+1", "text": "t"}).json()["error"] == "dst is a required parameter"
    assert post({"src": "+1", "dst": "+2"}).json()["error"] == "text is a required parameter"
    assert post({"dst": "+2", "text": "t"}).status_code == 400
    assert (
        post(
            {"src": "+1", "dst": "+2", "text": "t"},
            url=f"{fake.url}/v1/Account/SAXXXXXXXXXXXXXXXXXX/Message/",
        ).status_code
        == 401
    )
    assert requests.put(base, auth=auth, timeout=5).status_code == 405
    assert requests.get(f"{fake.url}/elsewhere", timeout=5).status_code == 404
    accepted = post({"src": "+1", "dst": "+2<+3", "text": "t"}).json()
    assert accepted["message"] == "message(s) queued" and len(accepted["message_uuid"]) == 2
    lookup = requests.get(f"{base}{accepted['message_uuid'][1]}/", auth=auth, timeout=5).json()
    assert lookup["to_number"] == "+3" and lookup["message_state"] == "delivered"
    assert requests.get(f"{base}nope/", auth=auth, timeout=5).status_code == 404
    # Control endpoints for other processes.
    assert requests.post(f"{fake.url}/_fake/fail?status=503&times=2", timeout=5).json() == {
        "ok": True,
        "queued": 2,
    }
    assert requests.post(f"{fake.url}/_fake/fail?status=x", timeout=5).status_code == 400
    assert [post({"src": "+1", "dst": "+2", "text": "t"}).status_code for _ in range(3)] == [503, 503, 202]
    listed = requests.get(f"{fake.url}/_fake/messages", timeout=5).json()
    assert [m["dst"] for m in listed] == [["+2", "+3"], ["+2"]]
    assert requests.get(f"{fake.url}/_fake/other", timeout=5).status_code == 404
    fake.clear()
    assert fake.requests == [] and fake.messages == []


def test_fake_server_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError):
        _ = FakePlivo().url
    assert main(["--port", "0", "--duration", "0.05"]) == 0
    assert "export MARKETPIPE_PLIVO_API_URL=http://127.0.0.1:" in capsys.readouterr().out
