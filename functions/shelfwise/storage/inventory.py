"""Products, variants, stock adjustments and SKU counters in the single table (see storage.items)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

from shelfwise import clock
from shelfwise.errors import AlreadyExists, InsufficientStock, NotFound, StorageError, StorageUnavailable
from shelfwise.inventory.models import (
    Adjustment,
    Category,
    LowStockItem,
    Product,
    ProductIn,
    Variant,
    VariantIn,
)
from shelfwise.pagination import Page
from shelfwise.storage.codec import decode_cursor, encode_cursor
from shelfwise.storage.dynamo import (
    Action,
    Change,
    Check,
    ConditionFailed,
    Delete,
    Dynamo,
    Put,
    TransactionCancelled,
    backoff_seconds,
)
from shelfwise.storage.expressions import Update, absent, eq, exists
from shelfwise.storage.items import (
    CATALOG_INDEX,
    LOWSTOCK_INDEX,
    AdjustmentItem,
    Key,
    ProductItem,
    SkuCounterItem,
    VariantItem,
)

# Upper bound on items one catalog request reads while filtering by name (keeps a request bounded;
# the caller pages on with the cursor).
_MAX_ITEMS_READ_PER_PAGE = 2_000
_LIVE_PRODUCT = exists("pk") & absent("deleted_at")
# One transaction takes 100 actions: the product and up to 99 variants.
_TRANSACTION = 100


class InventoryRepository:
    def __init__(self, db: Dynamo, *, stock_retry_attempts: int = 25) -> None:
        self.db = db
        self.stock_retry_attempts = stock_retry_attempts

    # -- SKUs ---------------------------------------------------------------------------------------
    def allocate_sku_number(self, prefix: str) -> int:
        """Atomically take the next number of a prefix. A number once taken is never handed out again."""
        counter = self.db.update(
            SkuCounterItem.key(prefix),
            Update().add(**{SkuCounterItem.NEXT: 1}).set(type=SkuCounterItem.TYPE),
            returning=True,
        )
        assert counter is not None
        return int(counter[SkuCounterItem.NEXT])

    # -- products -----------------------------------------------------------------------------------
    def create_product(self, sku: str, data: ProductIn) -> Product:
        at = clock.now_iso()
        product = ProductItem.new(sku, data, at)
        variants = [
            VariantItem(sku, v.size, product.category, v.quantity, v.reorder_level, version=1, updated_at=at)
            for v in data.variants
        ]
        try:
            self.db.transact(
                [Put(product.item(), absent("pk")), *(Put(v.item(), absent("pk")) for v in variants)]
            )
        except TransactionCancelled as exc:
            if exc.failed(0):
                raise AlreadyExists(f"product {sku} already exists", sku=sku) from exc
            raise StorageError("a new product's variant slot was taken", sku=sku) from exc
        return product.product(variants)

    def import_products(self, products: list[tuple[str, ProductIn]]) -> None:
        """Bulk-write new products with their variants (BatchWriteItem, 25 items a call).

        For loading a catalog under freshly allocated SKUs: unlike create_product it is not
        conditional, so it must only be given SKUs that nothing else can hold.
        """
        at = clock.now_iso()
        items = []
        for sku, data in products:
            product = ProductItem.new(sku, data, at)
            items.append(product.item())
            items += [
                VariantItem(sku, v.size, product.category, v.quantity, v.reorder_level, 1, at).item()
                for v in data.variants
            ]
        self.db.batch_write(puts=items)

    def _read_product(self, sku: str) -> tuple[ProductItem | None, list[VariantItem]]:
        """The product item and its variants (one Query from PRODUCT on: never the history)."""
        product: ProductItem | None = None
        variants: list[VariantItem] = []
        for page in self.db.query_all(ProductItem.with_variants(sku), consistent=True):
            for item in page.items:
                if item["type"] == ProductItem.TYPE:
                    product = ProductItem.parse(item)
                elif item["type"] == VariantItem.TYPE:
                    variants.append(VariantItem.parse(item))
        return product, variants

    def get_product(self, sku: str) -> Product:
        product, variants = self._read_product(sku)
        if product is None or product.deleted_at:
            raise NotFound(f"product {sku} does not exist", sku=sku)
        return product.product(variants)

    def update_product(self, sku: str, changes: dict[str, object]) -> None:
        try:
            self.db.update(
                ProductItem.key(sku),
                Update().set(**changes, updated_at=clock.now_iso()),
                condition=_LIVE_PRODUCT,
            )
        except ConditionFailed as exc:
            raise NotFound(f"product {sku} does not exist", sku=sku) from exc

    def delete_product(self, sku: str) -> None:
        """Hide the product and take its variants out of every index, in one transaction; the items
        and the stock history are purged afterwards, outside the request (`purge_product`).

        Repeatable: deleting a product that is already hidden succeeds again until it is purged."""
        product, variants = self._read_product(sku)
        if product is None:
            raise NotFound(f"product {sku} does not exist", sku=sku)
        if product.deleted_at:
            return
        at = clock.now_iso()
        hide = Update().set(deleted_at=at, updated_at=at)
        actions: list[Action] = [
            Change(ProductItem.key(sku), hide.copy().remove("catalog_pk", "catalog_sk"), _LIVE_PRODUCT)
        ]
        actions += [
            Change(VariantItem.key(sku, v.size), hide.copy().remove(*VariantItem.INDEX_KEYS), exists("pk"))
            for v in variants
        ]
        try:
            for i in range(0, len(actions), _TRANSACTION):  # the product goes first
                self.db.transact(actions[i : i + _TRANSACTION])
        except TransactionCancelled as exc:
            if exc.failed(0) and (exc.item(0) or {}).get("deleted_at"):
                return  # a concurrent DELETE hid it first
            raise NotFound(f"product {sku} does not exist", sku=sku) from exc

    def purge_product(self, sku: str) -> int:
        """Delete a hidden product's whole partition: stock history and variants, the product last
        (a purge cut short is finished by the next one). Returns the items deleted; 0 when the
        product is not hidden (never purge a live product)."""
        product = self.db.get(ProductItem.key(sku), attributes=("deleted_at",))
        if not product or not product.get("deleted_at"):
            return 0
        removed = self.db.delete_found(ProductItem.partition(sku), spare=ProductItem.key(sku))
        self.db.delete(ProductItem.key(sku))  # last: a purge cut short is found and finished again
        return removed + 1

    def list_products(
        self, *, category: Category | None, name_contains: str | None, limit: int, cursor: str | None
    ) -> Page[Product]:
        """Products (with variants) in catalog order: category, then SKU.

        One Catalog-index Query serves a page; a product's variants follow it in the index.
        A name filter is applied here rather than as a FilterExpression because the variant items
        carry no name (a FilterExpression saves no read capacity anyway).
        """
        condition = ProductItem.in_catalog(category.value if category else None)
        start = (
            decode_cursor(cursor, names=ProductItem.CATALOG_KEYS, fixed={"catalog_pk": ProductItem.CATALOG})
            if cursor
            else None
        )
        if start and category is not None and not start["catalog_sk"].startswith(f"{category.value}#"):
            start = None  # a cursor from another filter: begin again rather than skip rows
        needle = name_contains.casefold() if name_contains else None

        products: list[Product] = []
        current: ProductItem | None = None
        variants: list[VariantItem] = []
        last_key: Key | None = None  # key of the last item consumed
        before_current: Key | None = None  # key of the item just before `current`
        read = 0

        def flush() -> None:
            if current is not None and (needle is None or needle in current.name.casefold()):
                products.append(current.product(variants))

        for page in self.db.query_all(
            condition, index=CATALOG_INDEX, limit=min(500, (limit + 1) * 6), start=start
        ):
            for item in page.items:
                if item["type"] == ProductItem.TYPE:
                    flush()
                    if len(products) >= limit:
                        # a full page: the next one starts at this product
                        return Page(items=products, next_cursor=encode_cursor(last_key) if last_key else None)
                    current, variants, before_current = ProductItem.parse(item), [], last_key
                elif current is not None and item["sku"] == current.sku:
                    variants.append(VariantItem.parse(item))
                last_key = {k: item[k] for k in ProductItem.CATALOG_KEYS}
                read += 1
            if read >= _MAX_ITEMS_READ_PER_PAGE and page.last_key:
                # Read budget spent while filtering: answer what matched so far; the next page
                # starts at the product being read (its variants may not all be here yet).
                resume = before_current or (start if current is None else None) or last_key
                return Page(items=products, next_cursor=encode_cursor(resume) if resume else None)
        flush()
        return Page(items=products, next_cursor=None)

    def catalog(self) -> Iterator[Product]:
        """Every listed product with its variants, in catalog order (for totals). A variant is only
        ever counted under its own product: one whose product is gone is left out."""
        current: ProductItem | None = None
        variants: list[VariantItem] = []
        for page in self.db.query_all(ProductItem.in_catalog(), index=CATALOG_INDEX):
            for item in page.items:
                if item["type"] == ProductItem.TYPE:
                    if current is not None:
                        yield current.product(variants)
                    current, variants = ProductItem.parse(item), []
                elif current is not None and item["sku"] == current.sku:
                    variants.append(VariantItem.parse(item))
        if current is not None:
            yield current.product(variants)

    # -- variants and stock -------------------------------------------------------------------------
    def _variant(self, sku: str, size: str) -> VariantItem | None:
        item = self.db.get(VariantItem.key(sku, size))
        variant = VariantItem.parse(item) if item else None
        return variant if variant is not None and not variant.deleted_at else None

    def put_variant(self, sku: str, category: str, size: str, data: VariantIn) -> tuple[Variant, bool]:
        """Create or replace a variant's stock and reorder level. Returns (variant, created)."""
        for attempt in range(self.stock_retry_attempts):
            existing = self._variant(sku, size)
            version = existing.version if existing else 0
            variant = VariantItem(
                sku, size, category, data.quantity, data.reorder_level, version + 1, clock.now_iso()
            )
            condition = eq("version", version) if existing else absent("pk")
            try:
                self.db.transact([Check(ProductItem.key(sku), _LIVE_PRODUCT), Put(variant.item(), condition)])
            except TransactionCancelled as exc:
                if exc.failed(0):
                    raise NotFound(f"product {sku} does not exist", sku=sku) from exc
                self.db.sleep(backoff_seconds(attempt, base=0.004, cap=0.1))  # lost a race: read again
                continue
            return variant.variant(), existing is None
        raise StorageUnavailable(
            "the variant kept changing while it was being written, retry", sku=sku, size=size
        )

    def delete_variant(self, sku: str, size: str) -> None:
        try:
            self.db.transact([Delete(VariantItem.key(sku, size), exists("pk") & absent("deleted_at"))])
        except TransactionCancelled as exc:
            raise NotFound(f"variant {sku}/{size} does not exist", sku=sku, size=size) from exc

    def adjust_stock(self, sku: str, size: str, delta: int, reason: str, actor: str) -> Adjustment:
        """Add `delta` to a variant's quantity, atomically with its audit record.

        Optimistic concurrency: read the variant, write the new quantity (and the low-stock index
        keys that follow from it) on the condition that the version is unchanged, retry on a lost
        race. A decrement below zero is refused against the freshest quantity and writes nothing.
        """
        for attempt in range(self.stock_retry_attempts):
            variant = self._variant(sku, size)
            if variant is None:
                raise NotFound(f"variant {sku}/{size} does not exist", sku=sku, size=size)
            after = variant.quantity + delta
            if after < 0:
                raise InsufficientStock(
                    f"only {variant.quantity} in stock for {sku}/{size}; cannot remove {-delta}",
                    sku=sku,
                    size=size,
                    quantity=variant.quantity,
                    delta=delta,
                )
            at = clock.now_iso()
            adjustment = Adjustment(
                id=uuid.uuid4().hex,
                sku=sku,
                size=size,
                delta=delta,
                quantity_before=variant.quantity,
                quantity_after=after,
                reason=reason,
                actor=actor,
                at=at,
            )
            changed = replace(variant, quantity=after, version=variant.version + 1, updated_at=at)
            update = Update().set(
                quantity=after, version=changed.version, updated_at=at, **changed.lowstock_keys()
            )
            try:
                self.db.transact(
                    [
                        Change(
                            VariantItem.key(sku, size),
                            update,
                            eq("version", variant.version) & absent("deleted_at"),
                        ),
                        Put(AdjustmentItem.item(adjustment), absent("pk")),
                    ]
                )
            except TransactionCancelled:
                self.db.sleep(backoff_seconds(attempt, base=0.004, cap=0.1))  # lost a race: read again
                continue
            return adjustment
        raise StorageUnavailable("too many concurrent changes to this variant, retry", sku=sku, size=size)

    def list_adjustments(self, sku: str, size: str, limit: int) -> list[Adjustment]:
        page = self.db.query(
            AdjustmentItem.of_variant(sku, size),
            forward=False,
            limit=limit,
        )
        return [AdjustmentItem.parse(item) for item in page.items]

    def low_stock(self, *, limit: int, cursor: str | None) -> Page[LowStockItem]:
        """Variants at or below their reorder level (a Query on the sparse LowStock index), with
        their product's name; a variant whose product is gone is left out."""
        start = (
            decode_cursor(
                cursor, names=VariantItem.LOWSTOCK_KEYS, fixed={"lowstock_pk": VariantItem.LOWSTOCK}
            )
            if cursor
            else None
        )
        page = self.db.query(
            eq("lowstock_pk", VariantItem.LOWSTOCK), index=LOWSTOCK_INDEX, limit=limit, start=start
        )
        rows = [VariantItem.parse(item) for item in page.items]
        found = self.db.batch_get(
            [ProductItem.key(sku) for sku in {r.sku for r in rows}], attributes=("sku", "name", "deleted_at")
        )
        names = {p["sku"]: p["name"] for p in found if not p.get("deleted_at")}
        items = [
            LowStockItem(
                sku=r.sku,
                size=r.size,
                quantity=r.quantity,
                reorder_level=r.reorder_level,
                name=names[r.sku],
                category=Category(r.category),
                shortfall=max(0, r.reorder_level - r.quantity),
            )
            for r in rows
            if r.sku in names
        ]
        return Page(items=items, next_cursor=encode_cursor(page.last_key) if page.last_key else None)
