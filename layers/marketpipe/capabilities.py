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

from marketpipe.config import ConfigFile, Section, Setting, check_file_tables, run_section
from marketpipe.errors import ConfigError

EXCHANGE_MODULES: dict[str, str] = {
    "bitfinex": "marketpipe.bitfinex.service",
    "bitso": "marketpipe.bitso.service",
    "execution": "marketpipe.execution.service",
    "binance": "marketpipe.binance.service",
}
"""Capability name -> module implementing the factories of :mod:`marketpipe.runtime`."""

DEFAULT_EXCHANGES = ("bitfinex", "bitso", "binance", "execution")
"""What ``marketpipe run`` starts when neither ``--exchanges`` nor the config file says: everything."""
UNSET_EXCHANGES = ("bitfinex",)
"""What :func:`marketpipe.pipeline.run_live` starts for a ``RunConfig`` built in code with no exchanges
(the command always names them: flag, file or :data:`DEFAULT_EXCHANGES`); kept so that code and tests
that drive one simulated exchange never reach the real others."""


def _exchanges(names: list[str]) -> list[str]:
    names = list(dict.fromkeys(n.lower() for n in names))
    if not names:
        raise ConfigError("no exchanges configured")
    for name in names:
        if name not in EXCHANGE_MODULES:
            raise ConfigError(f"unknown exchange {name!r} (supported: {', '.join(EXCHANGE_MODULES)})")
    return names


RUN = run_section(
    Setting(
        "exchanges",
        list(DEFAULT_EXCHANGES),
        f"capabilities to run, comma list ({', '.join(EXCHANGE_MODULES)})",
        kind="strs",
        flag="--exchanges",
        dest="exchanges",
        check=_exchanges,
    )
)
"""``[run]``: the capabilities and the stores."""


def sections() -> list[Section]:
    """Every table of ``marketpipe.toml`` the command reads, in ``marketpipe config``'s order."""
    from marketpipe.alerts.service import ALERTS
    from marketpipe.liveness.cli import LIVENESS

    own = [getattr(exchange_module(name), "SETTINGS", None) for name in EXCHANGE_MODULES]
    return [RUN, *[s for s in own if s is not None], ALERTS, LIVENESS]


def check_file(file: ConfigFile | None) -> None:
    """Unknown tables or keys, wrong types: one ConfigError naming the key (every table, enabled or not)."""
    if file is not None:
        check_file_tables(file, sections())


def exchange_module(name: str) -> ModuleType:
    module_name = EXCHANGE_MODULES.get(name)
    if module_name is None:
        raise ConfigError(f"unknown exchange {name!r} (supported: {', '.join(EXCHANGE_MODULES)})")
    return importlib.import_module(module_name)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Each capability's own ``run`` flags, then the shared alert channels' (``[alerts]``)."""
    from marketpipe.alerts.service import ALERTS

    for name in EXCHANGE_MODULES:
        module = exchange_module(name)
        adder = getattr(module, "add_run_arguments", None)
        if adder is not None:
            adder(parser)
    ALERTS.add_arguments(parser)


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


def check_settings(
    names: Iterable[str], options: Mapping[str, Any], env: Mapping[str, str], file: ConfigFile | None = None
) -> None:
    """ConfigError for an unknown capability or unusable settings, before any store or socket opens.

    Each capability's ``settings_from(options, env, file)`` is the same reader its service uses at start.
    """
    check_file(file)
    for name in names:
        reader = getattr(exchange_module(name), "settings_from", None)
        if reader is not None:
            reader(options, env, file)
