"""Products, variants, stock adjustments and SKU counters in the single table (see storage.items)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal

from shelfwise import clock
from shelfwise.errors import (
    AlreadyExists,
    InvalidInput,
    LinesRefused,
    NotFound,
    StorageError,
    StorageUnavailable,
)
from shelfwise.inventory import rules
from shelfwise.inventory.models import (
    Adjustment,
    BulkAdjustment,
    Category,
    LowStockItem,
    Product,
    ProductIn,
    StockChange,
    Variant,
    VariantIn,
    VariantWrite,
)
from shelfwise.observability import logger
from shelfwise.pagination import Page, decode_cursor
from shelfwise.storage.dynamo import (
    Action,
    Change,
    Check,
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
from shelfwise.storage.writes import Claim, WriteRecords

# Upper bound on items one catalog request reads while filtering by name (keeps a request bounded;
# the caller pages on with the cursor).
_MAX_ITEMS_READ_PER_PAGE = 2_000
_LIVE_PRODUCT = exists("pk") & absent("deleted_at")
# One transaction takes 100 actions: the product and up to 99 variants.
_TRANSACTION = 100


class InventoryRepository:
    def __init__(self, db: Dynamo, *, stock_retry_attempts: int = 25) -> None:
        self.db = db
        self.records = WriteRecords(db)
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
    def create_product(self, sku: str, data: ProductIn, claim: Claim | None = None) -> Product:
        at = clock.now_iso()
        product = ProductItem.new(sku, data, at)
        variants = VariantItem.new(sku, data, at)
        result = product.whole(variants)
        actions = [Put(product.item(), absent("pk")), *(Put(v.item(), absent("pk")) for v in variants)]
        try:
            self._transact(actions, claim, result)
        except TransactionCancelled as exc:
            if exc.failed(0):
                raise AlreadyExists(f"product {sku} already exists", sku=sku) from exc
            raise StorageError("a new product's variant slot was taken", sku=sku) from exc
        return result

    def _transact(
        self, actions: list[Action], claim: Claim | None, result: object, *, batch: bool = False
    ) -> None:
        """Run a write's transaction, with the record of its answer when it came with a key; a record
        already under the key raises KeyTaken (checked before any other reason it was cancelled)."""
        if claim is None:
            self.db.transact(actions)
            return
        try:
            self.db.transact([*actions, claim.action(result, batch=batch)])
        except TransactionCancelled as exc:
            claim.taken(exc, len(actions))
            raise

    def _until_won[T](self, attempt: Callable[[], T], busy: str, **details: Any) -> T:
        """Optimistic concurrency: `attempt` reads, checks and writes on the condition that nothing
        changed since the read; a lost race (TransactionCancelled) reads again after a jittered pause,
        and one lost too often is StorageUnavailable (`busy`)."""
        for n in range(self.stock_retry_attempts):
            try:
                return attempt()
            except TransactionCancelled:
                self.db.sleep(backoff_seconds(n, base=0.004, cap=0.1))
        raise StorageUnavailable(busy, **details)

    def import_products(self, products: list[tuple[str, ProductIn]]) -> None:
        """Bulk-write new products with their variants (BatchWriteItem, 25 items a call).

        For loading a catalog under freshly allocated SKUs: unlike create_product it is not
        conditional, so it must only be given SKUs that nothing else can hold.
        """
        at = clock.now_iso()
        items = []
        for sku, data in products:
            items.append(ProductItem.new(sku, data, at).item())
            items += [v.item() for v in VariantItem.new(sku, data, at)]
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
        return product.whole(variants)

    def update_product(self, sku: str, changes: dict[str, object], claim: Claim | None = None) -> Product:
        """Change a product's fields; answers the product as it is afterwards. Optimistic: the change
        is written on the condition that the product is as it was read (`updated_at`)."""

        def attempt() -> Product:
            product, variants = self._read_product(sku)
            if product is None or product.deleted_at:
                raise NotFound(f"product {sku} does not exist", sku=sku)
            at = clock.now_iso()
            changed = product.product.model_copy(update={**changes, "updated_at": at})
            result = ProductItem(changed).whole(variants)
            condition = _LIVE_PRODUCT & eq("updated_at", product.product.updated_at)
            change = Change(ProductItem.key(sku), Update().set(**changes, updated_at=at), condition)
            self._transact([change], claim, result)
            return result

        return self._until_won(
            attempt, "the product kept changing while it was being written, retry", sku=sku
        )

    def delete_product(self, sku: str, claim: Claim | None = None) -> None:
        """Hide the product and take its variants out of every index, in one transaction; the items
        and the stock history are purged afterwards, outside the request (`purge_product`).

        Repeatable: deleting a product that is already hidden succeeds again until it is purged. A
        variant deleted or added meanwhile makes it read the product again."""

        def attempt() -> None:
            product, variants = self._read_product(sku)
            if product is None:
                raise NotFound(f"product {sku} does not exist", sku=sku)
            if product.deleted_at:  # already hidden: nothing to write (nor to record)
                if claim is not None:
                    claim.raise_if_taken()
                return
            at = clock.now_iso()
            hide = Update().set(deleted_at=at, updated_at=at)
            actions: list[Action] = [
                Change(ProductItem.key(sku), hide.copy().remove("catalog_pk", "catalog_sk"), _LIVE_PRODUCT)
            ]
            actions += [
                Change(
                    VariantItem.key(sku, v.variant.size),
                    hide.copy().remove(*VariantItem.INDEX_KEYS),
                    exists("pk"),
                )
                for v in variants
            ]
            try:  # the product goes first, with the key's record
                self._transact(actions[: _TRANSACTION - 1], claim, None)
                for i in range(_TRANSACTION - 1, len(actions), _TRANSACTION):
                    self.db.transact(actions[i : i + _TRANSACTION])
            except TransactionCancelled as exc:
                if exc.failed(0) and not (exc.item(0) or {}).get("deleted_at"):
                    raise NotFound(f"product {sku} does not exist", sku=sku) from exc
                raise  # hidden by a concurrent DELETE, or a variant went: the next read tells

        self._until_won(attempt, "the product kept changing while it was being deleted, retry", sku=sku)

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
        start = decode_cursor(
            cursor, names=ProductItem.CATALOG_KEYS, fixed={"catalog_pk": ProductItem.CATALOG}
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
            if current is not None and (needle is None or needle in current.product.name.casefold()):
                products.append(current.whole(variants))

        for page in self.db.query_all(
            condition, index=CATALOG_INDEX, limit=min(500, (limit + 1) * 6), start=start
        ):
            for item in page.items:
                if item["type"] == ProductItem.TYPE:
                    flush()
                    if len(products) >= limit:
                        # a full page: the next one starts at this product
                        return Page.ending_at(products, last_key)
                    current, variants, before_current = ProductItem.parse(item), [], last_key
                elif current is not None and item["sku"] == current.product.sku:
                    variants.append(VariantItem.parse(item))
                last_key = {k: item[k] for k in ProductItem.CATALOG_KEYS}
                read += 1
            if read >= _MAX_ITEMS_READ_PER_PAGE and page.last_key:
                # Read budget spent while filtering: answer what matched so far; the next page
                # starts at the product being read (its variants may not all be here yet).
                resume = before_current or (start if current is None else None) or last_key
                return Page.ending_at(products, resume)
        flush()
        return Page(items=products, next_cursor=None)

    def catalog(self) -> Iterator[Product]:
        """Every listed product with its variants, in catalog order (for totals): the pages of
        `list_products`, so a variant is only ever counted under its own, listed product."""
        cursor: str | None = None
        while True:
            page = self.list_products(category=None, name_contains=None, limit=1_000, cursor=cursor)
            yield from page.items
            if (cursor := page.next_cursor) is None:
                return

    # -- variants and stock -------------------------------------------------------------------------
    def _variant(self, sku: str, size: str) -> VariantItem | None:
        item = self.db.get(VariantItem.key(sku, size))
        variant = VariantItem.parse(item) if item else None
        return variant if variant is not None and not variant.deleted_at else None

    def put_variant(
        self, sku: str, category: str, size: str, data: VariantIn, claim: Claim | None = None
    ) -> VariantWrite:
        """Create or replace a variant's stock and reorder level, and whether it is new. With
        `expected_quantity`, refused (StaleQuantity) unless the stored quantity is that (a variant
        that does not exist yet holds 0)."""

        def attempt() -> VariantWrite:
            existing = self._variant(sku, size)
            rules.check_expected(
                sku, size, existing.variant.quantity if existing else 0, data.expected_quantity
            )
            at = clock.now_iso()
            stock = Variant(size=size, **data.model_dump(exclude={"expected_quantity"}), updated_at=at)
            if existing:
                variant = VariantItem(sku, category, stock, existing.version + 1)
                condition = eq("version", existing.version)
            else:
                variant, condition = VariantItem(sku, category, stock), absent("pk")
            result = VariantWrite(variant=stock, created=existing is None)
            try:
                self._transact(
                    [Check(ProductItem.key(sku), _LIVE_PRODUCT), Put(variant.item(), condition)],
                    claim,
                    result,
                )
            except TransactionCancelled as exc:
                if exc.failed(0):
                    raise NotFound(f"product {sku} does not exist", sku=sku) from exc
                raise
            return result

        busy = "the variant kept changing while it was being written, retry"
        return self._until_won(attempt, busy, sku=sku, size=size)

    def delete_variant(self, sku: str, size: str, claim: Claim | None = None) -> None:
        try:
            self._transact(
                [Delete(VariantItem.key(sku, size), exists("pk") & absent("deleted_at"))], claim, None
            )
        except TransactionCancelled as exc:
            raise NotFound(f"variant {sku}/{size} does not exist", sku=sku, size=size) from exc

    def adjust_stock(self, change: StockChange, actor: str, claim: Claim | None = None) -> Adjustment:
        """Add `change.delta` to a variant's quantity, atomically with its audit record.

        Optimistic concurrency: read the variant, write the new quantity (and the low-stock index
        keys that follow from it) on the condition that the version is unchanged, retry on a lost
        race. A decrement below zero, or a quantity other than `expected_quantity`, is refused
        against the freshest quantity and writes nothing.
        """

        sku, size = change.sku, change.size

        def attempt() -> Adjustment:
            variant = self._variant(sku, size)
            if variant is None:
                raise NotFound(f"variant {sku}/{size} does not exist", sku=sku, size=size)
            rules.check(change, variant.variant.quantity)
            adjustment = rules.applied(change, variant.variant.quantity, actor, clock.now_iso())
            moved = [self._moved(variant, adjustment), Put(AdjustmentItem.item(adjustment), absent("pk"))]
            self._transact(moved, claim, adjustment)
            return adjustment

        busy = "too many concurrent changes to this variant, retry"
        return self._until_won(attempt, busy, sku=sku, size=size)

    @staticmethod
    def _moved(variant: VariantItem, adjustment: Adjustment) -> Action:
        """The variant's new quantity (and low-stock keys), if it is still the version read."""
        moved = {"quantity": adjustment.quantity_after, "updated_at": adjustment.at}
        changed = replace(variant, variant=variant.variant.model_copy(update=moved))
        update = Update().set(**moved, version=variant.version + 1, **changed.lowstock_keys())
        key = VariantItem.key(variant.sku, adjustment.size)
        return Change(key, update, eq("version", variant.version) & absent("deleted_at"))

    def adjust_many(
        self, changes: list[StockChange], actor: str, claim: Claim | None = None
    ) -> BulkAdjustment:
        """Apply every change or none, in one transaction with the batch's record (which holds the
        lines: they are filed as adjustment items right after, and from the table's stream should
        this process stop first). A line that refuses refuses the batch: LinesRefused names them all."""

        def attempt() -> BulkAdjustment:
            keys = [VariantItem.key(c.sku, c.size) for c in changes]
            found = [VariantItem.parse(item) for item in self.db.batch_get(keys, consistent=True)]
            live = {(v.sku, v.variant.size): v for v in found if not v.deleted_at}
            quantities = {k: v.variant.quantity for k, v in live.items()}
            if refused := rules.refusals(changes, quantities):
                raise LinesRefused(
                    f"{len(refused)} of {len(changes)} lines refused; nothing changed", lines=refused
                )
            batch_id, at = uuid.uuid4().hex, clock.now_iso()
            lines = [rules.applied(c, quantities[(c.sku, c.size)], actor, at, batch_id) for c in changes]
            result = BulkAdjustment(batch_id=batch_id, lines=lines)
            actions = [self._moved(live[(line.sku, line.size)], line) for line in lines]
            record = claim or self.records.batch(batch_id, lambda r: r.model_dump_json())
            self._transact(actions, record, result, batch=True)
            return result

        result = self._until_won(attempt, "too many concurrent changes to these variants, retry")
        self.file_batch(result, on_error="log")
        return result

    def file_batch(self, batch: BulkAdjustment, *, on_error: Literal["log", "raise"] = "raise") -> int:
        """Write a bulk adjustment's lines as adjustment items (idempotent: the same keys each time)."""
        try:
            return self.db.batch_write(puts=[AdjustmentItem.item(a) for a in batch.lines])
        except (StorageUnavailable, StorageError):
            if on_error == "raise":
                raise
            # the stock moved and the batch's record holds the lines; the stream files them
            logger.warning("bulk adjustment lines left to the stream", extra={"batch_id": batch.batch_id})
            return 0

    def list_adjustments(
        self, sku: str, size: str, limit: int, cursor: str | None = None
    ) -> Page[Adjustment]:
        """A variant's stock history, newest first, a page at a time."""
        start = decode_cursor(cursor, names=("pk", "sk"), fixed={"pk": ProductItem.key(sku)["pk"]})
        if start and not AdjustmentItem.is_of_variant(start["sk"], size):
            raise InvalidInput("cursor is not valid for this list", field="cursor")
        page = self.db.query(AdjustmentItem.of_variant(sku, size), forward=False, limit=limit, start=start)
        return Page.ending_at([AdjustmentItem.parse(item) for item in page.items], page.last_key)

    def low_stock(self, *, limit: int, cursor: str | None) -> Page[LowStockItem]:
        """Variants at or below their reorder level (a Query on the sparse LowStock index), with
        their product's name and colour; a variant whose product is gone is left out."""
        fixed = {"lowstock_pk": VariantItem.LOWSTOCK}
        start = decode_cursor(cursor, names=VariantItem.LOWSTOCK_KEYS, fixed=fixed)
        page = self.db.query(
            eq("lowstock_pk", VariantItem.LOWSTOCK), index=LOWSTOCK_INDEX, limit=limit, start=start
        )
        rows = [VariantItem.parse(item) for item in page.items]
        found = self.db.batch_get(
            [ProductItem.key(sku) for sku in {r.sku for r in rows}],
            attributes=("sku", "name", "color", "deleted_at"),
        )
        named = {p["sku"]: {"name": p["name"], "color": p["color"]} for p in found if not p.get("deleted_at")}
        items = [
            LowStockItem.of(r.variant, sku=r.sku, category=Category(r.category), **named[r.sku])
            for r in rows
            if r.sku in named
        ]
        return Page.ending_at(items, page.last_key)
