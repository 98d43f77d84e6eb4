"""Bounded waiting and refusals a user notices: a stalled model, an empty answer, a second message.

Through HTTP with the offline model as the main model (the real openai client over HTTP).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.chat import llm
from shelfwise.settings import Settings
from shelfwise.web.app import create_app
from tests.fixtures.app import chat_settings, make_services
from tests.fixtures.dynamodb import DynamoTarget
from tests.integration.test_turns import ask, new_conversation, parse_sse

FIRST_TOKEN_TIMEOUT = 0.5
RETRY_BUDGET = 1.5


def _chat_calls(model: Any) -> int:
    return len([r for r in model.requests() if r["task"] == "chat"])


def _stored(client: TestClient, user: dict[str, str], conversation_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        f"/conversations/{conversation_id}/messages", headers=user
    ).json()["items"]
    return items


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
def test_a_stalled_model_is_a_504_within_the_first_token_timeout_and_budget(
    ddb: DynamoTarget, model: Any, user: dict[str, str], accept: str
) -> None:
    # The model sends nothing for 10 s on every call; the HTTP timeout alone (60 s) would wait it out.
    model.stall_seconds = 10
    model.fail("timeout", times=10, task="chat")
    settings = chat_settings(
        model,
        llm_timeout_seconds=60.0,
        llm_max_retries=2,
        llm_first_token_timeout_seconds=FIRST_TOKEN_TIMEOUT,
        llm_retry_budget_seconds=RETRY_BUDGET,
    )
    app = create_app(services=make_services(ddb, **settings))
    with TestClient(app, raise_server_exceptions=False) as client:
        conversation_id = new_conversation(client, user)
        started = time.monotonic()
        response = client.post(
            f"/conversations/{conversation_id}/messages",
            json={"content": "hello"},
            headers={**user, "Accept": accept},
        )
        waited, answered_at = time.monotonic() - started, time.time()
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "upstream_timeout"
        calls = [r for r in model.requests() if r["task"] == "chat"]
        assert len(calls) >= 2, "retried within the budget"
        # the budget runs from the first request to the model (a cold process's own setup comes
        # before it), and the user never waits out the model's stall
        in_budget = answered_at - calls[0]["received_at"]
        assert in_budget < RETRY_BUDGET + 1.0, in_budget
        assert waited < model.stall_seconds, waited
        assert [(m["seq"], m["role"]) for m in _stored(client, user, conversation_id)] == [(1, "user")]
        model.clear_failures()
        assert ask(client, user, conversation_id, "hello again").status_code == 200


def test_a_cold_process_setting_up_its_client_is_not_the_models_time(
    model: Any, slow_key_read: Callable[[float], None]
) -> None:
    """A cold Lambda's first call imports openai and reads its key (seen: 0.7 s for the import
    alone); a model that answers at once must not be a timeout because of that."""
    slow_key_read(1.0)  # longer than the first-token timeout and most of the budget
    settings = chat_settings(
        model,
        llm_max_retries=2,
        llm_first_token_timeout_seconds=FIRST_TOKEN_TIMEOUT,
        llm_retry_budget_seconds=RETRY_BUDGET,
    )
    chat = llm.ChatModel(Settings(**settings))

    async def answer() -> str:
        return "".join(
            [
                event.text
                async for event in chat.stream(
                    model="offline-main",
                    messages=[{"role": "user", "content": "hello"}],
                    tools=None,
                    max_completion_tokens=64,
                )
                if isinstance(event, llm.TextDelta)
            ]
        )

    assert asyncio.run(answer()).strip()
    assert _chat_calls(model) == 1, "answered on the first request, not after retries"


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
def test_an_empty_answer_is_a_502_never_a_stored_empty_reply(
    chat_client: TestClient, user: dict[str, str], model: Any, accept: str
) -> None:
    conversation_id = new_conversation(chat_client, user)
    model.fail("empty", times=2, task="chat")
    response = chat_client.post(
        f"/conversations/{conversation_id}/messages",
        json={"content": "hello"},
        headers={**user, "Accept": accept},
    )
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert _chat_calls(model) == 2, "an empty answer is asked again once, then refused"
    stored = _stored(chat_client, user, conversation_id)
    assert [(m["seq"], m["role"]) for m in stored] == [(1, "user")]
    assert not [m for m in stored if m["role"] == "assistant" and m["status"] == "complete"]
    assert ask(chat_client, user, conversation_id, "hello again").status_code == 200


def test_one_empty_answer_is_asked_again_and_the_user_gets_a_real_one(
    chat_client: TestClient, user: dict[str, str], model: Any
) -> None:
    conversation_id = new_conversation(chat_client, user)
    model.fail("empty", times=1, task="chat")
    response = ask(chat_client, user, conversation_id, "hello")
    assert response.status_code == 200, response.text
    assert response.json()["content"].strip()
    assert _chat_calls(model) == 2
    stored = _stored(chat_client, user, conversation_id)
    assert [(m["role"], m["status"], bool(m["content"])) for m in stored] == [
        ("user", "complete", True),
        ("assistant", "complete", True),
    ]


def test_a_second_message_while_one_runs_is_409_naming_the_running_answer(
    chat_client: TestClient, user: dict[str, str], model: Any
) -> None:
    model.token_delay_ms = 40
    conversation_id = new_conversation(chat_client, user)
    url = f"/conversations/{conversation_id}/messages"
    with chat_client.stream("POST", url, json={"content": "tell me about tees"}, headers=user) as first:
        assert first.status_code == 200
        lines = first.iter_lines()
        running_id = None
        received = []
        for line in lines:
            received.append(line)
            if line.startswith("data: ") and "assistant_message_id" in line:
                running_id = json.loads(line[6:])["assistant_message_id"]
                break
        assert running_id
        second = ask(chat_client, user, conversation_id, "and hoodies?")
        assert second.status_code == 409, second.text
        error = second.json()["error"]
        assert error["code"] == "turn_in_progress"
        assert error["message_id"] == running_id
        retry_after = int(second.headers["retry-after"])
        assert 1 <= retry_after <= 5
        assert error["retry_after"] == retry_after
        body = "\n".join([*received, *lines])
    events = parse_sse(body + "\n")
    assert events[-1][1] == "done"
    assert events[-1][2]["message_id"] == running_id  # the answer the refusal named
    stored = _stored(chat_client, user, conversation_id)
    assert [(m["id"], m["role"]) for m in stored][1] == (running_id, "assistant")
    assert ask(chat_client, user, conversation_id, "and hoodies?").status_code == 200
