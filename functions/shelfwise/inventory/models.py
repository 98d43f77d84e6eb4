"""Inventory models: what callers send, what they get back. No HTTP, no DynamoDB."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
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


Quantity = Annotated[int, Field(ge=0, le=1_000_000)]
# Compare-and-set: the quantity the caller last saw; a write is refused when the stored one differs.
ExpectedQuantity = Annotated[
    int | None,
    Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="refuse (409 stale_quantity) unless the stored quantity is this",
    ),
]


class StockLevel(BaseModel):
    model_config = _STRICT
    quantity: Quantity
    reorder_level: int = Field(default=0, ge=0, le=1_000_000)


class VariantIn(StockLevel):
    """PUT /products/{sku}/variants/{size}: the absolute stock level and reorder level."""

    expected_quantity: ExpectedQuantity = None


class NewVariant(StockLevel):
    size: Size


class Variant(BaseModel):
    size: str
    quantity: int
    reorder_level: int
    updated_at: str


class VariantWrite(BaseModel):
    """What PUT .../variants/{size} did: the variant as written, and whether it is new."""

    variant: Variant
    created: bool


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


class AdjustmentReason(StrEnum):
    """Why stock moved: a fixed list, so reports can group by it. Free text goes in `note`."""

    RECEIVED = "received"
    SALE = "sale"
    RETURN = "return"
    CORRECTION = "correction"
    CYCLE_COUNT = "cycle_count"
    DAMAGED = "damaged"
    SHRINKAGE = "shrinkage"
    PROMOTION = "promotion"
    TRANSFER = "transfer"
    OTHER = "other"


Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


def _non_zero(delta: int) -> int:
    if delta == 0:
        raise ValueError("delta must not be zero")
    return delta


Delta = Annotated[int, Field(ge=-1_000_000, le=1_000_000), AfterValidator(_non_zero)]


class AdjustmentIn(BaseModel):
    """POST /products/{sku}/variants/{size}/adjustments."""

    model_config = _STRICT
    delta: Delta
    reason: AdjustmentReason
    note: Note | None = None
    expected_quantity: ExpectedQuantity = None


class BulkLine(BaseModel):
    model_config = _STRICT
    sku: Annotated[
        str,
        BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
        StringConstraints(pattern=SKU_PATTERN.pattern),
    ]
    size: Size
    delta: Delta
    expected_quantity: ExpectedQuantity = None


# One transaction takes 100 actions: the lines' variants and the batch's own record.
MAX_BULK_LINES = 99


class BulkAdjustmentIn(BaseModel):
    """POST /inventory/adjustments: every line applies, or none does."""

    model_config = _STRICT
    reason: AdjustmentReason
    note: Note | None = None
    lines: list[BulkLine] = Field(min_length=1, max_length=MAX_BULK_LINES)

    @field_validator("lines")
    @classmethod
    def _distinct_variants(cls, lines: list[BulkLine]) -> list[BulkLine]:
        seen: dict[tuple[str, str], int] = {}
        for index, line in enumerate(lines):
            first = seen.setdefault((line.sku, line.size), index)
            if first != index:
                raise ValueError(f"lines {first} and {index} name the same variant {line.sku}/{line.size}")
        return lines


class Adjustment(BaseModel):
    id: str
    sku: str
    size: str
    delta: int
    quantity_before: int
    quantity_after: int
    reason: AdjustmentReason
    note: str | None = None
    actor: str
    at: str
    batch_id: str | None = None  # set on the lines of one POST /inventory/adjustments


@dataclass(frozen=True)
class StockChange:
    """One stock movement asked for (a single adjustment, or one line of a bulk one)."""

    sku: str
    size: str
    delta: int
    reason: AdjustmentReason
    note: str | None = None
    expected_quantity: int | None = None


class BulkAdjustment(BaseModel):
    """The answer to a bulk adjustment: one result per line, in the order sent."""

    batch_id: str
    lines: list[Adjustment]


class LowStockItem(BaseModel):
    sku: str
    size: str
    quantity: int
    reorder_level: int
    name: str | None = None
    color: str | None = None  # with the name, what tells apart products of one name
    category: Category | None = None
    shortfall: int

    @classmethod
    def of(cls, variant: Variant, *, sku: str, name: str, color: str, category: Category) -> LowStockItem:
        """A low variant of a product: how far below its reorder level it is."""
        shortfall = max(0, variant.reorder_level - variant.quantity)
        return cls(
            sku=sku,
            name=name,
            color=color,
            category=category,
            shortfall=shortfall,
            **variant.model_dump(exclude={"updated_at"}),
        )


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
