"""One typed model per kind of stored item: its key, its item shape (index keys included) and its
parsing. Repositories speak these and the domain models; no raw item leaves storage.

    kind          key (storage.keys)                        index keys it carries
    product       PRODUCT#<sku> / PRODUCT                   catalog (until deleted)
    variant       PRODUCT#<sku> / VARIANT#<size>            catalog (until deleted), lowstock (when low)
    adjustment    PRODUCT#<sku> / ADJUSTMENT#<size>#<at>#<id>
    conversation  USER#<uid>#CONV#<id> / STATE              activity (until deleted)
    message       USER#<uid>#CONV#<id> / MSG#<seq>
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from decimal import Decimal
from typing import Any, Self

from shelfwise.chat.models import Conversation, Message, SummaryState
from shelfwise.inventory.models import Adjustment, Category, Product, ProductIn, Variant
from shelfwise.storage import keys
from shelfwise.storage.codec import Item

_SIZE_RANK = {s: i for i, s in enumerate(["XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL", "ONE"])}


def _fields(cls: Any, item: Item) -> dict[str, Any]:
    """A dataclass's fields from a stored item: required ones must be there, the rest default."""
    return {
        f.name: item[f.name] if f.default is MISSING else item.get(f.name, f.default) for f in fields(cls)
    }


def size_order(size: str) -> tuple[int, float, str]:
    """Apparel sizes in their natural order, then numeric sizes, then the rest."""
    if size in _SIZE_RANK:
        return (0, _SIZE_RANK[size], size)
    try:
        return (1, float(size), size)
    except ValueError:
        return (2, 0.0, size)


# -- inventory -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductItem:
    sku: str
    category: str
    name: str
    color: str
    price: Decimal
    created_at: str
    updated_at: str
    collection: str | None = None
    coming_soon: bool = False
    deleted_at: str | None = None  # hidden: its history is being purged

    TYPE = "product"
    # In the Catalog index a product comes first and its variants follow it.
    CATALOG_KEYS = ("pk", "sk", "catalog_pk", "catalog_sk")

    @staticmethod
    def key(sku: str) -> keys.Key:
        return keys.product_key(sku)

    @classmethod
    def new(cls, sku: str, data: ProductIn, at: str) -> Self:
        return cls(
            sku=sku,
            category=data.category.value,
            name=data.name,
            color=data.color,
            price=data.price,
            collection=data.collection,
            coming_soon=data.coming_soon,
            created_at=at,
            updated_at=at,
        )

    def item(self) -> Item:
        return {
            **self.key(self.sku),
            "type": self.TYPE,
            **asdict(self),
            **self.catalog_keys(self.category, self.sku),
        }

    @staticmethod
    def catalog_keys(category: str, sku: str) -> Item:
        return {"catalog_pk": keys.CATALOG, "catalog_sk": keys.catalog_product_sk(category, sku)}

    @classmethod
    def parse(cls, item: Item) -> Self:
        return cls(**{**_fields(cls, item), "price": Decimal(item["price"])})

    def product(self, variants: list[VariantItem]) -> Product:
        return Product(
            sku=self.sku,
            category=Category(self.category),
            name=self.name,
            color=self.color,
            price=self.price,
            collection=self.collection,
            coming_soon=self.coming_soon,
            variants=[v.variant() for v in sorted(variants, key=lambda v: size_order(v.size))],
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True)
class VariantItem:
    sku: str
    size: str
    category: str
    quantity: int
    reorder_level: int
    version: int
    updated_at: str
    deleted_at: str | None = None  # its product was deleted

    TYPE = "variant"
    LOWSTOCK_KEYS = ("pk", "sk", "lowstock_pk", "lowstock_sk")
    INDEX_KEYS = ("catalog_pk", "catalog_sk", "lowstock_pk", "lowstock_sk")

    @staticmethod
    def key(sku: str, size: str) -> keys.Key:
        return keys.variant_key(sku, size)

    @property
    def low(self) -> bool:
        return self.quantity <= self.reorder_level

    def item(self) -> Item:
        return {
            **self.key(self.sku, self.size),
            "type": self.TYPE,
            **asdict(self),
            "catalog_pk": keys.CATALOG,
            "catalog_sk": keys.catalog_variant_sk(self.category, self.sku, self.size),
            **self.lowstock_keys(),
        }

    def lowstock_keys(self) -> Item:
        """The LowStock index keys while the variant is low; None values remove them."""
        if self.low:
            return {"lowstock_pk": keys.LOWSTOCK, "lowstock_sk": keys.lowstock_sk(self.sku, self.size)}
        return {"lowstock_pk": None, "lowstock_sk": None}

    @classmethod
    def parse(cls, item: Item) -> Self:
        return cls(**_fields(cls, item))

    def variant(self) -> Variant:
        return Variant(
            size=self.size,
            quantity=self.quantity,
            reorder_level=self.reorder_level,
            updated_at=self.updated_at,
        )


class AdjustmentItem:
    TYPE = "adjustment"

    @staticmethod
    def key(adjustment: Adjustment) -> keys.Key:
        return keys.adjustment_key(adjustment.sku, adjustment.size, adjustment.at, adjustment.id)

    @classmethod
    def item(cls, adjustment: Adjustment) -> Item:
        return {**cls.key(adjustment), "type": cls.TYPE, **adjustment.model_dump()}

    @staticmethod
    def parse(item: Item) -> Adjustment:
        return Adjustment(**{k: v for k, v in item.items() if k in Adjustment.model_fields})


class SkuCounterItem:
    TYPE = "counter"
    NEXT = "next_number"

    @staticmethod
    def key(prefix: str) -> keys.Key:
        return keys.sku_counter_key(prefix)


# -- conversations -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationItem:
    """A conversation's state item: the public conversation plus what storage keeps beside it."""

    user_id: str
    conversation: Conversation
    deleting: bool = False
    turn_id: str | None = None  # the turn holding the conversation, until `turn_until`
    turn_until: int | None = None
    title_requested: str | None = None  # the token of a pending POST .../title

    TYPE = "conversation"
    ACTIVITY_KEYS = ("pk", "sk", "activity_pk", "activity_sk")

    @staticmethod
    def key(user_id: str, conversation_id: str) -> keys.Key:
        return keys.conversation_key(user_id, conversation_id)

    @staticmethod
    def activity(user_id: str, at: str, conversation_id: str) -> Item:
        return {"activity_pk": keys.user_pk(user_id), "activity_sk": keys.activity_sk(at, conversation_id)}

    @classmethod
    def new_item(cls, user_id: str, conversation: Conversation) -> Item:
        return {
            **cls.key(user_id, conversation.id),
            "type": cls.TYPE,
            "user_id": user_id,
            **conversation.model_dump(exclude={"summary"}),
            "summary_through_seq": 0,
            "summary_folded": 0,
            **cls.activity(user_id, conversation.updated_at, conversation.id),
        }

    @classmethod
    def parse(cls, item: Item) -> Self:
        fields = {k: item[k] for k in Conversation.model_fields if k in item and k != "summary"}
        summary = SummaryState(
            through_seq=item.get("summary_through_seq", 0),
            updated_at=item.get("summary_updated_at"),
            text=item.get("summary_text", ""),
            folded_messages=item.get("summary_folded", 0),
        )
        return cls(
            user_id=item["user_id"],
            conversation=Conversation(**fields, summary=summary),
            deleting=bool(item.get("deleting")),
            turn_id=item.get("turn_id"),
            turn_until=item.get("turn_until"),
            title_requested=item.get("title_requested"),
        )

    @classmethod
    def is_one(cls, item: Item | None) -> bool:
        return item is not None and item.get("type") == cls.TYPE


class MessageItem:
    TYPE = "message"

    @staticmethod
    def key(user_id: str, conversation_id: str, seq: int) -> keys.Key:
        return keys.message_key(user_id, conversation_id, seq)

    @classmethod
    def item(cls, user_id: str, conversation_id: str, message: Message) -> Item:
        return {
            **cls.key(user_id, conversation_id, message.seq),
            "type": cls.TYPE,
            "conversation_id": conversation_id,
            **message.model_dump(exclude_none=True),
        }

    @staticmethod
    def parse(item: Item) -> Message:
        return Message.model_validate({k: v for k, v in item.items() if k in Message.model_fields})
