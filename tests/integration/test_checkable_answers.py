"""Answers you can check, through HTTP with the offline model: every answer carries its grounding
(stored, listed, in `done` and in every replay), and the single-message GET shows how its prompt was
assembled (budget, tokens per part, history sent and trimmed, summary, tool calls, model, cost),
bounded in size and never in a list.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.chat import grounding, memory, service
from shelfwise.chat.llm import RoundEnd, StreamEvent, TextDelta, Usage
from shelfwise.chat.models import Assembly
from shelfwise.chat.service import ASSEMBLY_ARGUMENT_CHARS, ASSEMBLY_REQUESTS, ASSEMBLY_TOOL_CALLS
from shelfwise.chat.tools import InventoryTools
from tests.fixtures.app import chat_settings, make_services
from tests.fixtures.dynamodb import DynamoTarget
from tests.integration.test_tool_limits import USER, ScriptedModel, get_product, run_turn, wire
from tests.integration.test_turns import QUESTION, _app, ask, new_conversation, parse_sse, seed_tees


def test_an_answer_carries_its_grounding_everywhere(chat_client: TestClient, user: dict[str, str]) -> None:
    seed_tees(chat_client)
    conversation_id = new_conversation(chat_client, user)
    response = chat_client.post(
        f"/conversations/{conversation_id}/messages", json={"content": QUESTION}, headers=user
    )
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    [done] = [data for _, name, data in events if name == "done"]
    answer = "".join(data["content"] for _, name, data in events if name == "delta")
    assert "17" in answer
    assert done["grounding"] == {"checked": 1, "unsupported": []}

    listed = chat_client.get(f"/conversations/{conversation_id}/messages", headers=user).json()["items"]
    assert listed[0]["grounding"] is None  # the user's message has none
    assert listed[1]["grounding"] == done["grounding"]
    assert "assembly" not in listed[1]  # only on the single-message GET

    replay = chat_client.get(
        f"/conversations/{conversation_id}/messages/{done['message_id']}/events", headers=user
    )
    [replayed] = [data for _, name, data in parse_sse(replay.text) if name == "done"]
    assert replayed["grounding"] == done["grounding"]


def test_the_single_message_get_shows_the_assembly(chat_client: TestClient, user: dict[str, str]) -> None:
    seed_tees(chat_client)
    conversation_id = new_conversation(chat_client, user)
    first = ask(chat_client, user, conversation_id, "hello there").json()
    second = ask(chat_client, user, conversation_id, QUESTION).json()
    got = chat_client.get(f"/conversations/{conversation_id}/messages/{second['id']}", headers=user)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["grounding"] == second["grounding"]
    assembly = Assembly.model_validate(body["assembly"])
    settings = chat_client.app.state.services.settings  # type: ignore[attr-defined]
    assert assembly.budget == settings.prompt_token_budget
    assert assembly.model == settings.main_model == body["model"]
    parts = assembly.tokens
    assert parts.system > 0
    assert parts.tools > 0
    assert parts.history > 0
    assert parts.new_message > 0
    assert parts.tool_rounds > 0  # the answer's request carried the search and its result
    assert parts.summary == 0
    assert assembly.summary.through_seq == 0
    named = parts.system + parts.summary + parts.tools + parts.history + parts.new_message
    assert named + parts.tool_rounds + parts.framing == parts.total
    assert assembly.requests[-1] == parts.total
    assert len(assembly.requests) == 2
    assert assembly.history.sent == [[1, 2]]  # the greeting and its answer
    assert assembly.history.sent_count == 2
    assert assembly.history.trimmed == 0
    [call] = assembly.tool_calls
    assert (call.name, json.loads(call.arguments), call.ok, call.round, call.outcome) == (
        "search_products",
        json.loads(json.dumps(body["tool_calls"][0]["arguments"])),
        True,
        1,
        "ran",
    )
    assert assembly.prompt_tokens == body["prompt_tokens"]
    assert assembly.completion_tokens == body["completion_tokens"]
    assert float(assembly.cost_usd) == body["cost_usd"]
    # the user's message and an answer without tools
    assert (
        chat_client.get(f"/conversations/{conversation_id}/messages/{first['id']}", headers=user).json()[
            "assembly"
        ]["tool_calls"]
        == []
    )


def test_the_assembly_tells_what_the_budget_trimmed_and_how_far_the_summary_reached(
    ddb: DynamoTarget, model: Any, user: dict[str, str]
) -> None:
    services = make_services(ddb, **chat_settings(model), prompt_token_budget=1400)
    with TestClient(_app(services), raise_server_exceptions=False) as client:
        conversation_id = new_conversation(client, user)
        for n in range(6):
            ask(client, user, conversation_id, f"note number {n}: " + "words " * 60)
        last = ask(client, user, conversation_id, "hello again").json()
        assembly = client.get(f"/conversations/{conversation_id}/messages/{last['id']}", headers=user).json()[
            "assembly"
        ]
        conversation = client.get(f"/conversations/{conversation_id}", headers=user).json()
    history = assembly["history"]
    assert history["trimmed"] > 0
    assert history["read"] >= history["sent_count"] + history["trimmed"]
    sent = [seq for first, end in history["sent"] for seq in range(first, end + 1)]
    assert sent == sorted(sent)
    assert sent[-1] == last["seq"] - 2
    assert assembly["tokens"]["total"] <= assembly["budget"]
    if assembly["summary"]["tokens"]:  # the summary sent reaches as far as the conversation said then
        assert 0 < assembly["summary"]["through_seq"] <= conversation["summary"]["through_seq"]
        assert assembly["summary"]["through_seq"] < sent[0]


def test_several_tool_calls_are_recorded_in_their_rounds(
    chat_client: TestClient, user: dict[str, str]
) -> None:
    sku = seed_tees(chat_client)
    conversation_id = new_conversation(chat_client, user)
    answer = ask(
        chat_client, user, conversation_id, f"stock of {sku} and {sku}, and what is it worth?"
    ).json()
    body = chat_client.get(f"/conversations/{conversation_id}/messages/{answer['id']}", headers=user).json()
    calls = [(c["name"], c["round"], c["outcome"]) for c in body["assembly"]["tool_calls"]]
    assert calls == [("get_product", 1, "ran"), ("get_inventory_value", 2, "ran")]
    assert len(body["assembly"]["requests"]) == 3
    assert body["grounding"]["unsupported"] == []


def test_the_assembly_is_bounded_in_its_worst_case() -> None:
    """The most a record can hold: every bound at its limit stays a few KB."""
    worst = Assembly.model_validate(
        {
            "budget": 10**9,
            "tokens": {k: 10**9 for k in ("system", "summary", "tools", "history", "total")},
            "requests": [10**9] * ASSEMBLY_REQUESTS,
            "history": {
                "read": 10**6,
                "sent": [[n * 10**6, n * 10**6 + 1] for n in range(memory.MAX_SEQ_RANGES)],
                "sent_count": 10**6,
                "trimmed": 10**6,
            },
            "summary": {"through_seq": 10**9, "tokens": 10**9},
            "tool_calls": [
                {
                    "name": "x" * 64,
                    "arguments": "y" * ASSEMBLY_ARGUMENT_CHARS,
                    "round": 99,
                    "outcome": "reused",
                }
            ]
            * ASSEMBLY_TOOL_CALLS,
            "tool_calls_omitted": 10**6,
            "model": "m" * 100,
            "cost_usd": "12345.678901234567",
        }
    )
    assert len(worst.model_dump_json()) < 6 * 1024
    assert memory.seq_ranges(list(range(0, 200, 2))) == [[n, n] for n in range(160, 200, 2)]
    assert memory.seq_ranges([5, 1, 2, 3, 7, 8]) == [[1, 3], [5, 5], [7, 8]]


def test_grounding_is_the_check_of_the_stored_text(chat_client: TestClient, user: dict[str, str]) -> None:
    """What is stored is what the pure check says of the answer and the turn's tool results."""
    sku = seed_tees(chat_client)
    conversation_id = new_conversation(chat_client, user)
    answer = ask(chat_client, user, conversation_id, f"what's the stock of {sku}?").json()
    inventory = chat_client.app.state.services.inventory  # type: ignore[attr-defined]
    result, ok = InventoryTools(inventory).run("get_product", json.dumps({"sku": sku}))
    assert ok
    assert answer["grounding"]["unsupported"] == []
    assert answer["grounding"]["checked"] == len(list(grounding.figures(answer["content"])))
    assert answer["grounding"] == grounding.check(answer["content"], [result])


class InventingModel(ScriptedModel):
    """A model that looks the product up, then states one figure from the result and two of its own:
    what the check is there to catch."""

    async def stream(self, **kwargs: Any) -> AsyncGenerator[StreamEvent]:
        if kwargs.get("tools") and not any(r["tools"] for r in self.requests):
            async for event in super().stream(**kwargs):
                yield event
            return
        self.requests.append({"messages": kwargs["messages"], "tools": kwargs.get("tools")})
        yield TextDelta("We have 17 black tees in M, 40 in L and about $1,200 worth, as of 13:05 UTC.")
        yield RoundEnd(finish_reason="stop", usage=Usage(100, 20))


def test_a_figure_no_tool_returned_is_reported_not_rewritten(
    ddb: DynamoTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted: list[tuple[str, float, dict[str, str]]] = []
    monkeypatch.setattr(
        service, "emit", lambda name, unit, value, **dims: emitted.append((name, value, dims))
    )
    model = InventingModel([[("search_products", json.dumps({"query": "tee"}))]])
    wired = wire(ddb, model)
    turn, events = run_turn(wired.chat, "how many black tees?")
    assert turn.message is not None
    assert turn.message.content.startswith("We have 17 black tees in M, 40 in L")  # said as it was
    assert turn.message.grounding is not None
    assert turn.message.grounding.model_dump() == {"checked": 3, "unsupported": ["40", "$1,200"]}
    [done] = [e for e in events if e.name == "done"]
    assert done.data["grounding"] == turn.message.grounding.model_dump()
    assert ("UnsupportedFigures", 2, {"model": "scripted-main"}) in emitted
    assert ("FiguresChecked", 3, {"model": "scripted-main"}) in emitted


def test_the_assembly_of_a_200_call_turn_stays_bounded(ddb: DynamoTarget) -> None:
    calls = [[get_product(f"TE-{50 * r + i + 1:04d}") for i in range(50)] for r in range(4)]
    wired = wire(ddb, ScriptedModel(calls), max_tool_calls_per_round=50, max_tool_calls_per_turn=200)
    turn, _ = run_turn(wired.chat)
    assert turn.message is not None
    detail = wired.chat.get_message(USER, turn.conversation.id, turn.message.id)
    assert detail.assembly is not None
    assert len(detail.assembly.tool_calls) == ASSEMBLY_TOOL_CALLS
    assert detail.assembly.tool_calls_omitted == len(turn.records) - ASSEMBLY_TOOL_CALLS > 0
    assert len(detail.assembly.model_dump_json()) < 6 * 1024
