"""SMS through Plivo with the real SDK: retries that cannot double-send, masked numbers, env config.

Shared by every alert that texts a phone (liveness, spread alerts). ``send`` retries only failures
where Plivo certainly did not queue the message (no connection, HTTP 429, HTTP 5xx), with capped
exponential backoff and jitter. When the request may have reached Plivo without an answer coming back
(read timeout, connection dropped mid-response) it raises ``NotifyError(maybe_delivered=True)`` at
once instead of retrying: one alert must never turn into two texts.

``MARKETPIPE_PLIVO_API_URL`` points the SDK elsewhere (the loopback fake in tests and demos). The SDK
re-reads its module constant ``PLIVO_API_BASE_URI`` on every call (PROTOCOLS.md §5.4); rather than
patching that process-wide global (every other Plivo client in the process would follow), the client
built by :func:`rest_client` pins its own base URI right where the SDK builds each request.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plivo
import plivo.exceptions as plivo_errors
import requests

from marketpipe.alerts.notifiers import NotifyError, mask_numbers
from marketpipe.envnames import ALERT_SMS_FROM, ALERT_SMS_TO, PLIVO_API_URL, PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN
from marketpipe.errors import ConfigError
from marketpipe.net.backoff import Backoff, retry

log = logging.getLogger("marketpipe.alerts.sms")

DEFAULT_API_URL = "https://api.plivo.com"
API_PATH = "/v1/Account"

_AUTH_ID = re.compile(r"^(MA|SA)[A-Za-z0-9]{18}$")
_NUMBER = re.compile(r"^\+?[1-9]\d{6,14}$")
_SENDER = re.compile(r"^(\+?[1-9]\d{6,14}|[A-Za-z0-9 ]{1,11})$")
_STATUS = re.compile(r"status code (\d{3})")


def api_base_uri(api_url: str | None) -> str:
    """``http://127.0.0.1:8085`` or ``…/v1/Account`` -> the SDK's base URI ``…/v1/Account``."""
    url = (api_url or DEFAULT_API_URL).rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


class _PinnedClient(plivo.RestClient):
    """The real SDK client, sending to ``base_uri`` instead of the module-wide default."""

    def __init__(self, auth_id: str, auth_token: str, *, base_uri: str, timeout: float) -> None:
        super().__init__(auth_id=auth_id, auth_token=auth_token, timeout=timeout)
        self._pinned_base_uri = base_uri

    def create_request(self, method: str, path: Any = None, data: Any = None, **kwargs: Any) -> Any:
        # Client.request() resets base_uri from the module constant just before calling us.
        self.base_uri = self._pinned_base_uri
        return super().create_request(method, path, data, **kwargs)


def rest_client(auth_id: str, auth_token: str, api_url: str | None = None, timeout: float = 15.0) -> Any:
    """A ``plivo.RestClient`` sending to ``api_url`` (default: the real Plivo API)."""
    return _PinnedClient(auth_id, auth_token, base_uri=api_base_uri(api_url), timeout=timeout)


def split_numbers(text: str) -> list[str]:
    """Destinations as users write them: comma, space or Plivo's ``<`` between numbers."""
    return [n for n in re.split(r"[,<\s]+", text) if n]


class _Attempt(Exception):
    """One failed attempt: whether another attempt is safe, and whether this one may have sent."""

    def __init__(self, reason: str, *, retry: bool, maybe_delivered: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry
        self.maybe_delivered = maybe_delivered


def _classify(exc: Exception) -> _Attempt:
    """Map an SDK / requests failure to retry-or-not (PROTOCOLS.md §5.3)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return _Attempt(f"cannot connect to Plivo: {type(exc).__name__}", retry=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc)
        if "NewConnectionError" in text or "NameResolutionError" in text or "Connection refused" in text:
            return _Attempt("cannot connect to Plivo: connection refused or DNS failure", retry=True)
        return _Attempt(
            f"connection to Plivo lost before its answer: {exc}", retry=False, maybe_delivered=True
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return _Attempt("no answer from Plivo in time (it may have queued the message)", retry=False,
                        maybe_delivered=True)  # fmt: skip
    if isinstance(exc, plivo_errors.PlivoServerError):
        return _Attempt(f"Plivo server error (HTTP 500): {exc}", retry=True)
    if isinstance(
        exc,
        plivo_errors.ValidationError
        | plivo_errors.AuthenticationError
        | plivo_errors.ForbiddenError
        | plivo_errors.ResourceNotFoundError
        | plivo_errors.InvalidRequestError,
    ):
        return _Attempt(f"Plivo refused the message ({type(exc).__name__}): {exc}", retry=False)
    if isinstance(exc, plivo_errors.PlivoRestError):
        match = _STATUS.search(str(exc))
        status = int(match.group(1)) if match else 0
        if status == 429 or status >= 500:
            return _Attempt(f"Plivo answered HTTP {status}", retry=True)
        return _Attempt(f"Plivo refused the message: {exc}", retry=False)
    if isinstance(exc, requests.exceptions.RequestException):
        return _Attempt(f"HTTP error talking to Plivo: {exc}", retry=False, maybe_delivered=True)
    raise exc


class PlivoSms:
    """Text ``dst`` (one or more numbers) from ``src`` through Plivo; satisfies the Notifier port."""

    def __init__(
        self,
        auth_id: str,
        auth_token: str,
        src: str,
        dst: str | Sequence[str],
        api_url: str | None = None,
        *,
        timeout: float = 15.0,
        attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        numbers = split_numbers(dst) if isinstance(dst, str) else [n.strip() for n in dst if n.strip()]
        if not _AUTH_ID.match(auth_id or ""):
            raise ConfigError(f"{PLIVO_AUTH_ID} must be 20 characters starting with MA or SA")
        if not auth_token:
            raise ConfigError(f"{PLIVO_AUTH_TOKEN} is empty")
        if not numbers:
            raise ConfigError(f"no SMS destination number ({ALERT_SMS_TO})")
        bad = [n for n in numbers if not _NUMBER.match(n)]
        if bad:
            raise ConfigError(
                f"not a phone number in {ALERT_SMS_TO}: {mask_numbers(bad)} (use E.164, +15551234567)"
            )
        if not _SENDER.match(src or ""):
            raise ConfigError(f"{ALERT_SMS_FROM} must be a phone number or an alphanumeric sender id")
        if src in numbers:
            raise ConfigError(f"{ALERT_SMS_FROM} must differ from every destination number")
        if attempts < 1:
            raise ConfigError("SMS attempts must be at least 1")
        self._auth_id = auth_id
        self._auth_token = auth_token
        self.src = src
        self.dst = numbers
        self.api_url = api_url
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    def describe(self) -> str:
        return f"SMS via Plivo to {mask_numbers(self.dst)}"

    def send(self, text: str) -> list[str]:
        """Send ``text``; return Plivo's message uuids (one per destination) or raise NotifyError."""
        tried = 0

        def once() -> list[str]:
            nonlocal tried
            tried += 1
            try:
                return self._send_once(text)
            except Exception as exc:
                raise _classify(exc) from exc  # unknown failures propagate unchanged from _classify

        try:
            return retry(
                once,
                attempts=self.attempts,
                backoff=Backoff(self.backoff, self.max_backoff),
                retry_on=lambda exc: isinstance(exc, _Attempt) and exc.retry,
                sleep=self._sleep,
                on_retry=lambda attempt, exc, wait: log.warning(
                    "SMS attempt %d/%d failed (%s); retrying in %.1f s", attempt, self.attempts, exc, wait
                ),
            )
        except _Attempt as failure:
            log.error("SMS to %s failed after %d attempt(s): %s", mask_numbers(self.dst), tried, failure)
            raise NotifyError(str(failure), maybe_delivered=failure.maybe_delivered) from None

    def _send_once(self, text: str) -> list[str]:
        # A fresh client (and HTTP session) per attempt: alerts are rare, and a keep-alive connection
        # the server dropped hours ago would fail in the ambiguous "maybe sent" way.
        with rest_client(self._auth_id, self._auth_token, self.api_url, self.timeout) as client:
            response = client.messages.create(src=self.src, dst="<".join(self.dst), text=text)
        uuids = [str(u) for u in (getattr(response, "message_uuid", None) or [])]
        log.info("SMS queued by Plivo for %s: %s", mask_numbers(self.dst), ", ".join(uuids) or "no uuid")
        return uuids


def sms_from_env(env: Mapping[str, str] = os.environ, **options: Any) -> PlivoSms | None:
    """A PlivoSms from the environment, None when no credentials are set at all.

    Half a configuration (credentials without numbers, or the reverse) is a ConfigError: silently
    falling back to the log would leave an operator believing texts go out.
    """
    names = (
        PLIVO_AUTH_ID,
        PLIVO_AUTH_TOKEN,
        ALERT_SMS_FROM,
        ALERT_SMS_TO,
    )
    values = {name: env.get(name, "").strip() for name in names}
    if not values[PLIVO_AUTH_ID] and not values[PLIVO_AUTH_TOKEN]:
        return None
    missing = [name for name in names if not values[name]]
    if missing:
        raise ConfigError(f"Plivo SMS half configured: set {', '.join(missing)} (or unset {PLIVO_AUTH_ID})")
    return PlivoSms(
        values[PLIVO_AUTH_ID],
        values[PLIVO_AUTH_TOKEN],
        values[ALERT_SMS_FROM],
        values[ALERT_SMS_TO],
        api_url=env.get(PLIVO_API_URL) or None,
        **options,
    )
