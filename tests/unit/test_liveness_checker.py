"""The checker's I/O shell and ``marketpipe check``: state file, exactly-once sends, exit codes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from marketpipe.alerts.notifiers import LogNotifier, NotifyError
from marketpipe.cli import main
from marketpipe.errors import ConfigError
from marketpipe.liveness import state as machine
from marketpipe.liveness.checker import CheckConfig, LivenessChecker, StateStore, run_every
from marketpipe.records import RawFrame
from marketpipe.simulator.plivo import FakePlivo
from marketpipe.sinks.lake_sink import LakeSink
from marketpipe.sinks.raw_capture import RawCaptureWriter
from marketpipe.sinks.sql_sink import SqlSink
from marketpipe.tables import BITFINEX_TRADES

S = 1_000_000
T0 = 1_795_839_026_000_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Scripted:
    """A notifier that fails as told, then records what it sends."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.sent: list[str] = []

    def send(self, text: str) -> Sequence[str]:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(text)
        return [f"uuid-{len(self.sent)}"]

    def describe(self) -> str:
        return "scripted"


def write_data(data_dir: Path, at: int) -> None:
    """One trade row in SQLite and one incoming raw frame, both received at ``at``."""
    sink = SqlSink(f"sqlite:///{data_dir / 'marketpipe.db'}", tables=[BITFINEX_TRADES])
    sink.write(BITFINEX_TRADES, [("BTC-USD", at, at - 1000, 60000.0, 0.1, "buy", at)])
    sink.close()
    raw = RawCaptureWriter(data_dir)
    raw.write(RawFrame("bitfinex", "c1", "in", at, '[1,"hb"]'))
    raw.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_data(tmp_path, T0)
    return tmp_path


def checker(data_dir: Path, notifier: object, clock: Clock, **config: object) -> LivenessChecker:
    return LivenessChecker(
        CheckConfig(data_dir=data_dir, threshold=60, label="box", **config),  # type: ignore[arg-type]
        notifier,  # type: ignore[arg-type]
        clock,
    )


def saved(data_dir: Path) -> dict[str, object]:
    return json.loads((data_dir / "check-state.json").read_text())


def test_outage_and_recovery_one_message_each_state_file_tells_the_story(data_dir: Path) -> None:
    clock, notifier = Clock(T0 + 10 * S), Scripted()
    check = checker(data_dir, notifier, clock)
    assert check.check().healthy and notifier.sent == []
    assert saved(data_dir)["status"] == "healthy"
    for minutes in (2, 3, 4):
        clock.now = T0 + minutes * 60 * S
        assert not check.check().healthy
    assert len(notifier.sent) == 1 and notifier.sent[0].startswith(
        "marketpipe DOWN (box): bitfinex stream stopped"
    )
    state = saved(data_dir)
    assert state["status"] == "failing" and state["since"] == "2026-11-28 04:10:26Z"
    assert state["outbox"]["delivery"] == "sent" and state["outbox"]["message_ids"] == ["uuid-1"]
    write_data(data_dir, T0 + 300 * S)
    clock.now = T0 + 301 * S
    assert check.check().healthy
    assert len(notifier.sent) == 2 and "Outage lasted 5m01s" in notifier.sent[1]
    assert saved(data_dir)["transitions"] == 2


def test_exchange_gone_the_down_text_names_the_stream_not_the_trailing_lake(data_dir: Path) -> None:
    """The incident: the exchange disappeared, the lake (rewritten every 10 s) was the first store past
    the threshold, and the DOWN text blamed it ("connected but not saving ...") while the recovery text
    said "stream stopped". Checked every second, the one DOWN text and the recovery name the stream."""
    lake = LakeSink(str(data_dir / "lake"))
    lake.write(
        BITFINEX_TRADES, [("BTC-USD", T0 - 10_500_000, T0 - 10_501_000, 60000.0, 0.1, "buy", T0 - 10_500_000)]
    )
    lake.close()  # the last lake rewrite before the exchange went away, 10.5 s before the last frame
    clock, notifier = Clock(T0), Scripted()
    check = checker(data_dir, notifier, clock)
    assert {r.source for r in check.read()} == {"db", "lake", "raw"}
    for second in range(0, 120):
        clock.now = T0 + second * S
        check.check()
    assert len(notifier.sent) == 1
    cause = "bitfinex stream stopped (no frames since 04:10:26Z; no new rows)"
    assert notifier.sent[0].startswith(
        f"marketpipe DOWN (box): {cause}. Since 2026-11-28 04:10:26Z, 1m01s ago"
    )
    write_data(data_dir, T0 + 300 * S)
    lake = LakeSink(str(data_dir / "lake"))
    lake.write(
        BITFINEX_TRADES, [("BTC-USD", T0 + 300 * S, T0 + 300 * S - 1000, 60000.0, 0.1, "buy", T0 + 300 * S)]
    )
    lake.close()
    clock.now = T0 + 301 * S
    assert check.check().healthy
    assert notifier.sent[1].endswith(f"it was: {cause}.")


def test_failed_send_is_retried_at_the_next_check_only_once(data_dir: Path) -> None:
    clock = Clock(T0 + 120 * S)
    notifier = Scripted(NotifyError("HTTP 500 x4"), RuntimeError("notifier bug"))
    check = checker(data_dir, notifier, clock)
    check.check()
    assert saved(data_dir)["outbox"]["delivery"] == "pending"
    assert saved(data_dir)["outbox"]["last_error"] == "HTTP 500 x4"
    check.check()
    assert saved(data_dir)["outbox"]["last_error"] == "RuntimeError: notifier bug"
    check.check()
    check.check()
    assert len(notifier.sent) == 1
    assert saved(data_dir)["outbox"]["attempts"] == 3 and saved(data_dir)["outbox"]["delivery"] == "sent"


def test_unknown_outcome_is_never_resent(data_dir: Path) -> None:
    notifier = Scripted(NotifyError("read timeout", maybe_delivered=True))
    check = checker(data_dir, notifier, Clock(T0 + 120 * S))
    check.check()
    check.check()
    assert notifier.sent == [] and saved(data_dir)["outbox"]["delivery"] == "unknown"


def test_crash_mid_send_then_restart_sends_no_second_message(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The process dies inside notifier.send: the state on disk says 'sending'; a restart must not resend."""

    class Crash(BaseException):
        pass

    class Dies:
        def send(self, text: str) -> Sequence[str]:
            raise Crash

        def describe(self) -> str:
            return "dies"

    clock = Clock(T0 + 120 * S)
    with pytest.raises(Crash):
        checker(data_dir, Dies(), clock).check()
    assert saved(data_dir)["outbox"]["delivery"] == "sending"
    notifier = Scripted()
    restarted = checker(data_dir, notifier, clock)
    assert not restarted.check().healthy
    assert notifier.sent == []
    assert saved(data_dir)["outbox"]["delivery"] == "unknown"
    assert "may or may not have been delivered" in caplog.text


def test_checker_restart_mid_outage_sends_nothing_new(data_dir: Path) -> None:
    clock, first = Clock(T0 + 120 * S), Scripted()
    checker(data_dir, first, clock).check()
    second = Scripted()
    clock.now += 600 * S
    checker(data_dir, second, clock).check()
    assert len(first.sent) == 1 and second.sent == []


def test_state_store_atomic_and_corrupt_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "sub" / "state.json")
    assert store.load() == machine.LivenessState()
    store.save(machine.LivenessState(status="healthy", since_us=T0))
    assert store.load().status == "healthy"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["state.json"]  # no temp file left
    store.path.write_text("{")
    with pytest.raises(ConfigError, match="unreadable"):
        store.load()
    store.path.write_text(json.dumps({"version": 1, "status": "weird"}))
    with pytest.raises(ConfigError, match="not a checker state"):
        store.load()


def test_two_checkers_share_the_state_under_a_lock(data_dir: Path) -> None:
    """Concurrent checks (cron overlapping a loop) still produce one message."""
    notifier = Scripted()
    clock = Clock(T0 + 120 * S)
    threads = [threading.Thread(target=checker(data_dir, notifier, clock).check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(notifier.sent) == 1


def test_explicit_sources_must_have_data_and_unreachable_stores_are_failures(tmp_path: Path) -> None:
    clock = Clock(T0)
    result = checker(tmp_path, LogNotifier(), clock, sources=("lake",), sources_explicit=True).check()
    assert not result.healthy and result.observation.what == "cannot read lake: no data at all"
    result = checker(tmp_path / "b", LogNotifier(), clock, db_url="mysql+pymysql://u:p@127.0.0.1:1/x").check()
    assert not result.healthy and result.observation.what.startswith("cannot read db: cannot connect")


def test_config_validation(tmp_path: Path) -> None:
    for bad in (
        {"sources": ("db", "s3")},
        {"sources": ()},
        {"tables": ["nope"]},
        {"threshold": 0},
        {"db_url": "::"},
    ):
        with pytest.raises(ConfigError):
            CheckConfig(data_dir=tmp_path, **bad).validate()  # type: ignore[arg-type]
    config = CheckConfig(data_dir=tmp_path)
    assert config.resolved_state_path == tmp_path / "check-state.json"
    assert config.resolved_lake_uri == str(tmp_path / "lake")


def test_run_every_stops_when_told(data_dir: Path) -> None:
    stop = threading.Event()
    calls: list[int] = []
    check = checker(data_dir, Scripted(), Clock(T0 + S))
    original = check.check

    def counting() -> object:
        calls.append(1)
        if len(calls) == 3:
            stop.set()
        return original()

    check.check = counting  # type: ignore[method-assign]
    assert run_every(check, 0.01, stop) is not None and len(calls) == 3


@pytest.fixture
def plivo_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlivo]:
    with FakePlivo() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake


def test_cli_exit_codes_and_sms(
    tmp_path: Path, plivo_env: FakePlivo, capsys: pytest.CaptureFixture[str]
) -> None:
    from marketpipe.timeutil import now_us

    data_dir = tmp_path
    write_data(data_dir, now_us() - 30 * S)  # the real clock: 30 s since the last data
    args = ["check", "--data-dir", str(data_dir), "--name", "cli"]
    assert main([*args, "--threshold", "1e9"]) == 0
    assert plivo_env.requests == []
    assert main([*args, "--threshold", "5", "--sources", "db,raw", "--tables", "bitfinex_trades"]) == 1
    assert main([*args, "--threshold", "5", "--exchanges", "bitfinex"]) == 1
    assert len(plivo_env.texts()) == 1 and plivo_env.texts()[0].startswith("marketpipe DOWN (cli)")
    assert main([*args, "--sources", "s3"]) == 2
    assert main([*args, "--every", "0"]) == 2
    assert main([*args, "--tables", "bogus"]) == 2
    assert "unknown table 'bogus'" in capsys.readouterr().err


def test_cli_half_configured_plivo_is_a_config_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLIVO_AUTH_ID", "MAXXXXXXXXXXXXXXXXXX")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)
    assert main(["check", "--data-dir", str(data_dir)]) == 2
    assert "PLIVO_AUTH_TOKEN" in capsys.readouterr().err


def test_cli_loop_stops_on_sigterm(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    for name in ("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    default = signal.getsignal(signal.SIGTERM)
    running = threading.Event()

    def terminate_once_handled() -> None:  # a SIGTERM before the loop's handler would end pytest itself
        while not running.wait(0.02):
            if signal.getsignal(signal.SIGTERM) is not default:
                time.sleep(0.2)  # a few checks
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=terminate_once_handled, daemon=True).start()
    try:
        assert main(["check", "--data-dir", str(data_dir), "--every", "0.05", "--threshold", "1e9"]) == 0
    finally:
        running.set()
    assert saved(data_dir)["status"] == "healthy"
