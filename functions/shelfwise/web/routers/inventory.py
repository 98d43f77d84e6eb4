"""Inventory routes: parse, call one service method, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from shelfwise.idempotency import IdempotentRequest
from shelfwise.inventory.models import (
    Adjustment,
    AdjustmentIn,
    BulkAdjustment,
    BulkAdjustmentIn,
    Category,
    InventoryValue,
    LowStockItem,
    Product,
    ProductIn,
    ProductPatch,
    Variant,
    VariantIn,
)
from shelfwise.pagination import Page
from shelfwise.web.deps import AdminDep, CallerDep, IdempotencyDep, InventoryDep

router = APIRouter(tags=["inventory"])

Limit = Annotated[int, Query(ge=1, le=100, description="page size (1-100)")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]


@router.get("/products")
def list_products(
    inventory: InventoryDep,
    _: CallerDep,
    category: Category | None = None,
    q: Annotated[str | None, Query(max_length=120, description="exact SKU, or part of the name")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[Product]:
    return inventory.list_products(category=category, q=q, limit=limit, cursor=cursor)


REPLAYED = "Idempotent-Replayed"


def _replayed(once: IdempotentRequest | None, response: Response) -> None:
    if once is not None and once.replayed:
        response.headers[REPLAYED] = "true"


@router.post("/products", status_code=status.HTTP_201_CREATED)
def create_product(
    body: ProductIn, inventory: InventoryDep, caller: AdminDep, once: IdempotencyDep, response: Response
) -> Product:
    product = inventory.create_product(body, actor=caller.username, once=once)
    response.headers["Location"] = f"/products/{product.sku}"
    _replayed(once, response)
    return product


@router.get("/products/{sku}")
def get_product(sku: str, inventory: InventoryDep, _: CallerDep) -> Product:
    return inventory.get_product(sku)


@router.patch("/products/{sku}")
def update_product(
    sku: str,
    body: ProductPatch,
    inventory: InventoryDep,
    caller: AdminDep,
    once: IdempotencyDep,
    response: Response,
) -> Product:
    product = inventory.update_product(sku, body, actor=caller.username, once=once)
    _replayed(once, response)
    return product


@router.delete("/products/{sku}", status_code=status.HTTP_204_NO_CONTENT)
def delete_product(
    sku: str, inventory: InventoryDep, caller: AdminDep, once: IdempotencyDep, response: Response
) -> None:
    inventory.delete_product(sku, actor=caller.username, once=once)
    _replayed(once, response)


@router.put("/products/{sku}/variants/{size}")
def put_variant(
    sku: str,
    size: str,
    body: VariantIn,
    inventory: InventoryDep,
    caller: AdminDep,
    once: IdempotencyDep,
    response: Response,
) -> Variant:
    variant, created = inventory.put_variant(sku, size, body, actor=caller.username, once=once)
    if created:
        response.status_code = status.HTTP_201_CREATED
    _replayed(once, response)
    return variant


@router.delete("/products/{sku}/variants/{size}", status_code=status.HTTP_204_NO_CONTENT)
def delete_variant(
    sku: str, size: str, inventory: InventoryDep, caller: AdminDep, once: IdempotencyDep, response: Response
) -> None:
    inventory.delete_variant(sku, size, actor=caller.username, once=once)
    _replayed(once, response)


@router.post("/products/{sku}/variants/{size}/adjustments", status_code=status.HTTP_201_CREATED)
def adjust_stock(
    sku: str,
    size: str,
    body: AdjustmentIn,
    inventory: InventoryDep,
    caller: AdminDep,
    once: IdempotencyDep,
    response: Response,
) -> Adjustment:
    adjustment = inventory.adjust_stock(
        sku,
        size,
        delta=body.delta,
        reason=body.reason,
        note=body.note,
        expected_quantity=body.expected_quantity,
        actor=caller.username,
        once=once,
    )
    _replayed(once, response)
    return adjustment


@router.post("/inventory/adjustments", status_code=status.HTTP_201_CREATED)
def adjust_many(
    body: BulkAdjustmentIn,
    inventory: InventoryDep,
    caller: AdminDep,
    once: IdempotencyDep,
    response: Response,
) -> BulkAdjustment:
    """Up to 99 lines (receiving a shipment, a cycle count), applied all together or not at all."""
    batch = inventory.adjust_many(body, actor=caller.username, once=once)
    _replayed(once, response)
    return batch


@router.get("/products/{sku}/variants/{size}/adjustments")
def list_adjustments(
    sku: str, size: str, inventory: InventoryDep, _: CallerDep, limit: Limit = 20, cursor: Cursor = None
) -> Page[Adjustment]:
    """A variant's stock adjustments, newest first (the audit trail)."""
    return inventory.adjustment_page(sku, size, limit=limit, cursor=cursor)


@router.get("/inventory/value")
def inventory_value(inventory: InventoryDep, _: CallerDep) -> InventoryValue:
    return inventory.inventory_value()


@router.get("/inventory/low-stock")
def low_stock(
    inventory: InventoryDep, _: CallerDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[LowStockItem]:
    return inventory.low_stock(limit=limit, cursor=cursor)
