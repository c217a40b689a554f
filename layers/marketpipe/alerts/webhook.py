"""Webhook channel: HTTP POST of a JSON body to each configured URL, retried when retrying is safe.

Retries (capped exponential backoff with jitter) on connection errors, timeouts, HTTP 429 and 5xx;
any other 4xx is the receiver refusing the payload, so it is reported once and not repeated. Receivers
get an ``Idempotency-Key`` header (the same on every retry of one event) to drop duplicates a retry
after a lost answer may cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import requests

from marketpipe.errors import ConfigError
from marketpipe.net.backoff import Backoff, retry

log = logging.getLogger("marketpipe.alerts.webhook")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class WebhookError(Exception):
    """A webhook could not be delivered after every allowed attempt."""


class _Undelivered(Exception):
    """One attempt failed in a way another attempt may fix (no answer, 429, 5xx)."""


def validate_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"invalid webhook URL {url!r}: expected http:// or https://")
    return url


class Webhook:
    """POST JSON to one URL."""

    def __init__(
        self,
        url: str,
        *,
        attempts: int = 4,
        timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.url = validate_url(url)
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self._backoff = (backoff_initial, backoff_cap)
        self._sleep = sleep
        self._http = session or requests.Session()
        self._http.headers["User-Agent"] = "marketpipe"

    def describe(self) -> str:
        # Webhook URLs often carry a token in their path: log the host only.
        from urllib.parse import urlsplit

        return f"webhook {urlsplit(self.url).netloc}"

    def post(self, body: Mapping[str, Any], idempotency_key: str) -> int:
        """Deliver ``body``; returns the number of attempts; raises WebhookError when it gave up."""
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        tried = 0

        def once() -> int:
            nonlocal tried
            tried += 1
            try:
                response = self._http.post(self.url, data=data, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                raise _Undelivered(type(exc).__name__) from exc
            if 200 <= response.status_code < 300:
                return tried
            reason = f"HTTP {response.status_code}"
            if response.status_code not in RETRYABLE_STATUS:
                raise WebhookError(f"{self.describe()} refused the alert ({reason}); not retried")
            raise _Undelivered(reason)

        try:
            return retry(
                once,
                attempts=self.attempts,
                backoff=Backoff(*self._backoff),
                retry_on=_Undelivered,
                sleep=self._sleep,
                on_retry=lambda attempt, exc, delay: log.warning(
                    "%s: attempt %d failed (%s); retrying in %.1f s", self.describe(), attempt, exc, delay
                ),
            )
        except _Undelivered as exc:
            raise WebhookError(f"{self.describe()}: gave up after {self.attempts} attempts ({exc})") from None

    def close(self) -> None:
        self._http.close()


def webhooks(urls: Sequence[str], **options: Any) -> list[Webhook]:
    return [Webhook(url, **options) for url in urls]
