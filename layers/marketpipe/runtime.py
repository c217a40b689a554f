"""What a capability's live service and replayer are to the pipeline (the ports ``run`` and ``replay`` use).

Each capability package (``marketpipe.bitfinex``, ``marketpipe.bitso``, …) has a ``service`` module with
two factories, listed in :mod:`marketpipe.capabilities`:

* ``create_service(ctx: RunContext) -> ExchangeService``: the live part (collector, its processor,
  and, with ``--simulate``, its loopback simulator);
* ``create_replayer(emit: Emit, options: Mapping[str, Any] | None = None) -> FrameProcessor``: the
  processor that rebuilds rows from the raw capture (the same one the live service uses); ``options``
  are the replay's ``RunConfig.options`` (its capability flags, see below).

Its settings are declared once, as ``SETTINGS`` (a :class:`marketpipe.config.Section`: each setting's flag,
environment variable, ``marketpipe.toml`` key, default, help and check); ``add_run_arguments(parser)``
adds their flags (``SETTINGS.add_arguments``; each ``dest`` starts with ``opt_`` and its value lands in
``RunConfig.options``) and ``settings_from(options, env, file)`` reads them, flag > environment > file >
default, for the service and for ``marketpipe config``.
Likewise ``add_replay_arguments(parser)`` adds ``replay`` flags (the execution capability's
``--execution-notionals``, to re-price history), and ``replay_settings_from(options)`` raises
ConfigError for unusable ones before a replay opens any store. A service
whose frames go to Kinesis (``--transport kinesis``) also answers ``partitions(frame)`` and
``all_partitions()``: the partition names of a frame and of the whole service (see
:class:`Partitioned`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from marketpipe.config import RunConfig
from marketpipe.records import Emit, RawFrame
from marketpipe.sinks.base import Sink

FrameSink = Callable[[RawFrame], None]


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


@runtime_checkable
class Partitioned(Protocol):
    """A service whose frames can be routed to Kinesis partitions (the partition key is
    ``<exchange>:<partition>``): each partition must hold complete, ordered input for one consumer."""

    name: str

    def partitions(self, frame: RawFrame) -> list[str]:
        """The partitions a frame belongs to; empty when its connection is no longer known."""

    def all_partitions(self) -> list[str]:
        """Every partition of the service (where a frame of an unknown connection goes)."""
