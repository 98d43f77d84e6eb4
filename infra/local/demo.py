"""Demo inventory for the local stack: 40 products over 9 categories, with sizes, stock and reorder
levels (a few at or below their reorder level, so the low-stock list has something to show).

Written through the real InventoryService, so demo data obeys every rule real data does.
"""

from __future__ import annotations

import random
from decimal import Decimal

from shelfwise.inventory.models import Category, NewVariant, ProductIn
from shelfwise.inventory.service import InventoryService

APPAREL = ["XS", "S", "M", "L", "XL"]
SHOES = ["39", "40", "41", "42", "43", "44", "45"]
ONE = ["ONE"]

# (category, name, colors, price, collection, sizes)
CATALOG: list[tuple[Category, str, list[str], str, str | None, list[str]]] = [
    (Category.TEES, "Essential Tee", ["black", "white", "heather grey"], "24.00", "Core", APPAREL),
    (Category.TEES, "Pocket Tee", ["navy", "olive"], "28.00", "Core", APPAREL),
    (Category.TEES, "Heavyweight Boxy Tee", ["black", "bone"], "36.00", "Studio", APPAREL),
    (Category.TEES, "Long Sleeve Waffle Tee", ["oatmeal"], "42.00", "Winter Edit", APPAREL),
    (Category.SHIRTS, "Oxford Button-Down", ["light blue", "white"], "68.00", "Core", APPAREL),
    (Category.SHIRTS, "Linen Camp Shirt", ["sand", "sage"], "74.00", "Summer Edit", APPAREL),
    (Category.SHIRTS, "Flannel Overshirt", ["red plaid"], "82.00", "Winter Edit", APPAREL),
    (Category.HOODIES, "Classic Pullover Hoodie", ["black", "charcoal"], "64.00", "Core", APPAREL),
    (Category.HOODIES, "Zip Hoodie", ["navy"], "72.00", "Core", APPAREL),
    (Category.HOODIES, "Fleece Crewneck", ["forest", "cream"], "58.00", "Studio", APPAREL),
    (Category.JACKETS, "Chore Jacket", ["indigo", "khaki"], "128.00", "Workwear", APPAREL),
    (Category.JACKETS, "Packable Rain Shell", ["yellow"], "96.00", "Outdoor", APPAREL),
    (Category.JACKETS, "Quilted Liner Jacket", ["black"], "118.00", "Winter Edit", APPAREL),
    (
        Category.PANTS,
        "Slim Chino",
        ["khaki", "navy", "black"],
        "64.00",
        "Core",
        ["28", "30", "32", "34", "36"],
    ),
    (
        Category.PANTS,
        "Relaxed Carpenter Pant",
        ["brown"],
        "78.00",
        "Workwear",
        ["28", "30", "32", "34", "36"],
    ),
    (Category.SHORTS, "Everyday Short", ["navy", "stone"], "44.00", "Summer Edit", APPAREL),
    (Category.SHORTS, "Swim Trunk", ["coral"], "39.00", "Summer Edit", APPAREL),
    (Category.DRESSES, "Wrap Midi Dress", ["rust", "black"], "98.00", "Studio", APPAREL),
    (Category.DRESSES, "T-Shirt Dress", ["heather grey"], "54.00", "Core", APPAREL),
    (Category.FOOTWEAR, "Canvas Low Sneaker", ["white", "black"], "70.00", "Core", SHOES),
    (Category.FOOTWEAR, "Suede Chelsea Boot", ["tan"], "160.00", "Winter Edit", SHOES),
    (Category.ACCESSORIES, "Wool Beanie", ["charcoal", "mustard"], "22.00", "Winter Edit", ONE),
    (Category.ACCESSORIES, "Canvas Tote", ["natural"], "26.00", "Core", ONE),
    (Category.ACCESSORIES, "Leather Belt", ["brown", "black"], "48.00", "Core", ["S", "M", "L"]),
]


def demo_products(seed: int = 7) -> list[ProductIn]:
    rng = random.Random(seed)
    products: list[ProductIn] = []
    for category, name, colors, price, collection, sizes in CATALOG:
        for color in colors:
            variants = []
            for size in sizes:
                reorder = rng.choice([3, 5, 8])
                quantity = (
                    rng.choice([0, 2, reorder]) if rng.random() < 0.12 else rng.randint(reorder + 1, 60)
                )
                variants.append(NewVariant(size=size, quantity=quantity, reorder_level=reorder))
            if category is Category.TEES and name == "Essential Tee" and color == "black":
                variants = [
                    v if v.size != "M" else NewVariant(size="M", quantity=17, reorder_level=5)
                    for v in variants
                ]
            products.append(
                ProductIn(
                    category=category,
                    name=name,
                    color=color,
                    price=Decimal(price),
                    collection=collection,
                    coming_soon=rng.random() < 0.05,
                    variants=variants,
                )
            )
    return products


def seed(inventory: InventoryService) -> int:
    """Write the demo catalog through the service's bulk import. Returns the number of products."""
    return len(inventory.import_products(demo_products(), actor="demo-seed"))
