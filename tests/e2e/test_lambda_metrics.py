"""The EMF lines ChatStreamFunction's loop really prints: names, units and dimensions, the dashboard's
own (template.yaml reads them by these dimensions), and never a user or a conversation as one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.runtime_api import (
    StreamStack,
    create_conversation,
    sse_events,
    stream_stack,
    turn_event,
)

STOCK_QUESTION = "How many black Essential Tees in M do we have?"


@pytest.fixture(scope="module")
def stack(offline_model: Any) -> Iterator[StreamStack]:
    with stream_stack(
        offline_model,
        table="metrics-e2e",
        env={
            "SHELFWISE_BUDGET_TOKENS_PER_DAY": "1",  # everyone is over budget...
            "SHELFWISE_BUDGET_TOKENS_PER_DAY_BY_GROUP": '{"inventory-admins": 1000000}',  # ...but admins
        },
    ) as stack:
        yield stack


def metric_lines(output: str) -> list[dict[str, Any]]:
    """(name, unit, dimensions, dimension values, value) of every metric of every EMF line."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for definition in blob["_aws"]["CloudWatchMetrics"]:
            dimensions = [tuple(d) for d in definition["Dimensions"]]
            for metric in definition["Metrics"]:
                found.append(
                    {
                        "name": metric["Name"],
                        "unit": metric["Unit"],
                        "dimensions": dimensions,
                        "values": {k: blob[k] for d in dimensions for k in d},
                        "value": sum(v) if isinstance(v := blob[metric["Name"]], list) else v,
                    }
                )
    return found


def by_name(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["name"] == name]


def test_a_turn_prints_the_dashboards_metrics(stack: StreamStack, offline_model: Any) -> None:
    offline_model.reset()
    conversation_id = create_conversation(stack.services)
    asked = stack.api.next_calls
    answered = stack.api.wait_response(stack.api.invoke(turn_event(conversation_id, STOCK_QUESTION)))
    assert [n for n, _ in sse_events(answered.payload)][-1] == "done"
    offline_model.fail("midstream", times=1, task="chat")
    broken = stack.api.wait_response(stack.api.invoke(turn_event(conversation_id, "tell me a long story")))
    assert [n for n, _ in sse_events(broken.payload)][-1] == "error"
    stack.api.wait_next_calls(asked + 2)  # both invocations over: their metrics flushed

    def flushed() -> list[dict[str, Any]]:
        lines = metric_lines(stack.process.output())
        return lines if len(by_name(lines, "PromptTokens")) >= 2 else []

    lines = stack.process.wait_until(flushed)

    service = [("service",)]
    for name, unit in (
        ("TimeToFirstToken", "Milliseconds"),
        ("TurnLatency", "Milliseconds"),
        ("TurnsCompleted", "Count"),
    ):
        (line, *_) = by_name(lines, name)
        assert (line["unit"], line["dimensions"], line["values"]) == (unit, service, {"service": "shelfwise"})
    for name, unit in (("PromptTokens", "Count"), ("CompletionTokens", "Count"), ("CostUSD", "None")):
        emitted = by_name(lines, name)
        assert len(emitted) == 2, name  # one per turn, the broken one included
        for line in emitted:
            assert line["unit"] == unit
            assert line["dimensions"] == [("service", "model")]
            assert line["values"] == {"service": "shelfwise", "model": "offline-main"}
    assert by_name(lines, "PromptTokens")[0]["value"] > 0
    (tool,) = by_name(lines, "ToolCalls")
    assert (tool["dimensions"], tool["values"]["tool"]) == ([("service", "tool")], "search_products")
    (interrupted,) = by_name(lines, "TurnsInterrupted")
    assert (interrupted["dimensions"], interrupted["values"]["reason"]) == (
        [("service", "reason")],
        "upstream_error",
    )
    # bounded dimensions only: never a user id, a conversation id or a request id
    for line in lines:
        assert conversation_id not in json.dumps(line["values"])
        bounded = {"service", "model", "reason", "tool", "outcome"} | (
            {"function_name"} if line["name"] == "ColdStart" else set()
        )
        assert {k for d in line["dimensions"] for k in d} <= bounded, line


def test_a_turn_over_budget_counts_a_rejection(stack: StreamStack) -> None:
    conversation_id = create_conversation(stack.services)
    event = turn_event(conversation_id, "hello")
    event["requestContext"]["authorizer"]["claims"]["cognito:groups"] = ""  # not an admin: 1 token a day
    before = len(by_name(metric_lines(stack.process.output()), "BudgetRejections"))
    asked = stack.api.next_calls
    refused = stack.api.wait_response(stack.api.invoke(event))
    assert refused.prelude["statusCode"] == 429
    assert json.loads(refused.payload)["error"]["code"] == "budget_exceeded"
    stack.api.wait_next_calls(asked + 1)

    def counted() -> list[dict[str, Any]]:
        found = by_name(metric_lines(stack.process.output()), "BudgetRejections")
        return found if len(found) > before else []

    rejections = stack.process.wait_until(counted)
    assert len(rejections) == before + 1
    assert (rejections[-1]["unit"], rejections[-1]["dimensions"]) == ("Count", [("service",)])
