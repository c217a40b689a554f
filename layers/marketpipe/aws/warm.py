"""Warm-start state of a Lambda module: what one container builds once and reuses (clients, SQL pools).

Each ``marketpipe.aws.<lambda>`` module keeps one :class:`Warm` slot. It is built from the environment
on the first invocation and rebuilt only if the settings it was built from change (in Lambda they never
do; in tests each case brings its own environment). Domain state never lives here: checkpoints and
state objects are read on every invocation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Warm(Generic[T]):
    """One container-wide object built by ``build(env)``, keyed on the values of ``names`` in ``env``."""

    def __init__(self, names: Sequence[str], build: Callable[[Mapping[str, str]], T]) -> None:
        self.names = tuple(names)
        self._build = build
        self._slot: tuple[tuple[str | None, ...], T] | None = None

    def get(self, env: Mapping[str, str]) -> T:
        key = tuple(env.get(name) for name in self.names)
        if self._slot is None or self._slot[0] != key:
            self._slot = (key, self._build(env))
        return self._slot[1]

    def reset(self) -> None:
        """Forget the object, as a new container would."""
        self._slot = None
