"""Polite REST GETs: one request at a time per client, retried when retrying can help.

Network errors and 5xx are retried with capped, jittered backoff (:func:`marketpipe.net.backoff.retry`);
HTTP 429 is honoured with the server's ``Retry-After`` (no request to that server before it passes,
even in the next call); permanent refusals (400, 404) are raised at once, never retried. Every HTTP
error is logged with the venue, the path, the status and the server's own message. A wait longer than
``max_wait`` is not slept: the request is skipped with :class:`RateLimited`. Waiting is synchronous
(clients run in a worker thread or inline in a Lambda) with an injectable clock and sleep so tests
control time. Subclasses add a venue's own accounting through the ``before_request``,
``after_response`` and ``on_status`` hooks.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
import requests

from marketpipe.net.backoff import Backoff, retry

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class RestError(Exception):
    """A resource could not be fetched this time; the message says why in one line."""


class Rejected(RestError):
    """The server refused the request itself (unknown symbol or product): retrying cannot help."""

    def __init__(self, message: str, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(RestError):
    """HTTP 429, or a budget spent: requests to this server pause until ``resume_at`` (monotonic)."""

    def __init__(self, message: str, resume_at: float) -> None:
        super().__init__(message)
        self.resume_at = resume_at


class Banned(RateLimited):
    """The server banned this IP until ``resume_at`` (Binance HTTP 418); no request may be sent before."""


@dataclass(frozen=True, slots=True)
class RestAnswer:
    """A successful body exactly as received, with the headers that matter for accounting."""

    text: str
    status: int
    headers: Mapping[str, str]


def error_message(text: str) -> tuple[str, int | None]:
    """The server's own error text and code (Binance ``msg``/``code``, Coinbase ``message``)."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.strip()[:200], None
    if isinstance(body, dict):
        code = body.get("code")
        message = body.get("msg") or body.get("message") or text.strip()[:200]
        return str(message), code if isinstance(code, int) else None
    return text.strip()[:200], None


def retry_after(headers: Mapping[str, str], default: float) -> float:
    """Seconds from ``Retry-After`` (the numeric form exchanges send), else ``default``."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default


class _Retryable(Exception):
    """One failed attempt worth another; ``wait`` is the server's Retry-After when it gave one."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


class RestClient:
    """GET with retries and rate-limit discipline; subclasses add the venue's own accounting."""

    venue = "server"
    logger = logging.getLogger("marketpipe.net.rest")

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_wait: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        """Longest single wait (Retry-After, budget, backoff) inside one call; longer ones skip it."""
        self.clock, self.sleep = clock, sleep
        self.backoff = Backoff(initial=0.5, cap=8.0, rng=rng)
        self.resume_at = 0.0
        self.requests = 0
        self.errors: dict[int, int] = {}
        """HTTP error answers by status (0 = no answer: connection error or timeout)."""

    # hooks -------------------------------------------------------------------------------------------
    def before_request(self, path: str) -> None:
        """Wait for (or refuse) a request slot; raise RateLimited to skip without sending."""

    def after_response(self, response: requests.Response) -> None:
        """Account for an answer (any status)."""

    def on_status(self, path: str, status: int, message: str, headers: Mapping[str, str]) -> None:
        """Venue-specific statuses (Binance 418); default: nothing."""

    # ------------------------------------------------------------------------------------------------
    def _refuse_long_wait(self, resume_at: float, why: str) -> float:
        """The seconds until ``resume_at``; RateLimited (skip this call) when that is over ``max_wait``."""
        delay = resume_at - self.clock()
        if delay > self.max_wait:
            raise RateLimited(f"{self.venue}: {why}; next request in {delay:.0f} s, skipping", resume_at)
        return delay

    def _wait_until(self, resume_at: float, why: str) -> None:
        delay = self._refuse_long_wait(resume_at, why)
        if delay > 0:
            self.sleep(delay)

    def get(self, path: str) -> RestAnswer:
        """The body of ``GET base_url + path``; RestError (logged) when it cannot be had now."""
        self.backoff.reset()

        def before_retry(attempt: int, exc: Exception, delay: float) -> None:
            if isinstance(exc, _Retryable) and exc.wait is not None:  # 429: logged when it came
                self._refuse_long_wait(self.resume_at, "rate limited (Retry-After)")
                return
            self.logger.warning("%s GET %s: %s; retry %d/%d in %.1f s", self.venue, path, exc, attempt,
                                self.max_attempts - 1, delay)  # fmt: skip
            self._refuse_long_wait(self.clock() + delay, str(exc))

        try:
            return retry(
                lambda: self._attempt(path),
                attempts=self.max_attempts,
                backoff=self.backoff,
                retry_on=_Retryable,
                retry_after=lambda exc: exc.wait if isinstance(exc, _Retryable) else None,
                sleep=self.sleep,
                on_retry=before_retry,
            )
        except _Retryable as exc:
            self.logger.error("%s GET %s: gave up after %d attempts: %s", self.venue, path,
                              self.max_attempts, exc)  # fmt: skip
            raise RestError(
                f"{self.venue} GET {path}: gave up after {self.max_attempts} attempts: {exc}"
            ) from None

    def _attempt(self, path: str) -> RestAnswer:
        """One request: the answer, or _Retryable / RestError (Rejected, RateLimited) saying why not."""
        self._wait_until(self.resume_at, "rate limited (Retry-After)")
        self.before_request(path)
        self.requests += 1
        try:
            response = self.session.get(self.base_url + path, timeout=self.timeout)
        except requests.RequestException as exc:
            self.errors[0] = self.errors.get(0, 0) + 1
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        self.after_response(response)
        status = response.status_code
        if status == 200:
            return RestAnswer(response.text, status, response.headers)
        self.errors[status] = self.errors.get(status, 0) + 1
        message, code = error_message(response.text)
        last = f"HTTP {status} ({message}{f', code {code}' if code is not None else ''})"
        self.on_status(path, status, message, response.headers)
        if status == 429:
            wait = retry_after(response.headers, self.backoff.next_delay())
            self.resume_at = self.clock() + wait
            self.logger.warning("%s GET %s: HTTP 429 (%s); Retry-After %.0f s honoured", self.venue, path,
                                message, wait)  # fmt: skip
            raise _Retryable(last, wait)
        if status in RETRYABLE_STATUS:
            raise _Retryable(last)
        self.logger.error("%s GET %s: %s; not retried", self.venue, path, last)
        raise Rejected(f"{self.venue} GET {path}: {last}", status, code)
