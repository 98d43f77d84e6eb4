"""What storage promises under faults: an answer of failure means nothing was written; an answer of
success means it was written once.

- A write whose answer is lost after DynamoDB applied it (a read timeout; botocore retries it):
  transactions carry a ClientRequestToken and conditional writes a `write_id`, so the retry
  recognises its own success. Run on DynamoDB Local, which honours the token as DynamoDB does.
- Throttling and conflicts with a running transaction are retried with backoff; when they persist
  the caller gets one retryable 503 (`storage_unavailable`, Retry-After), never a 409 or a 500, and
  a turn cut short by them leaves the conversation unlocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

from shelfwise import clock
from shelfwise.chat.models import Conversation, ConversationIn, Message
from shelfwise.errors import StorageUnavailable
from shelfwise.inventory.models import VariantIn
from shelfwise.services import Services
from shelfwise.storage.conversations import ConversationRepository
from shelfwise.storage.dynamo import Dynamo
from shelfwise.storage.inventory import InventoryRepository
from shelfwise.storage.usage import UsageRepository
from tests.fixtures.app import chat_settings, make_settings
from tests.fixtures.catalog import black_tee
from tests.fixtures.dynamodb import DynamoTarget


class LostAnswers:
    """A botocore hook: the first request of each named operation reaches DynamoDB and is applied,
    then its answer is lost (ReadTimeoutError), so botocore sends it again."""

    def __init__(self, client: Any, operations: set[str]) -> None:
        self.operations = set(operations)
        self.lost: list[str] = []
        self._http = URLLib3Session()
        client.meta.events.register("before-send.dynamodb.*", self._send)

    def _send(self, request: Any, **_: Any) -> None:
        operation = request.headers.get("X-Amz-Target", b"")
        name = (operation.decode() if isinstance(operation, bytes) else operation).rpartition(".")[2]
        if name in self.operations:
            self.operations.discard(name)
            self._http.send(request)  # DynamoDB applies it...
            self.lost.append(name)
            raise ReadTimeoutError(endpoint_url=request.url)  # ...and the answer never arrives


@pytest.fixture
def local(dynamodb_local: Any) -> Iterator[DynamoTarget]:
    from infra.local.table import create_table
    from tests.fixtures.dynamodb import unique_table_name

    name = unique_table_name()
    client = dynamodb_local.client()
    create_table(client, name)
    yield DynamoTarget("dynamodb-local", client, name, dynamodb_local.endpoint_url)
    client.delete_table(TableName=name)


pytestmark = pytest.mark.slow


def test_writes_whose_answer_was_lost_are_neither_lost_nor_doubled(local: DynamoTarget, model: Any) -> None:
    services = Services(
        make_settings(local.table_name, **chat_settings(model)),
        dynamo=Dynamo(local.client, local.table_name),
    )
    inventory, chat = services.inventory, services.chat
    lost = LostAnswers(local.client, {"TransactWriteItems", "UpdateItem", "PutItem"})

    product = inventory.create_product(black_tee(("M", 10)), actor="till")  # transaction, lost once
    inventory.adjust_stock(product.sku, "M", delta=-3, reason="sale", actor="till")
    lost.operations |= {"TransactWriteItems"}
    inventory.adjust_stock(product.sku, "M", delta=-2, reason="sale", actor="till")
    assert inventory.get_product(product.sku).variants[0].quantity == 5  # 10 - 3 - 2, each once
    assert len(inventory.adjustments(product.sku, "M", limit=10)) == 2

    conversation = chat.create_conversation("ada", ConversationIn())  # conditional put, lost once
    lost.operations |= {"TransactWriteItems", "UpdateItem"}
    asyncio.run(_answered(chat, "ada", conversation.id, "How many black tees in M?"))  # begin + finish
    lost.operations |= {"TransactWriteItems"}
    asyncio.run(_answered(chat, "ada", conversation.id, "and in L?"))
    stored = chat.get_conversation("ada", conversation.id)
    assert stored.message_count == 4
    messages = chat.list_messages("ada", conversation.id, limit=10, cursor=None).items
    assert [(m.seq, m.role) for m in messages] == [
        (1, "user"),
        (2, "assistant"),
        (3, "user"),
        (4, "assistant"),
    ]
    # ...and the conversation is free: a third message is taken at once.
    asyncio.run(_answered(chat, "ada", conversation.id, "thanks"))
    assert {"TransactWriteItems", "PutItem", "UpdateItem"} <= set(lost.lost)


class Flaky:
    """A DynamoDB client that answers the first `times` calls of `operation` with `code`."""

    def __init__(
        self, client: Any, operation: str, code: str, times: int, reasons: list[str] | None = None
    ) -> None:
        self._client, self.operation, self.code, self.left = client, operation, code, times
        self.reasons = reasons
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != self.operation:
            return real

        def call(**kwargs: Any) -> Any:
            if self.left:
                self.left -= 1
                self.failed += 1
                error: dict[str, Any] = {"Error": {"Code": self.code, "Message": "injected"}}
                if self.reasons is not None:
                    error["CancellationReasons"] = [{"Code": r} for r in self.reasons]
                raise ClientError(error, name)  # type: ignore[arg-type]
            return real(**kwargs)

        return call


def _message(seq: int, role: str) -> Message:
    return Message(id=f"m{seq}", seq=seq, role=role, content=role, created_at=clock.now_iso())  # type: ignore[arg-type]


def _repo(ddb: DynamoTarget, flaky: Flaky) -> ConversationRepository:
    return ConversationRepository(Dynamo(flaky, ddb.table_name, sleep=lambda _: None))  # type: ignore[arg-type]


def _conversation(ddb: DynamoTarget) -> Conversation:
    repo = ConversationRepository(Dynamo(ddb.client, ddb.table_name))
    at = clock.now_iso()
    repo.create("u", Conversation(id="c1", prompt_key="inventory-assistant", created_at=at, updated_at=at))
    return repo.get("u", "c1")


def test_a_conflict_while_finishing_a_turn_is_retried_and_frees_the_conversation(ddb: DynamoTarget) -> None:
    conversation = _conversation(ddb)
    flaky = Flaky(
        ddb.client, "transact_write_items", "TransactionCanceledException", 0, ["None", "TransactionConflict"]
    )
    repo = _repo(ddb, flaky)
    repo.begin_turn("u", conversation, _message(1, "user"), turn_id="A", lock_seconds=600)
    flaky.left = 2  # the answer's transaction meets another transaction twice, then goes through
    repo.finish_turn("u", "c1", _message(2, "assistant"), turn_id="A")
    assert flaky.failed == 2
    after = repo.get("u", "c1")
    assert after.message_count == 2
    repo.begin_turn("u", after, _message(3, "user"), turn_id="B", lock_seconds=600)  # not locked


def test_persistent_throttling_is_a_503_and_writes_nothing(ddb: DynamoTarget) -> None:
    conversation = _conversation(ddb)
    flaky = Flaky(ddb.client, "transact_write_items", "ThrottlingException", 100)
    repo = _repo(ddb, flaky)
    with pytest.raises(StorageUnavailable) as caught:
        repo.begin_turn("u", conversation, _message(1, "user"), turn_id="A", lock_seconds=600)
    assert caught.value.code == "storage_unavailable"  # not turn_in_progress
    clean = ConversationRepository(Dynamo(ddb.client, ddb.table_name))
    assert clean.get("u", "c1").message_count == 0
    assert clean.list_messages("u", "c1", limit=5, cursor=None).items == []


def test_an_update_that_meets_a_running_transaction_is_retried(ddb: DynamoTarget) -> None:
    _conversation(ddb)
    flaky = Flaky(ddb.client, "update_item", "TransactionConflictException", 2)
    _repo(ddb, flaky).update("u", "c1", {"title": "Mine", "title_source": "user"})
    assert flaky.failed == 2
    assert ConversationRepository(Dynamo(ddb.client, ddb.table_name)).get("u", "c1").title == "Mine"


def test_busy_answers_503_with_retry_after_over_http(ddb: DynamoTarget) -> None:
    from fastapi.testclient import TestClient

    from shelfwise.web.app import create_app
    from tests.fixtures.app import bearer

    flaky = Flaky(
        ddb.client, "transact_write_items", "TransactionCanceledException", 100, ["TransactionConflict"]
    )
    busy = Dynamo(flaky, ddb.table_name, sleep=lambda _: None)  # type: ignore[arg-type]
    services = Services(make_settings(ddb.table_name), dynamo=busy)
    with TestClient(create_app(services=services)) as client:
        response = client.post(
            "/products",
            json={"category": "tees", "name": "Busy Tee", "color": "ink", "price": 10, "variants": []},
            headers=bearer("ada", admin=True),
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json()["error"]["code"] == "storage_unavailable"
    services.inventory.repo.db = Dynamo(ddb.client, ddb.table_name)
    assert services.inventory.list_products(category=None, q=None, limit=5, cursor=None).items == []


def test_stock_changes_under_contention_never_tell_a_sale_it_failed_when_it_happened(
    local: DynamoTarget,
) -> None:
    """On DynamoDB Local (moto's in-process backend is not thread-safe)."""
    services = Services(make_settings(local.table_name), dynamo=Dynamo(local.client, local.table_name))
    inventory = services.inventory
    product = inventory.create_product(black_tee(("M", 0)), actor="till")
    inventory.put_variant(product.sku, "M", VariantIn(quantity=20), actor="till")
    from concurrent.futures import ThreadPoolExecutor

    def sell(_: int) -> str:
        try:
            inventory.adjust_stock(product.sku, "M", delta=-1, reason="sale", actor="till")
        except Exception as exc:
            return getattr(exc, "code", type(exc).__name__)
        return "sold"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(sell, range(30)))
    sold = outcomes.count("sold")
    left = inventory.get_product(product.sku).variants[0].quantity
    assert sold == 20 - left  # every "sold" happened, and nothing else did
    assert len(inventory.adjustments(product.sku, "M", limit=100)) == sold
    assert set(outcomes) <= {"sold", "insufficient_stock", "storage_unavailable"}


async def _answered(chat: Any, user_id: str, conversation_id: str, content: str) -> Any:
    """One JSON turn, and its after-turn work (the summary fold) settled."""
    try:
        return await chat.answer(user_id, conversation_id, content)
    finally:
        await chat.settle()


def test_counters_whose_answer_was_lost_count_once(local: DynamoTarget) -> None:
    """An unconditional ADD resent after it applied added twice: a turn's tokens and cost counted
    double (and its reservation refunded twice: budget given away), a SKU number skipped."""
    db = Dynamo(local.client, local.table_name)
    usage = UsageRepository(db)
    assert usage.reserve("ada", "2026-12-03", 2000, limit=10_000, expires_at=2_000_000_000)
    lost = LostAnswers(local.client, {"UpdateItem"})
    usage.settle("ada", "2026-12-03", reserved=2000, prompt=300, completion=100, cost_usd=Decimal("0.00028"))
    assert lost.lost == ["UpdateItem"]
    settled = usage.read("ada", "2026-12-03")
    assert (settled.committed, settled.prompt_tokens, settled.completion_tokens) == (400, 300, 100)
    assert settled.cost_usd == Decimal("0.00028")

    skus = InventoryRepository(db)
    first = skus.allocate_sku_number("TE")
    lost.operations |= {"UpdateItem"}
    assert skus.allocate_sku_number("TE") == first + 1, "no number skipped"
    assert skus.allocate_sku_number("TE") == first + 2
