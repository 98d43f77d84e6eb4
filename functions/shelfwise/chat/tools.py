"""The assistant's inventory tools: read-only, each result stamped with the time it was read.

A turn runs them through its own `TurnTools` (`InventoryTools.for_turn`), which bounds what one turn
may spend: at most so many calls per round and per turn (the calls beyond are not run, and are
answered with an error the model can read), an identical call (same tool, same arguments) answered
from its first result, and a whole-catalog tool computed at most once, whatever its arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shelfwise import clock
from shelfwise.errors import DomainError
from shelfwise.inventory.models import Category, Product
from shelfwise.inventory.service import InventoryService

MAX_RESULTS = 10


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


TOOLS: list[dict[str, Any]] = [
    _function(
        "search_products",
        "Find products by name words (e.g. 'tee', 'chelsea boot'), an exact SKU like TE-0001, or a "
        "whole category (empty query), with each size's stock and total_stock; `count`, `more`.",
        {
            "query": {"type": "string", "description": "name words or a SKU; empty with a category"},
            "category": {"type": "string", "enum": [c.value for c in Category]},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
        },
        ["query"],
    ),
    _function(
        "get_product",
        "One product by SKU with every size: quantity in stock and reorder level.",
        {"sku": {"type": "string", "description": "e.g. TE-0001"}},
        ["sku"],
    ),
    _function(
        "list_low_stock",
        "Variants at or below their reorder level (quantity 0: out of stock), with the shortfall; "
        "`count`, `more`.",
        {"limit": {"type": "integer", "minimum": 1, "maximum": 50}},
        [],
    ),
    _function(
        "get_inventory_value",
        "Total units and value of the stock on hand (price x quantity), overall and by category.",
        {},
        [],
    ),
]

TOOL_NAMES = frozenset(t["function"]["name"] for t in TOOLS)
# Tools that read the whole catalog and take no argument that changes their answer: once per turn.
WHOLE_CATALOG = frozenset({"get_inventory_value"})
LIMIT_ERROR = "tool_call_limit"


def _product(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "color": product.color,
        "category": product.category.value,
        "price": float(product.price),
        "coming_soon": product.coming_soon,
        "total_stock": product.stock,
        "variants": [
            {"size": v.size, "quantity": v.quantity, "reorder_level": v.reorder_level}
            for v in product.variants
        ],
    }


class InventoryTools:
    """Runs a tool call against the inventory service. Errors become results the model can read."""

    def __init__(self, inventory: InventoryService) -> None:
        self.inventory = inventory
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "search_products": self._search,
            "get_product": self._get,
            "list_low_stock": self._low_stock,
            "get_inventory_value": self._value,
        }

    def for_turn(self, *, per_round: int, per_turn: int) -> TurnTools:
        """A runner for one turn's calls, within these limits (see TurnTools)."""
        return TurnTools(self, per_round=per_round, per_turn=per_turn)

    def run(self, name: str, arguments: str) -> tuple[dict[str, Any], bool]:
        """(result, ok). The result always carries `as_of`; a failure carries `error` instead of data."""
        as_of = clock.now_iso()
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            handler = self._handlers.get(name)
            if handler is None:
                return {"as_of": as_of, "error": f"unknown tool {name!r}"}, False
            return {"as_of": as_of, **handler(args)}, True
        except (ValueError, TypeError, KeyError) as exc:
            return {"as_of": as_of, "error": f"bad arguments: {exc}"}, False
        except DomainError as exc:
            return {"as_of": as_of, "error": exc.message}, False

    def _search(self, args: dict[str, Any]) -> dict[str, Any]:
        query = str(args.get("query") or "").strip()
        category = Category(args["category"]) if args.get("category") else None
        limit = max(1, min(int(args.get("limit") or MAX_RESULTS), MAX_RESULTS))
        page = self.inventory.list_products(category=category, q=query, limit=limit, cursor=None)
        if not page.items and " " in query:
            # "black tee": try the words one by one, the catalogue matches name substrings
            for word in sorted(query.split(), key=len, reverse=True):
                page = self.inventory.list_products(category=category, q=word, limit=limit, cursor=None)
                if page.items:
                    break
        products = [_product(p) for p in page.items]
        return {"products": products, "count": len(products), "more": page.next_cursor is not None}

    def _get(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"product": _product(self.inventory.get_product(str(args["sku"])))}

    def _low_stock(self, args: dict[str, Any]) -> dict[str, Any]:
        limit = max(1, min(int(args.get("limit") or 20), 50))
        page = self.inventory.low_stock(limit=limit, cursor=None)
        return {
            "items": [i.model_dump(mode="json") for i in page.items],
            "count": len(page.items),
            "more": page.next_cursor is not None,
        }

    def _value(self, _: dict[str, Any]) -> dict[str, Any]:
        value = self.inventory.inventory_value().model_dump(mode="json")
        value.pop("as_of", None)
        return value


@dataclass(frozen=True)
class ToolAnswer:
    """What one call of a turn was answered: its result, whether it is one, and how it was come by."""

    result: dict[str, Any]
    ok: bool
    refused: bool = False  # over a limit: not run
    reused: bool = False  # the result of an earlier identical call of this turn


def call_key(name: str, arguments: str) -> str:
    """What makes two calls the same: the tool, and its arguments as canonical JSON (a whole-catalog
    tool's arguments change nothing; arguments that are not JSON are compared as sent)."""
    if name in WHOLE_CATALOG:
        return name
    try:
        canonical = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments
    return f"{name} {canonical}"


@dataclass
class TurnTools:
    """One turn's tool calls: at most `per_round` are answered per round (`start_round` begins one)
    and `per_turn` in all, whether run or answered from an earlier result; the calls beyond are
    refused without being run (a refused call counts against neither limit). Within the limits, an
    identical call is answered from its first result (a failure too: storage has already retried it)
    without touching storage again. One turn's calls run one at a time."""

    tools: InventoryTools
    per_round: int
    per_turn: int
    calls: int = 0  # answered, this turn
    round_calls: int = 0  # answered, this round
    _answers: dict[str, tuple[dict[str, Any], bool]] = field(default_factory=dict)

    @property
    def left(self) -> int:
        """Calls the turn may still make."""
        return max(0, self.per_turn - self.calls)

    def start_round(self) -> None:
        self.round_calls = 0

    def run(self, name: str, arguments: str) -> ToolAnswer:
        if self.calls >= self.per_turn:
            return self._refused(f"not run: {self.per_turn} tool calls per turn at most; answer now")
        if self.round_calls >= self.per_round:
            return self._refused(
                f"not run: {self.per_round} tool calls per round at most; ask again in a later round "
                "if one is offered, or answer"
            )
        self.calls += 1
        self.round_calls += 1
        key = call_key(name, arguments)
        if key in self._answers:
            result, ok = self._answers[key]
            return ToolAnswer(result, ok, reused=True)
        result, ok = self._answers[key] = self.tools.run(name, arguments)
        return ToolAnswer(result, ok)

    @staticmethod
    def _refused(message: str) -> ToolAnswer:
        # nothing was read, so no `as_of`; short, so that a model asking for dozens of calls at once
        # is not answered with more tokens than the calls it asked for
        return ToolAnswer({"error": LIMIT_ERROR, "message": message}, False, refused=True)
