"""``marketpipe check`` against the real pipeline: the Bitfinex simulator, ``run_live``, the real Plivo
SDK and a fake Plivo server on loopback. Each test asserts what the phone receives.

Thresholds are 1-1.5 s so the scenarios take seconds: the feed stops (one failure SMS) and resumes
(one recovery SMS); a hiccup shorter than the threshold (no SMS); the stream connected but nothing
saved (a specific SMS); the checker restarted mid-outage (no second SMS); Plivo answering 500 then
202 (one SMS delivered).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from marketpipe.alerts.sms import sms_from_env
from marketpipe.bitfinex.simulator import BitfinexSimulator
from marketpipe.config import RunConfig
from marketpipe.liveness.checker import CheckConfig, LivenessChecker
from marketpipe.liveness.sources import assess
from marketpipe.pipeline import run_live
from marketpipe.simulator.plivo import FakePlivo
from marketpipe.timeutil import now_us
from tests.support.waiting import until

REPO_ROOT = Path(__file__).resolve().parents[2]
LAKE_LAG = 0.2  # the runs below write the lake at every flush (flush_interval)


@pytest.fixture
def plivo() -> Iterator[FakePlivo]:
    with FakePlivo() as fake:
        yield fake


def _checker(data_dir: Path, plivo: FakePlivo, threshold: float = 1.0) -> LivenessChecker:
    sms = sms_from_env(plivo.env(), backoff=0.05)
    assert sms is not None
    config = CheckConfig(data_dir=data_dir, threshold=threshold, lake_lag=LAKE_LAG, label="test-host")
    return LivenessChecker(config, sms)


def _config(sim: BitfinexSimulator, data_dir: Path, duration: float | None) -> RunConfig:
    return RunConfig(
        data_dir=data_dir,
        duration=duration,
        options={"bitfinex_ws_url": sim.ws_url, "bitfinex_api_url": sim.api_url},
        stale_after=5.0,
        drain_timeout=3.0,
        subscription_retry=0.3,
        flush_interval=0.2,
        lake_flush_interval=0.0,  # every flush writes the lake: it trails the stream by LAKE_LAG
    )


@asynccontextmanager
async def _simulator() -> AsyncIterator[BitfinexSimulator]:
    sim = BitfinexSimulator(
        ("tBTCUSD", "tETHUSD"),
        seed=11,
        updates_per_second=40,
        trades_per_second=12,
        heartbeat_interval=0.3,
        checksum_interval=0.3,
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def _check(checker: LivenessChecker) -> bool:
    return (await asyncio.to_thread(checker.check)).healthy


async def _until_flowing(checker: LivenessChecker) -> None:
    """Wait, without recording anything, until every table and the raw capture are fresh: the scenarios
    start from a running pipeline, however long start-up took on this machine."""

    def flowing() -> bool:
        return assess(checker.read(), now_us(), checker.config.threshold, checker.config.lags).healthy

    await until(lambda: asyncio.to_thread(flowing), "every table and the raw capture fresh", timeout=10.0)


async def _until_healthy(checker: LivenessChecker, tries: int = 8) -> bool:
    """Check like cron would, until the pipeline is found flowing again (a reconnect takes a moment)."""
    for _ in range(tries):
        if await _check(checker):
            return True
        await asyncio.sleep(0.4)
    return False


def test_feed_stops_then_resumes_one_sms_each_and_500_then_202_delivers_once(
    tmp_path: Path, plivo: FakePlivo
) -> None:
    """A stalled stream (socket open, nothing arrives) and its recovery; Plivo fails once on the way."""
    checker = _checker(tmp_path, plivo)

    async def scenario() -> list[bool]:
        async with _simulator() as sim:
            run = asyncio.create_task(run_live(_config(sim, tmp_path, duration=12.0)))
            await _until_flowing(checker)
            verdicts = [await _check(checker)]  # streaming: healthy, nothing sent
            sim.inject("silence", duration=3.5)  # shorter than the collector's 5 s dead-connection limit
            plivo.fail_next(500)  # the failure SMS meets a Plivo 500 first, then 202
            await asyncio.sleep(1.5)
            verdicts.append(await _check(checker))  # silent for > 1 s: failure SMS
            await asyncio.sleep(0.3)
            verdicts.append(await _check(checker))  # still failing: nothing new
            await asyncio.sleep(2.0)  # silence over, frames and rows flow again
            verdicts.append(await _until_healthy(checker))  # recovery SMS
            verdicts.append(await _check(checker))  # still healthy: nothing new
            await run
            return verdicts

    assert asyncio.run(scenario()) == [True, False, False, True, True]
    texts = plivo.texts()
    assert len(texts) == 2, texts
    down, up = texts
    assert down.startswith("marketpipe DOWN (test-host): bitfinex stream stopped (no frames since ")
    assert "Last data seen: " in down and "(threshold 1s)" in down
    assert up.startswith("marketpipe RECOVERED (test-host): data streaming and saved again at ")
    assert "Outage lasted " in up and "it was: bitfinex stream stopped" in up
    # 500 then 202 for the failure SMS, 202 for the recovery: exactly one message each.
    assert [r.status for r in plivo.requests] == [500, 202, 202]
    assert [m.dst for m in plivo.messages] == [["+15550000002"], ["+15550000002"]]
    state = json.loads((tmp_path / "check-state.json").read_text())
    assert state["status"] == "healthy" and state["transitions"] == 2
    assert state["outbox"]["kind"] == "recovery" and state["outbox"]["delivery"] == "sent"
    assert state["history"][0]["delivery"] == "sent" and state["history"][0]["attempts"] == 1


def test_hiccup_shorter_than_threshold_sends_nothing(tmp_path: Path, plivo: FakePlivo) -> None:
    checker = _checker(tmp_path, plivo, threshold=1.5)

    async def scenario() -> list[bool]:
        async with _simulator() as sim:
            run = asyncio.create_task(run_live(_config(sim, tmp_path, duration=7.0)))
            await _until_flowing(checker)
            verdicts = []
            sim.inject("silence", duration=0.5)
            for _ in range(10):
                verdicts.append(await _check(checker))
                await asyncio.sleep(0.2)
            await run
            return verdicts

    assert all(asyncio.run(scenario()))
    assert plivo.requests == []


def test_connected_but_saving_nothing_is_a_failure(tmp_path: Path, plivo: FakePlivo) -> None:
    """The market freezes: heartbeats keep the socket and the raw capture alive, no row is saved."""
    checker = _checker(tmp_path, plivo)

    async def scenario() -> list[bool]:
        async with _simulator() as sim:
            run = asyncio.create_task(run_live(_config(sim, tmp_path, duration=9.0)))
            await _until_flowing(checker)
            verdicts = [await _check(checker)]
            sim.pause_market()
            await asyncio.sleep(1.8)
            verdicts.append(await _check(checker))
            sim.resume_market()
            await asyncio.sleep(1.0)
            verdicts.append(await _until_healthy(checker))
            await run
            return verdicts

    assert asyncio.run(scenario()) == [True, False, True]
    down, up = plivo.texts()
    assert "bitfinex connected but saving nothing (frames arrive, no new rows in " in down
    assert "bitfinex_book" in down and "bitfinex_quotes" in down
    assert up.startswith("marketpipe RECOVERED (test-host)")


def _cli_check(data_dir: Path, plivo: FakePlivo) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **plivo.env(), "PYTHONPATH": str(REPO_ROOT / "layers")}
    command = [sys.executable, "-m", "marketpipe.cli", "check", "--data-dir", str(data_dir)]
    return subprocess.run(
        [*command, "--threshold", "1", "--lake-lag", str(LAKE_LAG), "--name", "cli-host"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pipeline_stopped_and_restarted_with_checker_restarts(tmp_path: Path, plivo: FakePlivo) -> None:
    """``marketpipe run`` stops; separate ``marketpipe check`` processes (cron) text once, then once."""

    async def scenario() -> tuple[list[int], list[subprocess.CompletedProcess[str]]]:
        async with _simulator() as sim:
            await run_live(_config(sim, tmp_path, duration=1.5))
            await asyncio.sleep(1.2)
            runs = [await asyncio.to_thread(_cli_check, tmp_path, plivo) for _ in range(2)]
            run = asyncio.create_task(run_live(_config(sim, tmp_path, duration=9.0)))
            await asyncio.sleep(1.2)
            for _ in range(4):  # cron-like checks after the restart, until one finds it healthy
                runs.append(await asyncio.to_thread(_cli_check, tmp_path, plivo))
                if runs[-1].returncode == 0:
                    break
            runs.append(await asyncio.to_thread(_cli_check, tmp_path, plivo))  # healthy again: silent
            await run
            return [r.returncode for r in runs], runs

    codes, runs = asyncio.run(scenario())
    assert codes[:2] == [1, 1], runs[0].stderr
    assert codes[-2:] == [0, 0], runs[-2].stderr
    texts = plivo.texts()
    assert len(texts) == 2, texts
    assert texts[0].startswith("marketpipe DOWN (cli-host): bitfinex stream stopped")
    assert texts[1].startswith("marketpipe RECOVERED (cli-host)")
    logs = "".join(r.stderr for r in runs)
    assert "+*******0002" in logs and "+15550000002" not in logs  # numbers masked in the logs
    assert logs.count("failure message sent") == 1 and logs.count("recovery message sent") == 1


def test_exchange_gone_the_first_text_names_the_stream_though_the_lake_trails_it(
    tmp_path: Path, plivo: FakePlivo
) -> None:
    """The run rewrites its lake every 0.8 s, so the lake trails the stream by up to ~1 s, and the
    exchange goes silent. Two checkers watch, checking every 0.1 s from the moment it goes: one told the
    lake's lag (threshold 2.5 s + lag), one not (threshold 3 s, lag 0: its lake is the first store past
    the threshold). Each texts once, and the text names the stream, not the trailing lake. (Thresholds
    of a few seconds: a loaded CI machine delays the database by a second at times.)"""
    sms = sms_from_env(plivo.env(), backoff=0.05)
    assert sms is not None
    told = LivenessChecker(
        CheckConfig(data_dir=tmp_path, threshold=2.5, lake_lag=1.0, label="told",
                    state_path=tmp_path / "told.json"),
        sms,
    )  # fmt: skip
    untold = LivenessChecker(
        CheckConfig(data_dir=tmp_path, threshold=3.0, lake_lag=0.0, label="untold",
                    state_path=tmp_path / "untold.json"),
        sms,
    )  # fmt: skip
    checkers = (told, untold)

    async def scenario() -> None:
        async with _simulator() as sim:
            config = _config(sim, tmp_path, duration=14.0)
            config.lake_flush_interval = 0.8
            run = asyncio.create_task(run_live(config))

            def flowing(checker: LivenessChecker) -> bool:
                readings = checker.read()
                fresh = assess(readings, now_us(), checker.config.threshold, checker.config.lags).healthy
                return fresh and {r.source for r in readings} == {"db", "lake", "raw"}

            for checker in checkers:
                await until(lambda c=checker: asyncio.to_thread(flowing, c), "db, lake, raw fresh", 15.0)
            sim.inject("silence", duration=4.6)  # under the collector's 5 s dead-connection limit
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 4.6
            failing: set[str] = set()
            while loop.time() < deadline and len(failing) < len(checkers):
                for checker in checkers:
                    if checker.config.label not in failing and not await _check(checker):
                        failing.add(checker.config.label)
                await asyncio.sleep(0.1)
            assert failing == {"told", "untold"}
            for checker in checkers:
                assert await _until_healthy(checker, tries=15)
            await run

    asyncio.run(scenario())
    texts = plivo.texts()
    downs = sorted(t for t in texts if " DOWN " in t)
    assert len(downs) == 2 and len(texts) == 4, texts
    for label, down in zip(("told", "untold"), downs, strict=True):
        assert down.startswith(f"marketpipe DOWN ({label}): bitfinex stream stopped (no frames since "), down
        assert "not saving" not in down
    for up in (t for t in texts if " RECOVERED " in t):
        assert "it was: bitfinex stream stopped" in up
