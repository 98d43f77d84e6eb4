"""Every DynamoDB key of the single table is built here and nowhere else.

    item            pk                   sk                       sparse index keys
    product         PRODUCT#<sku>        PRODUCT                  catalog: CATALOG / <category>#<sku>#0
    variant         PRODUCT#<sku>        VARIANT#<size>           catalog: CATALOG / <category>#<sku>#1#<size>
                                                                  lowstock (when quantity <= reorder level):
                                                                      LOWSTOCK / <sku>#<size>
    adjustment      PRODUCT#<sku>        ADJUSTMENT#<size>#<at>#<id>
    sku counter     COUNTER#SKU          <prefix>
    conversation    USER#<uid>#CONV#<id> STATE                    activity: USER#<uid> / <updated_at>#<id>
    message         USER#<uid>#CONV#<id> MSG#<seq, 10 digits>

A conversation's state item sorts after its messages ("S" > "M"), so one descending Query returns
the state and the newest window of messages together. Every key of a user's data starts with
USER#<uid>: an IAM dynamodb:LeadingKeys condition could pin a caller to their own items.

A product and its variants share a partition and sit next to each other in the Catalog index, so one
Query pages through products *with* their variants; the catalog sort key orders a product before
its variants ("0" < "1").
"""

from __future__ import annotations

from typing import Final

CATALOG: Final = "CATALOG"
LOWSTOCK: Final = "LOWSTOCK"
CATALOG_INDEX: Final = "Catalog"
LOWSTOCK_INDEX: Final = "LowStock"
ACTIVITY_INDEX: Final = "ByActivity"

Key = dict[str, str]


def product_pk(sku: str) -> str:
    return f"PRODUCT#{sku}"


PRODUCT_SK: Final = "PRODUCT"
# In a product's partition ADJUSTMENT#... < PRODUCT < VARIANT#...: `sk >= PRODUCT_SK` reads the
# product and its variants and never its (ever-growing) adjustment history.


def product_of(pk: str, sk: str) -> str | None:
    """The SKU of a product item's key, None for any other key."""
    if sk == PRODUCT_SK and pk.startswith("PRODUCT#") and len(pk) > len("PRODUCT#"):
        return pk.removeprefix("PRODUCT#")
    return None


def product_key(sku: str) -> Key:
    return {"pk": product_pk(sku), "sk": PRODUCT_SK}


def variant_key(sku: str, size: str) -> Key:
    return {"pk": product_pk(sku), "sk": f"VARIANT#{size}"}


def adjustment_key(sku: str, size: str, at: str, adjustment_id: str) -> Key:
    return {"pk": product_pk(sku), "sk": f"{adjustment_prefix(size)}{at}#{adjustment_id}"}


def adjustment_prefix(size: str) -> str:
    return f"ADJUSTMENT#{size}#"


def sku_counter_key(prefix: str) -> Key:
    return {"pk": "COUNTER#SKU", "sk": prefix}


def catalog_product_sk(category: str, sku: str) -> str:
    return f"{category}#{sku}#0"


def catalog_variant_sk(category: str, sku: str, size: str) -> str:
    return f"{category}#{sku}#1#{size}"


def catalog_category_prefix(category: str) -> str:
    return f"{category}#"


def lowstock_sk(sku: str, size: str) -> str:
    return f"{sku}#{size}"


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def conversation_pk(user_id: str, conversation_id: str) -> str:
    return f"USER#{user_id}#CONV#{conversation_id}"


CONVERSATION_SK: Final = "STATE"


def conversation_key(user_id: str, conversation_id: str) -> Key:
    return {"pk": conversation_pk(user_id, conversation_id), "sk": CONVERSATION_SK}


MESSAGE_PREFIX: Final = "MSG#"


def message_sk(seq: int) -> str:
    return f"{MESSAGE_PREFIX}{seq:010d}"


def message_key(user_id: str, conversation_id: str, seq: int) -> Key:
    return {"pk": conversation_pk(user_id, conversation_id), "sk": message_sk(seq)}


def conversation_of(pk: str, sk: str) -> tuple[str, str] | None:
    """(user id, conversation id) of a conversation's state key, None for any other key."""
    user_part, mark, conversation_id = pk.partition("#CONV#")
    if sk == CONVERSATION_SK and mark and user_part.startswith("USER#") and conversation_id:
        return user_part.removeprefix("USER#"), conversation_id
    return None


def activity_sk(updated_at: str, conversation_id: str) -> str:
    return f"{updated_at}#{conversation_id}"
