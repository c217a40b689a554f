"""A progress bar for finite work (``replay``), on stderr, only when someone is watching it.

The bar is tqdm's, shown only when stderr is a terminal (and the command was not told ``--no-progress``):
a log file, a pipe or a test gets the log lines alone. While it is shown, log records go through
``tqdm.write`` so that a log line never breaks the bar.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, Protocol


class Progress(Protocol):
    def update_to(self, done: float) -> None:
        """Move the bar to ``done`` (of its total)."""


class _NoProgress:
    def update_to(self, done: float) -> None:
        pass


class _Bar:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update_to(self, done: float) -> None:
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)


def wanted(enabled: bool = True) -> bool:
    """A bar is worth drawing: asked for, and stderr is a terminal."""
    return enabled and sys.stderr.isatty()


@contextlib.contextmanager
def progress_bar(total: float, desc: str, *, unit: str = "B", enabled: bool = True) -> Iterator[Progress]:
    """A bar over ``total`` (bytes by default, scaled: KB, MB…); a no-op unless ``enabled``."""
    if not enabled:
        yield _NoProgress()
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with (
        logging_redirect_tqdm(),
        tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", unit_divisor=1024, leave=True) as bar,
    ):
        yield _Bar(bar)
