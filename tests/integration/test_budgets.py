"""Token budgets per user: reserved before the model is called, refused with 429 before anything is
stored, settled with what the turn used; GET /usage; cost per answer. moto and DynamoDB Local."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.local.dynamodb_local import DynamoDBLocal
from infra.local.embedded_dynamodb import EmbeddedDynamoDB
from infra.local.table import create_table
from shelfwise.chat.usage import Budgets
from shelfwise.errors import BudgetExceeded
from shelfwise.services import Services
from shelfwise.storage.dynamo import Dynamo, dynamodb_client
from shelfwise.web.app import create_app
from tests.fixtures.app import chat_settings, make_services, make_settings
from tests.fixtures.app import new_conversation as conversation
from tests.fixtures.dynamodb import DynamoTarget, unique_table_name

JSON = {"Accept": "application/json"}
PRICES = {"offline-main": {"prompt": "2.00", "completion": "8.00"}}


def client_for(ddb: DynamoTarget, model: Any, **settings: Any) -> TestClient:
    services = make_services(ddb, **chat_settings(model, model_prices=PRICES, **settings))
    return TestClient(create_app(services=services), raise_server_exceptions=False)


@pytest.fixture
def tight(ddb: DynamoTarget, model: Any) -> Iterator[TestClient]:
    """A budget of 1 token a day for everyone, a million for the admin group."""
    with client_for(
        ddb, model, budget_tokens_per_day=1, budget_tokens_per_day_by_group={"inventory-admins": 1_000_000}
    ) as client:
        yield client


def test_a_user_over_budget_is_refused_before_the_model_and_nothing_is_stored(
    tight: TestClient, model: Any, user: dict[str, str]
) -> None:
    conversation_id = conversation(tight, user)
    model.clear_requests()
    for accept in (JSON, {}):  # a JSON answer and a stream alike
        refused = tight.post(
            f"/conversations/{conversation_id}/messages",
            json={"content": "hello"},
            headers={**user, **accept},
        )
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "budget_exceeded"
        assert error["resets_at"].endswith("T00:00:00.000Z")
        assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    assert model.requests() == [], "the model was never called"
    assert tight.get(f"/conversations/{conversation_id}/messages", headers=user).json()["items"] == []
    assert tight.get(f"/conversations/{conversation_id}", headers=user).json()["message_count"] == 0
    usage = tight.get("/usage", headers=user).json()
    assert (usage["limit_tokens"], usage["remaining_tokens"], usage["prompt_tokens"]) == (1, 1, 0)


def test_a_group_budget_lets_its_members_through_and_usage_is_settled(
    tight: TestClient, admin: dict[str, str]
) -> None:
    conversation_id = conversation(tight, admin)
    answer = tight.post(
        f"/conversations/{conversation_id}/messages",
        json={"content": "how many medium black tees are in stock?"},
        headers={**admin, **JSON},
    )
    assert answer.status_code == 200, answer.text
    message = answer.json()
    used = message["prompt_tokens"] + message["completion_tokens"]
    expected_cost = (message["prompt_tokens"] * 2 + message["completion_tokens"] * 8) / 1_000_000
    assert message["cost_usd"] == pytest.approx(expected_cost)
    usage = tight.get("/usage", headers=admin).json()
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        message["prompt_tokens"],
        message["completion_tokens"],
    )
    assert usage["limit_tokens"] == 1_000_000
    assert usage["remaining_tokens"] == 1_000_000 - used, "the reservation was replaced by what was used"
    assert usage["cost_usd"] == pytest.approx(expected_cost)


def test_a_budget_holds_a_turn_or_two_then_refuses(
    ddb: DynamoTarget, model: Any, user: dict[str, str]
) -> None:
    with client_for(ddb, model, budget_tokens_per_day=4_000, chat_max_completion_tokens=200) as client:
        conversation_id = conversation(client, user)
        statuses = []
        for _ in range(12):
            response = client.post(
                f"/conversations/{conversation_id}/messages",
                json={"content": "hello"},
                headers={**user, **JSON},
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[0] == 200
        assert statuses[-1] == 429, statuses
        usage = client.get("/usage", headers=user).json()
        assert usage["prompt_tokens"] + usage["completion_tokens"] <= 4_000
        turns = client.get(f"/conversations/{conversation_id}", headers=user).json()["message_count"] // 2
        assert turns == statuses.count(200)


def test_no_budget_means_no_limit_but_usage_is_recorded(
    ddb: DynamoTarget, model: Any, user: dict[str, str]
) -> None:
    with client_for(ddb, model) as client:
        conversation_id = conversation(client, user)
        answer = client.post(
            f"/conversations/{conversation_id}/messages", json={"content": "hello"}, headers={**user, **JSON}
        )
        assert answer.status_code == 200
        usage = client.get("/usage", headers=user).json()
        assert (usage["limit_tokens"], usage["remaining_tokens"]) == (None, None)
        assert usage["prompt_tokens"] == answer.json()["prompt_tokens"] > 0


@pytest.fixture(params=[pytest.param("dynamodb-local", marks=pytest.mark.slow), "embedded"])
def concurrent_budgets(request: pytest.FixtureRequest) -> Iterator[Budgets]:
    """Budgets over real HTTP between threads and the database: DynamoDB Local, and the local
    stack's embedded DynamoDB (a moto server behind a request lock; in-process moto is not
    thread-safe, so it cannot judge concurrency)."""
    table = unique_table_name()
    settings = make_settings(table, budget_tokens_per_day=1_000)
    if request.param == "dynamodb-local":
        emulator: DynamoDBLocal = request.getfixturevalue("dynamodb_local")
        client = dynamodb_client("us-east-1", emulator.endpoint_url)
        create_table(client, table)
        yield Services(settings, dynamo=Dynamo(client, table)).chat.budgets
        client.delete_table(TableName=table)
        return
    with EmbeddedDynamoDB() as db:
        client = dynamodb_client("us-east-1", db.endpoint_url)
        create_table(client, table)
        yield Services(settings, dynamo=Dynamo(client, table)).chat.budgets


def test_concurrent_reservations_of_one_user_never_pass_the_budget(concurrent_budgets: Budgets) -> None:
    def reserve(_: int) -> bool:
        try:
            concurrent_budgets.reserve("carol", frozenset(), 300)
        except BudgetExceeded:
            return False
        return True

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(reserve, range(12)))
    assert results.count(True) == 3, "1,000 tokens hold three reservations of 300, never four"
    assert concurrent_budgets.usage("carol", frozenset())["remaining_tokens"] == 100
