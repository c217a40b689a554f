"""Run configuration shared by every capability: command-line flags over environment over defaults.

What concerns one exchange (its symbols, endpoints, thresholds) is not here: each capability reads its
own settings from :attr:`RunConfig.options` and the environment (``settings_from`` in its ``service``
module), so this module names no exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketpipe.errors import ConfigError

SUPPORTED_SINKS = ("csv", "db", "lake")
TRANSPORTS = ("local", "kinesis")


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def positive(text: Any, name: str, kind: Callable[[str], Any] = float) -> Any:
    """``text`` as a positive number of ``kind``; ConfigError naming the flag otherwise."""
    try:
        value = kind(str(text))
    except ValueError as exc:
        raise ConfigError(f"{name}: expected a number, got {text!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name}: must be positive, got {text!r}")
    return value


def option_reader(options: Mapping[str, Any], env: Mapping[str, str]) -> Callable[[str, str], Any]:
    """``pick(option, variable)``: the flag (``opt_*``) over the environment variable, or None."""

    def pick(option: str, variable: str) -> Any:
        value = options.get(option)
        return value if value is not None else env.get(variable) or None

    return pick


@dataclass
class RunConfig:
    exchanges: list[str] = field(default_factory=list)
    """Capabilities to run, by name; empty: ``capabilities.DEFAULT_EXCHANGES``."""
    data_dir: Path = Path("data")
    db_url: str | None = None
    lake_uri: str | None = None
    sinks: list[str] = field(default_factory=lambda: list(SUPPORTED_SINKS))
    duration: float | None = None
    simulate: bool = False
    compress_raw: bool = False
    flush_interval: float = 1.0
    lake_flush_interval: float = 10.0
    """How often a live run rewrites the lake files of windows still open (closed windows are written as
    they close, everything at a clean stop): the lake stays within ~10 s of the other stores, well inside
    the liveness check's default 60 s, and a ten-minute file is rewritten 60 times instead of 600."""
    stale_after: float = 30.0
    drain_timeout: float = 10.0
    subscription_retry: float = 5.0
    transport: str = "local"
    """``local``: capture files + sinks in this process; ``kinesis``: frames to Kinesis and S3 (AWS)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Per-capability settings: their own ``run`` flags (``opt_*``, see ``capabilities.add_run_arguments``)
    and overrides set by code (tests, the simulators)."""

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'marketpipe.db').as_posix()}"

    @property
    def resolved_lake_uri(self) -> str:
        return self.lake_uri or str(self.data_dir / "lake")

    def validate(self) -> RunConfig:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"unknown transport {self.transport!r} (supported: {', '.join(TRANSPORTS)})")
        bad_sinks = [s for s in self.sinks if s not in SUPPORTED_SINKS]
        if bad_sinks:
            raise ConfigError(f"unknown sink {bad_sinks[0]!r} (supported: {', '.join(SUPPORTED_SINKS)})")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration must be positive, got {self.duration:g}")
        return self
