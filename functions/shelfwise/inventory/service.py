"""Inventory logic: SKUs, validation beyond shape, stock rules, totals. Knows nothing of HTTP."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from shelfwise import clock
from shelfwise.errors import (
    AlreadyExists,
    DomainError,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidInput,
    LinesRefused,
    NotFound,
    StaleQuantity,
    StorageUnavailable,
)
from shelfwise.idempotency import IdempotentRequest
from shelfwise.inventory.models import (
    SIZE_PATTERN,
    SKU_PREFIX,
    Adjustment,
    AdjustmentReason,
    BulkAdjustment,
    BulkAdjustmentIn,
    Category,
    CategoryValue,
    InventoryValue,
    LowStockItem,
    Product,
    ProductIn,
    ProductPatch,
    StockChange,
    Variant,
    VariantIn,
    VariantWrite,
    looks_like_sku,
)
from shelfwise.observability import logger, metrics
from shelfwise.pagination import Page
from shelfwise.storage.inventory import InventoryRepository
from shelfwise.storage.writes import Claim, KeyTaken

CURRENCY = "USD"


def format_sku(prefix: str, number: int) -> str:
    return f"{prefix}-{number:04d}"


T = TypeVar("T")


@cache
def _json(model: type[BaseModel] | None) -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    """How an answer is stored under an Idempotency-Key, and read back."""
    if model is None:
        return (lambda _: "null"), (lambda _: None)
    adapter = TypeAdapter(model)
    return (lambda value: adapter.dump_json(value).decode()), adapter.validate_json


class InventoryService:
    def __init__(self, repo: InventoryRepository) -> None:
        self.repo = repo

    def _once(
        self,
        once: IdempotentRequest | None,
        answer: type[BaseModel] | None,
        write: Callable[[Claim | None], T],
    ) -> T:
        """Run a write at most once per Idempotency-Key. The record of its answer is one more action
        of the write's own transaction, so a retry racing the first finds it and answers the same
        (`once.replayed`); another body under the key is refused. The key is not read first: a repeat
        is found by the transaction's condition, or, when the write refuses before it gets there
        (the stock has changed since), by reading the key then."""
        if once is None:
            return write(None)
        encode, decode = _json(answer)
        try:
            return write(self.repo.records.claim(once, encode))
        except KeyTaken as taken:
            prior = taken.record
        except DomainError:
            found = self.repo.records.find(once)
            if found is None:
                raise
            prior = found
        if prior.fingerprint != once.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for another request in the last 24 hours; send a new key"
            )
        once.replayed = True
        metrics.add_metric(name="IdempotentReplays", unit="Count", value=1)
        result: T = decode(prior.result)
        return result

    # -- products -----------------------------------------------------------------------------------
    def create_product(
        self, data: ProductIn, *, actor: str, once: IdempotentRequest | None = None
    ) -> Product:
        return self._once(once, Product, lambda claim: self._create(data, actor, claim))

    def _create(self, data: ProductIn, actor: str, claim: Claim | None) -> Product:
        prefix = SKU_PREFIX[data.category]
        for _ in range(3):
            sku = format_sku(prefix, self.repo.allocate_sku_number(prefix))
            try:
                product = self.repo.create_product(sku, data, claim)
            except AlreadyExists:
                # Only possible if products were written with SKUs the counter never handed out
                # (an import); the counter has moved on, so take the next number.
                logger.warning("sku already taken, allocating another", extra={"sku": sku})
                continue
            logger.info("product created", extra={"sku": sku, "actor": actor})
            metrics.add_metric(name="ProductsCreated", unit="Count", value=1)
            return product
        raise StorageUnavailable("could not allocate a free SKU, retry", category=data.category.value)

    def import_products(self, products: list[ProductIn], *, actor: str) -> list[str]:
        """Load many new products at once (a catalog import): SKUs are allocated atomically as for
        create_product, then everything is batch-written. Returns the SKUs, in input order."""
        skus = [
            format_sku(SKU_PREFIX[p.category], self.repo.allocate_sku_number(SKU_PREFIX[p.category]))
            for p in products
        ]
        self.repo.import_products(list(zip(skus, products, strict=True)))
        logger.info("products imported", extra={"count": len(skus), "actor": actor})
        metrics.add_metric(name="ProductsCreated", unit="Count", value=len(skus))
        return skus

    def get_product(self, sku: str) -> Product:
        return self.repo.get_product(_normalise_sku(sku))

    def list_products(
        self, *, category: Category | None, q: str | None, limit: int, cursor: str | None
    ) -> Page[Product]:
        query = (q or "").strip()
        if query and looks_like_sku(query):
            # An exact SKU lookup: one product or none, never a page.
            try:
                product = self.repo.get_product(_normalise_sku(query))
            except NotFound:
                return Page(items=[], next_cursor=None)
            if category is not None and product.category != category:
                return Page(items=[], next_cursor=None)
            return Page(items=[product], next_cursor=None)
        return self.repo.list_products(
            category=category, name_contains=query or None, limit=limit, cursor=cursor
        )

    def update_product(
        self, sku: str, patch: ProductPatch, *, actor: str, once: IdempotentRequest | None = None
    ) -> Product:
        sku = _normalise_sku(sku)
        changes = patch.model_dump(exclude_unset=True)
        for field in ("name", "color", "price", "coming_soon"):
            if field in changes and changes[field] is None:
                raise InvalidInput(f"{field} cannot be removed", field=field)
        if not changes:
            return self.repo.get_product(sku)
        product = self._once(once, Product, lambda claim: self.repo.update_product(sku, changes, claim))
        logger.info("product updated", extra={"sku": sku, "fields": sorted(changes), "actor": actor})
        return product

    def delete_product(self, sku: str, *, actor: str, once: IdempotentRequest | None = None) -> None:
        """Hide the product and its variants at once (every listing and total); the stock history is
        purged afterwards, off the request path (`purge_product`, run from the table's stream)."""
        sku = _normalise_sku(sku)
        self._once(once, None, lambda claim: self.repo.delete_product(sku, claim))
        logger.info("product deleted", extra={"sku": sku, "actor": actor})

    def purge_product(self, sku: str) -> int:
        """Remove a deleted product's items and stock history for good; 0 for a product that is not
        deleted (a live product is never purged). Returns the items removed."""
        removed = self.repo.purge_product(sku)
        if removed:
            metrics.add_metric(name="ProductsPurged", unit="Count", value=1)
            logger.info("product purged", extra={"sku": sku, "items": removed})
        return removed

    # -- variants and stock -------------------------------------------------------------------------
    def put_variant(
        self, sku: str, size: str, data: VariantIn, *, actor: str, once: IdempotentRequest | None = None
    ) -> tuple[Variant, bool]:
        sku = _normalise_sku(sku)
        size = _normalise_size(size)

        def write(claim: Claim | None) -> VariantWrite:
            category = self.repo.get_product(sku).category.value
            return self.repo.put_variant(sku, category, size, data, claim)

        written = self._once(once, VariantWrite, write)
        variant, created = written.variant, written.created
        logger.info(
            "variant written",
            extra={
                "sku": sku,
                "size": size,
                "quantity": data.quantity,
                "new_variant": created,
                "actor": actor,
            },
        )
        return variant, created

    def delete_variant(
        self, sku: str, size: str, *, actor: str, once: IdempotentRequest | None = None
    ) -> None:
        sku, size = _normalise_sku(sku), _normalise_size(size)
        self._once(once, None, lambda claim: self.repo.delete_variant(sku, size, claim))
        logger.info("variant deleted", extra={"sku": sku, "size": size, "actor": actor})

    def adjust_stock(
        self,
        sku: str,
        size: str,
        *,
        delta: int,
        reason: AdjustmentReason | str,
        actor: str,
        note: str | None = None,
        expected_quantity: int | None = None,
        once: IdempotentRequest | None = None,
    ) -> Adjustment:
        sku, size = _normalise_sku(sku), _normalise_size(size)
        change = StockChange(sku, size, delta, AdjustmentReason(reason), note, expected_quantity)
        try:
            adjustment = self._once(
                once, Adjustment, lambda claim: self.repo.adjust_stock(change, actor, claim)
            )
        except (InsufficientStock, StaleQuantity):
            metrics.add_metric(name="StockAdjustmentsRefused", unit="Count", value=1)
            raise
        metrics.add_metric(name="StockAdjustments", unit="Count", value=1)
        logger.info("stock adjusted", extra=_audit_fields(adjustment))
        return adjustment

    def adjust_many(
        self, request: BulkAdjustmentIn, *, actor: str, once: IdempotentRequest | None = None
    ) -> BulkAdjustment:
        """Every line or none (receiving a shipment, a cycle count): see InventoryRepository.adjust_many."""
        changes = [
            StockChange(line.sku, line.size, line.delta, request.reason, request.note, line.expected_quantity)
            for line in request.lines
        ]
        try:
            batch = self._once(
                once, BulkAdjustment, lambda claim: self.repo.adjust_many(changes, actor, claim)
            )
        except LinesRefused:
            metrics.add_metric(name="StockAdjustmentsRefused", unit="Count", value=len(changes))
            raise
        metrics.add_metric(name="StockAdjustments", unit="Count", value=len(batch.lines))
        logger.info("stock adjusted in bulk", extra={"batch_id": batch.batch_id, "lines": len(batch.lines)})
        return batch

    def file_batch(self, result: str) -> int:
        """File a bulk adjustment's lines from its stored answer (the stream's repair path)."""
        return self.repo.file_batch(BulkAdjustment.model_validate_json(result))

    def adjustments(self, sku: str, size: str, *, limit: int) -> list[Adjustment]:
        return self.adjustment_page(sku, size, limit=limit, cursor=None).items

    def adjustment_page(self, sku: str, size: str, *, limit: int, cursor: str | None) -> Page[Adjustment]:
        """A variant's stock history, newest first."""
        return self.repo.list_adjustments(_normalise_sku(sku), _normalise_size(size), limit, cursor)

    # -- reports ------------------------------------------------------------------------------------
    def inventory_value(self) -> InventoryValue:
        """Sum of price x quantity over every variant, in total and by category."""
        units: dict[Category, int] = defaultdict(int)
        value: dict[Category, Decimal] = defaultdict(Decimal)
        products = variants = 0
        for product in self.repo.catalog():
            category = product.category
            products += 1
            for variant in product.variants:
                variants += 1
                units[category] += variant.quantity
                value[category] += product.price * variant.quantity
        by_category = [
            CategoryValue(category=c, units=units[c], value=value[c].quantize(Decimal("0.01")))
            for c in Category
            if c in units
        ]
        return InventoryValue(
            currency=CURRENCY,
            units=sum(units.values()),
            value=sum(value.values(), Decimal(0)).quantize(Decimal("0.01")),
            products=products,
            variants=variants,
            by_category=by_category,
            as_of=clock.now_iso(),
        )

    def low_stock(self, *, limit: int, cursor: str | None) -> Page[LowStockItem]:
        return self.repo.low_stock(limit=limit, cursor=cursor)


def _normalise_sku(sku: str) -> str:
    sku = sku.strip().upper()
    if not looks_like_sku(sku):
        raise NotFound(f"product {sku} does not exist", sku=sku)
    return sku


def _normalise_size(size: str) -> str:
    size = size.strip().upper()
    if not re.match(SIZE_PATTERN, size):
        raise InvalidInput("size must be 1-10 letters, digits, '.' or '-'", field="size")
    return size


def _audit_fields(adjustment: Adjustment) -> dict[str, Any]:
    """What a log line says of an adjustment: not its free-text note."""
    return adjustment.model_dump(exclude={"note"}, exclude_none=True)
