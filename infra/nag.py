"""Helpers to name cdk-nag findings exactly, since cdk-nag 3 acknowledges one finding id at a time.

IAM5 findings embed the logical id of the resource whose ARN carries the wildcard
(``Resource::<DataBucketE3889A50.Arn>/raw/*``); deriving it from the construct keeps an
acknowledgment correct when construct paths move.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnElement, Stack

from constructs import IConstruct


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of an L2 construct's default child (or of an L1 element)."""
    element = construct if isinstance(construct, CfnElement) else construct.node.default_child
    if not isinstance(element, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation element")
    stack = Stack.of(element)
    return str(stack.resolve(stack.get_logical_id(element)))


def arn_finding(rule: str, construct: IConstruct, suffix: str, attribute: str = "Arn") -> str:
    """``AwsSolutions-IAM5[Resource::<Logical.Arn>/suffix]`` for a wildcard under a resource's ARN."""
    return f"{rule}[Resource::<{logical_id(construct)}.{attribute}>{suffix}]"


def resource_finding(rule: str, scope: IConstruct, arn: str) -> str:
    """``AwsSolutions-IAM5[Resource::…]`` for an ARN built from the stack's pseudo parameters, as cdk-nag
    renders it: ``<AWS::Region>`` in an environment-agnostic stack, the literal value in a concrete one."""
    return f"{rule}[Resource::{_render(Stack.of(scope).resolve(arn))}]"


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_render(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    raise TypeError(f"cannot render {value!r} as cdk-nag does")
