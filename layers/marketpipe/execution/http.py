"""Polite REST polling shared by the Coinbase and Binance book clients.

One request at a time per client, retried on network errors and 5xx with capped, jittered backoff;
HTTP 429 honoured with the server's ``Retry-After`` (no request to that exchange before it passes,
even in the next poll); permanent refusals (400, 404) raised at once, never retried. Every HTTP error
is logged with the exchange, the path, the status and the exchange's own message. Waiting is
synchronous (clients run in a worker thread locally and inline in the Lambda) with an injectable
clock and sleep so tests control time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
import requests

from marketpipe.collector.reliability import Backoff

log = logging.getLogger("marketpipe.execution")

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class RestError(Exception):
    """A book could not be fetched this time; the message says why in one line."""


class Rejected(RestError):
    """The exchange refused the request itself (unknown symbol or product): retrying cannot help."""

    def __init__(self, message: str, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(RestError):
    """HTTP 429, or a budget spent: requests to this exchange pause until ``resume_at`` (monotonic)."""

    def __init__(self, message: str, resume_at: float) -> None:
        super().__init__(message)
        self.resume_at = resume_at


class Banned(RateLimited):
    """Binance HTTP 418: the IP is banned until ``resume_at``; no request may be sent before."""


@dataclass(frozen=True, slots=True)
class RestAnswer:
    """A successful body exactly as received, with the headers that matter for accounting."""

    text: str
    status: int
    headers: Mapping[str, str]


def error_message(text: str) -> tuple[str, int | None]:
    """The exchange's own error text and code (Binance ``msg``/``code``, Coinbase ``message``)."""
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
    """Seconds from ``Retry-After`` (the numeric form both exchanges send), else ``default``."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default


class SlidingWindowLimiter:
    """At most ``limit`` requests in any ``period`` seconds (thread-safe, synchronous waits)."""

    def __init__(
        self,
        limit: int,
        period: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit, self.period = limit, period
        self._clock, self._sleep = clock, sleep
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                while self._times and now - self._times[0] >= self.period:
                    self._times.popleft()
                if len(self._times) < self.limit:
                    self._times.append(now)
                    return waited
                delay = self.period - (now - self._times[0])
                self._sleep(delay)
                waited += delay


class BookClient:
    """GET with retries and rate-limit discipline; subclasses add the exchange's own accounting."""

    venue = "exchange"

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
        """Longest single wait (Retry-After, budget, backoff) inside one fetch; longer ones skip the poll."""
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
        """Exchange-specific statuses (Binance 418); default: nothing."""

    def fetch_book(self, symbol: str) -> tuple[str, RestAnswer]:
        """(path, answer) for one market's book."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------
    def _wait_until(self, resume_at: float, why: str) -> None:
        delay = resume_at - self.clock()
        if delay <= 0:
            return
        if delay > self.max_wait:
            raise RateLimited(f"{self.venue}: {why}; next request in {delay:.0f} s, skipping", resume_at)
        self.sleep(delay)

    def get(self, path: str) -> RestAnswer:
        """The body of ``GET base_url + path``; RestError (logged) when it cannot be had now."""
        self.backoff.reset()
        last = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            self._wait_until(self.resume_at, "rate limited (Retry-After)")
            self.before_request(path)
            self.requests += 1
            try:
                response = self.session.get(self.base_url + path, timeout=self.timeout)
            except requests.RequestException as exc:
                self.errors[0] = self.errors.get(0, 0) + 1
                last = f"{type(exc).__name__}: {exc}"
                self._retry_later(path, attempt, last)
                continue
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
                log.warning("%s GET %s: HTTP 429 (%s); Retry-After %.0f s honoured", self.venue, path,
                            message, wait)  # fmt: skip
                continue
            if status in RETRYABLE_STATUS:
                self._retry_later(path, attempt, last)
                continue
            log.error("%s GET %s: %s; not retried", self.venue, path, last)
            raise Rejected(f"{self.venue} GET {path}: {last}", status, code)
        log.error("%s GET %s: gave up after %d attempts: %s", self.venue, path, self.max_attempts, last)
        raise RestError(f"{self.venue} GET {path}: gave up after {self.max_attempts} attempts: {last}")

    def _retry_later(self, path: str, attempt: int, why: str) -> None:
        if attempt >= self.max_attempts:
            return
        delay = self.backoff.next_delay()
        log.warning("%s GET %s: %s; retry %d/%d in %.1f s", self.venue, path, why, attempt,
                    self.max_attempts - 1, delay)  # fmt: skip
        self._wait_until(self.clock() + delay, why)
