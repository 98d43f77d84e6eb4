"""Read template.yaml (with CloudFormation's short-form intrinsics) so local code and tests use the
template's own definitions instead of a copy that could drift."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

_TAGS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Base64",
    "Cidr",
    "Transform",
)


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Tag value` into the long form `{"Fn::Tag": value}` (or `{"Ref": ...}`)."""


def _make_constructor(tag: str) -> Any:
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {key: value}

    return construct


for _tag in _TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _make_constructor(_tag))


@cache
def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a mapping")
    return data


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The parsed template (a deep copy: callers may mutate it)."""
    return copy.deepcopy(_load(path))


def resource(logical_id: str, path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    resources: dict[str, Any] = load_template(path)["Resources"]
    if logical_id not in resources:
        raise KeyError(f"{logical_id} is not a resource of {path.name}")
    return dict(resources[logical_id])
