"""The list shape every list route answers: {"items": [...], "next_cursor": "<opaque>" | null}, and
the opaque cursor: a page's last key, URL-safe, checked against the list it is handed back to."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from shelfwise.errors import InvalidInput


class Page[T](BaseModel):
    items: list[T]
    next_cursor: str | None = None

    @classmethod
    def ending_at(cls, items: list[T], last_key: Mapping[str, str] | None) -> Page[T]:
        """A page whose next one starts after `last_key` (None: this is the last page)."""
        return cls(items=items, next_cursor=encode_cursor(last_key) if last_key else None)


def encode_cursor(key: Mapping[str, str]) -> str:
    """An opaque, URL-safe cursor for a page's last key (string attributes only)."""
    raw = json.dumps(dict(sorted(key.items())), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str | None, *, names: Iterable[str], fixed: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """The key a cursor made by encode_cursor holds, for a query over `names` key attributes (None
    for no cursor: the first page).

    `fixed` pins attributes (the partition being queried): a cursor from another partition, another
    user's for instance, is refused rather than handed to DynamoDB.
    """
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        plain = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not valid", field="cursor") from exc
    expected = set(names)
    if (
        not isinstance(plain, dict)
        or set(plain) != expected
        or not all(isinstance(v, str) and v for v in plain.values())
        or any(plain.get(k) != v for k, v in (fixed or {}).items())
    ):
        raise InvalidInput("cursor is not valid for this list", field="cursor")
    return {str(k): str(v) for k, v in plain.items()}
