"""``marketpipe check``: the liveness alarm beside ``marketpipe run`` (once for cron, or ``--every``).

Exit codes: 0 healthy, 1 failing, 2 bad configuration (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from marketpipe import envnames
from marketpipe.config import STORES, RunConfig, Section, Setting, load_config_file, positive_check
from marketpipe.errors import ConfigError
from marketpipe.liveness.sources import EXPECTED_LAG_S

log = logging.getLogger("marketpipe.liveness")

EXIT_HEALTHY = 0
EXIT_FAILING = 1


def _sources(names: list[str]) -> list[str]:
    from marketpipe.liveness.sources import SOURCES

    bad = [n for n in names if n not in SOURCES]
    if bad:
        raise ConfigError(f"unknown source {bad[0]!r} (choose from {', '.join(SOURCES)})")
    return names


def _not_negative(seconds: float) -> float:
    if seconds < 0:
        raise ConfigError(f"must not be negative, got {seconds:g}")
    return seconds


LIVENESS = Section(
    "liveness",
    "Liveness check (marketpipe check)",
    (
        Setting(
            "threshold",
            60.0,
            "seconds of silence that count as a failure",
            kind="float",
            flag="--threshold",
            dest="threshold",
            check=positive_check(),
        ),
        Setting(
            "lake_lag",
            EXPECTED_LAG_S["lake"],
            "how far the lake trails the stream when healthy, added to its threshold (a local run "
            f"rewrites its open lake files every {RunConfig.lake_flush_interval:g} s)",
            kind="float",
            flag="--lake-lag",
            dest="lake_lag",
            check=_not_negative,
        ),
        Setting(
            "sources",
            [],
            "db, lake, raw: what must keep advancing (empty: whichever have data)",
            kind="strs",
            flag="--sources",
            dest="sources",
            check=_sources,
        ),
    ),
)
"""``[liveness]`` of the config file; the SMS numbers are ``[alerts]``'s, the data dir ``[run]``'s."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser(
        "check",
        help="liveness alarm: one SMS when data stops, one when it flows again",
        description=(
            "Checks that the newest rows of each table and the raw capture keep advancing; texts once "
            "through Plivo when they stop and once when they recover "
            f"({envnames.PLIVO_AUTH_ID}, {envnames.PLIVO_AUTH_TOKEN}, {envnames.ALERT_SMS_FROM}, "
            f"{envnames.ALERT_SMS_TO}; without them it logs the message). "
            "Exit 0 healthy, 1 failing, 2 bad configuration."
        ),
    )
    check.add_argument("--config", metavar="FILE", help=f"config file (env {envnames.CONFIG}; "
                       "default ./marketpipe.toml if present)")  # fmt: skip
    STORES.add_arguments(check, "Stores (the run's [run] table)", keys=("data_dir", "db", "lake"))
    LIVENESS.add_arguments(check)
    check.add_argument("--tables", help="comma list of tables to watch (default: every table with rows)")
    check.add_argument("--exchanges", help="raw captures to watch (default: every exchange captured)")
    check.add_argument("--every", type=float, help="keep checking every SECONDS instead of once")
    check.add_argument("--state", type=Path, help="state file (default <data-dir>/check-state.json)")
    check.add_argument("--name", default=socket.gethostname(), help="name in the texts (default: host name)")
    check.set_defaults(handler=_cmd_check)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _cmd_check(args: argparse.Namespace) -> int:
    from marketpipe.alerts.notifiers import LogNotifier, Notifier
    from marketpipe.alerts.service import alerts_env
    from marketpipe.alerts.sms import sms_from_env
    from marketpipe.liveness.checker import CheckConfig, LivenessChecker, run_every
    from marketpipe.liveness.sources import SOURCES

    file = load_config_file(args.config)
    options = {k: v for k, v in vars(args).items() if v is not None}
    stores = STORES.values(options, os.environ, file, whole_table=False)
    own = LIVENESS.values(options, os.environ, file)
    sources = own["sources"] or None
    config = CheckConfig(
        data_dir=Path(stores["data_dir"]),
        db_url=stores["db"] or None,
        lake_uri=stores["lake"] or None,
        sources=tuple(sources) if sources is not None else SOURCES,
        sources_explicit=sources is not None,
        tables=_split(args.tables),
        exchanges=_split(args.exchanges),
        threshold=own["threshold"],
        lake_lag=own["lake_lag"],
        state_path=args.state,
        label=args.name,
    )
    if args.every is not None and args.every <= 0:
        raise ConfigError(f"--every must be positive, got {args.every:g}")
    sms = sms_from_env(alerts_env(options, os.environ, file))
    notifier: Notifier = sms if sms is not None else LogNotifier()
    checker = LivenessChecker(config, notifier)
    log.info(
        "watching %s (threshold %g s); alerts go to %s; state in %s",
        ", ".join(config.sources), config.threshold, notifier.describe(), config.resolved_state_path,
    )  # fmt: skip
    if args.every is None:
        result = checker.check()
        return EXIT_HEALTHY if result.healthy else EXIT_FAILING
    stop = threading.Event()
    with _stop_on_signals(stop):
        run_every(checker, args.every, stop)
    return EXIT_HEALTHY


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Any:
    """SIGINT/SIGTERM end the loop after the current check (never in the middle of a send)."""

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
