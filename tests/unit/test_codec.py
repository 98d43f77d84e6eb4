from __future__ import annotations

from decimal import Decimal

import pytest

from shelfwise.errors import InvalidInput
from shelfwise.pagination import decode_cursor, encode_cursor
from shelfwise.storage.codec import decode_item, encode_item


def test_items_round_trip_with_exact_numbers_and_no_nulls() -> None:
    item = {
        "pk": "PRODUCT#TE-0001",
        "price": Decimal("24.50"),
        "quantity": 0,
        "coming_soon": False,
        "collection": None,
        "tags": ["a", {"b": 1}],
    }
    encoded = encode_item(item)
    assert "collection" not in encoded  # absent, not NULL: sparse index keys depend on it
    assert encoded["price"] == {"N": "24.50"}
    assert encoded["coming_soon"] == {"BOOL": False}
    decoded = decode_item(encoded)
    assert decoded == {k: v for k, v in item.items() if v is not None}
    assert isinstance(decoded["quantity"], int)
    assert isinstance(decoded["price"], Decimal)


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        encode_item({"price": 0.1})


def test_cursor_is_url_safe_and_round_trips() -> None:
    key = {"pk": "PRODUCT#TE-0001", "sk": "VARIANT#M/?&="}
    cursor = encode_cursor(key)
    assert all(c.isalnum() or c in "-_" for c in cursor)
    assert decode_cursor(cursor, names=["pk", "sk"]) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        encode_cursor({"pk": "x"}),  # missing attribute
        encode_cursor({"pk": "x", "sk": "y", "extra": "z"}),
        encode_cursor({"pk": "USER#mallory", "sk": "y"}),  # another partition
    ],
)
def test_bad_or_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(cursor, names=["pk", "sk"], fixed={"pk": "USER#alice"})
    assert caught.value.details["field"] == "cursor"
