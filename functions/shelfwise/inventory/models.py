"""Inventory models: what callers send, what they get back. No HTTP, no DynamoDB."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
)

SKU_PATTERN = re.compile(r"^[A-Z]{2}-\d{4,}$")
SIZE_PATTERN = r"^[A-Z0-9][A-Z0-9.\-]{0,9}$"


class Category(StrEnum):
    TEES = "tees"
    SHIRTS = "shirts"
    HOODIES = "hoodies"
    JACKETS = "jackets"
    PANTS = "pants"
    SHORTS = "shorts"
    DRESSES = "dresses"
    FOOTWEAR = "footwear"
    ACCESSORIES = "accessories"


# The SKU prefix of each category. A prefix is never reused for another category.
SKU_PREFIX: dict[Category, str] = {
    Category.TEES: "TE",
    Category.SHIRTS: "SH",
    Category.HOODIES: "HO",
    Category.JACKETS: "JA",
    Category.PANTS: "PA",
    Category.SHORTS: "SO",
    Category.DRESSES: "DR",
    Category.FOOTWEAR: "FW",
    Category.ACCESSORIES: "AC",
}


def looks_like_sku(text: str) -> bool:
    return bool(SKU_PATTERN.match(text.strip().upper()))


# Prices are exact decimals in storage and plain JSON numbers on the wire.
Money = Annotated[
    Decimal,
    Field(gt=0, max_digits=10, decimal_places=2),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Total = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
Size = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
    StringConstraints(pattern=SIZE_PATTERN),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]

_STRICT = ConfigDict(extra="forbid")


class VariantIn(BaseModel):
    """PUT /products/{sku}/variants/{size}: the absolute stock level and reorder level."""

    model_config = _STRICT
    quantity: int = Field(ge=0, le=1_000_000)
    reorder_level: int = Field(default=0, ge=0, le=1_000_000)


class NewVariant(VariantIn):
    size: Size


class Variant(BaseModel):
    size: str
    quantity: int
    reorder_level: int
    updated_at: str


class ProductIn(BaseModel):
    """POST /products. The SKU is generated from the category."""

    model_config = _STRICT
    category: Category
    name: Name
    color: ShortText
    price: Money
    collection: ShortText | None = None
    coming_soon: bool = False
    variants: list[NewVariant] = Field(default_factory=list, max_length=40)

    @field_validator("variants")
    @classmethod
    def _distinct_sizes(cls, variants: list[NewVariant]) -> list[NewVariant]:
        sizes = [v.size for v in variants]
        if len(set(sizes)) != len(sizes):
            raise ValueError("each size may appear once")
        return variants


class ProductPatch(BaseModel):
    """PATCH /products/{sku}. The category is fixed: it is part of the SKU."""

    model_config = _STRICT
    name: Name | None = None
    color: ShortText | None = None
    price: Money | None = None
    collection: ShortText | None = None
    coming_soon: bool | None = None


class Product(BaseModel):
    sku: str
    category: Category
    name: str
    color: str
    price: Money
    collection: str | None = None
    coming_soon: bool = False
    variants: list[Variant] = Field(default_factory=list)
    created_at: str
    updated_at: str

    @property
    def stock(self) -> int:
        return sum(v.quantity for v in self.variants)


class AdjustmentIn(BaseModel):
    model_config = _STRICT
    delta: int = Field(ge=-1_000_000, le=1_000_000)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("delta must not be zero")
        return delta


class Adjustment(BaseModel):
    id: str
    sku: str
    size: str
    delta: int
    quantity_before: int
    quantity_after: int
    reason: str
    actor: str
    at: str


class LowStockItem(BaseModel):
    sku: str
    size: str
    quantity: int
    reorder_level: int
    name: str | None = None
    category: Category | None = None
    shortfall: int


class CategoryValue(BaseModel):
    category: Category
    units: int
    value: Total


class InventoryValue(BaseModel):
    currency: str
    units: int
    value: Total
    products: int
    variants: int
    by_category: list[CategoryValue]
    as_of: str
