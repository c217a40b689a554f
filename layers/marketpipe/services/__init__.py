"""Exchange services: what ``marketpipe run`` and ``replay`` start per exchange.

Each exchange lives in its own module here and exposes two factories, so adding an exchange is one
line in :data:`EXCHANGE_MODULES` and the core never changes:

* ``create_service(ctx: RunContext) -> ExchangeService``: the live part (collector, its processor,
  and, with ``--simulate``, its loopback simulator);
* ``create_replayer(emit: Emit) -> FrameProcessor``: the processor that rebuilds rows from the raw
  capture (the same one the live service uses).

Optionally ``add_run_arguments(parser)`` adds the exchange's own ``run`` flags; give each a
``dest`` starting with ``opt_`` and its value lands in ``RunConfig.options`` under that name.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from marketpipe.config import RunConfig
from marketpipe.errors import ConfigError
from marketpipe.records import Emit, RawFrame
from marketpipe.sinks.base import Sink

FrameSink = Callable[[RawFrame], None]

EXCHANGE_MODULES: dict[str, str] = {
    "bitfinex": "marketpipe.bitfinex.service",
    "bitso": "marketpipe.bitso.service",
    "execution": "marketpipe.execution.service",
    "binance": "marketpipe.binance.service",
}
"""Exchange name -> module implementing the factories above."""


@dataclass
class RunContext:
    """What a live service gets from the pipeline."""

    config: RunConfig
    emit: Emit
    """Hand rows to every sink (buffered; written in batches off the event loop)."""
    capture: FrameSink
    """Append a frame to the raw capture (the write-ahead log) before processing it."""
    sinks: list[Sink]
    """The open stores, for reads such as 'newest stored trade' on restart."""
    clock: Callable[[], int]
    """Strictly increasing receive timestamps (µs), shared by every connection of the process."""


class FrameProcessor(Protocol):
    def process(self, frame: RawFrame) -> None: ...

    def finish(self) -> None: ...

    def summary(self) -> str: ...


class ExchangeService(Protocol):
    name: str

    async def start(self) -> None:
        """Start simulators if ``--simulate``; open nothing that can't be closed by :meth:`close`."""

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set; raise ConfigError for bad configuration."""

    async def close(self) -> None:
        """Finish processors (discarding what can't be verified) and stop simulators."""

    def summary(self) -> str: ...

    def stats(self) -> Any: ...


def exchange_module(name: str) -> ModuleType:
    module_name = EXCHANGE_MODULES.get(name)
    if module_name is None:
        raise ConfigError(f"unknown exchange {name!r} (supported: {', '.join(EXCHANGE_MODULES)})")
    return importlib.import_module(module_name)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    for name in EXCHANGE_MODULES:
        module = exchange_module(name)
        adder = getattr(module, "add_run_arguments", None)
        if adder is not None:
            adder(parser)
