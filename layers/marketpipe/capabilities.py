"""The capabilities ``marketpipe run`` and ``replay`` can start, by name: the composition root's list.

Adding a capability is one line in :data:`EXCHANGE_MODULES`; the pipeline and the shared code never name
an exchange. Each module implements the factories described in :mod:`marketpipe.runtime`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from marketpipe.errors import ConfigError

EXCHANGE_MODULES: dict[str, str] = {
    "bitfinex": "marketpipe.bitfinex.service",
    "bitso": "marketpipe.bitso.service",
    "execution": "marketpipe.execution.service",
    "binance": "marketpipe.binance.service",
}
"""Capability name -> module implementing the factories of :mod:`marketpipe.runtime`."""

DEFAULT_EXCHANGES = ("bitfinex",)
"""What ``marketpipe run`` starts when no ``--exchanges`` is given."""


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


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """Each capability's own ``replay`` flags (``add_replay_arguments`` of its module, if any)."""
    for name in EXCHANGE_MODULES:
        adder = getattr(exchange_module(name), "add_replay_arguments", None)
        if adder is not None:
            adder(parser)


def check_replay_settings(options: Mapping[str, Any]) -> None:
    """ConfigError for unusable ``replay`` flags, before any store opens (every capability: a capture may
    hold frames of any of them)."""
    for name in EXCHANGE_MODULES:
        reader = getattr(exchange_module(name), "replay_settings_from", None)
        if reader is not None:
            reader(options)


def check_settings(names: Iterable[str], options: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """ConfigError for an unknown capability or unusable settings, before any store or socket opens.

    Each capability's ``settings_from(options, env)`` is the same reader its service uses at start.
    """
    for name in names:
        reader = getattr(exchange_module(name), "settings_from", None)
        if reader is not None:
            reader(options, env)
