"""Records written by the real code, read from the table's stream by the local pump, filtered by
TitleFunction's FilterCriteria from template.yaml (moto and DynamoDB Local).

Every item type goes by (product, variant, adjustment, counter, conversation, message) with
INSERT, MODIFY and REMOVE; exactly the records of conversations that need a title may pass.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from infra.local.stream_pump import StreamPump
from shelfwise.chat.models import ConversationIn, ConversationPatch, ConversationRef
from shelfwise.errors import UpstreamError
from shelfwise.inventory.models import ProductIn, ProductPatch, VariantIn
from shelfwise.storage.codec import decode_item
from tests.fixtures.app import chat_settings, make_services
from tests.fixtures.dynamodb import DynamoTarget

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def drain(pump: StreamPump, *, quiet_polls: int = 3, timeout: float = 20.0) -> None:
    """Poll until the stream has been quiet for a few polls (DynamoDB Local may lag a little)."""
    quiet, deadline = 0, time.monotonic() + timeout
    while quiet < quiet_polls:
        assert time.monotonic() < deadline, "the stream did not go quiet"
        quiet = 0 if pump.pump_once() else quiet + 1
        time.sleep(0.05)


def item_of(record: dict[str, Any]) -> dict[str, Any]:
    stream = record["dynamodb"]
    return decode_item(stream.get("NewImage") or stream.get("OldImage") or stream["Keys"])


def test_only_records_of_conversations_needing_a_title_pass(ddb: DynamoTarget, model: Any) -> None:
    services = make_services(ddb, **chat_settings(model))
    seen: list[tuple[dict[str, Any], bool]] = []
    delivered: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        delivered.extend(event["Records"])
        return {"batchItemFailures": []}

    pump = StreamPump(
        endpoint_url=ddb.endpoint_url,
        table_name=ddb.table_name,
        handler=handler,
        client_kwargs=CREDENTIALS,
        on_record=lambda record, matched: seen.append((record, matched)),
    ).open()

    # Inventory: every item type, every event.
    inventory = services.inventory
    product = inventory.create_product(
        ProductIn.model_validate(
            {
                "category": "tees",
                "name": "Filter Tee",
                "color": "sage",
                "price": 20,
                "variants": [{"size": "M", "quantity": 5, "reorder_level": 2}],
            }
        ),
        actor="ada",
    )
    inventory.put_variant(product.sku, "L", VariantIn(quantity=1, reorder_level=2), actor="ada")
    inventory.adjust_stock(product.sku, "M", delta=-2, reason="sale", actor="ada")
    inventory.update_product(product.sku, ProductPatch.model_validate({"price": 22}), actor="ada")
    inventory.delete_variant(product.sku, "L", actor="ada")
    second = {"category": "tees", "name": "Second Tee", "color": "ink", "price": 18}
    inventory.create_product(ProductIn.model_validate(second), actor="ada")
    inventory.delete_product(product.sku, actor="ada")
    assert inventory.purge_product(product.sku) == 3  # the product, variant M and its adjustment

    # Conversations and messages.
    chat, titles = services.chat, services.titles
    untitled = chat.create_conversation("ada", ConversationIn())
    named = chat.create_conversation("ada", ConversationIn(title="Named by me"))
    asyncio.run(_answered(chat, "ada", untitled.id, "How many sage tees in M?"))  # seq 1 and 2
    chat.repo.fold_summary(
        "ada", untitled.id, previous_through=0, through_seq=2, text="asked about sage tees", folded=2
    )
    asyncio.run(_answered(chat, "ada", untitled.id, "And in L?"))  # seq 3 and 4: still untitled
    asyncio.run(_answered(chat, "ada", named.id, "What is low on stock?"))
    failing = chat.create_conversation("ada", ConversationIn())
    model.fail("server_error", times=1, task="chat")
    with pytest.raises(UpstreamError):
        asyncio.run(_answered(chat, "ada", failing.id, "Hello?"))  # no answer stored: the turn is released
    ref = ConversationRef("ada", untitled.id)
    assert titles.repo.write_generated(ref, "Sage tee stock", generated_by="test", request_token=None)
    titles.request("ada", untitled.id)
    state = titles.repo.read(ref)
    assert state is not None
    assert titles.repo.write_generated(ref, "Fresh", generated_by="test", request_token=state.title_requested)
    chat.update_conversation("ada", named.id, ConversationPatch(title="Renamed"))
    chat.delete_conversation("ada", failing.id)
    drain(pump)

    # Every kind of record went by...
    kinds = Counter((item_of(r).get("type"), r["eventName"]) for r, _ in seen)
    for kind in ("product", "variant", "adjustment", "message", "conversation"):
        for event in ("INSERT", "REMOVE"):
            assert kinds[(kind, event)], (kind, event, kinds)
    for kind in ("product", "variant", "conversation", "counter"):
        assert kinds[(kind, "MODIFY")], (kind, kinds)
    roles = {
        (item_of(r).get("role"), item_of(r).get("seq"))
        for r, _ in seen
        if item_of(r).get("type") == "message"
    }
    assert {("user", 1), ("assistant", 2), ("user", 3), ("assistant", 4)} <= roles

    # ...and exactly these passed, in order: two turn ends and a released turn on untitled
    # conversations, and the refresh request. Not the function's own writes, not the rename.
    def why(record: dict[str, Any]) -> tuple[str, str]:
        new = decode_item(record["dynamodb"]["NewImage"])
        return new["id"], "refresh" if "title_requested" in new else "turn ended"

    passed = [why(r) for r, matched in seen if matched]
    assert passed == [
        (untitled.id, "turn ended"),
        (untitled.id, "turn ended"),
        (failing.id, "turn ended"),
        (untitled.id, "refresh"),
    ]
    assert [why(r) for r in delivered] == passed
    assert pump.stats.records_read == len(seen)
    assert pump.stats.records_matched == len(passed)
    assert all(r["eventName"] == "MODIFY" for r in delivered)
    assert all(r["eventSourceARN"] == pump.stream_arn for r in delivered)
    assert all(isinstance(r["dynamodb"]["ApproximateCreationDateTime"], int) for r in delivered)


async def _answered(chat: Any, user_id: str, conversation_id: str, content: str) -> Any:
    """One JSON turn, and its after-turn work (the summary fold) settled."""
    try:
        return await chat.answer(user_id, conversation_id, content)
    finally:
        await chat.settle()
