"""Plain Python values <-> DynamoDB attribute values.

A hand-rolled codec instead of boto3's TypeSerializer: importing boto3.dynamodb pulls in the whole
boto3 session machinery, which a cold start that never touches the table should not pay for.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

AttributeValue = dict[str, Any]
Item = dict[str, Any]


def to_attr(value: Any) -> AttributeValue:
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(v) for v in value]}
    if isinstance(value, float):
        raise TypeError("floats are not stored: use Decimal or int")
    raise TypeError(f"cannot store {type(value).__name__}")


def from_attr(attr: AttributeValue) -> Any:
    ((kind, value),) = attr.items()
    match kind:
        case "S":
            return value
        case "N":
            number = Decimal(value)
            return int(number) if number == number.to_integral_value() and "." not in value else number
        case "BOOL":
            return bool(value)
        case "NULL":
            return None
        case "M":
            return {k: from_attr(v) for k, v in value.items()}
        case "L":
            return [from_attr(v) for v in value]
        case "SS":
            return set(value)
        case "NS":
            return {Decimal(v) for v in value}
    raise TypeError(f"unsupported attribute type {kind}")


def encode_item(item: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Encode an item, leaving out attributes that are None (absent beats NULL for sparse indexes)."""
    return {k: to_attr(v) for k, v in item.items() if v is not None}


def decode_item(raw: Mapping[str, AttributeValue]) -> Item:
    return {k: from_attr(v) for k, v in raw.items()}
