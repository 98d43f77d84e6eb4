"""Inventory routes: parse, call one service method, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from shelfwise.inventory.models import (
    Adjustment,
    AdjustmentIn,
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
from shelfwise.web.deps import AdminDep, CallerDep, InventoryDep

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


@router.post("/products", status_code=status.HTTP_201_CREATED)
def create_product(body: ProductIn, inventory: InventoryDep, caller: AdminDep, response: Response) -> Product:
    product = inventory.create_product(body, actor=caller.username)
    response.headers["Location"] = f"/products/{product.sku}"
    return product


@router.get("/products/{sku}")
def get_product(sku: str, inventory: InventoryDep, _: CallerDep) -> Product:
    return inventory.get_product(sku)


@router.patch("/products/{sku}")
def update_product(sku: str, body: ProductPatch, inventory: InventoryDep, caller: AdminDep) -> Product:
    return inventory.update_product(sku, body, actor=caller.username)


@router.delete("/products/{sku}", status_code=status.HTTP_204_NO_CONTENT)
def delete_product(sku: str, inventory: InventoryDep, caller: AdminDep) -> None:
    inventory.delete_product(sku, actor=caller.username)


@router.put("/products/{sku}/variants/{size}")
def put_variant(
    sku: str, size: str, body: VariantIn, inventory: InventoryDep, caller: AdminDep, response: Response
) -> Variant:
    variant, created = inventory.put_variant(sku, size, body, actor=caller.username)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return variant


@router.delete("/products/{sku}/variants/{size}", status_code=status.HTTP_204_NO_CONTENT)
def delete_variant(sku: str, size: str, inventory: InventoryDep, caller: AdminDep) -> None:
    inventory.delete_variant(sku, size, actor=caller.username)


@router.post("/products/{sku}/variants/{size}/adjustments", status_code=status.HTTP_201_CREATED)
def adjust_stock(
    sku: str, size: str, body: AdjustmentIn, inventory: InventoryDep, caller: AdminDep
) -> Adjustment:
    return inventory.adjust_stock(sku, size, delta=body.delta, reason=body.reason, actor=caller.username)


@router.get("/products/{sku}/variants/{size}/adjustments")
def list_adjustments(
    sku: str, size: str, inventory: InventoryDep, _: CallerDep, limit: Limit = 20
) -> dict[str, list[Adjustment]]:
    """The newest stock adjustments of a variant (the audit trail)."""
    return {"items": inventory.adjustments(sku, size, limit=limit)}


@router.get("/inventory/value")
def inventory_value(inventory: InventoryDep, _: CallerDep) -> InventoryValue:
    return inventory.inventory_value()


@router.get("/inventory/low-stock")
def low_stock(
    inventory: InventoryDep, _: CallerDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[LowStockItem]:
    return inventory.low_stock(limit=limit, cursor=cursor)
