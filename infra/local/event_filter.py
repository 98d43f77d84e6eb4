"""Lambda event filtering (the FilterCriteria of an event source mapping), evaluated locally.

The subset of EventBridge-style patterns Lambda supports: exact values (strings, numbers, booleans,
null, "" for empty), `prefix`, `suffix`, `equals-ignore-case`, `anything-but` (values, or a prefix,
suffix or equals-ignore-case), `numeric` (=, <, <=, >, >=, one or two bounds) and `exists`. Keys of
a pattern object are ANDed, the values in a leaf array are ORed, an array in the record matches if
any of its elements does, and the filters of one FilterCriteria are ORed: a record passes if any
pattern matches it.

As in Lambda, `exists` looks at leaf values only: `{"title": {"S": [{"exists": false}]}}` is the
way to say "no title attribute" in a DynamoDB image (`{"title": [{"exists": false}]}` would also
match a title that is there, because `title` is an object, not a leaf). Numbers match only JSON
numbers, so `numeric` never matches a DynamoDB `N`, which the record carries as a string.

Anything else (wildcard, cidr, $or, ...) raises UnsupportedPattern: a template using it fails the
local stack and the tests loudly instead of filtering differently from Lambda.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_PATTERN_CHARS = 4096  # Lambda's limit for one filter's pattern

_MISSING = object()
_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class UnsupportedPattern(ValueError):
    """A pattern Lambda would reject, or one this evaluator does not implement."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar_equal(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    if _is_number(expected):
        return _is_number(actual) and float(expected) == float(actual)
    return isinstance(actual, str) and expected == actual


def _string_rule(name: str, spec: Any) -> Callable[[Any], bool]:
    """prefix / suffix / equals-ignore-case, each with a string or {"equals-ignore-case": string}."""
    ignore_case = False
    if isinstance(spec, Mapping) and name in ("prefix", "suffix") and set(spec) == {"equals-ignore-case"}:
        ignore_case, spec = True, spec["equals-ignore-case"]
    if not isinstance(spec, str):
        raise UnsupportedPattern(f"{name} needs a string, not {spec!r}")
    wanted = spec.lower() if ignore_case or name == "equals-ignore-case" else spec

    def rule(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        text = value.lower() if ignore_case or name == "equals-ignore-case" else value
        if name == "prefix":
            return text.startswith(wanted)
        if name == "suffix":
            return text.endswith(wanted)
        return text == wanted

    return rule


def _numeric_rule(spec: Any) -> Callable[[Any], bool]:
    if not isinstance(spec, list) or len(spec) not in (2, 4):
        raise UnsupportedPattern(f"numeric needs [op, number] or [op, number, op, number], not {spec!r}")
    checks: list[tuple[Callable[[float, float], bool], float]] = []
    for op, bound in zip(spec[::2], spec[1::2], strict=True):
        if op not in _NUMERIC_OPS or not _is_number(bound):
            raise UnsupportedPattern(f"numeric: bad comparison {op!r} {bound!r}")
        checks.append((_NUMERIC_OPS[op], float(bound)))
    if len(checks) == 2 and ("=" in spec[::2]):
        raise UnsupportedPattern("numeric: '=' cannot be part of a range")

    def rule(value: Any) -> bool:
        return _is_number(value) and all(check(float(value), bound) for check, bound in checks)

    return rule


def _anything_but_rule(spec: Any) -> Callable[[Any], bool]:
    if isinstance(spec, Mapping):
        if len(spec) != 1:
            raise UnsupportedPattern(f"anything-but takes one rule, not {dict(spec)!r}")
        ((name, inner),) = spec.items()
        if name not in ("prefix", "suffix", "equals-ignore-case"):
            raise UnsupportedPattern(f"anything-but does not take {name!r}")
        if name == "equals-ignore-case" and isinstance(inner, list):
            rules = [_string_rule(name, item) for item in inner]
        else:
            rules = [_string_rule(name, inner)]
        return lambda value: isinstance(value, str) and not any(r(value) for r in rules)
    excluded = spec if isinstance(spec, list) else [spec]
    for item in excluded:
        if isinstance(item, Mapping | list):
            raise UnsupportedPattern(f"anything-but: unsupported value {item!r}")
    return lambda value: not any(_scalar_equal(item, value) for item in excluded)


@dataclass(frozen=True)
class _Matcher:
    """One element of a leaf array."""

    test: Callable[[Any], bool] | None  # None: an `exists` matcher
    exists: bool | None = None

    def matches(self, values: list[Any]) -> bool:
        if self.test is None:
            return bool(values) == self.exists
        return any(self.test(v) for v in values)


def _compile_matcher(spec: Any) -> _Matcher:
    if spec is None or isinstance(spec, str | bool) or _is_number(spec):

        def equal(value: Any) -> bool:
            return _scalar_equal(spec, value)

        return _Matcher(equal)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise UnsupportedPattern(f"unsupported matcher {spec!r}")
    ((name, arg),) = spec.items()
    if name == "exists":
        if not isinstance(arg, bool):
            raise UnsupportedPattern(f"exists needs true or false, not {arg!r}")
        return _Matcher(None, exists=arg)
    if name in ("prefix", "suffix", "equals-ignore-case"):
        return _Matcher(_string_rule(name, arg))
    if name == "numeric":
        return _Matcher(_numeric_rule(arg))
    if name == "anything-but":
        return _Matcher(_anything_but_rule(arg))
    raise UnsupportedPattern(f"Lambda event filtering does not support {name!r}")


@dataclass(frozen=True)
class _Node:
    fields: dict[str, _Node | list[_Matcher]]

    def matches(self, value: Any) -> bool:
        for key, sub in self.fields.items():
            child = value.get(key, _MISSING) if isinstance(value, Mapping) else _MISSING
            if isinstance(sub, _Node):
                if isinstance(child, list):
                    if not any(sub.matches(element) for element in child):
                        return False
                elif not sub.matches(child):
                    return False
            elif not any(m.matches(_leaf_values(child)) for m in sub):
                return False
        return True


def _leaf_values(child: Any) -> list[Any]:
    """The leaf values at a path: none when absent or when the path holds an object (not a leaf)."""
    if child is _MISSING or isinstance(child, Mapping):
        return []
    if isinstance(child, list):
        return [v for v in child if not isinstance(v, Mapping | list)]
    return [child]


def _compile_node(spec: Any, path: str) -> _Node:
    if not isinstance(spec, Mapping) or not spec:
        raise UnsupportedPattern(f"{path or 'the pattern'} must be a non-empty JSON object")
    fields: dict[str, _Node | list[_Matcher]] = {}
    for key, sub in spec.items():
        if key.startswith("$"):
            raise UnsupportedPattern(f"{path}{key}: Lambda event filtering does not support {key!r}")
        if isinstance(sub, Mapping):
            fields[key] = _compile_node(sub, f"{path}{key}.")
        elif isinstance(sub, list) and sub:
            fields[key] = [_compile_matcher(item) for item in sub]
        else:
            raise UnsupportedPattern(f"{path}{key}: a leaf must be a non-empty array of matchers")
    return _Node(fields)


@dataclass(frozen=True)
class Pattern:
    source: str
    root: _Node

    def matches(self, record: Mapping[str, Any]) -> bool:
        return self.root.matches(record)


def compile_pattern(pattern: str | Mapping[str, Any]) -> Pattern:
    """A pattern as a FilterCriteria holds it (a JSON string) or already parsed."""
    if isinstance(pattern, str):
        if len(pattern) > MAX_PATTERN_CHARS:
            raise UnsupportedPattern(f"a pattern is at most {MAX_PATTERN_CHARS} characters")
        try:
            parsed = json.loads(pattern)
        except ValueError as exc:
            raise UnsupportedPattern(f"the pattern is not JSON: {exc}") from exc
        source = pattern
    else:
        parsed, source = pattern, json.dumps(pattern)
    return Pattern(source, _compile_node(parsed, ""))


@dataclass(frozen=True)
class FilterCriteria:
    patterns: tuple[Pattern, ...]

    @classmethod
    def from_properties(cls, criteria: Mapping[str, Any] | None) -> FilterCriteria:
        """From an event source mapping's `FilterCriteria: {Filters: [{Pattern: "<json>"}, ...]}`."""
        filters = (criteria or {}).get("Filters") or []
        return cls(tuple(compile_pattern(f["Pattern"]) for f in filters))

    def matches(self, record: Mapping[str, Any]) -> bool:
        """No filters: everything passes (as in Lambda). Otherwise any pattern may let it through."""
        return not self.patterns or any(p.matches(record) for p in self.patterns)

    def select(self, records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [r for r in records if self.matches(r)]
