from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from shelfwise.inventory.models import SKU_PREFIX, Category, ProductIn, looks_like_sku
from shelfwise.inventory.service import format_sku


def test_every_category_has_its_own_prefix() -> None:
    assert set(SKU_PREFIX) == set(Category)
    assert len(set(SKU_PREFIX.values())) == len(Category)
    assert all(looks_like_sku(format_sku(p, 1)) for p in SKU_PREFIX.values())


def test_sku_format() -> None:
    assert format_sku("TE", 7) == "TE-0007"
    assert format_sku("TE", 12345) == "TE-12345"
    assert looks_like_sku(" te-0001 ")
    assert not looks_like_sku("tee")
    assert not looks_like_sku("TE-01")


def test_prices_are_exact_and_serialise_as_numbers() -> None:
    product = ProductIn(category=Category.TEES, name="Tee", color="black", price=Decimal("24.50"))
    assert product.model_dump(mode="json")["price"] == 24.5
    with pytest.raises(ValidationError):
        ProductIn(category=Category.TEES, name="Tee", color="black", price=Decimal("24.505"))


def test_sizes_are_normalised() -> None:
    product = ProductIn.model_validate(
        {
            "category": "tees",
            "name": "Tee",
            "color": "black",
            "price": 1,
            "variants": [{"size": " xl ", "quantity": 1}],
        }
    )
    assert product.variants[0].size == "XL"
