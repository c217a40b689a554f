"""Every Lambda has one entry shape: ``functions/<name>/handler.py`` calls ``marketpipe.aws.<name>.handle``
with the event and the environment (and the context only where Powertools needs it), nothing else. The
two Iceberg lake Lambdas share one module, ``marketpipe.aws.lake_tables``, one entry point each."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
LAMBDAS = sorted(p.parent.name for p in FUNCTIONS.glob("*/handler.py"))
SHARED = {
    "lake_tables": ("lake_tables", "handle_deploy"),
    "lake_maintenance": ("lake_tables", "handle_maintenance"),
}
"""Lambdas whose adapter is another module or function: name -> (module, function)."""


def test_every_lambda_is_listed() -> None:
    assert LAMBDAS == ["binance_api", "binance_metrics", "bitso_spreads", "book_builder", "db_migrate",
                       "execution", "lake_maintenance", "lake_tables", "ledger_etl", "notifier"]  # fmt: skip


@pytest.mark.parametrize("name", LAMBDAS)
def test_handler_passes_the_event_and_environment_to_its_aws_module(name: str) -> None:
    module, entry = SHARED.get(name, (name, "handle"))
    tree = ast.parse((FUNCTIONS / name / "handler.py").read_text())
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert imports == ["import os", "from typing import Any", f"from marketpipe.aws import {module}"]
    [function] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert function.name == "handler" and [a.arg for a in function.args.args] == ["event", "context"]
    [statement] = function.body
    extra = ", context=context" if name == "notifier" else ""
    assert ast.unparse(statement) == f"return {module}.{entry}(event, os.environ{extra})"

    handle = getattr(importlib.import_module(f"marketpipe.aws.{module}"), entry)
    assert list(inspect.signature(handle).parameters)[:2] == ["event", "env"]
