"""Deleting a product: answered at once whatever its history, repeatable, gone from every listing and
total at once; the items and the history purged afterwards by PurgeFunction from the table's stream.
And a variant whose product is gone (as a delete cut short used to leave behind) is never counted."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise import clock
from shelfwise.inventory.models import Adjustment, AdjustmentReason, Variant
from shelfwise.services import Services
from shelfwise.storage.dynamo import Dynamo
from shelfwise.storage.items import AdjustmentItem, ProductItem, VariantItem
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, make_settings
from tests.fixtures.catalog import black_tee
from tests.fixtures.dynamodb import DynamoTarget


class CountingDynamo(Dynamo):
    calls: list[str]

    def call(self, operation: str, /, **kwargs: Any) -> Any:
        self.calls.append(operation)
        return super().call(operation, **kwargs)


def _history(services: Services, sku: str, size: str, count: int) -> None:
    """`count` stock adjustments of one variant, written straight into its history."""
    at = clock.now_iso()
    services.dynamo.batch_write(
        puts=[
            AdjustmentItem.item(
                Adjustment(
                    id=uuid.uuid4().hex,
                    sku=sku,
                    size=size,
                    delta=-1,
                    quantity_before=1,
                    quantity_after=0,
                    reason=AdjustmentReason.SALE,
                    actor="till",
                    at=at,
                )
            )
            for _ in range(count)
        ]
    )


def _partition(ddb: DynamoTarget, sku: str) -> int:
    pages = ddb.client.get_paginator("query").paginate(
        TableName=ddb.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": ProductItem.key(sku)["pk"]}},
        Select="COUNT",
    )
    return sum(page["Count"] for page in pages)


@pytest.mark.slow
def test_a_product_with_a_long_history_is_deleted_at_once_then_purged(ddb: DynamoTarget) -> None:
    history = 10_000 if ddb.kind == "dynamodb-local" else 300
    db = CountingDynamo(ddb.client, ddb.table_name)
    db.calls = []
    services = Services(make_settings(ddb.table_name), dynamo=db)
    admin = bearer("ada", admin=True)
    keep = services.inventory.create_product(black_tee(("M", 1)), actor="till")  # priced 25
    gone = services.inventory.create_product(black_tee(("S", 3), ("M", 20_000)), actor="till")
    _history(services, gone.sku, "M", history)
    with TestClient(create_app(services=services)) as client:
        before = client.get("/inventory/value", headers=admin).json()
        db.calls = []
        assert client.delete(f"/products/{gone.sku}", headers=admin).status_code == 204
        assert db.calls == ["query", "transact_write_items"], "the history is not read or written"
        after = client.get("/inventory/value", headers=admin).json()
        assert (before["units"], after["units"]) == (20_004, 1)
        assert Decimal(str(after["value"])) == Decimal(str(keep.price))
        assert client.get(f"/products/{gone.sku}", headers=admin).status_code == 404
        listed = [p["sku"] for p in client.get("/products", headers=admin).json()["items"]]
        assert listed == [keep.sku]
        low = client.get("/inventory/low-stock", headers=admin).json()["items"]
        assert all(row["sku"] != gone.sku for row in low)
        assert client.delete(f"/products/{gone.sku}", headers=admin).status_code == 204  # again
        assert (
            client.put(f"/products/{gone.sku}/variants/L", json={"quantity": 1}, headers=admin).status_code
            == 404
        )
        adjust = client.post(
            f"/products/{gone.sku}/variants/M/adjustments",
            json={"delta": 1, "reason": "return"},
            headers=admin,
        )
        assert adjust.status_code == 404
        assert _partition(ddb, gone.sku) == history + 3  # nothing purged yet: the request did not

        # PurgeFunction, fed by the table's stream through the template's own mapping and filter
        # (the pump starts at LATEST: a product deleted from here on).
        pump = ddb.purge_pump(lambda: services)
        with pump:
            third = services.inventory.create_product(black_tee(("M", 2)), actor="till")
            _history(services, third.sku, "M", 50)
            assert client.delete(f"/products/{third.sku}", headers=admin).status_code == 204
            assert pump.wait_until_idle(timeout=60)
        assert pump.stats.invocations == 1  # only the hidden product's record passed the filter
        assert _partition(ddb, third.sku) == 0
        assert client.delete(f"/products/{third.sku}", headers=admin).status_code == 404  # purged
        # and the first one, purged directly, is gone too
        assert services.inventory.purge_product(gone.sku) == history + 3
        assert _partition(ddb, gone.sku) == 0
        assert services.inventory.purge_product(keep.sku) == 0  # a live product is never purged
        assert client.get(f"/products/{keep.sku}", headers=admin).status_code == 200


def test_a_variant_whose_product_is_gone_is_never_counted(ddb: DynamoTarget) -> None:
    """What a delete cut short used to leave: variants with index keys and no product. They must not
    be priced at a neighbouring product's price, nor listed as low on stock."""
    services = Services(make_settings(ddb.table_name), dynamo=Dynamo(ddb.client, ddb.table_name))
    keep = services.inventory.create_product(black_tee(("M", 1)), actor="till")
    orphan_sku = keep.sku[:-1] + "9"  # sorts right after the kept product in the catalog
    stock = Variant(size="M", quantity=20_000, reorder_level=50_000, updated_at=clock.now_iso())
    orphan = VariantItem(orphan_sku, keep.category.value, stock)
    services.dynamo.batch_write(puts=[orphan.item()])
    value = services.inventory.inventory_value()
    assert (value.units, value.variants, value.products) == (1, 1, 1)
    assert value.value == Decimal(str(keep.price))
    low = [row.sku for row in services.inventory.low_stock(limit=10, cursor=None).items]
    assert orphan_sku not in low
    assert low == [keep.sku]  # the kept tee (1 left) is low, and only it
