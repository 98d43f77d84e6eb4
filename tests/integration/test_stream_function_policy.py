"""ChatStreamFunction's IAM policy in template.yaml allows every DynamoDB call a turn makes.

The policy is least privilege and written by hand, so it can fall behind the code: an action it
lacks would only show on AWS, as an AccessDenied in the middle of a chat. Here the turn route runs
in-process over moto with a recorder on the DynamoDB client: turns that call every inventory tool,
fold the summary, fail before and after the first token, and meet an unknown conversation. Every
operation botocore sends must be allowed by the policy, on the right resource (table or index).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.local.template import resource
from shelfwise.inventory.models import Category, NewVariant, ProductIn
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, chat_settings, make_services
from tests.fixtures.dynamodb import DynamoTarget

# DynamoDB API operation -> the IAM actions it needs (a transaction needs those of its items).
_TRANSACT_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _needed(operation: str, params: dict[str, Any]) -> set[tuple[str, str]]:
    """(IAM action, "table" | "index") pairs one call needs."""
    if operation == "TransactWriteItems":
        return {(f"dynamodb:{_TRANSACT_ITEMS[k]}", "table") for item in params["TransactItems"] for k in item}
    if operation == "TransactGetItems":
        return {("dynamodb:GetItem", "table")}
    target = "index" if params.get("IndexName") else "table"
    return {(f"dynamodb:{operation}", target)}


def _allowed() -> set[tuple[str, str]]:
    allowed: set[tuple[str, str]] = set()
    for policy in resource("ChatStreamFunction")["Properties"]["Policies"]:
        for statement in policy["Statement"]:
            targets = {
                "table" if r == {"Fn::GetAtt": ["Table", "Arn"]} else "index"
                for r in (
                    [statement["Resource"]]
                    if isinstance(statement["Resource"], dict)
                    else statement["Resource"]
                )
                if r in ({"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Sub": "${Table.Arn}/index/*"})
            }
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            allowed |= {(a, t) for a in actions for t in targets}
    return allowed


@pytest.fixture
def recorded(ddb: DynamoTarget, model: Any) -> Iterator[tuple[TestClient, list[tuple[str, dict[str, Any]]]]]:
    # A window of two messages: from the third turn on, older messages are folded into the summary.
    services = make_services(ddb, **chat_settings(model, history_window_messages=2))
    services.inventory.create_product(
        ProductIn(
            category=Category.TEES,
            name="Essential Tee",
            color="black",
            price="24",  # type: ignore[arg-type]  # pydantic coerces
            variants=[NewVariant(size="M", quantity=3, reorder_level=5)],
        ),
        actor="test",
    )
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params))

    ddb.client.meta.events.register("provide-client-params.dynamodb.*", record)
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield client, calls


def test_every_dynamodb_call_of_a_turn_is_allowed(
    recorded: tuple[TestClient, list[tuple[str, dict[str, Any]]]], model: Any
) -> None:
    client, calls = recorded
    user = bearer("policy-user")
    conversation = client.post("/conversations", json={}, headers=user).json()["id"]
    calls.clear()  # creating a conversation is ApiFunction's work, not a turn's

    def turn(content: str, accept: str = "application/json", conversation_id: str = conversation) -> int:
        response = client.post(
            f"/conversations/{conversation_id}/messages",
            json={"content": content},
            headers={**user, "Accept": accept},
        )
        return response.status_code

    assert turn("How many black Essential Tees in M do we have?") == 200  # search_products
    assert turn("Which products are low on stock?") == 200  # list_low_stock
    assert turn("What is our inventory worth?") == 200  # get_inventory_value
    assert turn("Tell me about TE-0001") == 200  # get_product
    model.fail("midstream", times=1, task="chat")
    assert turn("tell me a story about the store", accept="text/event-stream") == 200  # interrupted
    model.fail("server_error", times=1, task="chat")
    assert turn("and another one") == 502  # failed before the first token: the turn is released
    assert turn("hello?", conversation_id="0" * 32) == 404

    summary = client.get(f"/conversations/{conversation}", headers=user).json()["summary"]
    assert summary["through_seq"] > 0, "no summary was folded: the fold's calls were not exercised"

    needed = set().union(*(_needed(operation, params) for operation, params in calls))
    assert {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= {a for a, _ in needed}
    missing = needed - _allowed()
    assert not missing, f"ChatStreamFunction's policy lacks {sorted(missing)}"
