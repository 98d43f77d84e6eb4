"""Products, variants, stock adjustments and SKU counters in the single table."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from shelfwise import clock
from shelfwise.errors import AlreadyExists, Conflict, InsufficientStock, NotFound
from shelfwise.inventory.models import (
    Adjustment,
    Category,
    Product,
    ProductIn,
    Variant,
    VariantIn,
)
from shelfwise.pagination import Page
from shelfwise.storage import keys
from shelfwise.storage.codec import decode_cursor, decode_item, encode_cursor, encode_item, to_attr
from shelfwise.storage.dynamo import ConditionFailed, Dynamo, TransactionCancelled

_CATALOG_KEY_NAMES = ("pk", "sk", "catalog_pk", "catalog_sk")
_LOWSTOCK_KEY_NAMES = ("pk", "sk", "lowstock_pk", "lowstock_sk")
# Upper bound on items one catalog request reads while filtering by name (keeps a request bounded;
# the caller pages on with the cursor).
_MAX_ITEMS_READ_PER_PAGE = 2_000


def _product_item(sku: str, data: ProductIn, at: str) -> dict[str, Any]:
    return {
        **keys.product_key(sku),
        "type": "product",
        "sku": sku,
        "category": data.category.value,
        "name": data.name,
        "color": data.color,
        "price": data.price,
        "collection": data.collection,
        "coming_soon": data.coming_soon,
        "created_at": at,
        "updated_at": at,
        "catalog_pk": keys.CATALOG,
        "catalog_sk": keys.catalog_product_sk(data.category.value, sku),
    }


def _variant_item(
    sku: str, category: str, size: str, data: VariantIn, version: int, at: str
) -> dict[str, Any]:
    item: dict[str, Any] = {
        **keys.variant_key(sku, size),
        "type": "variant",
        "sku": sku,
        "size": size,
        "category": category,
        "quantity": data.quantity,
        "reorder_level": data.reorder_level,
        "version": version,
        "updated_at": at,
        "catalog_pk": keys.CATALOG,
        "catalog_sk": keys.catalog_variant_sk(category, sku, size),
    }
    if data.quantity <= data.reorder_level:
        item["lowstock_pk"] = keys.LOWSTOCK
        item["lowstock_sk"] = keys.lowstock_sk(sku, size)
    return item


def _to_variant(item: dict[str, Any]) -> Variant:
    return Variant(
        size=item["size"],
        quantity=item["quantity"],
        reorder_level=item["reorder_level"],
        updated_at=item["updated_at"],
    )


def _to_product(item: dict[str, Any], variants: list[Variant]) -> Product:
    return Product(
        sku=item["sku"],
        category=Category(item["category"]),
        name=item["name"],
        color=item["color"],
        price=Decimal(item["price"]),
        collection=item.get("collection"),
        coming_soon=bool(item.get("coming_soon", False)),
        variants=sorted(variants, key=lambda v: _size_order(v.size)),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
    )


_SIZE_RANK = {s: i for i, s in enumerate(["XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL", "ONE"])}


def _size_order(size: str) -> tuple[int, float, str]:
    if size in _SIZE_RANK:
        return (0, _SIZE_RANK[size], size)
    try:
        return (1, float(size), size)
    except ValueError:
        return (2, 0.0, size)


class InventoryRepository:
    def __init__(self, db: Dynamo, *, stock_retry_attempts: int = 25) -> None:
        self.db = db
        self.stock_retry_attempts = stock_retry_attempts

    # -- SKUs ---------------------------------------------------------------------------------------
    def allocate_sku_number(self, prefix: str) -> int:
        """Atomically take the next number of a prefix. A number once taken is never handed out again."""
        out = self.db.call(
            "update_item",
            TableName=self.db.table,
            Key=encode_item(keys.sku_counter_key(prefix)),
            UpdateExpression="ADD next_number :one SET #type = :type",
            ExpressionAttributeNames={"#type": "type"},
            ExpressionAttributeValues={":one": to_attr(1), ":type": to_attr("counter")},
            ReturnValues="UPDATED_NEW",
        )
        return int(out["Attributes"]["next_number"]["N"])

    # -- products -----------------------------------------------------------------------------------
    def create_product(self, sku: str, data: ProductIn) -> Product:
        at = clock.now_iso()
        product = _product_item(sku, data, at)
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.db.table,
                    "Item": encode_item(product),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        variant_items = [
            _variant_item(sku, data.category.value, v.size, v, version=1, at=at) for v in data.variants
        ]
        actions += [{"Put": {"TableName": self.db.table, "Item": encode_item(v)}} for v in variant_items]
        try:
            self.db.call("transact_write_items", TransactItems=actions)
        except TransactionCancelled as exc:
            if exc.failed(0):
                raise AlreadyExists(f"product {sku} already exists", sku=sku) from exc
            raise Conflict("the product changed while it was being created, retry", sku=sku) from exc
        return _to_product(product, [_to_variant(v) for v in variant_items])

    def import_products(self, products: list[tuple[str, ProductIn]]) -> None:
        """Bulk-write new products with their variants (BatchWriteItem, 25 items a call).

        For loading a catalog under freshly allocated SKUs: unlike create_product it is not
        conditional, so it must only be given SKUs that nothing else can hold.
        """
        at = clock.now_iso()
        requests: list[dict[str, Any]] = []
        for sku, data in products:
            items = [_product_item(sku, data, at)] + [
                _variant_item(sku, data.category.value, v.size, v, version=1, at=at) for v in data.variants
            ]
            requests += [{"PutRequest": {"Item": encode_item(item)}} for item in items]
        for i in range(0, len(requests), 25):
            self._batch_write(requests[i : i + 25])

    def get_product(self, sku: str) -> Product:
        items = [
            decode_item(raw)
            for page in self.db.query_pages(
                KeyConditionExpression="pk = :pk AND sk >= :product",  # not the adjustment history
                ExpressionAttributeValues={
                    ":pk": to_attr(keys.product_pk(sku)),
                    ":product": to_attr(keys.PRODUCT_SK),
                },
                ConsistentRead=True,
            )
            for raw in page.get("Items", [])
        ]
        product = next((i for i in items if i["type"] == "product"), None)
        if product is None:
            raise NotFound(f"product {sku} does not exist", sku=sku)
        return _to_product(product, [_to_variant(i) for i in items if i["type"] == "variant"])

    def update_product(self, sku: str, changes: dict[str, Any]) -> None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {":updated_at": to_attr(clock.now_iso())}
        sets = ["updated_at = :updated_at"]
        removes = []
        for i, (field, value) in enumerate(sorted(changes.items())):
            names[f"#f{i}"] = field
            if value is None:
                removes.append(f"#f{i}")
            else:
                values[f":v{i}"] = to_attr(value)
                sets.append(f"#f{i} = :v{i}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        request: dict[str, Any] = {
            "TableName": self.db.table,
            "Key": encode_item(keys.product_key(sku)),
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        try:
            self.db.call("update_item", **request)
        except ConditionFailed as exc:
            raise NotFound(f"product {sku} does not exist", sku=sku) from exc

    def delete_product(self, sku: str) -> None:
        """Delete the product, its variants and its adjustment history (the whole partition)."""
        try:
            self.db.call(
                "delete_item",
                TableName=self.db.table,
                Key=encode_item(keys.product_key(sku)),
                ConditionExpression="attribute_exists(pk)",
            )
        except ConditionFailed as exc:
            raise NotFound(f"product {sku} does not exist", sku=sku) from exc
        # The product item is gone first, so a half-finished delete never shows a product with
        # missing variants; the rest is removed in batches (idempotent if retried).
        self._delete_partition(keys.product_pk(sku))

    def _delete_partition(self, pk: str) -> None:
        batch: list[dict[str, Any]] = []
        for page in self.db.query_pages(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": to_attr(pk)},
            ProjectionExpression="pk, sk",
        ):
            for key in page.get("Items", []):
                batch.append({"DeleteRequest": {"Key": key}})
                if len(batch) == 25:
                    self._batch_write(batch)
                    batch = []
        if batch:
            self._batch_write(batch)

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self.db.table: requests}
        for attempt in range(8):
            out = self.db.call("batch_write_item", RequestItems=pending)
            pending = out.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(1.0, 0.05 * 2**attempt) * random.random())
        raise Conflict("the database is busy; some items were not deleted, retry the delete")

    def list_products(
        self, *, category: Category | None, name_contains: str | None, limit: int, cursor: str | None
    ) -> Page[Product]:
        """Products (with variants) in catalog order: category, then SKU.

        One Catalog-index Query serves a page; a product's variants follow it in the index.
        A name filter is applied here rather than as a FilterExpression because the variant items
        carry no name (a FilterExpression saves no read capacity anyway).
        """
        values: dict[str, Any] = {":catalog": to_attr(keys.CATALOG)}
        condition = "catalog_pk = :catalog"
        if category is not None:
            condition += " AND begins_with(catalog_sk, :prefix)"
            values[":prefix"] = to_attr(keys.catalog_category_prefix(category.value))
        start = (
            decode_cursor(cursor, names=_CATALOG_KEY_NAMES, fixed={"catalog_pk": keys.CATALOG})
            if cursor
            else None
        )
        if start and category is not None and not start["catalog_sk"]["S"].startswith(f"{category.value}#"):
            start = None  # a cursor from another filter: begin again rather than skip rows
        needle = name_contains.casefold() if name_contains else None

        products: list[Product] = []
        current: dict[str, Any] | None = None
        variants: list[Variant] = []
        last_key: dict[str, Any] | None = None  # key of the last item consumed
        before_current: dict[str, Any] | None = None  # key of the item just before `current`
        read = 0
        query: dict[str, Any] = {
            "IndexName": keys.CATALOG_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "Limit": min(500, (limit + 1) * 6),
        }
        if start:
            query["ExclusiveStartKey"] = start

        def flush() -> None:
            if current is not None and (needle is None or needle in current["name"].casefold()):
                products.append(_to_product(current, variants))

        for page in self.db.query_pages(**query):
            for raw in page.get("Items", []):
                item = decode_item(raw)
                if item["type"] == "product":
                    flush()
                    if len(products) >= limit:
                        # a full page: the next one starts at this product
                        return Page(items=products, next_cursor=encode_cursor(last_key) if last_key else None)
                    current, variants, before_current = item, [], last_key
                elif current is not None and item["sku"] == current["sku"]:
                    variants.append(_to_variant(item))
                last_key = {k: raw[k] for k in _CATALOG_KEY_NAMES}
                read += 1
            if read >= _MAX_ITEMS_READ_PER_PAGE and page.get("LastEvaluatedKey"):
                # Read budget spent while filtering: answer what matched so far; the next page
                # starts at the product being read (its variants may not all be here yet).
                resume = before_current or (start if current is None else None) or last_key
                return Page(items=products, next_cursor=encode_cursor(resume) if resume else None)
        flush()
        return Page(items=products, next_cursor=None)

    def get_products(self, skus: list[str]) -> dict[str, dict[str, Any]]:
        """Product items by SKU (BatchGetItem; missing SKUs are absent from the answer)."""
        found: dict[str, dict[str, Any]] = {}
        unique = sorted(set(skus))
        for i in range(0, len(unique), 100):
            pending: dict[str, Any] = {
                self.db.table: {
                    "Keys": [encode_item(keys.product_key(s)) for s in unique[i : i + 100]],
                    "ProjectionExpression": "sku, #n, category, price",
                    "ExpressionAttributeNames": {"#n": "name"},
                }
            }
            for attempt in range(8):
                out = self.db.call("batch_get_item", RequestItems=pending)
                for raw in out.get("Responses", {}).get(self.db.table, []):
                    item = decode_item(raw)
                    found[item["sku"]] = item
                pending = out.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt) * random.random())
        return found

    def iter_catalog(self) -> Iterator[dict[str, Any]]:
        """Every product and variant item, in catalog order (for totals)."""
        for page in self.db.query_pages(
            IndexName=keys.CATALOG_INDEX,
            KeyConditionExpression="catalog_pk = :catalog",
            ExpressionAttributeValues={":catalog": to_attr(keys.CATALOG)},
        ):
            for raw in page.get("Items", []):
                yield decode_item(raw)

    # -- variants and stock -------------------------------------------------------------------------
    def _get_variant_item(self, sku: str, size: str) -> dict[str, Any] | None:
        out = self.db.call(
            "get_item",
            TableName=self.db.table,
            Key=encode_item(keys.variant_key(sku, size)),
            ConsistentRead=True,
        )
        return decode_item(out["Item"]) if "Item" in out else None

    def put_variant(self, sku: str, category: str, size: str, data: VariantIn) -> tuple[Variant, bool]:
        """Create or replace a variant's stock and reorder level. Returns (variant, created)."""
        for _attempt in range(self.stock_retry_attempts):
            existing = self._get_variant_item(sku, size)
            version = (existing or {}).get("version", 0)
            item = _variant_item(sku, category, size, data, version=version + 1, at=clock.now_iso())
            condition = "attribute_not_exists(pk)" if existing is None else "version = :version"
            put: dict[str, Any] = {
                "TableName": self.db.table,
                "Item": encode_item(item),
                "ConditionExpression": condition,
            }
            if existing is not None:
                put["ExpressionAttributeValues"] = {":version": to_attr(version)}
            try:
                self.db.call(
                    "transact_write_items",
                    TransactItems=[
                        {
                            "ConditionCheck": {
                                "TableName": self.db.table,
                                "Key": encode_item(keys.product_key(sku)),
                                "ConditionExpression": "attribute_exists(pk)",
                            }
                        },
                        {"Put": put},
                    ],
                )
            except TransactionCancelled as exc:
                if exc.failed(0):
                    raise NotFound(f"product {sku} does not exist", sku=sku) from exc
                _backoff(_attempt)
                continue
            return _to_variant(item), existing is None
        raise Conflict("the variant kept changing while it was being written, retry", sku=sku, size=size)

    def delete_variant(self, sku: str, size: str) -> None:
        try:
            self.db.call(
                "delete_item",
                TableName=self.db.table,
                Key=encode_item(keys.variant_key(sku, size)),
                ConditionExpression="attribute_exists(pk)",
            )
        except ConditionFailed as exc:
            raise NotFound(f"variant {sku}/{size} does not exist", sku=sku, size=size) from exc

    def adjust_stock(self, sku: str, size: str, delta: int, reason: str, actor: str) -> Adjustment:
        """Add `delta` to a variant's quantity, atomically with its audit record.

        Optimistic concurrency: read the variant, write the new quantity (and the low-stock index
        keys that follow from it) on the condition that the version is unchanged, retry on a lost
        race. A decrement below zero is refused against the freshest quantity and writes nothing.
        """
        for attempt in range(self.stock_retry_attempts):
            item = self._get_variant_item(sku, size)
            if item is None:
                raise NotFound(f"variant {sku}/{size} does not exist", sku=sku, size=size)
            before = int(item["quantity"])
            after = before + delta
            if after < 0:
                raise InsufficientStock(
                    f"only {before} in stock for {sku}/{size}; cannot remove {-delta}",
                    sku=sku,
                    size=size,
                    quantity=before,
                    delta=delta,
                )
            at = clock.now_iso()
            adjustment = Adjustment(
                id=uuid.uuid4().hex,
                sku=sku,
                size=size,
                delta=delta,
                quantity_before=before,
                quantity_after=after,
                reason=reason,
                actor=actor,
                at=at,
            )
            low = after <= int(item["reorder_level"])
            update = "SET quantity = :after, version = :next, updated_at = :at" + (
                ", lowstock_pk = :lowpk, lowstock_sk = :lowsk" if low else " REMOVE lowstock_pk, lowstock_sk"
            )
            values = {
                ":after": to_attr(after),
                ":next": to_attr(int(item["version"]) + 1),
                ":version": to_attr(int(item["version"])),
                ":at": to_attr(at),
            }
            if low:
                values[":lowpk"] = to_attr(keys.LOWSTOCK)
                values[":lowsk"] = to_attr(keys.lowstock_sk(sku, size))
            record = {
                **keys.adjustment_key(sku, size, at, adjustment.id),
                "type": "adjustment",
                **adjustment.model_dump(),
            }
            try:
                self.db.call(
                    "transact_write_items",
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self.db.table,
                                "Key": encode_item(keys.variant_key(sku, size)),
                                "UpdateExpression": update,
                                "ConditionExpression": "version = :version",
                                "ExpressionAttributeValues": values,
                            }
                        },
                        {
                            "Put": {
                                "TableName": self.db.table,
                                "Item": encode_item(record),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                    ],
                )
            except TransactionCancelled:
                _backoff(attempt)
                continue
            return adjustment
        raise Conflict("too many concurrent changes to this variant, retry", sku=sku, size=size)

    def list_adjustments(self, sku: str, size: str, limit: int) -> list[Adjustment]:
        out = self.db.call(
            "query",
            TableName=self.db.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": to_attr(keys.product_pk(sku)),
                ":prefix": to_attr(f"ADJUSTMENT#{size}#"),
            },
            ScanIndexForward=False,
            Limit=limit,
        )
        fields = Adjustment.model_fields
        return [
            Adjustment(**{k: v for k, v in decode_item(raw).items() if k in fields})
            for raw in out.get("Items", [])
        ]

    def low_stock(self, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        query: dict[str, Any] = {
            "TableName": self.db.table,
            "IndexName": keys.LOWSTOCK_INDEX,
            "KeyConditionExpression": "lowstock_pk = :low",
            "ExpressionAttributeValues": {":low": to_attr(keys.LOWSTOCK)},
            "Limit": limit,
        }
        if cursor:
            query["ExclusiveStartKey"] = decode_cursor(
                cursor, names=_LOWSTOCK_KEY_NAMES, fixed={"lowstock_pk": keys.LOWSTOCK}
            )
        out = self.db.call("query", **query)
        last = out.get("LastEvaluatedKey")
        return [decode_item(raw) for raw in out.get("Items", [])], (encode_cursor(last) if last else None)


def _backoff(attempt: int) -> None:
    """Full-jitter exponential backoff between optimistic-concurrency retries (<= ~100 ms)."""
    time.sleep(random.uniform(0, min(0.1, 0.004 * 2**attempt)))
