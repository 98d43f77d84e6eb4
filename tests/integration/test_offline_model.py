"""The offline model through the real openai client, over HTTP: shapes, tools, tasks, failures, load."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from infra.local.offline_model import OfflineModel
from shelfwise.chat import tokens

SYSTEM = {"role": "system", "content": "You are the store's inventory assistant."}
SUMMARY_SYSTEM = {
    "role": "system",
    "content": "You maintain the running summary of a conversation between a store employee and the "
    "inventory assistant. Never record stock quantities or prices.",
}
TITLE_SYSTEM = {
    "role": "system",
    "content": "You name conversations. Answer with a title of at most six words, no quotes.",
}
AS_OF = "2025-11-29T13:05:00.000Z"


def _function(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name.replace('_', ' ')} tool.",
            "parameters": {"type": "object", "properties": properties, "additionalProperties": False},
        },
    }


TOOLS = [
    _function("search_products", {"query": {"type": "string"}, "limit": {"type": "integer"}}),
    _function("get_product", {"sku": {"type": "string"}}),
    _function("list_low_stock", {"limit": {"type": "integer"}}),
    _function("get_inventory_value", {}),
]


def _product(sku: str, name: str, color: str, **sizes: int) -> dict[str, Any]:
    return {
        "sku": sku,
        "name": name,
        "color": color,
        "category": "tees",
        "price": 24.0,
        "coming_soon": False,
        "variants": [{"size": s, "quantity": q, "reorder_level": 5} for s, q in sizes.items()],
    }


TEES = {
    "as_of": AS_OF,
    "products": [
        _product("TE-0001", "Essential Tee", "black", S=3, M=17, L=0),
        _product("TE-0002", "Essential Tee", "white", S=8, M=4, L=11),
        _product("TE-0007", "Pocket Tee", "navy", M=9),
    ],
}


@pytest.fixture(scope="module")
def offline() -> Iterator[OfflineModel]:
    with OfflineModel() as model:
        yield model


@pytest.fixture(autouse=True)
def _fresh(offline: OfflineModel) -> None:
    offline.reset()


def run[T](offline: OfflineModel, work: Callable[[AsyncOpenAI], Awaitable[T]], **client: Any) -> T:
    """Run `work(client)` on a fresh event loop with a client of the offline model."""

    async def main() -> T:
        options: dict[str, Any] = {"max_retries": 0, "timeout": 20.0, "api_key": "offline", **client}
        async with AsyncOpenAI(base_url=offline.base_url, **options) as openai_client:
            return await work(openai_client)

    return asyncio.run(main())


async def create(client: AsyncOpenAI, **kwargs: Any) -> Any:
    """chat.completions.create, untyped: these tests send plain dicts, as the app does."""
    return await client.chat.completions.create(**kwargs)


class Streamed:
    """What a stream delivered: content, tool calls (assembled), finish reason, usage, chunk times."""

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.content = ""
        self.content_times: list[float] = []
        self.tool_calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None


async def stream(client: AsyncOpenAI, messages: list[dict[str, Any]], **kwargs: Any) -> Streamed:
    out = Streamed()
    response = await create(
        client,
        model=kwargs.pop("model", "gpt-4.1-mini"),
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **kwargs,
    )
    async for chunk in response:
        out.chunks.append(chunk)
        if chunk.usage is not None:
            out.usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                out.content += choice.delta.content
                out.content_times.append(time.perf_counter())
            for call in choice.delta.tool_calls or ():
                slot = out.tool_calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function and call.function.name:
                    slot["name"] = call.function.name
                if call.function and call.function.arguments:
                    slot["arguments"] += call.function.arguments
            if choice.finish_reason:
                out.finish_reason = choice.finish_reason
    return out


def tool_turn(
    question: str, name: str, arguments: dict[str, Any], result: dict[str, Any]
) -> list[dict[str, Any]]:
    """A conversation whose last message is the result of the tool call the model asked for."""
    return [
        SYSTEM,
        {"role": "user", "content": question},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(result)},
    ]


# --- shapes ----------------------------------------------------------------------------------------


def test_streams_content_then_a_usage_chunk_then_done(offline: OfflineModel) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Hello! What can you do for me today?"}]
    out = run(offline, lambda c: stream(c, messages, model="my-main-model"))
    assert out.finish_reason == "stop"
    assert len([c for c in out.chunks if c.choices and c.choices[0].delta.content]) > 5
    assert "What can you do for me today?" in out.content
    first, last = out.chunks[0], out.chunks[-1]
    assert first.object == "chat.completion.chunk"
    assert first.choices[0].delta.role == "assistant"
    assert {c.id for c in out.chunks} == {first.id}
    assert first.id.startswith("chatcmpl-")
    assert all(c.model == "my-main-model" for c in out.chunks)
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == tokens.count_messages(messages)
    assert last.usage.completion_tokens == tokens.count_text(out.content)
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    [logged] = offline.requests()
    assert logged["task"] == "chat"
    assert logged["model"] == "my-main-model"
    assert logged["stream"] is True
    assert logged["messages"] == 2
    assert logged["prompt_tokens"] == last.usage.prompt_tokens


def test_the_raw_stream_ends_with_done_and_no_usage_unless_asked(offline: OfflineModel) -> None:
    messages = [{"role": "user", "content": "hi"}]
    body = {"model": "m", "stream": True, "messages": messages}
    with httpx.Client(base_url=offline.base_url) as http:
        response = http.post("/chat/completions", json=body)
        with_usage = http.post("/chat/completions", json={**body, "stream_options": {"include_usage": True}})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(c["choices"] for c in chunks)  # no usage chunk
    assert "usage" not in chunks[0]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    usage_events = [e for e in with_usage.text.split("\n\n") if e]
    assert usage_events[-1] == "data: [DONE]"
    usage_chunk = json.loads(usage_events[-2].removeprefix("data: "))
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == tokens.count_messages(messages)


def test_non_streaming_completion_has_openais_shape(offline: OfflineModel) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Thanks for the help!"}]

    async def work(client: AsyncOpenAI) -> Any:
        return await create(client, model="gpt-4.1-nano", messages=messages)

    completion = run(offline, work)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4.1-nano"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == tokens.count_messages(messages)
    assert completion.usage.completion_tokens == tokens.count_text(completion.choices[0].message.content)


def test_models_are_listed(offline: OfflineModel) -> None:
    async def work(client: AsyncOpenAI) -> list[str]:
        return [m.id async for m in client.models.list()]

    assert run(offline, work)


def test_max_completion_tokens_cuts_the_answer_with_finish_reason_length(offline: OfflineModel) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Tell me about yourself in detail please"}]
    out = run(offline, lambda c: stream(c, messages, max_completion_tokens=7))
    assert out.finish_reason == "length"
    assert out.usage.completion_tokens <= 7
    assert tokens.count_text(out.content) <= 7
    legacy = run(offline, lambda c: stream(c, messages, max_tokens=5))
    assert legacy.finish_reason == "length"
    assert tokens.count_text(legacy.content) <= 5
    assert offline.requests()[-1]["max_tokens"] == 5


def test_user_text_with_special_tokens_is_just_text(offline: OfflineModel) -> None:
    messages = [{"role": "user", "content": "what does <|endoftext|> mean?"}]
    out = run(offline, lambda c: stream(c, messages))
    assert out.finish_reason == "stop"
    assert out.usage.prompt_tokens == tokens.count_messages(messages)


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": []}, "tools"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0]"),
    ],
)
def test_bad_requests_get_openai_errors(
    offline: OfflineModel, request_body: dict[str, Any], param: str
) -> None:
    with httpx.Client(base_url=offline.base_url) as http:
        response = http.post("/chat/completions", json=request_body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- tools -----------------------------------------------------------------------------------------


def test_a_stock_question_becomes_a_search_products_call(offline: OfflineModel) -> None:
    messages = [SYSTEM, {"role": "user", "content": "how many medium black tees are in stock?"}]
    out = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    assert out.finish_reason == "tool_calls"
    assert out.content == ""
    [call] = out.tool_calls.values()
    assert call["name"] == "search_products"
    assert json.loads(call["arguments"]) == {"query": "", "category": "tees"}
    assert call["id"].startswith("call_")
    argument_chunks = [
        c
        for c in out.chunks
        if c.choices and c.choices[0].delta.tool_calls and c.choices[0].delta.tool_calls[0].function
    ]
    assert len(argument_chunks) > 2  # name first, then the arguments in pieces
    assert out.usage.prompt_tokens == tokens.count_messages(messages, TOOLS)
    [logged] = offline.requests()
    assert logged["tools"] == [t["function"]["name"] for t in TOOLS]
    assert logged["tool_calls"] == ["search_products"]


def test_the_answer_comes_from_the_tool_result(offline: OfflineModel) -> None:
    question = "how many medium black tees are in stock?"
    messages = tool_turn(question, "search_products", {"query": "", "category": "tees"}, TEES)
    out = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    assert out.finish_reason == "stop"
    assert out.tool_calls == {}
    assert "17" in out.content
    assert "TE-0001" in out.content
    assert "13:05 UTC" in out.content
    assert "TE-0002" not in out.content  # white is not black
    assert set(re.findall(r"\d+", out.content)) <= {"17", "0001", "13", "05"}  # no invented numbers
    assert out.usage.prompt_tokens == tokens.count_messages(messages, TOOLS)


def test_several_matches_become_a_list_and_none_is_said_plainly(offline: OfflineModel) -> None:
    messages = tool_turn(
        "do you have tees in medium?", "search_products", {"query": "", "category": "tees"}, TEES
    )
    out = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    assert "TE-0001" in out.content
    assert "TE-0002" in out.content
    assert "TE-0007" in out.content
    nothing = tool_turn(
        "any purple hoodies in stock?", "search_products", {"query": "", "category": "hoodies"}, TEES
    )
    out = run(offline, lambda c: stream(c, nothing, tools=TOOLS))
    assert "no purple hoodies" in out.content
    assert not re.search(r"\d+ (?:in stock|units)", out.content)


def test_a_sku_becomes_get_product_and_its_answer_lists_sizes(offline: OfflineModel) -> None:
    messages = [SYSTEM, {"role": "user", "content": "what's the stock of te-0001?"}]
    out = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    [call] = out.tool_calls.values()
    assert (call["name"], json.loads(call["arguments"])) == ("get_product", {"sku": "TE-0001"})
    result = {"as_of": AS_OF, "product": TEES["products"][0]}
    answer = run(
        offline,
        lambda c: stream(
            c, tool_turn(messages[1]["content"], "get_product", {"sku": "TE-0001"}, result), tools=TOOLS
        ),
    )
    assert "S 3, M 17, L 0" in answer.content
    missing = {"as_of": AS_OF, "error": "product TE-9999 not found"}
    answer = run(
        offline,
        lambda c: stream(
            c, tool_turn("stock of TE-9999?", "get_product", {"sku": "TE-9999"}, missing), tools=TOOLS
        ),
    )
    assert "not found" in answer.content


def test_low_stock_and_inventory_value(offline: OfflineModel) -> None:
    low = [SYSTEM, {"role": "user", "content": "What is running low? Anything to reorder?"}]
    out = run(offline, lambda c: stream(c, low, tools=TOOLS))
    [call] = out.tool_calls.values()
    assert (call["name"], json.loads(call["arguments"])) == ("list_low_stock", {"limit": 50})
    items = {
        "as_of": AS_OF,
        "items": [
            {
                "sku": "TE-0001",
                "size": "L",
                "quantity": 0,
                "reorder_level": 5,
                "name": "Essential Tee",
                "color": "black",
                "shortfall": 5,
            }
        ],
    }
    answer = run(
        offline,
        lambda c: stream(
            c, tool_turn(low[1]["content"], "list_low_stock", {"limit": 50}, items), tools=TOOLS
        ),
    )
    assert "Essential Tee in black (TE-0001) size L" in answer.content
    assert "reorder level 5" in answer.content

    value_question = [SYSTEM, {"role": "user", "content": "What is our total inventory value?"}]
    out = run(offline, lambda c: stream(c, value_question, tools=TOOLS))
    assert [c["name"] for c in out.tool_calls.values()] == ["get_inventory_value"]
    assert json.loads(out.tool_calls[0]["arguments"]) == {}
    value = {
        "as_of": AS_OF,
        "currency": "USD",
        "units": 8123,
        "value": 312450.5,
        "by_category": [{"category": "jackets", "units": 900, "value": 99000.0}],
    }
    answer = run(
        offline,
        lambda c: stream(
            c, tool_turn(value_question[1]["content"], "get_inventory_value", {}, value), tools=TOOLS
        ),
    )
    assert "8,123 units" in answer.content
    assert "312,450.50 USD" in answer.content


def test_a_second_round_but_never_a_loop(offline: OfflineModel) -> None:
    question = "How many black tees do we have, and what is the inventory worth?"
    messages = tool_turn(question, "search_products", {"query": "", "category": "tees"}, TEES)
    second = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    assert [c["name"] for c in second.tool_calls.values()] == ["get_inventory_value"]
    value = {"as_of": AS_OF, "currency": "USD", "units": 10, "value": 240.0, "by_category": []}
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_inventory_value", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": json.dumps(value)},
    ]
    final = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    assert final.finish_reason == "stop"
    assert "17" in final.content
    assert "240.00 USD" in final.content
    # the same call already made this turn is never made again
    repeat = tool_turn(
        "how many black tees?",
        "search_products",
        {"query": "", "category": "tees"},
        {"as_of": AS_OF, "products": []},
    )
    out = run(offline, lambda c: stream(c, repeat, tools=TOOLS))
    assert out.finish_reason == "stop"
    assert "no black tees" in out.content


def test_a_follow_up_keeps_the_product(offline: OfflineModel) -> None:
    messages: list[dict[str, Any]] = [
        SYSTEM,
        {"role": "user", "content": "how many medium black tees are in stock?"},
        {"role": "assistant", "content": "We have 17 Essential Tee in black, size M (TE-0001) in stock."},
        {"role": "user", "content": "and in white?"},
    ]
    out = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    assert json.loads(out.tool_calls[0]["arguments"]) == {"query": "", "category": "tees"}
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "search_products", "arguments": out.tool_calls[0]["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": json.dumps(TEES)},
    ]
    answer = run(offline, lambda c: stream(c, messages, tools=TOOLS))
    assert "We have 4 Essential Tee in white, size M (TE-0002)" in answer.content


def test_without_tools_it_answers_without_calling_or_inventing(offline: OfflineModel) -> None:
    messages = [SYSTEM, {"role": "user", "content": "how many medium black tees are in stock?"}]
    out = run(offline, lambda c: stream(c, messages))
    assert out.finish_reason == "stop"
    assert out.tool_calls == {}
    assert "17" not in out.content


# --- summary and title -----------------------------------------------------------------------------

STOCK_NUMBER = re.compile(
    r"\d+\s*(?:units?|pcs|pieces|items|in stock|left|available|usd|dollars|eur)|\$\s*\d|\d\s*\$|"
    r"(?:stock|quantity|price|priced|costs?|worth|value)\D{0,12}\d",
    re.IGNORECASE,
)


def test_the_summary_names_topics_and_skus_but_no_numbers(offline: OfflineModel) -> None:
    conversation = [
        SUMMARY_SYSTEM,
        {"role": "user", "content": "how many medium black tees are in stock?"},
        {
            "role": "assistant",
            "content": "We have 17 Essential Tee in black, size M (TE-0001) in stock at $24.00.",
        },
        {"role": "user", "content": "and what is running low? we sold 40 units today"},
        {"role": "assistant", "content": "Wool Beanie (AC-0044) size ONE: 2 in stock, reorder level 5"},
        {"role": "user", "content": "what's the inventory worth? last week it was $312,450"},
    ]

    async def work(client: AsyncOpenAI) -> str:
        completion = await create(client, model="gpt-4.1-nano", messages=conversation)
        return completion.choices[0].message.content or ""

    summary = run(offline, work)
    assert len(summary.split()) <= 60
    assert "tee" in summary
    assert "TE-0001" in summary
    assert "AC-0044" in summary
    assert "running low" in summary
    assert not STOCK_NUMBER.search(summary), summary
    assert "17" not in summary
    assert offline.requests()[-1]["task"] == "summary"


def test_the_summary_reads_a_transcript_in_one_message(offline: OfflineModel) -> None:
    transcript = (
        "Summary so far:\nThe user asked about stock of black tees in size M.\n\n"
        "Messages to fold in (oldest first):\n"
        "User: is the chore jacket available in large?\n"
        "Assistant: Here is what I found, as of 13:05 UTC:\n"
        "- Chore Jacket in indigo (JA-0011): L 12\n"
        "- Slim Chino in khaki (PA-0014): 32 4\n"
        "User: thanks! and the\nbeanies?\n"
    )
    messages = [SUMMARY_SYSTEM, {"role": "user", "content": transcript}]

    async def work(client: AsyncOpenAI) -> str:
        completion = await create(client, model="m", messages=messages)
        return completion.choices[0].message.content or ""

    summary = run(offline, work)
    assert summary.startswith(
        "The user asked about stock of black tees in size M"
    )  # the earlier summary stays
    assert "jackets in size L" in summary
    assert "beanies" in summary  # a user turn over two lines
    assert "chinos" not in summary  # what the assistant said is no topic of the user's
    assert "JA-0011" in summary
    assert not STOCK_NUMBER.search(summary), summary
    again = [
        SUMMARY_SYSTEM,
        {"role": "user", "content": f"Summary so far:\n{summary}\n\nMessages to fold in:\n"},
    ]

    async def refold(client: AsyncOpenAI) -> str:
        completion = await create(client, model="m", messages=again)
        return completion.choices[0].message.content or ""

    assert run(offline, refold) == summary  # folding nothing new keeps the summary as it was


@pytest.mark.parametrize(
    ("first_message", "expected"),
    [
        ("how many medium black tees are in stock?", "Black tee stock check"),
        ("What's running low this week?", "Low stock review"),
        ("Check TE-0001 please", "TE-0001 stock check"),
        ("¿Cuántas camisetas negras tenemos en talla M?", "Cuántas camisetas negras tenemos en talla"),
        ("Wie viele schwarze T-Shirts haben wir noch?", "Wie viele schwarze T-Shirts haben wir"),
        ('hello there, "quick" question!', "Hello there, quick question"),
    ],
)
def test_titles(offline: OfflineModel, first_message: str, expected: str) -> None:
    messages = [TITLE_SYSTEM, {"role": "user", "content": first_message}]

    async def work(client: AsyncOpenAI) -> str:
        completion = await create(client, model="gpt-4.1-nano", messages=messages)
        return completion.choices[0].message.content or ""

    title = run(offline, work)
    assert title == expected
    assert len(title.split()) <= 6
    assert not re.search(r"[\"'“”]", title)
    assert not title.endswith((".", "?", "!", ":"))
    assert offline.requests()[-1]["task"] == "title"


# --- failures --------------------------------------------------------------------------------------

HELLO = [{"role": "user", "content": "hello, tell me what you can do"}]


def _fail_by_header(mode: str) -> dict[str, Any]:
    return {"extra_headers": {"X-Offline-Model-Fail": mode}}


@pytest.mark.parametrize("how", ["header", "queue"])
def test_rate_limit_is_a_429_with_retry_after(offline: OfflineModel, how: str) -> None:
    extra = _fail_by_header("rate_limit") if how == "header" else {}
    if how == "queue":
        offline.fail("rate_limit", times=1, task="chat")
    with pytest.raises(openai.RateLimitError) as caught:
        run(offline, lambda c: stream(c, HELLO, **extra))
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert run(offline, lambda c: stream(c, HELLO)).finish_reason == "stop"  # one failure, then fine
    assert [r["failure"] for r in offline.requests()] == ["rate_limit", None]


@pytest.mark.parametrize(
    ("mode", "status", "error"),
    [
        ("server_error", 500, openai.InternalServerError),
        ("unavailable", 503, openai.InternalServerError),
        ("bad_request", 400, openai.BadRequestError),
    ],
)
def test_status_failures(
    offline: OfflineModel, mode: str, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as caught:
        run(offline, lambda c: stream(c, HELLO, **_fail_by_header(mode)))
    assert caught.value.status_code == status


def test_timeout_stalls_until_the_clients_timeout(offline: OfflineModel) -> None:
    offline.fail("timeout")
    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        run(offline, lambda c: stream(c, HELLO), timeout=0.5)
    assert 0.4 < time.perf_counter() - started < 10  # the client's timeout ended it, not the 30 s stall


def test_a_short_stall_then_a_normal_answer(offline: OfflineModel) -> None:
    offline.stall_seconds = 0.3
    offline.fail("timeout")
    started = time.perf_counter()
    out = run(offline, lambda c: stream(c, HELLO))
    assert time.perf_counter() - started >= 0.25
    assert out.finish_reason == "stop"


def test_midstream_breaks_the_stream_after_some_content(offline: OfflineModel) -> None:
    received: list[str] = []

    async def work(client: AsyncOpenAI) -> None:
        response = await create(
            client,
            model="m",
            messages=HELLO,
            stream=True,
            extra_headers={"X-Offline-Model-Fail": "midstream"},
        )
        async for chunk in response:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIConnectionError):
        run(offline, work)
    assert received  # some content arrived first
    assert run(offline, lambda c: stream(c, HELLO)).finish_reason == "stop"  # the server is fine


def test_empty_answer(offline: OfflineModel) -> None:
    offline.fail("empty", task="chat")
    out = run(offline, lambda c: stream(c, HELLO))
    assert out.content == ""
    assert out.finish_reason == "stop"
    assert out.usage.completion_tokens == 0


def test_queued_failures_match_their_task_and_count(offline: OfflineModel) -> None:
    offline.fail("server_error", times=2, task="title")
    out = run(offline, lambda c: stream(c, HELLO))  # a chat turn: not affected
    assert out.finish_reason == "stop"
    title = [TITLE_SYSTEM, {"role": "user", "content": "hello"}]
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            run(offline, lambda c: stream(c, title))
    assert run(offline, lambda c: stream(c, title)).content == "Hello"
    assert offline.failures() == []


def test_the_control_endpoints(offline: OfflineModel) -> None:
    with httpx.Client(base_url=offline.url) as http:
        queued = http.post("/_offline/failures", json={"mode": "unavailable", "times": 2, "task": "any"})
        assert queued.status_code == 201
        assert queued.json()["items"] == [{"mode": "unavailable", "times": 2, "task": "any"}]
        assert http.post("/_offline/failures", json={"mode": "nonsense"}).status_code == 400
        with pytest.raises(openai.InternalServerError):
            run(offline, lambda c: stream(c, HELLO))
        assert http.delete("/_offline/failures").json() == {"cleared": 1}
        assert run(offline, lambda c: stream(c, HELLO)).finish_reason == "stop"

        assert http.post("/_offline/config", json={"token_delay_ms": 7}).json()["token_delay_ms"] == 7
        assert offline.token_delay_ms == 7
        log = http.get("/_offline/requests").json()["items"]
        assert [entry["failure"] for entry in log] == ["unavailable", None]
        assert {"task", "model", "messages", "prompt_tokens", "tools", "stream", "max_tokens"} <= set(log[0])
        assert http.delete("/_offline/requests").json() == {"cleared": 2}
        assert offline.requests() == []
        assert http.get("/nowhere").json()["error"]["code"] == "not_found"
    with pytest.raises(openai.BadRequestError):
        run(offline, lambda c: stream(c, HELLO, **_fail_by_header("no-such-mode")))


def test_any_key_is_accepted_unless_keys_are_set(offline: OfflineModel) -> None:
    assert run(offline, lambda c: stream(c, HELLO), api_key="sk-whatever-1234").finish_reason == "stop"
    offline.api_keys = ("sk-the-right-one-5678",)
    offline.fail("unavailable", times=1)  # stays queued for the first request the key lets through
    with pytest.raises(openai.AuthenticationError) as caught:
        run(offline, lambda c: stream(c, HELLO), api_key="sk-whatever-1234")
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "invalid_api_key"
    assert caught.value.body["type"] == "invalid_request_error"
    assert "sk-whatever" not in caught.value.body["message"]  # shown masked, as OpenAI does
    with pytest.raises(openai.InternalServerError):
        run(offline, lambda c: stream(c, HELLO), api_key="sk-the-right-one-5678")
    assert run(offline, lambda c: stream(c, HELLO), api_key="sk-the-right-one-5678").finish_reason == "stop"
    log = [(entry["key_hint"], entry["failure"]) for entry in offline.requests()]
    assert log == [("1234", None), ("1234", "invalid_api_key"), ("5678", "unavailable"), ("5678", None)]

    with httpx.Client(base_url=offline.url) as http:
        assert http.post("/_offline/config", json={"api_keys": "sk-x"}).status_code == 400
        assert http.post("/_offline/config", json={"api_keys": ["sk-new-key-0000"]}).json()["api_keys"] == 1
        with pytest.raises(openai.AuthenticationError):
            run(offline, lambda c: stream(c, HELLO), api_key="sk-the-right-one-5678")
        assert http.post("/_offline/config", json={"api_keys": None}).json()["api_keys"] is None
    assert run(offline, lambda c: stream(c, HELLO), api_key="anything").finish_reason == "stop"
    offline.api_keys = ("sk-only-this-one",)
    offline.reset()
    assert offline.api_keys is None  # reset: the keys it started with (any)


# --- time and load ---------------------------------------------------------------------------------


def test_token_delay_spreads_the_chunks_over_time(offline: OfflineModel) -> None:
    offline.token_delay_ms = 30
    started = time.perf_counter()
    out = run(offline, lambda c: stream(c, HELLO, max_completion_tokens=20))
    pieces = len(out.content_times)
    assert pieces > 10
    assert out.content_times[-1] - started >= pieces * 0.030 * 0.5
    assert out.content_times[-1] - out.content_times[0] >= (pieces - 1) * 0.030 * 0.5


def test_a_hundred_concurrent_streams_all_complete(offline: OfflineModel) -> None:
    offline.token_delay_ms = 5

    async def work(client: AsyncOpenAI) -> list[Streamed]:
        questions = [
            [
                SYSTEM,
                {"role": "user", "content": f"question number {i}: how many medium black tees are in stock?"},
            ]
            for i in range(100)
        ]
        return await asyncio.gather(
            *(stream(client, q, tools=TOOLS if i % 2 else None) for i, q in enumerate(questions))
        )

    results = run(offline, work)
    assert len(results) == 100
    assert all(r.usage is not None for r in results)
    assert all(r.finish_reason == ("tool_calls" if i % 2 else "stop") for i, r in enumerate(results))
    assert len(offline.requests()) == 100


def test_stop_returns_promptly_with_a_request_stalled(offline: OfflineModel) -> None:
    with OfflineModel() as other:
        other.fail("timeout")

        async def stalled() -> None:
            async with AsyncOpenAI(base_url=other.base_url, api_key="x", max_retries=0, timeout=60) as client:
                await stream(client, HELLO)

        async def main() -> float:
            task = asyncio.create_task(stalled())
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            await asyncio.to_thread(other.stop)
            elapsed = time.perf_counter() - started
            with pytest.raises(openai.APIError):
                await task
            return elapsed

        assert asyncio.run(main()) < 5
