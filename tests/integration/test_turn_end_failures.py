"""A turn that cannot store its answer still ends: its stream closes with an event, the conversation
takes the next message, and the tokens it reserved are settled once. On moto and DynamoDB Local,
with an in-process model that asks for whatever tool calls a test scripts."""

from __future__ import annotations

from typing import Any

import pytest

from shelfwise import clock
from shelfwise.chat.usage import Period
from shelfwise.errors import StorageUnavailable
from shelfwise.storage.conversations import ConversationRepository
from tests.fixtures.dynamodb import DynamoTarget
from tests.integration.test_tool_limits import USER, ScriptedModel, run_turn, wire


def _usage(chat: Any) -> Any:
    return chat.budgets.repo.read(USER, Period.of(clock.now()).name)


def test_a_decimal_in_a_tools_arguments_is_stored_as_the_model_sent_it(ddb: DynamoTarget) -> None:
    """`{"limit": 5.0}` from the model: the answer was never stored (floats are not DynamoDB
    numbers), the stream ended without `done` and the conversation stayed locked for 15 minutes."""
    model = ScriptedModel([[("list_low_stock", '{"limit": 5.0, "ratio": 0.25, "nested": [1.5]}')]])
    chat = wire(ddb, model, budget_tokens_per_day=50_000).chat
    turn, events = run_turn(chat)
    assert events[-1].name == "done", [e.name for e in events]
    assert events[-1].data["status"] == "complete"
    stored = chat.get_message(USER, turn.conversation.id, turn.assistant_id)
    answer = stored.model_dump(mode="json")
    assert answer["tool_calls"][0]["arguments"] == {"limit": 5.0, "ratio": 0.25, "nested": [1.5]}
    used = _usage(chat)
    assert used.committed == used.prompt_tokens + used.completion_tokens > 0, "settled once, nothing held"
    chat.begin_turn(USER, turn.conversation.id, "and now?")  # not locked


def test_an_answer_that_cannot_be_stored_frees_the_conversation(
    ddb: DynamoTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store failed (a database busy past its retries): the stream says so, and the user's
    retry is taken (it was 409 turn_in_progress for the lock's 15 minutes), the reservation settled."""
    chat = wire(ddb, ScriptedModel([]), budget_tokens_per_day=50_000).chat

    def busy(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("the database is busy, retry shortly", reason="ThrottlingException")

    monkeypatch.setattr(ConversationRepository, "finish_turn", busy)
    turn, events = run_turn(chat)
    assert events[-1].name == "error"
    assert events[-1].data["code"] == "storage_unavailable"
    assert events[-1].data["retryable"] is True
    monkeypatch.undo()
    used = _usage(chat)
    assert used.committed == used.prompt_tokens + used.completion_tokens > 0, "settled once, nothing held"
    chat.begin_turn(USER, turn.conversation.id, "again")  # not locked
