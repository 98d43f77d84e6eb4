"""The single table's design: one typed model per kind of stored item, owning its key, its item shape
(index keys included) and its parsing. Repositories speak these and the domain models only.

    item          pk                   sk                         sparse index keys
    product       PRODUCT#<sku>        PRODUCT                    Catalog: CATALOG / <category>#<sku>#0
    variant       PRODUCT#<sku>        VARIANT#<size>             Catalog: CATALOG / <category>#<sku>#1#<size>
                                                                  LowStock (low): LOWSTOCK / <sku>#<size>
    adjustment    PRODUCT#<sku>        ADJUSTMENT#<size>#<at>#<id>
    sku counter   COUNTER#SKU          <prefix>
    conversation  USER#<uid>#CONV#<id> STATE                      ByActivity: USER#<uid> / <at>#<id>
    message       USER#<uid>#CONV#<id> MSG#<seq, 10 digits>
    chunk         USER#<uid>#CONV#<id> CHUNK#<seq>#<n, 5 digits>  (an answer's text while it streams; TTL)
    usage         USER#<uid>           USAGE#<period>             (tokens and cost of a day; TTL)
    write record  USER#<uid>#IDEM#<h>  WRITE                      (an Idempotency-Key's answer; TTL)
                  BATCH#<id>           WRITE                      (a bulk adjustment sent without a key)

In a product's partition ADJUSTMENT#... < PRODUCT < VARIANT#...: `sk >= PRODUCT` reads the product and
its variants, never its ever-growing history. In the Catalog index a product sorts just before its
variants ("0" < "1"), so one Query pages through products with their variants. A conversation's state
sorts after its messages ("S" > "M" > "C"): one descending Query reads the state and the newest
messages.
Every key of a user's data starts with USER#<uid> (an IAM dynamodb:LeadingKeys condition could pin a
caller to their own items). A deleted product or conversation leaves every index at once.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Self

from pydantic import BaseModel

from shelfwise.chat.models import (
    Conversation,
    ConversationRef,
    Message,
    MessageDetail,
    PeriodUsage,
    StreamRecord,
    SummaryState,
)
from shelfwise.inventory.models import Adjustment, AdjustmentReason, Product, ProductIn, Variant
from shelfwise.inventory.rules import size_order
from shelfwise.storage.codec import Item
from shelfwise.storage.expressions import Cond, absent, begins_with, between, eq, exists, ge

Key = dict[str, str]
CATALOG_INDEX: Final = "Catalog"
LOWSTOCK_INDEX: Final = "LowStock"
ACTIVITY_INDEX: Final = "ByActivity"
_REASONS = frozenset(AdjustmentReason)


def _picked(model: type[BaseModel], item: Item) -> dict[str, Any]:
    """The item's attributes that are fields of a domain model."""
    return {k: item[k] for k in model.model_fields if k in item}


def _product_pk(sku: str) -> str:
    return f"PRODUCT#{sku}"


# -- inventory -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductItem:
    """A product's item: the product without its variants (items of their own), and when it was
    hidden (deleted: its history is being purged)."""

    product: Product
    deleted_at: str | None = None

    TYPE = "product"
    SK = "PRODUCT"
    CATALOG = "CATALOG"
    CATALOG_KEYS = ("pk", "sk", "catalog_pk", "catalog_sk")

    @classmethod
    def key(cls, sku: str) -> Key:
        return {"pk": _product_pk(sku), "sk": cls.SK}

    @classmethod
    def sku_of(cls, pk: str, sk: str) -> str | None:
        """The SKU of a product item's key, None for any other key."""
        sku = pk.removeprefix("PRODUCT#")
        return sku if sk == cls.SK and pk.startswith("PRODUCT#") and sku else None

    @staticmethod
    def partition(sku: str) -> Cond:
        """Everything of a product: the history, the product and its variants."""
        return eq("pk", _product_pk(sku))

    @classmethod
    def with_variants(cls, sku: str) -> Cond:
        return cls.partition(sku) & ge("sk", cls.SK)

    @classmethod
    def in_catalog(cls, category: str | None = None) -> Cond:
        listed = eq("catalog_pk", cls.CATALOG)
        return listed & begins_with("catalog_sk", f"{category}#") if category else listed

    @classmethod
    def new(cls, sku: str, data: ProductIn, at: str) -> Self:
        return cls(Product(sku=sku, **data.model_dump(exclude={"variants"}), created_at=at, updated_at=at))

    def item(self) -> Item:
        p = self.product
        catalog = {"catalog_pk": self.CATALOG, "catalog_sk": f"{p.category.value}#{p.sku}#0"}
        fields = {**p.model_dump(exclude={"variants"}), "category": p.category.value}
        return {**self.key(p.sku), "type": self.TYPE, **fields, "deleted_at": self.deleted_at, **catalog}

    @classmethod
    def parse(cls, item: Item) -> Self:
        return cls(Product.model_validate(_picked(Product, item)), item.get("deleted_at"))

    def whole(self, variants: list[VariantItem]) -> Product:
        """The product with its variants, in size order."""
        ordered = sorted((v.variant for v in variants), key=lambda v: size_order(v.size))
        return self.product.model_copy(update={"variants": ordered})


@dataclass(frozen=True)
class VariantItem:
    """A variant's item: the variant, whose product it is, and its version (optimistic writes)."""

    sku: str
    category: str
    variant: Variant
    # A new variant's first version is random: one deleted and put again never takes a version that
    # an earlier read of the old one holds (that read's write would pass its check).
    version: int = field(default_factory=lambda: secrets.randbits(48) + 1)
    deleted_at: str | None = None  # its product was deleted

    TYPE = "variant"
    LOWSTOCK = "LOWSTOCK"
    LOWSTOCK_KEYS = ("pk", "sk", "lowstock_pk", "lowstock_sk")
    INDEX_KEYS = ("catalog_pk", "catalog_sk", "lowstock_pk", "lowstock_sk")

    @staticmethod
    def key(sku: str, size: str) -> Key:
        return {"pk": _product_pk(sku), "sk": f"VARIANT#{size}"}

    @classmethod
    def new(cls, sku: str, data: ProductIn, at: str) -> list[Self]:
        """A new product's variants."""
        return [
            cls(sku, data.category.value, Variant(**v.model_dump(), updated_at=at)) for v in data.variants
        ]

    def item(self) -> Item:
        v = self.variant
        catalog = {"catalog_pk": ProductItem.CATALOG, "catalog_sk": f"{self.category}#{self.sku}#1#{v.size}"}
        stored = {
            "sku": self.sku,
            "category": self.category,
            "version": self.version,
            "deleted_at": self.deleted_at,
        }
        return {
            **self.key(self.sku, v.size),
            "type": self.TYPE,
            **v.model_dump(),
            **stored,
            **catalog,
            **self.lowstock_keys(),
        }

    def lowstock_keys(self) -> Item:
        """The LowStock index keys while the variant is low; None values remove them."""
        if self.variant.quantity <= self.variant.reorder_level:
            return {"lowstock_pk": self.LOWSTOCK, "lowstock_sk": f"{self.sku}#{self.variant.size}"}
        return {"lowstock_pk": None, "lowstock_sk": None}

    @classmethod
    def parse(cls, item: Item) -> Self:
        variant = Variant.model_validate(_picked(Variant, item))
        return cls(item["sku"], item["category"], variant, item["version"], item.get("deleted_at"))


class AdjustmentItem:
    TYPE = "adjustment"

    @staticmethod
    def key(a: Adjustment) -> Key:
        return {"pk": _product_pk(a.sku), "sk": f"ADJUSTMENT#{a.size}#{a.at}#{a.id}"}

    @staticmethod
    def of_variant(sku: str, size: str) -> Cond:
        return eq("pk", _product_pk(sku)) & begins_with("sk", f"ADJUSTMENT#{size}#")

    @staticmethod
    def is_of_variant(sk: str, size: str) -> bool:
        return sk.startswith(f"ADJUSTMENT#{size}#")

    @classmethod
    def item(cls, adjustment: Adjustment) -> Item:
        return {**cls.key(adjustment), "type": cls.TYPE, **adjustment.model_dump(exclude_none=True)}

    @staticmethod
    def parse(item: Item) -> Adjustment:
        fields = _picked(Adjustment, item)
        if fields["reason"] not in _REASONS:  # written before reasons were a fixed list: free text
            fields["note"] = fields.get("note") or fields["reason"]
            fields["reason"] = AdjustmentReason.OTHER
        return Adjustment(**fields)


@dataclass(frozen=True)
class WriteRecord:
    """What an inventory write answered, written in the write's own transaction and kept a day (TTL):
    under the caller's Idempotency-Key (`h` is its SHA-256, so keys of any shape make a bounded key),
    or under the batch id for a bulk adjustment sent without one. A bulk adjustment's record (`type`
    "batch") holds its lines; the table's stream files them as adjustment items."""

    result: str  # the answer, as JSON
    created_at: str
    expires_at: int  # epoch seconds; an expired record still in the table counts as absent
    fingerprint: str | None = None  # what was asked (method, path, body): another body is a reuse

    TYPE = "write"
    BATCH_TYPE = "batch"
    SK = "WRITE"

    @classmethod
    def key(cls, user_id: str, key_hash: str) -> Key:
        return {"pk": f"USER#{user_id}#IDEM#{key_hash}", "sk": cls.SK}

    @classmethod
    def batch_key(cls, batch_id: str) -> Key:
        return {"pk": f"BATCH#{batch_id}", "sk": cls.SK}

    def item(self, key: Key, *, batch: bool) -> Item:
        return {**key, "type": self.BATCH_TYPE if batch else self.TYPE, **asdict(self)}

    @classmethod
    def parse(cls, item: Item) -> Self:
        return cls(item["result"], item["created_at"], item["expires_at"], item.get("fingerprint"))

    @classmethod
    def is_batch(cls, item: Item | None) -> bool:
        return item is not None and item.get("type") == cls.BATCH_TYPE


class SkuCounterItem:
    TYPE = "counter"
    NEXT = "next_number"

    @staticmethod
    def key(prefix: str) -> Key:
        return {"pk": "COUNTER#SKU", "sk": prefix}


# -- conversations -------------------------------------------------------------------------------------


def _conversation_pk(user_id: str, conversation_id: str) -> str:
    return f"USER#{user_id}#CONV#{conversation_id}"


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
    SK = "STATE"
    ACTIVITY_KEYS = ("pk", "sk", "activity_pk", "activity_sk")
    LIVE = exists("pk") & absent("deleting")  # a write's condition: there, and not being deleted

    @classmethod
    def key(cls, user_id: str, conversation_id: str) -> Key:
        return {"pk": _conversation_pk(user_id, conversation_id), "sk": cls.SK}

    @classmethod
    def of_key(cls, pk: str, sk: str) -> ConversationRef | None:
        """The conversation whose state item has this key, None for any other key."""
        user_part, mark, conversation_id = pk.partition("#CONV#")
        if sk == cls.SK and mark and user_part.startswith("USER#") and conversation_id:
            return ConversationRef(user_part.removeprefix("USER#"), conversation_id)
        return None

    @staticmethod
    def partition(user_id: str, conversation_id: str) -> Cond:
        """The state item and every message of a conversation."""
        return eq("pk", _conversation_pk(user_id, conversation_id))

    @classmethod
    def with_messages(cls, user_id: str, conversation_id: str) -> Cond:
        """The messages and the state item ("MSG#" < "STATE"), never an answer's chunks ("CHUNK#")."""
        return cls.partition(user_id, conversation_id) & ge("sk", "MSG#")

    @staticmethod
    def of_user(user_id: str) -> Cond:
        return eq("activity_pk", f"USER#{user_id}")

    @staticmethod
    def activity(user_id: str, at: str, conversation_id: str) -> Item:
        return {"activity_pk": f"USER#{user_id}", "activity_sk": f"{at}#{conversation_id}"}

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
        summary = SummaryState(
            through_seq=item.get("summary_through_seq", 0),
            updated_at=item.get("summary_updated_at"),
            text=item.get("summary_text", ""),
            folded_messages=item.get("summary_folded", 0),
        )
        return cls(
            user_id=item["user_id"],
            conversation=Conversation(**_picked(Conversation, item), summary=summary),
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
    KEYS = ("pk", "sk")

    @staticmethod
    def sk(seq: int) -> str:
        return f"MSG#{seq:010d}"

    @classmethod
    def key(cls, user_id: str, conversation_id: str, seq: int) -> Key:
        return {"pk": _conversation_pk(user_id, conversation_id), "sk": cls.sk(seq)}

    @staticmethod
    def of(user_id: str, conversation_id: str) -> Cond:
        return ConversationItem.partition(user_id, conversation_id) & begins_with("sk", "MSG#")

    @classmethod
    def between(cls, user_id: str, conversation_id: str, first: int, last: int) -> Cond:
        return ConversationItem.partition(user_id, conversation_id) & between(
            "sk", cls.sk(first), cls.sk(last)
        )

    @classmethod
    def item(
        cls, user_id: str, conversation_id: str, message: Message, record: StreamRecord | None = None
    ) -> Item:
        """A message's item; an answer's (a MessageDetail) keeps its assembly, and `record` what replays
        its stream."""
        return {
            **cls.key(user_id, conversation_id, message.seq),
            "type": cls.TYPE,
            "conversation_id": conversation_id,
            **message.model_dump(exclude_none=True),
            **(record.model_dump() if record else {}),
        }

    @staticmethod
    def parse(item: Item) -> Message:
        return Message.model_validate(_picked(Message, item))

    @staticmethod
    def parse_stored(item: Item) -> tuple[MessageDetail, StreamRecord]:
        """The message with its assembly record, and what replays its stream."""
        detail = MessageDetail.model_validate(_picked(MessageDetail, item))
        return detail, StreamRecord.model_validate(_picked(StreamRecord, item))


class ChunkItem:
    """A piece of an answer's events while it streams (`{"d": text}` or `{"t": tool, "s": status}`)."""

    TYPE = "chunk"

    @staticmethod
    def sk(seq: int, n: int = 0) -> str:
        return f"CHUNK#{seq:010d}#{n:05d}"

    @classmethod
    def item(
        cls, user_id: str, conversation_id: str, seq: int, n: int, events: list[Item], expires_at: int
    ) -> Item:
        key = {"pk": _conversation_pk(user_id, conversation_id), "sk": cls.sk(seq, n)}
        return {**key, "type": cls.TYPE, "n": n, "events": events, "expires_at": expires_at}

    @classmethod
    def after(cls, user_id: str, conversation_id: str, seq: int, n: int) -> Cond:
        """The chunks of answer `seq` after chunk `n`."""
        partition = ConversationItem.partition(user_id, conversation_id)
        return partition & between("sk", cls.sk(seq, n + 1), cls.sk(seq, 99_999))


class UsageItem:
    """A user's tokens and cost in one budget period (a day)."""

    TYPE = "usage"

    @staticmethod
    def key(user_id: str, period: str) -> Key:
        return {"pk": f"USER#{user_id}", "sk": f"USAGE#{period}"}

    @staticmethod
    def parse(item: Item) -> PeriodUsage:
        return PeriodUsage(**{f.name: item[f.name] for f in fields(PeriodUsage) if f.name in item})
