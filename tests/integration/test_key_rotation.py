"""Model key rotation without a restart: the key lives in SSM Parameter Store (moto), the offline
model accepts only the keys it is told to, and one ChatModel (one warm process) keeps answering.

- a key rotated in the store is used once the cached one ages out (`key_cache_seconds`);
- a key the model's server refuses (401) is read anew at once, and the call made again with it;
- a key refused for good is the usual 502 after at most two requests, never a loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from fastapi.testclient import TestClient
from moto import mock_aws

from infra.local.table import create_table
from shelfwise.chat.llm import ChatModel, TextDelta
from shelfwise.errors import UpstreamError
from shelfwise.services import Services
from shelfwise.settings import Settings
from shelfwise.storage.dynamo import Dynamo
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, chat_settings, make_settings
from tests.integration.test_turns import ask, new_conversation, seed_tees

PARAMETER = "/shelfwise/test/openai-api-key"
OLD = "sk-old-key-0000000000001111"
NEW = "sk-new-key-0000000000002222"
NOBODY = "sk-no-client-has-this-9999"
MESSAGES = [{"role": "user", "content": "hello there"}]

Call = Callable[[ChatModel], Awaitable[str]]


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """SSM (moto) holding OLD; Powertools' providers (and their caches) fresh for each test."""
    for name in ("OPENAI_API_KEY", "SHELFWISE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    DEFAULT_PROVIDERS.clear()
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name=PARAMETER, Value=OLD, Type="SecureString")
        yield ssm
    DEFAULT_PROVIDERS.clear()


def rotate(ssm: Any, key: str) -> None:
    ssm.put_parameter(Name=PARAMETER, Value=key, Type="SecureString", Overwrite=True)


def settings_for(model: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_base_url": model.base_url,
        "openai_api_key_parameter": PARAMETER,
        "aws_region": "us-east-1",
        "llm_timeout_seconds": 5.0,
        "llm_max_retries": 2,  # retries allowed: a refused key must still not loop
        **overrides,
    }
    return Settings(**values)


async def _streamed(chat: ChatModel, *, retry: bool = True) -> str:
    parts = []
    async for event in chat.stream(
        model="offline-main", messages=MESSAGES, tools=None, max_completion_tokens=64, retry=retry
    ):
        if isinstance(event, TextDelta):
            parts.append(event.text)
    return "".join(parts)


async def _completed(chat: ChatModel) -> str:
    text, _ = await chat.complete(model="offline-utility", messages=MESSAGES, max_completion_tokens=64)
    return text


@pytest.fixture(params=["stream", "complete"])
def call(request: pytest.FixtureRequest) -> Call:
    return _streamed if request.param == "stream" else _completed


def seen(model: Any) -> list[tuple[str, str | None]]:
    """(key hint, failure) of each request the model received, oldest first; then forgets them."""
    log = [(entry["key_hint"], entry["failure"]) for entry in model.requests()]
    model.clear_requests()
    return log


def test_a_key_rotated_in_the_store_is_used_once_the_cache_ages_out(
    store: Any, model: Any, call: Call
) -> None:
    model.api_keys = (OLD, NEW)  # rotation with overlap: the old key still works for a while
    chat = ChatModel(settings_for(model, key_cache_seconds=1))

    async def scenario() -> None:
        assert await call(chat)
        assert seen(model) == [("1111", None)]
        rotate(store, NEW)
        assert await call(chat)
        assert seen(model) == [("1111", None)]  # still cached
        await asyncio.sleep(1.2)
        assert await call(chat)
        assert seen(model) == [("2222", None)]  # aged out: the new key, and no 401 on the way

    asyncio.run(scenario())


def test_a_refused_key_is_replaced_at_once_on_a_401(store: Any, model: Any, call: Call) -> None:
    model.api_keys = (OLD,)
    chat = ChatModel(settings_for(model, key_cache_seconds=300))

    async def scenario() -> None:
        assert await call(chat)
        assert seen(model) == [("1111", None)]
        rotate(store, NEW)
        model.api_keys = (NEW,)  # the old key is revoked right away, long before the cache ages out
        assert await call(chat)
        assert seen(model) == [("1111", "invalid_api_key"), ("2222", None)]
        assert await call(chat)
        assert seen(model) == [("2222", None)]  # the rebuilt client stays

    asyncio.run(scenario())


def test_a_revoked_key_is_the_mapped_error_once_not_a_loop(store: Any, model: Any, call: Call) -> None:
    model.api_keys = (NOBODY,)
    chat = ChatModel(settings_for(model, key_cache_seconds=300))

    async def scenario() -> None:
        with pytest.raises(UpstreamError) as refused:
            await call(chat)
        assert refused.value.code == "upstream_error"  # a 502 to the user
        assert refused.value.details["upstream_status"] == 401
        assert seen(model) == [("1111", "invalid_api_key")]  # the store holds no other key: no retry
        rotate(store, NEW)  # replaced by a key that is refused as well
        with pytest.raises(UpstreamError):
            await call(chat)
        assert seen(model) == [("1111", "invalid_api_key"), ("2222", "invalid_api_key")]
        with pytest.raises(UpstreamError):
            await call(chat)
        assert seen(model) == [("2222", "invalid_api_key")]

    asyncio.run(scenario())


def test_a_stream_that_may_not_retry_fails_on_a_401_and_the_next_one_has_the_new_key(
    store: Any, model: Any
) -> None:
    """`retry=False` (the user has already seen text of this answer): the refused call is not made
    again, but the key is read anew, so the next round goes out with it."""
    model.api_keys = (OLD,)
    chat = ChatModel(settings_for(model, key_cache_seconds=300))

    async def scenario() -> None:
        assert await _streamed(chat, retry=False)
        rotate(store, NEW)
        model.api_keys = (NEW,)
        seen(model)
        with pytest.raises(UpstreamError):
            await _streamed(chat, retry=False)
        assert seen(model) == [("1111", "invalid_api_key")]
        assert await _streamed(chat, retry=False)
        assert seen(model) == [("2222", None)]

    asyncio.run(scenario())


def test_a_user_keeps_getting_answers_when_the_key_is_rotated_and_the_old_one_revoked(
    store: Any, model: Any
) -> None:
    """Through HTTP, one app (one warm process): the question after the rotation is answered."""
    model.api_keys = (OLD,)
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, "key-rotation")
    settings = make_settings(
        "key-rotation",
        **chat_settings(model),
        openai_api_key_parameter=PARAMETER,
        key_cache_seconds=300,
    )
    services = Services(settings, dynamo=Dynamo(client, "key-rotation"))
    user = bearer("bob")
    with TestClient(create_app(services=services), raise_server_exceptions=False) as http:
        seed_tees(http)
        conversation_id = new_conversation(http, user)
        first = ask(http, user, conversation_id, "how many medium black tees are in stock?")
        assert first.status_code == 200, first.text
        rotate(store, NEW)
        model.api_keys = (NEW,)
        second = ask(http, user, conversation_id, "and how many small black tees?")
        assert second.status_code == 200, second.text
        assert second.json()["status"] == "complete"
        assert "9" in second.json()["content"]
        chats = [entry for entry in model.requests() if entry["task"] == "chat"]
        assert ("1111", "invalid_api_key") in [(e["key_hint"], e["failure"]) for e in chats]
        assert chats[-1]["key_hint"] == "2222"
