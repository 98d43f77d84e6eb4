"""A turn's spend limits on tools: calls per round and per turn, identical calls answered once, the
whole-catalog tool computed once per turn.

The main model is an in-process stand-in that asks for whatever tool calls a test scripts (the offline
model plans at most a handful from a question); the tools read a template-built table (moto and
DynamoDB Local) through a gateway that counts every DynamoDB call they make.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, cast

import anyio
import pytest

from shelfwise import observability
from shelfwise.chat import service
from shelfwise.chat.events import TurnEvent
from shelfwise.chat.llm import RoundEnd, StreamEvent, TextDelta, ToolCall, Usage
from shelfwise.chat.models import ConversationIn
from shelfwise.chat.service import ChatService, Turn
from shelfwise.chat.tools import InventoryTools
from shelfwise.inventory.models import Category, NewVariant, ProductIn
from shelfwise.inventory.service import InventoryService
from shelfwise.observability import metrics
from shelfwise.storage.conversations import ConversationRepository
from shelfwise.storage.dynamo import Dynamo
from shelfwise.storage.inventory import InventoryRepository
from shelfwise.storage.items import CATALOG_INDEX, LOWSTOCK_INDEX
from tests.fixtures.app import make_services
from tests.fixtures.catalog import black_tee
from tests.fixtures.dynamodb import DynamoTarget

USER = "bob"
Calls = list[tuple[str, str]]  # (tool name, arguments as the model sent them)


class ScriptedModel:
    """The main model as the chat service calls it: while tools are offered it asks for the next
    scripted round of tool calls, then it answers. Every request is kept (deep copies)."""

    def __init__(self, rounds: Sequence[Calls]) -> None:
        self.rounds = list(rounds)
        self.requests: list[dict[str, Any]] = []

    async def stream(
        self,
        *,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_completion_tokens: int,
        retry: bool = True,
    ) -> AsyncGenerator[StreamEvent]:
        asked = sum(1 for r in self.requests if r["tools"])
        self.requests.append({"messages": copy.deepcopy(list(messages)), "tools": list(tools or [])})
        if tools and asked < len(self.rounds):
            calls = [
                ToolCall(id=f"call_{asked}_{i}", name=name, arguments=arguments)
                for i, (name, arguments) in enumerate(self.rounds[asked])
            ]
            yield RoundEnd(finish_reason="tool_calls", tool_calls=calls, usage=Usage(100, 10))
            return
        yield TextDelta("Here is what I found.")
        yield RoundEnd(finish_reason="stop", usage=Usage(100, 5))

    async def complete(
        self, *, model: str, messages: Sequence[dict[str, Any]], max_completion_tokens: int
    ) -> tuple[str, Usage]:
        return "The user asked about stock.", Usage(10, 5)

    def tool_messages(self, request: int) -> list[dict[str, Any]]:
        """The tool results a request carried, newest round last, their content parsed."""
        return [
            {**m, "result": json.loads(m["content"])}
            for m in self.requests[request]["messages"]
            if m.get("role") == "tool"
        ]


class CountingDynamo(Dynamo):
    """The table gateway, keeping every DynamoDB operation it makes (and the index it reads)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.operations: list[tuple[str, str]] = []

    def call(self, operation: str, /, **kwargs: Any) -> Any:
        self.operations.append((operation, kwargs.get("IndexName", "")))
        return super().call(operation, **kwargs)

    def catalog_reads(self) -> int:
        return sum(1 for _, index in self.operations if index == CATALOG_INDEX)


@dataclass
class Wired:
    chat: ChatService
    tool_storage: CountingDynamo
    skus: list[str] = field(default_factory=list)


def wire(ddb: DynamoTarget, model: ScriptedModel, **settings: Any) -> Wired:
    """A chat service as tests/fixtures/app.py builds one, but with `model` as its main model and the
    tools reading through a counting gateway (the conversation's own reads are not counted)."""
    services = make_services(ddb, main_model="scripted-main", **settings)
    skus = [services.inventory.create_product(black_tee(("S", 2), ("M", 17)), actor="test").sku]
    for category, name, quantity in (
        (Category.HOODIES, "Heavy Hoodie", 3),
        (Category.FOOTWEAR, "Chelsea Boot", 40),
    ):
        product = ProductIn(
            category=category,
            name=name,
            color="black",
            price=Decimal("60"),
            variants=[NewVariant(size="M", quantity=quantity, reorder_level=5)],
        )
        skus.append(services.inventory.create_product(product, actor="test").sku)
    storage = CountingDynamo(ddb.client, ddb.table_name)
    tools = InventoryTools(InventoryService(InventoryRepository(storage)))
    chat = ChatService(services.settings, ConversationRepository(services.dynamo), cast(Any, model), tools)
    return Wired(chat, storage, skus)


def run_turn(chat: ChatService, question: str = "how are we doing?") -> tuple[Turn, list[TurnEvent]]:
    """One whole turn in a fresh conversation: the turn (its stored answer in `message`) and every
    event its stream said."""

    async def go() -> tuple[Turn, list[TurnEvent]]:
        conversation = chat.create_conversation(USER, ConversationIn())
        turn = await anyio.to_thread.run_sync(partial(chat.begin_turn, USER, conversation.id, question))
        live = chat.start(turn)
        events = [event async for _, event in live.follow()]
        await chat.settle()
        return turn, events

    return asyncio.run(go())


def get_product(sku: str) -> tuple[str, str]:
    return "get_product", json.dumps({"sku": sku})


def two_hundred_calls() -> list[Calls]:
    """The turn of the issue: 4 rounds of 50 different calls (every one would read the table)."""
    return [[get_product(f"TE-{50 * r + i + 1:04d}") for i in range(50)] for r in range(4)]


@pytest.fixture
def add_metric(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the metrics added (the process's one Metrics, and those with dimensions of their
    own, which chat.service emits through observability.emit)."""
    added: list[str] = []
    real, real_emit = metrics.add_metric, observability.emit

    def record(*, name: str, **kwargs: Any) -> None:
        added.append(name)
        real(name=name, **kwargs)

    def record_emit(name: str, unit: str, value: float, **dimensions: str) -> None:
        added.append(name)
        real_emit(name, unit, value, **dimensions)

    monkeypatch.setattr(metrics, "add_metric", record)
    monkeypatch.setattr(service, "emit", record_emit)
    return added


@pytest.mark.parametrize(
    ("per_round", "per_turn", "budget"),
    [
        pytest.param(8, 16, {}, id="defaults"),
        # four rounds of 50 calls do not fit the default prompt budget however small their results
        # are shrunk (the calls themselves are sent back): room for them, to read every one back
        pytest.param(8, 40, {"prompt_token_budget": 100_000}, id="four-rounds"),
    ],
)
def test_the_200_call_turn_runs_at_most_the_caps(
    ddb: DynamoTarget, add_metric: list[str], per_round: int, per_turn: int, budget: dict[str, int]
) -> None:
    model = ScriptedModel(two_hundred_calls())
    wired = wire(
        ddb,
        model,
        max_tool_rounds=4,
        max_tool_calls_per_round=per_round,
        max_tool_calls_per_turn=per_turn,
        **budget,
    )
    turn, events = run_turn(wired.chat)

    run = min(per_turn, 4 * per_round)
    # every call that ran read the table once (a get_product is one Query); the others never did
    assert wired.tool_storage.operations == [("query", "")] * run
    assert turn.message is not None
    assert turn.message.status == "complete"
    records = turn.message.tool_calls
    assert sum(r.ok for r in records) <= run  # TE-0001 exists, the other SKUs are answered "not found"

    # The model was asked again after every round it asked for tools, until the turn's calls were
    # spent: then it was offered no more tools, and answered.
    tool_rounds = [r for r in model.requests if r["tools"]]
    assert len(tool_rounds) == min(4, -(-per_turn // per_round))
    assert not model.requests[-1]["tools"]
    asked = 50 * len(tool_rounds)
    assert len(records) == asked
    assert add_metric.count("ToolCallsRefused") == asked - run
    assert add_metric.count("ToolCalls") == run

    # Every call got its tool message (OpenAI refuses a request without one), in order; the refused
    # ones say why, in words the model can act on.
    results = model.tool_messages(-1)
    assert [m["tool_call_id"] for m in results] == [r.id for r in records]
    for n, message in enumerate(results):
        in_round, round_no = n % 50, n // 50
        answered_before = round_no * per_round + min(in_round, per_round)
        over_turn = answered_before >= per_turn
        refused = over_turn or in_round >= per_round
        assert (message["result"].get("error") == "tool_call_limit") is refused, (n, message)
        if refused:
            assert records[n].ok is False
            text = message["result"]["message"]
            assert text.startswith("not run")
            limit = f"{per_turn} tool calls per turn" if over_turn else f"{per_round} tool calls per round"
            assert limit in text
            assert records[n].as_of is None  # nothing was read

    # The stream stays truthful: two tool events per call asked for, a refused one ending in error.
    tool_events = [e.data for e in events if e.name == "tool"]
    assert len(tool_events) == 2 * asked
    assert [e["status"] for e in tool_events[1::2]] == ["done" if r.ok else "error" for r in records]


def test_identical_calls_are_answered_once(ddb: DynamoTarget, add_metric: list[str]) -> None:
    model = ScriptedModel([])
    wired = wire(ddb, model, max_tool_calls_per_round=8, max_tool_calls_per_turn=16)
    sku = wired.skus[0]
    model.rounds = [
        [
            ("get_product", json.dumps({"sku": sku})),
            ("get_product", f'{{ "sku" : "{sku}" }}'),  # the same call, spelled otherwise
            ("search_products", json.dumps({"query": "tee", "limit": 5})),
            ("list_low_stock", json.dumps({"limit": 10})),
        ],
        [
            ("search_products", json.dumps({"limit": 5, "query": "tee"})),
            ("get_product", json.dumps({"sku": sku})),
            ("list_low_stock", json.dumps({"limit": 10})),
            ("get_product", json.dumps({"sku": wired.skus[1]})),  # another call: it runs
        ],
    ]
    turn, _ = run_turn(wired.chat)

    operations = wired.tool_storage.operations
    # two get_product Queries, one search (a Catalog Query), one low-stock Query with its BatchGet
    expected = [("query", ""), ("query", ""), ("query", CATALOG_INDEX), ("query", LOWSTOCK_INDEX)]
    assert sorted(operations) == sorted([*expected, ("batch_get_item", "")])
    assert turn.message is not None
    assert all(r.ok for r in turn.message.tool_calls)
    results = model.tool_messages(-1)
    assert len(results) == 8
    first, again = results[0]["result"], results[1]["result"]
    assert again == first  # the first result itself, stamped when it was read
    assert results[5]["result"] == first
    assert results[4]["result"] == results[2]["result"]
    assert results[6]["result"] == results[3]["result"]
    assert "ToolCallsRefused" not in add_metric


def test_the_inventory_value_is_computed_once_per_turn(ddb: DynamoTarget) -> None:
    value = "get_inventory_value"
    model = ScriptedModel([[(value, "{}"), (value, "")], [(value, "{}"), (value, '{"currency": "EUR"}')]])
    model.rounds.append([(value, "{ }")])
    wired = wire(ddb, model, max_tool_rounds=4, max_tool_calls_per_round=8, max_tool_calls_per_turn=16)
    turn, _ = run_turn(wired.chat)

    assert wired.tool_storage.catalog_reads() == 1
    assert wired.tool_storage.operations == [("query", CATALOG_INDEX)]
    assert turn.message is not None
    assert [r.ok for r in turn.message.tool_calls] == [True] * 5
    results = [m["result"] for m in model.tool_messages(-1)]
    assert len(results) == 5
    assert all(r == results[0] for r in results)
    assert results[0]["units"] == 2 + 17 + 3 + 40

    # the next turn reads the catalog again: what a turn remembers ends with it
    model.requests.clear()
    run_turn(wired.chat)
    assert wired.tool_storage.catalog_reads() == 2


def test_a_refused_round_still_answers_every_call_and_the_next_round_may_run_more(
    ddb: DynamoTarget,
) -> None:
    sku = "TE-0001"
    model = ScriptedModel([[get_product(sku)] * 3 + [get_product(f"TE-{n:04d}") for n in (2, 3, 4)]] * 2)
    wired = wire(ddb, model, max_tool_rounds=2, max_tool_calls_per_round=2, max_tool_calls_per_turn=16)
    turn, _ = run_turn(wired.chat)

    # round 1: TE-0001 runs, its repeat is answered from it, the rest is over the round's limit;
    # round 2: the two first calls are answered from round 1, the round's limit refuses the rest
    assert wired.tool_storage.operations == [("query", "")]
    assert turn.message is not None
    assert [r.ok for r in turn.message.tool_calls] == [True, True, False, False, False, False] * 2
    second = model.tool_messages(-1)[6:]
    assert [m["result"].get("error") for m in second] == [None, None] + ["tool_call_limit"] * 4
    assert "2 tool calls per round" in second[2]["result"]["message"]
    assert "turn" not in second[2]["result"]["message"]
