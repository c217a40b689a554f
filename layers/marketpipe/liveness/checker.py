"""``marketpipe check``'s engine: read the stores, fold the verdict into the persisted state, notify.

The state file is the checker's memory across runs (cron) and restarts (loop): it is written
atomically (temp file, fsync, rename, fsync of the folder) after every step, and a lock file keeps two
checkers on the same state from both sending the same alert. The message of a transition is marked
``sending`` on disk *before* the provider is called (see ``marketpipe.liveness.state``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from marketpipe.alerts.notifiers import Notifier, NotifyError
from marketpipe.errors import ConfigError
from marketpipe.liveness import state as machine
from marketpipe.liveness.sources import (
    EXPECTED_LAG_S,
    SOURCES,
    Reading,
    assess,
    read_db,
    read_lake,
    read_raw,
)
from marketpipe.liveness.state import LivenessState, Observation
from marketpipe.timeutil import now_us

log = logging.getLogger("marketpipe.liveness")


@dataclass
class CheckConfig:
    """What to watch and how strictly; mirrors the ``marketpipe check`` flags."""

    data_dir: Path = Path("data")
    db_url: str | None = None
    lake_uri: str | None = None
    sources: tuple[str, ...] = SOURCES
    sources_explicit: bool = False
    """Explicitly chosen sources must have data; default ones are skipped when they have none."""
    tables: list[str] | None = None
    exchanges: list[str] | None = None
    threshold: float = 60.0
    lake_lag: float = EXPECTED_LAG_S["lake"]
    """How far the lake trails the stream when all is well; added to the lake's threshold."""
    state_path: Path | None = None
    label: str = field(default_factory=socket.gethostname)

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'marketpipe.db').as_posix()}"

    @property
    def resolved_lake_uri(self) -> str:
        return self.lake_uri or str(self.data_dir / "lake")

    @property
    def lags(self) -> dict[str, float]:
        return {**EXPECTED_LAG_S, "lake": self.lake_lag}

    @property
    def resolved_state_path(self) -> Path:
        return self.state_path or self.data_dir / "check-state.json"

    def validate(self) -> CheckConfig:
        from marketpipe.tables import TABLES

        bad = [s for s in self.sources if s not in SOURCES]
        if bad or not self.sources:
            raise ConfigError(
                f"unknown source {bad[0] if bad else '(none)'!r} (supported: {', '.join(SOURCES)})"
            )
        unknown = [t for t in self.tables or [] if t not in TABLES]
        if unknown:
            raise ConfigError(f"unknown table {unknown[0]!r} (known: {', '.join(TABLES)})")
        if self.threshold <= 0:
            raise ConfigError(f"--threshold must be positive, got {self.threshold:g}")
        if self.lake_lag < 0:
            raise ConfigError(f"--lake-lag must not be negative, got {self.lake_lag:g}")
        if self.db_url is not None:
            from sqlalchemy.engine import make_url

            try:
                make_url(self.db_url)
            except Exception as exc:
                raise ConfigError(
                    "invalid database URL (expected sqlite:///path or mysql+pymysql://…)"
                ) from exc
        return self


@dataclass(frozen=True)
class CheckResult:
    healthy: bool
    observation: Observation
    state: LivenessState
    readings: tuple[Reading, ...]


class StateStore:
    """The JSON state file: atomic replace on save, an exclusive lock for the length of a check."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> LivenessState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return LivenessState()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"state file {self.path} is unreadable ({exc}); fix or delete it") from exc
        try:
            return machine.from_json(data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"state file {self.path} is not a checker state ({exc}); fix or delete it"
            ) from exc

    def save(self, state: LivenessState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = json.dumps(machine.to_json(state), indent=2, sort_keys=True).encode()
        try:
            with open(tmp, "wb") as f:
                f.write(data + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialize checkers sharing this state (cron overlapping a loop, two crons)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


class LivenessChecker:
    """One ``check()`` = read every source, update the state, send the transition's message if due."""

    def __init__(self, config: CheckConfig, notifier: Notifier, clock: Callable[[], int] = now_us) -> None:
        self.config = config.validate()
        self.notifier = notifier
        self.clock = clock
        self.store = StateStore(config.resolved_state_path)

    def read(self) -> list[Reading]:
        config = self.config
        readers: dict[str, Callable[[], list[Reading]]] = {
            "db": lambda: read_db(config.resolved_db_url, config.tables),
            "lake": lambda: read_lake(config.resolved_lake_uri, config.tables),
            "raw": lambda: read_raw(config.data_dir, config.exchanges),
        }
        readings: list[Reading] = []
        for source in config.sources:
            try:
                found = readers[source]()
            except Exception as exc:  # an unreachable store is a failure to report, not a crash
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("cannot read %s: %s", source, reason)
                found = [Reading(source, source, None, reason)]
            if not found and config.sources_explicit:
                found = [Reading(source, source, None, "no data at all")]
            readings.extend(found)
        return readings

    def check(self) -> CheckResult:
        with self.store.locked():
            before = self.store.load()
            state = machine.recover_interrupted(before)
            if state is not before:
                log.error(
                    "the previous checker stopped while sending transition %d's message; it may or may"
                    " not have been delivered and is not resent (at most one message per transition)",
                    state.outbox.transition if state.outbox else 0,
                )
            readings = self.read()
            observation = assess(readings, self.clock(), self.config.threshold, self.config.lags)
            state = machine.observe(state, observation, self.config.label, self.config.threshold)
            self.store.save(state)
            self._log(state, observation, readings)
            if state.needs_send:
                state = self._deliver(state)
            return CheckResult(observation.healthy, observation, state, tuple(readings))

    def _deliver(self, state: LivenessState) -> LivenessState:
        state = machine.begin_send(state)
        self.store.save(state)  # from here a crash means "maybe sent": never resent
        outbox = state.outbox
        assert outbox is not None
        try:
            ids = self.notifier.send(outbox.text)
        except NotifyError as exc:
            state = machine.record_failed(state, str(exc), exc.maybe_delivered)
            if exc.maybe_delivered:
                log.error(
                    "%s message: delivery unknown (%s); not resent to avoid a duplicate", outbox.kind, exc
                )
            else:
                log.error("%s message not sent (%s); retrying at the next check", outbox.kind, exc)
        except Exception as exc:  # a notifier bug: same as a certain failure, retried next check
            state = machine.record_failed(state, f"{type(exc).__name__}: {exc}", False)
            log.exception("%s message not sent; retrying at the next check", outbox.kind)
        else:
            state = machine.record_sent(state, tuple(ids), self.clock())
            log.info("%s message sent to %s: %s", outbox.kind, self.notifier.describe(), outbox.text)
        self.store.save(state)
        return state

    def _log(self, state: LivenessState, obs: Observation, readings: Sequence[Reading]) -> None:
        newest = ", ".join(f"{r.label} {machine.clock(r.newest_us, with_date=False)}" for r in readings)
        if obs.healthy:
            log.info("healthy: %s", newest or "nothing watched")
        else:
            log.warning(
                "FAILING since %s: %s (newest: %s)", machine.clock(state.since_us), obs.what, newest or "none"
            )


def run_every(checker: LivenessChecker, every: float, stop: threading.Event) -> CheckResult | None:
    """Check every ``every`` seconds (measured start to start) until ``stop`` is set."""
    result = None
    while not stop.is_set():
        started = checker.clock()
        result = checker.check()
        elapsed = (checker.clock() - started) / 1e6
        stop.wait(max(0.0, every - elapsed))
    return result
