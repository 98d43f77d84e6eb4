"""TitleFunction's FilterCriteria (read from template.yaml) against records of every item type.

The filters must pass exactly the records of conversations that need a title:
  - a turn just ended (turn_id removed) on a conversation without a title, not being deleted;
  - a fresh title was asked for (title_requested set) on a conversation not being deleted;
and nothing else: no INSERT or REMOVE, no other item type, no message (whatever its role or seq),
and never the function's own write (it sets the title and removes title_requested).
tests/integration/test_title_stream.py checks the same with records written by the real code.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.stream_pump import StreamSource
from infra.local.stream_records import to_lambda_record
from shelfwise.storage.codec import encode_item

FILTERS = StreamSource.from_template("TitleFunction").filters
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/shelfwise/stream/2026-11-29T00:00:00.000"
CONV_KEY = {"pk": "USER#ada#CONV#c1", "sk": "STATE"}


def conversation(**extra: Any) -> dict[str, Any]:
    return {
        **CONV_KEY,
        "type": "conversation",
        "user_id": "ada",
        "id": "c1",
        "prompt_key": "inventory-assistant",
        "message_count": 0,
        "last_seq": 0,
        **extra,
    }


def message(seq: int, role: str) -> dict[str, Any]:
    return {
        "pk": "USER#ada#CONV#c1",
        "sk": f"MSG#{seq:010d}",
        "type": "message",
        "conversation_id": "c1",
        "id": f"m{seq}",
        "seq": seq,
        "role": role,
        "content": "hello",
    }


OTHER_ITEMS: dict[str, dict[str, Any]] = {
    "product": {"pk": "PRODUCT#TE-0001", "sk": "PRODUCT", "type": "product", "name": "Tee", "price": 20},
    "variant": {"pk": "PRODUCT#TE-0001", "sk": "VARIANT#M", "type": "variant", "quantity": 3},
    "adjustment": {"pk": "PRODUCT#TE-0001", "sk": "ADJUSTMENT#M#t#a1", "type": "adjustment", "delta": -1},
    "counter": {"pk": "COUNTER#SKU", "sk": "TE", "type": "counter", "value": 9},
    "message user seq 1": message(1, "user"),
    "message assistant seq 2": message(2, "assistant"),
    "message user seq 3": message(3, "user"),
    "message assistant seq 4": message(4, "assistant"),
}


def record(event: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    item = new or old
    assert item is not None
    raw: dict[str, Any] = {
        "eventID": "e1",
        "eventName": event,
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795959515,
            "Keys": encode_item({"pk": item["pk"], "sk": item["sk"]}),
            "SequenceNumber": "100",
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    if new is not None:
        raw["dynamodb"]["NewImage"] = encode_item(new)
    if old is not None:
        raw["dynamodb"]["OldImage"] = encode_item(old)
    return to_lambda_record(raw, stream_arn=STREAM_ARN, region="us-east-1")


@pytest.mark.parametrize("name", sorted(OTHER_ITEMS))
@pytest.mark.parametrize("event", ["INSERT", "MODIFY", "REMOVE"])
def test_no_other_item_ever_passes(name: str, event: str) -> None:
    item = OTHER_ITEMS[name]
    changed = {**item, "updated_at": "2026-11-29T00:00:01.000Z"}
    old, new = {"INSERT": (None, item), "MODIFY": (item, changed), "REMOVE": (item, None)}[event]
    assert not FILTERS.matches(record(event, old, new))


TURN = {"turn_id": "t1", "turn_until": 1795960000}
TITLED = {"title": "Tee stock", "title_source": "generated"}
USER_TITLED = {"title": "Mine", "title_source": "user"}
REQUESTED = {"title_requested": "tok1"}

CONVERSATION_CASES: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None, bool]] = [
    # (what, event, old, new, passes)
    ("created untitled", "INSERT", None, conversation(), False),
    ("created with the user's title", "INSERT", None, conversation(**USER_TITLED), False),
    ("turn begins", "MODIFY", conversation(), conversation(**TURN, message_count=1), False),
    ("first turn ends, untitled", "MODIFY", conversation(**TURN), conversation(message_count=2), True),
    (
        "a later turn ends, still untitled",
        "MODIFY",
        conversation(**TURN),
        conversation(message_count=4),
        True,
    ),
    ("turn ends, generated title", "MODIFY", conversation(**TURN, **TITLED), conversation(**TITLED), False),
    (
        "turn ends, user's title",
        "MODIFY",
        conversation(**TURN, **USER_TITLED),
        conversation(**USER_TITLED),
        False,
    ),
    (
        "expired turn taken over",
        "MODIFY",
        conversation(**TURN),
        conversation(turn_id="t2", turn_until=1),
        False,
    ),
    ("summary folded, untitled", "MODIFY", conversation(), conversation(summary_through_seq=2), False),
    ("user renames", "MODIFY", conversation(**TITLED), conversation(**USER_TITLED), False),
    ("the function's first title", "MODIFY", conversation(), conversation(**TITLED), False),
    (
        "the function's title during a turn",
        "MODIFY",
        conversation(**TURN),
        conversation(**TURN, **TITLED),
        False,
    ),
    ("refresh requested", "MODIFY", conversation(**TITLED), conversation(**TITLED, **REQUESTED), True),
    ("refresh requested, untitled", "MODIFY", conversation(), conversation(**REQUESTED), True),
    ("refresh answered", "MODIFY", conversation(**TITLED, **REQUESTED), conversation(**TITLED), False),
    (
        "pending refresh, turn begins",
        "MODIFY",
        conversation(**REQUESTED),
        conversation(**REQUESTED, **TURN),
        True,
    ),
    ("delete starts", "MODIFY", conversation(**TITLED), conversation(**TITLED, deleting=True), False),
    (
        "turn ends while deleting",
        "MODIFY",
        conversation(**TURN, deleting=True),
        conversation(deleting=True),
        False,
    ),
    (
        "refresh requested while deleting",
        "MODIFY",
        conversation(deleting=True),
        conversation(**REQUESTED, deleting=True),
        False,
    ),
    ("deleted", "REMOVE", conversation(**TITLED, deleting=True), None, False),
    ("deleted with a refresh pending", "REMOVE", conversation(**REQUESTED), None, False),
]


@pytest.mark.parametrize(
    ("event", "old", "new", "passes"),
    [case[1:] for case in CONVERSATION_CASES],
    ids=[case[0] for case in CONVERSATION_CASES],
)
def test_conversation_records(
    event: str, old: dict[str, Any] | None, new: dict[str, Any] | None, passes: bool
) -> None:
    assert FILTERS.matches(record(event, old, new)) is passes


def test_the_filters_look_only_under_the_dynamodb_key() -> None:
    """DynamoDB event source mappings filter on the `dynamodb` key only."""
    for pattern in FILTERS.patterns:
        assert set(pattern.root.fields) == {"dynamodb"}, pattern.source
