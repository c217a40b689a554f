"""Run configuration: command-line flags over environment variables over defaults.

Endpoints come from the environment (``MARKETPIPE_<EXCHANGE>_WS_URL`` / ``_API_URL``) so tests and
demos can point anywhere; the defaults are the real exchanges.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketpipe import envnames
from marketpipe.bitfinex import wire as bfx
from marketpipe.errors import ConfigError

SUPPORTED_SINKS = ("csv", "db", "lake")
TRANSPORTS = ("local", "kinesis")
DEFAULT_BITFINEX_SYMBOLS = ("BTC-USD", "ETH-USD")


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass
class RunConfig:
    exchanges: list[str] = field(default_factory=lambda: ["bitfinex"])
    data_dir: Path = Path("data")
    db_url: str | None = None
    lake_uri: str | None = None
    sinks: list[str] = field(default_factory=lambda: list(SUPPORTED_SINKS))
    duration: float | None = None
    simulate: bool = False
    bitfinex_symbols: list[str] = field(default_factory=lambda: list(DEFAULT_BITFINEX_SYMBOLS))
    bitfinex_ws_url: str = bfx.DEFAULT_WS_URL
    bitfinex_api_url: str = bfx.DEFAULT_API_URL
    compress_raw: bool = False
    flush_interval: float = 1.0
    lake_flush_interval: float = 10.0
    """How often a live run rewrites the lake files of windows still open (closed windows are written as
    they close, everything at a clean stop): the lake stays within ~10 s of the other stores, well inside
    the liveness check's default 60 s, and a ten-minute file is rewritten 60 times instead of 600."""
    stale_after: float = 30.0
    drain_timeout: float = 10.0
    subscription_retry: float = 5.0
    symbols_per_connection: int | None = None
    transport: str = "local"
    """``local``: capture files + sinks in this process; ``kinesis``: frames to Kinesis and S3 (AWS)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Per-exchange settings from their own ``run`` flags (see ``services.add_run_arguments``)."""

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'marketpipe.db').as_posix()}"

    @property
    def resolved_lake_uri(self) -> str:
        return self.lake_uri or str(self.data_dir / "lake")

    def bitfinex_wire_symbols(self) -> list[str]:
        return [bfx.wire_symbol(s) for s in self.bitfinex_symbols]

    def validate(self) -> RunConfig:
        from marketpipe.services import exchange_module

        for name in self.exchanges:
            exchange_module(name)  # ConfigError for an unknown exchange
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"unknown transport {self.transport!r} (supported: {', '.join(TRANSPORTS)})")
        bad_sinks = [s for s in self.sinks if s not in SUPPORTED_SINKS]
        if bad_sinks:
            raise ConfigError(f"unknown sink {bad_sinks[0]!r} (supported: {', '.join(SUPPORTED_SINKS)})")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration must be positive, got {self.duration:g}")
        if not self.bitfinex_symbols:
            raise ConfigError("no symbols configured")
        self.bitfinex_wire_symbols()  # raises ConfigError for malformed symbols
        return self


def endpoints_from_env(config: RunConfig, env: Mapping[str, str] | None = None) -> RunConfig:
    env = os.environ if env is None else env
    config.bitfinex_ws_url = env.get("MARKETPIPE_BITFINEX_WS_URL") or config.bitfinex_ws_url
    config.bitfinex_api_url = env.get("MARKETPIPE_BITFINEX_API_URL") or config.bitfinex_api_url
    symbols = env.get(envnames.SYMBOLS)
    if symbols:
        config.bitfinex_symbols = split_list(symbols)
    return config
