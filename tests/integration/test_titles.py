"""TitleFunction end to end on one machine: the app writes, the local pump reads the table's stream
and calls the real handler (Powertools BatchProcessor), the offline model names conversations.
On moto and on DynamoDB Local (the conditional writes are the point)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.local.stream_pump import StreamPump
from shelfwise.chat.models import ConversationRef
from shelfwise.chat.titles import TitleService
from shelfwise.entry.titles import make_handler
from shelfwise.errors import StorageUnavailable
from shelfwise.services import Services
from shelfwise.storage.codec import decode_item, encode_item
from shelfwise.storage.items import ConversationItem
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, chat_settings, make_services
from tests.fixtures.dynamodb import DynamoTarget

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ADA = bearer("ada")
JSON = {**ADA, "Accept": "application/json"}


@dataclass
class Stack:
    ddb: DynamoTarget
    services: Services
    client: TestClient
    model: Any
    pump: StreamPump
    events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)

    def conversation(self, **body: Any) -> str:
        response = self.client.post("/conversations", json=body, headers=ADA)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def turn(self, conversation_id: str, content: str) -> dict[str, Any]:
        response = self.client.post(
            f"/conversations/{conversation_id}/messages", json={"content": content}, headers=JSON
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def settle(self, timeout: float = 20.0) -> None:
        """Poll the stream until it has been quiet for a few polls and nothing is pending."""
        quiet, deadline = 0, time.monotonic() + timeout
        while quiet < 3:
            assert time.monotonic() < deadline, "the stream did not settle"
            read = self.pump.pump_once()
            busy = read or self.pump.pending
            quiet = 0 if busy else quiet + 1
            time.sleep(0.02)

    def get(self, conversation_id: str) -> dict[str, Any]:
        response = self.client.get(f"/conversations/{conversation_id}", headers=ADA)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def item(self, conversation_id: str) -> dict[str, Any] | None:
        out: Any = self.ddb.client.get_item(
            TableName=self.ddb.table_name,
            Key=encode_item(ConversationItem.key("ada", conversation_id)),
            ConsistentRead=True,
        )
        return decode_item(out["Item"]) if "Item" in out else None

    def title_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.model.requests() if r["task"] == "title"]


@pytest.fixture
def stack(ddb: DynamoTarget, model: Any) -> Iterator[Stack]:
    services = make_services(ddb, **chat_settings(model))
    handler = make_handler(lambda: services)
    holder: list[Stack] = []

    def recording(event: dict[str, Any], context: Any) -> dict[str, Any]:
        holder[0].events.append(event)
        response = handler(event, context)
        holder[0].responses.append(response)
        return response

    pump = StreamPump(
        endpoint_url=ddb.endpoint_url,
        table_name=ddb.table_name,
        handler=recording,
        client_kwargs=CREDENTIALS,
        retry_delay=0.05,
    ).open()
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        holder.append(Stack(ddb, services, client, model, pump))
        yield holder[0]


def emf_metrics(out: str) -> dict[str, float]:
    """Sum every metric of the EMF blobs printed so far."""
    totals: dict[str, float] = {}
    for line in out.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for definition in blob["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                values = blob[metric["Name"]]
                values = values if isinstance(values, list) else [values]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values)
    return totals


def test_the_first_exchange_names_the_conversation(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    conversation_id = stack.conversation()
    stack.turn(conversation_id, "How many black hoodies in M do we have?")
    assert stack.get(conversation_id)["title"] is None  # the turn never waits for its title
    stack.settle()
    conversation = stack.get(conversation_id)
    assert (conversation["title"], conversation["title_source"]) == ("Black hoodie stock check", "generated")
    (call,) = stack.title_calls()
    settings = stack.services.settings
    assert (call["model"], call["max_tokens"]) == (
        settings.utility_model,
        settings.title_max_completion_tokens,
    )
    assert call["stream"] is False
    assert stack.responses == [{"batchItemFailures": []}]
    record = stack.events[0]["Records"][0]
    assert record["eventSourceARN"] == stack.pump.stream_arn
    assert record["eventVersion"] == "1.1"
    item = stack.item(conversation_id)
    assert item is not None
    assert item["title_generated_by"] == settings.utility_model
    out = capsys.readouterr().out
    metrics = emf_metrics(out)
    assert metrics["TitlesGenerated"] == 1
    assert metrics["TitleModelLatency"] > 0
    assert "TitlesFailed" not in metrics
    outcomes = [
        (blob["outcome"], blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"])
        for blob in (json.loads(line) for line in out.splitlines() if '"TitleOutcomes"' in line)
    ]
    assert outcomes == [("generated", [["service", "outcome"]])]


def test_a_failing_model_on_one_record_leaves_the_others_alone(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = ["How many black hoodies in M?", "What is low on stock?", "What is the inventory worth?"]
    ids = [stack.conversation() for _ in questions]
    for conversation_id, question in zip(ids, questions, strict=True):
        stack.turn(conversation_id, question)
    stack.model.fail("server_error", times=1, task="title")  # the first title call of the batch fails
    stack.settle()
    assert len(stack.events) == 1  # one batch of three
    assert len(stack.events[0]["Records"]) == 3
    assert stack.responses == [{"batchItemFailures": []}]  # a model failure is never a failed record
    titles = [stack.get(i)["title"] for i in ids]
    assert titles == ["How many black hoodies in M", "Low stock review", "Inventory value check"]
    assert all(stack.get(i)["title_source"] == "generated" for i in ids)
    assert stack.item(ids[0])["title_generated_by"] == "fallback"  # type: ignore[index]
    metrics = emf_metrics(capsys.readouterr().out)
    assert (metrics["TitlesGenerated"], metrics["TitlesFailed"]) == (2, 1)


def test_a_storage_failure_fails_only_its_record_and_lambda_retries_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [stack.conversation() for _ in range(3)]
    for conversation_id, question in zip(ids, ["Tee stock?", "Low stock?", "Inventory value?"], strict=True):
        stack.turn(conversation_id, question)
    repo = stack.services.titles.repo
    original = repo.write_generated
    failures = {ids[1]: 1}

    def flaky(ref: ConversationRef, *args: Any, **kwargs: Any) -> bool:
        if failures.get(ref.conversation_id):
            failures[ref.conversation_id] -= 1
            raise StorageUnavailable("the database is busy, retry shortly", reason="ThrottlingException")
        return original(ref, *args, **kwargs)

    monkeypatch.setattr(repo, "write_generated", flaky)
    stack.settle()
    first, retry = stack.events
    failed_sequence = first["Records"][1]["dynamodb"]["SequenceNumber"]
    assert stack.responses[0] == {"batchItemFailures": [{"itemIdentifier": failed_sequence}]}
    # Lambda retries from the failed record: it and the ones after it come again.
    assert [r["dynamodb"]["SequenceNumber"] for r in retry["Records"]] == [
        r["dynamodb"]["SequenceNumber"] for r in first["Records"][1:]
    ]
    assert stack.responses[1] == {"batchItemFailures": []}
    assert all(stack.get(i)["title_source"] == "generated" for i in ids)
    # The third conversation was titled once: its redelivery found the title there and did nothing.
    assert len(stack.title_calls()) == 4  # three conversations + the failed record's second try
    assert stack.pump.stats.dead_lettered == 0


@pytest.mark.parametrize("when", ["before", "during", "after"])
def test_the_users_title_wins_whatever_the_order(stack: Stack, when: str) -> None:
    conversation_id = stack.conversation()
    stack.turn(conversation_id, "How many black hoodies in M?")

    def rename() -> None:
        response = stack.client.patch(
            f"/conversations/{conversation_id}", json={"title": "Mine"}, headers=ADA
        )
        assert response.status_code == 200

    if when == "before":
        rename()
    elif when == "during":  # the user renames while the model is still thinking
        titles: TitleService = stack.services.titles
        complete = titles.model.complete

        async def slow_complete(**kwargs: Any) -> Any:
            rename()
            return await complete(**kwargs)

        titles.model.complete = slow_complete  # type: ignore[method-assign]
    stack.settle()
    if when == "after":
        assert stack.get(conversation_id)["title_source"] == "generated"
        rename()
        stack.turn(conversation_id, "And in L?")
        stack.settle()
    conversation = stack.get(conversation_id)
    assert (conversation["title"], conversation["title_source"]) == ("Mine", "user")
    assert stack.responses
    assert all(r == {"batchItemFailures": []} for r in stack.responses)
    assert len(stack.title_calls()) == (0 if when == "before" else 1)


def test_a_duplicate_delivery_does_nothing(stack: Stack) -> None:
    conversation_id = stack.conversation()
    stack.turn(conversation_id, "What is low on stock?")
    stack.settle()
    before = stack.item(conversation_id)
    assert before is not None
    assert before["title"] == "Low stock review"
    (event,) = stack.events
    handler = make_handler(lambda: stack.services)
    for _ in range(2):  # at-least-once delivery: the same batch again, twice
        assert handler(event, _context()) == {"batchItemFailures": []}
    assert stack.item(conversation_id) == before  # not even title_generated_at moved
    assert len(stack.title_calls()) == 1


def test_a_deleted_conversation_is_not_resurrected(stack: Stack) -> None:
    deleted, deleting = stack.conversation(), stack.conversation()
    stack.turn(deleted, "Tee stock?")
    stack.turn(deleting, "Hoodie stock?")
    held: list[dict[str, Any]] = []

    def hold(event: dict[str, Any], _: Any) -> dict[str, Any]:
        held.append(event)
        return {"batchItemFailures": []}

    stack.pump._handler = hold
    stack.settle()  # the records are read, but held back: the deletes happen first
    assert stack.client.delete(f"/conversations/{deleted}", headers=ADA).status_code == 204
    stack.ddb.client.update_item(  # a delete that is under way: the first step of DELETE
        TableName=stack.ddb.table_name,
        Key=encode_item(ConversationItem.key("ada", deleting)),
        UpdateExpression="SET deleting = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    handler = make_handler(lambda: stack.services)
    for event in held:
        assert handler(event, _context()) == {"batchItemFailures": []}
    assert stack.item(deleted) is None
    still = stack.item(deleting)
    assert still is not None
    assert "title" not in still
    assert stack.title_calls() == []


def test_post_title_asks_for_a_fresh_generated_title(stack: Stack) -> None:
    conversation_id = stack.conversation()
    stack.turn(conversation_id, "How many black hoodies in M?")
    stack.settle()
    first = stack.item(conversation_id)
    assert first is not None
    time.sleep(0.01)
    response = stack.client.post(f"/conversations/{conversation_id}/title", headers=ADA)
    assert response.status_code == 202, response.text
    assert response.json()["conversation_id"] == conversation_id
    assert response.json()["status"] == "requested"
    assert response.headers["Location"] == f"/conversations/{conversation_id}"
    stack.settle()
    fresh = stack.item(conversation_id)
    assert fresh is not None
    assert fresh["title_generated_at"] > first["title_generated_at"]
    assert "title_requested" not in fresh
    assert fresh["title_source"] == "generated"
    assert len(stack.title_calls()) == 2
    assert stack.get(conversation_id)["updated_at"] == stack.get(conversation_id)["updated_at"]
    assert [c["id"] for c in stack.client.get("/conversations", headers=ADA).json()["items"]] == [
        conversation_id
    ]


def test_post_title_refuses_what_it_cannot_do(stack: Stack) -> None:
    empty = stack.conversation()
    named = stack.conversation(title="Named by me")
    stack.turn(named, "Tee stock?")

    def post(conversation_id: str, headers: dict[str, str] = ADA) -> tuple[int, str]:
        response = stack.client.post(f"/conversations/{conversation_id}/title", headers=headers)
        return response.status_code, response.json()["error"]["code"]

    assert post(empty) == (409, "nothing_to_title")
    assert post(named) == (409, "title_set_by_user")
    assert post("no-such-conversation") == (404, "not_found")
    assert post(named, bearer("mallory")) == (404, "not_found")
    assert stack.client.post(f"/conversations/{named}/title").status_code == 401
    stack.settle()
    assert stack.get(named)["title"] == "Named by me"
    assert stack.title_calls() == []


def test_a_refresh_overtaken_by_a_rename_is_dropped(stack: Stack) -> None:
    conversation_id = stack.conversation()
    stack.turn(conversation_id, "Tee stock?")
    stack.settle()
    assert stack.client.post(f"/conversations/{conversation_id}/title", headers=ADA).status_code == 202
    stack.client.patch(f"/conversations/{conversation_id}", json={"title": "Mine"}, headers=ADA)
    stack.settle()
    item = stack.item(conversation_id)
    assert item is not None
    assert (item["title"], item["title_source"]) == ("Mine", "user")
    assert "title_requested" not in item
    assert len(stack.title_calls()) == 1


@pytest.mark.parametrize("mode", ["server_error", "empty", "bad_request"])
def test_a_broken_utility_model_leaves_chat_untouched(stack: Stack, mode: str) -> None:
    stack.model.fail(mode, times=10, task="title")
    conversation_id = stack.conversation()
    answer = stack.turn(conversation_id, "¿Cuántas sudaderas negras quedan en talla M?")
    assert answer["status"] == "complete"
    assert answer["content"]
    stack.settle()
    conversation = stack.get(conversation_id)
    assert (conversation["title"], conversation["title_source"]) == (
        "Cuántas sudaderas negras quedan en talla",
        "generated",
    )
    assert stack.responses == [{"batchItemFailures": []}]
    messages = stack.client.get(f"/conversations/{conversation_id}/messages", headers=ADA).json()["items"]
    assert [m["role"] for m in messages] == ["user", "assistant"]


def test_a_stalled_model_gets_the_fallback_within_its_budget(stack: Stack) -> None:
    conversation_id = stack.conversation()
    stack.turn(conversation_id, "Tee stock?")
    stack.model.fail("timeout", times=1, task="title")
    started = time.perf_counter()
    result = stack.services.titles.process(ConversationRef("ada", conversation_id), budget_seconds=1.0)
    assert time.perf_counter() - started < 5
    assert (result.outcome, result.reason, result.title) == ("fallback", "timeout", "Tee stock")


class _Context:
    function_name = "TitleFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:TitleFunction"
    aws_request_id = "a0f5b3a1-2c4d-4e6f-8a9b-0c1d2e3f4a5b"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _context() -> Any:
    return _Context()
