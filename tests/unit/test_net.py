"""marketpipe.net: the one backoff, the one retry loop (sync and async), the one sliding-window limiter."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketpipe.net.backoff import HEALTHY_CONNECTION_SECONDS, Backoff, retry, retry_async
from marketpipe.net.ratelimit import RateLimiter
from marketpipe.net.rest import error_message, retry_after
from tests.support.fake_time import FakeTime


class Flaky:
    """Fails with the given exceptions in turn, then returns ``"ok"``; counts calls."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


# ------------------------------------------------------------------------------------------ Backoff
def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(initial=1.0, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays), "jitter: no two delays alike"
    backoff.reset()
    assert backoff.next_delay() <= 1.0


@given(
    initial=st.floats(0.001, 10.0),
    cap=st.floats(0.01, 600.0),
    factor=st.floats(1.0, 4.0),
    n=st.integers(0, 2000),
)
def test_backoff_delay_stays_within_half_and_whole_of_the_capped_ceiling(
    initial: float, cap: float, factor: float, n: int
) -> None:
    backoff = Backoff(initial, cap, factor, rng=random.Random(n))
    backoff.attempt = n  # a long outage: the exponent is bounded, so nothing overflows
    ceiling = min(cap, initial * factor ** min(n, 32))
    assert ceiling / 2 <= backoff.next_delay() <= ceiling <= cap


def test_backoff_starts_over_only_after_a_healthy_connection() -> None:
    backoff = Backoff(initial=1.0, cap=8.0, rng=random.Random(1))
    for _ in range(3):
        backoff.next_delay()
    assert 4.0 <= backoff.after_connection(HEALTHY_CONNECTION_SECONDS - 1) <= 8.0  # still backing off
    assert backoff.after_connection(HEALTHY_CONNECTION_SECONDS + 1) <= 1.0


# -------------------------------------------------------------------------------------------- retry
def test_retry_returns_after_transient_failures_with_backoff_waits() -> None:
    t = FakeTime()
    call = Flaky(ConnectionError("a"), ConnectionError("b"))
    seen: list[tuple[int, str, float]] = []
    result = retry(
        call,
        attempts=4,
        backoff=Backoff(1.0, 8.0, rng=random.Random(2)),
        retry_on=ConnectionError,
        sleep=t.sleep,
        on_retry=lambda attempt, exc, delay: seen.append((attempt, str(exc), delay)),
    )
    assert result == "ok" and call.calls == 3
    assert [(a, e) for a, e, _ in seen] == [(1, "a"), (2, "b")]
    assert t.sleeps == [d for _, _, d in seen]
    assert 0.5 <= t.sleeps[0] <= 1.0 and 1.0 <= t.sleeps[1] <= 2.0


def test_retry_gives_up_after_the_attempts_and_reraises_the_last_failure() -> None:
    t = FakeTime()
    last = ConnectionError("third")
    call = Flaky(ConnectionError("first"), ConnectionError("second"), last, ConnectionError("never"))
    with pytest.raises(ConnectionError) as info:
        retry(call, attempts=3, backoff=Backoff(0.1, 1.0), sleep=t.sleep, on_retry=lambda *_: None)
    assert info.value is last and call.calls == 3
    assert len(t.sleeps) == 2, "no wait after the last attempt"


def test_retry_raises_a_failure_it_does_not_accept_at_once() -> None:
    t = FakeTime()
    refused = ValueError("refused")
    call = Flaky(ConnectionError("x"), refused)
    with pytest.raises(ValueError) as info:
        retry(call, attempts=10, backoff=Backoff(), retry_on=(ConnectionError, TimeoutError), sleep=t.sleep)
    assert info.value is refused and call.calls == 2 and len(t.sleeps) == 1


def test_retry_on_a_predicate_and_until_success() -> None:
    t = FakeTime()
    call = Flaky(*[OSError("retry me")] * 50)
    assert retry(call, attempts=None, backoff=Backoff(0.01, 0.02), retry_on=lambda e: "retry" in str(e),
                 sleep=t.sleep, on_retry=lambda *_: None) == "ok"  # fmt: skip
    assert call.calls == 51 and all(0.005 <= s <= 0.02 for s in t.sleeps)
    with pytest.raises(OSError, match="final"):
        retry(Flaky(OSError("final")), attempts=None, backoff=Backoff(), retry_on=lambda e: "retry" in str(e))


class Throttled(Exception):
    def __init__(self, wait: float | None) -> None:
        super().__init__(f"throttled, wait {wait}")
        self.wait = wait


def test_retry_honours_the_delay_the_server_asked_for() -> None:
    t = FakeTime()
    backoff = Backoff(1.0, 8.0, rng=random.Random(3))
    call = Flaky(Throttled(30.0), Throttled(None), Throttled(0.0))
    result = retry(
        call,
        attempts=4,
        backoff=backoff,
        retry_on=Throttled,
        retry_after=lambda exc: exc.wait if isinstance(exc, Throttled) else None,
        sleep=t.sleep,
        on_retry=lambda *_: None,
    )
    assert result == "ok"
    # Retry-After 30 is slept as given (the backoff not advanced: the next backoff delay is its first);
    # a zero Retry-After is not slept at all.
    assert t.sleeps[0] == 30.0 and 0.5 <= t.sleeps[1] <= 1.0 and len(t.sleeps) == 2
    assert backoff.attempt == 1


def test_retry_logs_each_retry_by_default_and_on_retry_can_end_the_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = FakeTime()
    with caplog.at_level(logging.WARNING, "marketpipe.net"):
        retry(Flaky(ConnectionError("down")), attempts=2, backoff=Backoff(1.0, 1.0), sleep=t.sleep)
    assert "attempt 1 failed (down); retrying in" in caplog.text

    def too_long(attempt: int, exc: Exception, delay: float) -> None:
        raise TimeoutError(f"would wait {delay:.0f} s after attempt {attempt}")

    call = Flaky(Throttled(600.0))
    with pytest.raises(TimeoutError, match="would wait 600 s after attempt 1"):
        retry(
            call, attempts=3, backoff=Backoff(), retry_after=lambda e: 600.0, sleep=t.sleep, on_retry=too_long
        )
    assert call.calls == 1


def test_retry_async_has_the_same_rules() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    async def go() -> tuple[str, BaseException]:
        flaky = Flaky(ConnectionError("a"), Throttled(5.0))

        async def call() -> str:
            return flaky()

        ok = await retry_async(call, attempts=3, backoff=Backoff(1.0, 8.0), sleep=sleep,
                               retry_after=lambda e: getattr(e, "wait", None))  # fmt: skip
        always = Flaky(*[ConnectionError(str(i)) for i in range(5)])

        async def failing() -> str:
            return always()

        with pytest.raises(ConnectionError) as info:
            await retry_async(failing, attempts=2, backoff=Backoff(1.0, 8.0), sleep=sleep)
        assert always.calls == 2
        return ok, info.value

    ok, last = asyncio.run(go())
    assert ok == "ok" and str(last) == "1"
    assert 0.5 <= slept[0] <= 1.0 and slept[1] == 5.0 and len(slept) == 3


# ------------------------------------------------------------------------------------- RateLimiter
def test_rate_limiter_allows_at_most_limit_per_period() -> None:
    now = [0.0]
    limiter = RateLimiter(20, 60.0, clock=lambda: now[0])

    async def go() -> list[float]:
        waits = []
        for _ in range(20):
            waits.append(await limiter.acquire())
        assert limiter.delay_needed() == pytest.approx(60.0)
        now[0] = 30.0
        assert limiter.delay_needed() == pytest.approx(30.0)
        now[0] = 60.0
        assert limiter.delay_needed() == 0.0
        return waits

    assert asyncio.run(go()) == [0.0] * 20


def test_rate_limiter_waits_for_a_slot() -> None:
    limiter = RateLimiter(2, 0.3)

    async def go() -> float:
        await limiter.acquire()
        await limiter.acquire()
        return await limiter.acquire()

    assert asyncio.run(go()) >= 0.25


def test_rate_limiter_blocking_waits_for_the_oldest_slot() -> None:
    t = FakeTime()
    limiter = RateLimiter(2, 1.0, clock=t.time, sleep=t.sleep)
    assert limiter.acquire_blocking() == 0 and limiter.acquire_blocking() == 0
    assert limiter.acquire_blocking() == pytest.approx(1.0)
    assert limiter.try_acquire() == 0.0, "the two at the start left the window: one slot free"
    assert limiter.try_acquire() == pytest.approx(1.0), "full: nothing taken"
    t.now += 1.0
    assert limiter.try_acquire() == 0.0


def test_rate_limiter_is_shared_by_coroutines_and_threads() -> None:
    limiter = RateLimiter(2, 0.2)

    async def go() -> float:
        await limiter.acquire()
        await limiter.acquire()
        return await asyncio.to_thread(limiter.acquire_blocking)  # the third in the window waits

    assert asyncio.run(go()) >= 0.15


@given(
    limit=st.integers(1, 6),
    period=st.floats(0.01, 100.0),
    gaps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=60),
)
def test_rate_limiter_never_exceeds_its_limit_in_any_window_and_waits_no_longer_than_needed(
    limit: int, period: float, gaps: list[float]
) -> None:
    t = FakeTime(start=0.0)
    limiter = RateLimiter(limit, period, clock=t.time, sleep=t.sleep)
    granted: list[float] = []
    for gap in gaps:
        t.now += gap
        arrived = t.now
        waited = limiter.acquire_blocking()
        granted.append(t.now)
        assert t.now == pytest.approx(arrived + waited)
        if len(granted) > limit:
            # Granted only once the limit-th previous grant left the window ...
            assert granted[-1] >= granted[-1 - limit] + period
            # ... and no later than that (or its arrival, when that came later).
            assert granted[-1] == pytest.approx(max(arrived, granted[-1 - limit] + period), abs=1e-6)
        else:
            assert waited == 0.0
    # Any window [s, s + period) holds at most ``limit`` grants.
    for i, start in enumerate(granted):
        assert sum(1 for g in granted[i:] if g < start + period) <= limit


# ------------------------------------------------------------------------------------- REST helpers
def test_retry_after_header_and_error_messages() -> None:
    assert retry_after({"Retry-After": "30"}, 1.0) == 30.0
    assert retry_after({"retry-after": "-5"}, 1.0) == 0.0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 2.5) == 2.5
    assert retry_after({}, 4.0) == 4.0
    assert error_message('{"code": -1121, "msg": "Invalid symbol."}') == ("Invalid symbol.", -1121)
    assert error_message('{"message": "NotFound"}') == ("NotFound", None)
    assert error_message(" <html>bad gateway</html> ") == ("<html>bad gateway</html>", None)
    assert error_message("[1, 2]") == ("[1, 2]", None)


def test_net_imports_nothing_from_marketpipe_but_errors_and_timeutil() -> None:
    import ast
    from pathlib import Path

    import marketpipe.net

    allowed = ("marketpipe.net", "marketpipe.errors", "marketpipe.timeutil")
    for path in Path(marketpipe.net.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] == "marketpipe":
                    assert name.startswith(allowed), f"{path.name} imports {name}"
