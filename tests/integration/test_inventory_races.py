"""Inventory writes that race a delete, on a template-built table (moto and DynamoDB Local). The
race is forced: the other write lands between a write's read and its transaction, where on AWS a
second request would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shelfwise.inventory.models import VariantIn
from shelfwise.services import Services
from shelfwise.storage.inventory import InventoryRepository
from tests.fixtures.catalog import black_tee


def _after_first_read(monkeypatch: pytest.MonkeyPatch, method: str, meanwhile: Callable[[], object]) -> None:
    """`meanwhile` runs once, right after the first call of the repository's read `method`."""
    real = getattr(InventoryRepository, method)
    pending = [meanwhile]

    def read_then_race(self: InventoryRepository, *args: Any) -> Any:
        found = real(self, *args)
        while pending:
            pending.pop()()
        return found

    monkeypatch.setattr(InventoryRepository, method, read_then_race)


def test_a_sale_read_before_its_variant_was_deleted_and_put_again_does_not_land(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The put-again variant started at version 1 again, so the sale's check against the old one
    passed: stock 10 -> 7 written over the new 50, and the put lost."""
    inventory = services.inventory
    sku = inventory.create_product(black_tee(("M", 10)), actor="test").sku

    def recreate() -> None:
        inventory.delete_variant(sku, "M", actor="admin")
        inventory.put_variant(sku, "M", VariantIn(quantity=50, reorder_level=5), actor="admin")

    _after_first_read(monkeypatch, "_variant", recreate)
    sale = inventory.adjust_stock(sku, "M", delta=-3, reason="sale", actor="till")
    assert (sale.quantity_before, sale.quantity_after) == (50, 47), "applied to the stock that is there"
    assert inventory.get_product(sku).variants[0].quantity == 47


def test_deleting_a_product_while_one_of_its_variants_goes_deletes_it(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It answered 404 and left the product live."""
    inventory = services.inventory
    sku = inventory.create_product(black_tee(("S", 1), ("M", 2)), actor="test").sku
    _after_first_read(monkeypatch, "_read_product", lambda: inventory.delete_variant(sku, "S", actor="other"))
    inventory.delete_product(sku, actor="admin")
    monkeypatch.undo()
    assert sku not in {
        p.sku for p in inventory.list_products(category=None, q=None, limit=100, cursor=None).items
    }
    inventory.delete_product(sku, actor="admin")  # repeatable
