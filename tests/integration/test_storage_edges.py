"""Storage edges a user would notice only over time: long stock histories, overtaken turns, and an
assistant that can only ever read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shelfwise import clock
from shelfwise.chat.models import Conversation, Message
from shelfwise.chat.tools import TOOL_NAMES, InventoryTools
from shelfwise.errors import TurnInProgress
from shelfwise.inventory.models import AdjustmentReason, StockChange
from shelfwise.services import Services
from shelfwise.storage.conversations import ConversationRepository
from shelfwise.storage.dynamo import Dynamo
from shelfwise.storage.inventory import InventoryRepository
from tests.fixtures.app import make_settings
from tests.fixtures.catalog import black_tee
from tests.fixtures.dynamodb import DynamoTarget


class CountingDynamo(Dynamo):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.items_read = 0

    def call(self, operation: str, /, **kwargs: Any) -> Any:
        out = super().call(operation, **kwargs)
        self.items_read += len(out.get("Items", []))
        return out


def test_reading_a_product_does_not_read_its_stock_history(ddb: DynamoTarget) -> None:
    db = CountingDynamo(ddb.client, ddb.table_name)
    repo = InventoryRepository(db)
    repo.create_product("TE-0001", black_tee(("S", 100), ("M", 100)))
    for i in range(30):
        repo.adjust_stock(StockChange("TE-0001", "M", -1, AdjustmentReason.SALE, f"#{i}"), "till")
    db.items_read = 0
    product = repo.get_product("TE-0001")
    assert {v.size: v.quantity for v in product.variants} == {"S": 100, "M": 70}
    assert db.items_read == 3  # the product and its two variants, not 30 adjustments


def _message(seq: int, role: str) -> Message:
    return Message(id=f"m{seq}", seq=seq, role=role, content=role, created_at=clock.now_iso())  # type: ignore[arg-type]


def test_an_overtaken_turn_keeps_its_answer_and_leaves_the_newer_lock(ddb: DynamoTarget) -> None:
    repo = ConversationRepository(Dynamo(ddb.client, ddb.table_name))
    at = clock.now_iso()
    repo.create("u", Conversation(id="c1", prompt_key="inventory-assistant", created_at=at, updated_at=at))
    # turn A's lock has already run out (it crashed, or ran past turn_lock_seconds) ...
    repo.begin_turn("u", repo.get("u", "c1"), _message(1, "user"), turn_id="A", lock_seconds=-10)
    # ... so turn B may take the conversation
    repo.begin_turn("u", repo.get("u", "c1"), _message(3, "user"), turn_id="B", lock_seconds=600)
    repo.finish_turn("u", "c1", _message(2, "assistant"), turn_id="A")  # A's answer still lands
    raw = ddb.client.get_item(
        TableName=ddb.table_name,
        Key={"pk": {"S": "USER#u#CONV#c1"}, "sk": {"S": "STATE"}},
        ConsistentRead=True,
    )["Item"]
    assert raw["turn_id"] == {"S": "B"}  # and B still holds the conversation
    repo.finish_turn("u", "c1", _message(4, "assistant"), turn_id="B")
    raw = ddb.client.get_item(
        TableName=ddb.table_name,
        Key={"pk": {"S": "USER#u#CONV#c1"}, "sk": {"S": "STATE"}},
        ConsistentRead=True,
    )["Item"]
    assert "turn_id" not in raw
    messages = repo.list_messages("u", "c1", limit=10, cursor=None).items
    assert [(m.seq, m.role) for m in messages] == [
        (1, "user"),
        (2, "assistant"),
        (3, "user"),
        (4, "assistant"),
    ]
    assert repo.get("u", "c1").message_count == 4


_WRITES = {"put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"}


def test_the_assistants_tools_only_read(ddb: DynamoTarget) -> None:
    """Every tool the assistant can call, with arguments that find something: not one write."""
    calls: list[str] = []

    class Recording(Dynamo):
        def call(self, operation: str, /, **kwargs: Any) -> Any:
            calls.append(operation)
            return super().call(operation, **kwargs)

    services = Services(make_settings(ddb.table_name), dynamo=Recording(ddb.client, ddb.table_name))
    services.inventory.create_product(black_tee(("S", 1), ("M", 17)), actor="till")
    tools = InventoryTools(services.inventory)
    arguments = {
        "search_products": {"query": "essential"},
        "get_product": {"sku": "TE-0001"},
        "list_low_stock": {},
        "get_inventory_value": {},
    }
    assert set(arguments) == set(TOOL_NAMES)
    calls.clear()
    for name, args in arguments.items():
        result, ok = tools.run(name, json.dumps(args))
        assert ok, (name, result)
    assert calls, "the tools read the table"
    assert not _WRITES & set(calls), calls


def test_the_catalog_for_totals_reads_every_product_of_many_pages_once(ddb: DynamoTarget) -> None:
    """More products than one catalog page holds (1,000), with three variants each (more items than
    one page reads): every product once, with all its variants (the inventory value's input)."""
    db = CountingDynamo(ddb.client, ddb.table_name)
    repo = InventoryRepository(db)
    tee = black_tee(("S", 1), ("M", 2), ("L", 3))
    repo.import_products([(f"TE-{n:04d}", tee) for n in range(1, 1_201)])
    products = list(repo.catalog())
    assert [p.sku for p in products] == [f"TE-{n:04d}" for n in range(1, 1_201)]
    assert {sum(v.quantity for v in p.variants) for p in products} == {6}
    # pages meet at a product: only the few items where a page ended are read twice
    assert 1_200 * 4 <= db.items_read <= 1_200 * 4 + 20


def test_a_second_tab_told_busy_learns_the_running_answer(ddb: DynamoTarget) -> None:
    """Two tabs read the conversation, one begins its turn: the other's message takes the same seq,
    and its 409 names the running answer (the slot and the lock are both refused: either may be
    the condition an emulator reports)."""
    repo = ConversationRepository(Dynamo(ddb.client, ddb.table_name))
    at = clock.now_iso()
    repo.create("u", Conversation(id="c1", prompt_key="inventory-assistant", created_at=at, updated_at=at))
    stale = repo.get("u", "c1")
    repo.begin_turn("u", stale, _message(1, "user"), turn_id="A", lock_seconds=600, answer_id="answer-A")
    with pytest.raises(TurnInProgress) as refused:
        repo.begin_turn("u", stale, _message(1, "user"), turn_id="B", lock_seconds=600, answer_id="answer-B")
    assert refused.value.details["message_id"] == "answer-A"
    assert 1 <= refused.value.details["retry_after"] <= 5


def test_an_abandoned_answer_is_settled_once_and_never_into_a_deleted_conversation(ddb: DynamoTarget) -> None:
    """Two readers settling the same abandoned answer: one writes, the answer counts once. A
    conversation deleted meanwhile gets no message back."""
    from shelfwise.chat.events import TurnEvent, abandoned
    from shelfwise.chat.models import StreamRecord

    repo = ConversationRepository(Dynamo(ddb.client, ddb.table_name))
    at = clock.now_iso()
    for cid in ("c1", "c2"):
        repo.create("u", Conversation(id=cid, prompt_key="inventory-assistant", created_at=at, updated_at=at))
        repo.begin_turn("u", repo.get("u", cid), _message(1, "user"), turn_id="A", lock_seconds=-10)
        streaming = _message(2, "assistant").model_copy(update={"content": "", "status": "streaming"})
        repo.open_answer("u", cid, streaming, StreamRecord(turn_id="A", opening={"model": "m"}))
    answer, ending = abandoned(streaming, [TurnEvent.delta("We have 17")])

    assert repo.settle_answer("u", "c1", answer, ending)
    assert not repo.settle_answer("u", "c1", answer, ending)
    assert repo.get("u", "c1").message_count == 2
    stored = repo.find_message("u", "c1", answer.id)
    assert stored is not None
    assert (stored[0].status, stored[0].content, stored[1].opening) == (
        "interrupted",
        "We have 17",
        {"model": "m"},
    )

    repo.delete("u", "c2")
    assert not repo.settle_answer("u", "c2", answer, ending)
    assert repo.find_message("u", "c2", answer.id) is None
