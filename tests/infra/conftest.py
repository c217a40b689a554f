"""Infra test fixtures: synthesize the whole app once per session and share the template.

Synthesis costs ~10 s (jsii round-trips, a 400-column Glue table), so every module asserts against the
same default-context stack; only the tests that need another configuration synthesize their own.
Asset bundling is skipped (``aws:cdk:bundling-stacks: []``): no pip download, no Docker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT / "layers", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from aws_cdk import App, CfnElement, Stack  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402
from infra.app import create_app  # noqa: E402
from infra.stack import MarketpipeStack  # noqa: E402

SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}


def build(context: dict[str, Any] | None = None, *, nag: bool = False) -> tuple[App, MarketpipeStack]:
    """The real app (cdk.json context + overrides) with bundling skipped."""
    return create_app({**SKIP_BUNDLING, **(context or {})}, nag=nag)


@pytest.fixture(scope="session")
def stack() -> MarketpipeStack:
    return build()[1]


@pytest.fixture(scope="session")
def template(stack: MarketpipeStack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def resources(template: Template) -> dict[str, Any]:
    """The raw ``Resources`` section, for assertions the matchers cannot express."""
    return template.to_json()["Resources"]


def logical_id(stack: Stack, construct: Any) -> str:
    """Logical id of an L2 construct's CloudFormation resource."""
    element = construct if isinstance(construct, CfnElement) else construct.node.default_child
    return str(stack.resolve(stack.get_logical_id(element)))


def only(resources: dict[str, Any], type_: str, *, contains: str = "") -> tuple[str, dict[str, Any]]:
    """The single resource of ``type_`` whose logical id contains ``contains``."""
    found = [(k, v) for k, v in resources.items() if v["Type"] == type_ and contains in k]
    assert len(found) == 1, f"expected one {type_} matching {contains!r}, got {[k for k, _ in found]}"
    return found[0]


def policy_statements(resources: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of every inline policy attached to one role."""
    statements: list[dict[str, Any]] = []
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if {"Ref": role_logical_id} in resource["Properties"].get("Roles", []):
            statements.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
