"""Run a test with a sink's compiled helper (from ``marketpipe._cbook``) and with its pure-Python path."""

from __future__ import annotations

from types import ModuleType

import pytest

IMPLEMENTATIONS = ["compiled", "python"]


def use_implementation(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str
) -> str:
    """``python``: ``module.name`` set to None (the sink's fallback); ``compiled``: as built, or skip."""
    if request.param == "python":
        monkeypatch.setattr(module, name, None)
    elif getattr(module, name) is None:
        pytest.skip("the compiled book (marketpipe._cbook) was not built")
    return str(request.param)
