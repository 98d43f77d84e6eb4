"""The stock rules, the same for a single adjustment and for each line of a bulk one: a quantity never
goes below zero, and an `expected_quantity` (compare-and-set) must be the stored quantity. Storage
applies them to what it has just read, inside its optimistic retry loop; nothing here touches the
table. And the order sizes are shown in."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from shelfwise.errors import InsufficientStock, NotFound, StaleQuantity
from shelfwise.inventory.models import Adjustment, StockChange

_SIZE_RANK = {s: i for i, s in enumerate(["XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL", "ONE"])}


def size_order(size: str) -> tuple[int, float, str]:
    """Apparel sizes in their natural order, then numeric sizes, then the rest."""
    if size in _SIZE_RANK:
        return (0, _SIZE_RANK[size], size)
    try:
        return (1, float(size), size)
    except ValueError:
        return (2, 0.0, size)


def check_expected(sku: str, size: str, quantity: int, expected: int | None) -> None:
    if expected is not None and quantity != expected:
        raise StaleQuantity(
            f"{sku}/{size} holds {quantity}, not the {expected} expected; nothing changed",
            sku=sku,
            size=size,
            quantity=quantity,
            expected_quantity=expected,
        )


def check(change: StockChange, quantity: int) -> None:
    """StaleQuantity or InsufficientStock when `change` cannot apply to the stored `quantity`."""
    check_expected(change.sku, change.size, quantity, change.expected_quantity)
    if quantity + change.delta < 0:
        raise InsufficientStock(
            f"only {quantity} in stock for {change.sku}/{change.size}; cannot remove {-change.delta}",
            sku=change.sku,
            size=change.size,
            quantity=quantity,
            delta=change.delta,
        )


def refusals(changes: list[StockChange], quantities: Mapping[tuple[str, str], int]) -> list[dict[str, Any]]:
    """The lines of a bulk adjustment that cannot apply to the stored `quantities` (a missing
    variant has none): `{index, code, quantity}` each (quantity: the stored one, None if missing)."""
    refused: list[dict[str, Any]] = []
    for index, change in enumerate(changes):
        quantity = quantities.get((change.sku, change.size))
        try:
            if quantity is None:
                raise NotFound(f"variant {change.sku}/{change.size} does not exist")
            check(change, quantity)
        except (NotFound, StaleQuantity, InsufficientStock) as exc:
            refused.append({"index": index, "code": exc.code, "quantity": quantity})
    return refused


def applied(
    change: StockChange, quantity: int, actor: str, at: str, batch_id: str | None = None
) -> Adjustment:
    """The record of `change` applied to the stored `quantity`."""
    return Adjustment(
        id=uuid.uuid4().hex,
        sku=change.sku,
        size=change.size,
        delta=change.delta,
        quantity_before=quantity,
        quantity_after=quantity + change.delta,
        reason=change.reason,
        note=change.note,
        actor=actor,
        at=at,
        batch_id=batch_id,
    )
