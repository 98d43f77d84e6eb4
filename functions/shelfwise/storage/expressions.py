"""A small builder for DynamoDB expressions: conditions, key conditions and updates.

Every attribute name and value goes through a placeholder (`#n0`, `:v0`), so reserved words
(`name`, `size`, `status`, `type`, ...) need no care and no expression is assembled by hand.

    cond = exists("pk") & absent("deleted_at") & eq("version", 3)
    update = Update().set(quantity=7, updated_at=at).add(message_count=1).remove("lowstock_pk")
    names = Placeholders(); cond.render(names); update.render(names); names.params()
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Self

from shelfwise.storage.codec import to_attr


class Placeholders:
    """The names and values of one request's expressions, shared by all of them."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        for placeholder, known in self._names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#n{len(self._names)}"
        self._names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = to_attr(value)
        return placeholder

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._names:
            out["ExpressionAttributeNames"] = dict(self._names)
        if self._values:
            out["ExpressionAttributeValues"] = dict(self._values)
        return out


class Cond:
    """A condition (or key condition); `&` and `|` combine them."""

    def __init__(self, render: Callable[[Placeholders], str]) -> None:
        self._render = render

    def render(self, names: Placeholders) -> str:
        return self._render(names)

    def __and__(self, other: Cond) -> Cond:
        return Cond(lambda n: f"{self.render(n)} AND {other.render(n)}")

    def __or__(self, other: Cond) -> Cond:
        return Cond(lambda n: f"({self.render(n)} OR {other.render(n)})")


def exists(attribute: str) -> Cond:
    return Cond(lambda n: f"attribute_exists({n.name(attribute)})")


def absent(attribute: str) -> Cond:
    return Cond(lambda n: f"attribute_not_exists({n.name(attribute)})")


def _compare(operator: str) -> Callable[[str, Any], Cond]:
    def build(attribute: str, value: Any) -> Cond:
        return Cond(lambda n: f"{n.name(attribute)} {operator} {n.value(value)}")

    return build


eq = _compare("=")
ne = _compare("<>")
lt = _compare("<")
gt = _compare(">")
le = _compare("<=")
ge = _compare(">=")


def begins_with(attribute: str, prefix: str) -> Cond:
    return Cond(lambda n: f"begins_with({n.name(attribute)}, {n.value(prefix)})")


def between(attribute: str, low: Any, high: Any) -> Cond:
    return Cond(lambda n: f"{n.name(attribute)} BETWEEN {n.value(low)} AND {n.value(high)}")


class Update:
    """SET / ADD / REMOVE clauses. `set(x=None)` removes `x` (absent beats NULL for sparse indexes)."""

    def __init__(self) -> None:
        self._set: dict[str, Any] = {}
        self._add: dict[str, int | Decimal] = {}
        self._remove: list[str] = []

    def set(self, **values: Any) -> Self:
        for attribute, value in values.items():
            if value is None:
                self.remove(attribute)
            else:
                self._set[attribute] = value
        return self

    def add(self, **numbers: int | Decimal) -> Self:
        self._add.update(numbers)
        return self

    def remove(self, *attributes: str) -> Self:
        self._remove += [a for a in attributes if a not in self._remove]
        return self

    def copy(self) -> Update:
        other = Update()
        other._set, other._add, other._remove = dict(self._set), dict(self._add), list(self._remove)
        return other

    @property
    def adds(self) -> bool:
        return bool(self._add)

    def __bool__(self) -> bool:
        return bool(self._set or self._add or self._remove)

    def render(self, names: Placeholders) -> str:
        clauses = []
        if self._set:
            clauses.append(
                "SET " + ", ".join(f"{names.name(a)} = {names.value(v)}" for a, v in self._set.items())
            )
        if self._add:
            clauses.append(
                "ADD " + ", ".join(f"{names.name(a)} {names.value(v)}" for a, v in self._add.items())
            )
        if self._remove:
            clauses.append("REMOVE " + ", ".join(names.name(a) for a in self._remove))
        return " ".join(clauses)
