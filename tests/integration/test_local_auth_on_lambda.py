"""Local dev-token auth never runs on Lambda itself: creating the app there refuses it, naming the
setting, so ApiFunction fails (its app is created on the first invocation) and ChatStreamFunction's
init fails (reported to the Runtime API). Under `sam local` (AWS_SAM_LOCAL=true) and off Lambda it
stays what it is for: trying the API with dev tokens."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from pydantic import SecretStr

from infra.local.table import create_table
from shelfwise.entry import api
from shelfwise.identity import LocalAuthOnLambda
from shelfwise.settings import Settings, get_settings
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer
from tests.fixtures.runtime_api import FakeRuntimeAPI, StreamProcess, loop_environment

SIGNING_KEY = "test-signing-key-" + "x" * 32


def local_settings() -> Settings:
    return Settings(
        auth_mode="local",
        local_signing_key=SecretStr(SIGNING_KEY),
        table_name="unused",
        aws_region="us-east-1",
    )


@pytest.fixture
def on_lambda(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ApiFunction")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    return monkeypatch


@pytest.fixture
def fresh_handler() -> Iterator[None]:
    for cached in (get_settings, api._handler):
        cached.cache_clear()
    yield
    for cached in (get_settings, api._handler):
        cached.cache_clear()


def test_on_lambda_local_auth_refuses_to_start_and_names_the_setting(on_lambda: pytest.MonkeyPatch) -> None:
    with pytest.raises(LocalAuthOnLambda, match="SHELFWISE_AUTH_MODE") as refused:
        create_app(local_settings())
    assert "ApiFunction" in str(refused.value)
    assert "cognito" in str(refused.value)


def test_on_lambda_cognito_starts(on_lambda: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(table_name="unused"))
    with TestClient(app) as http:
        assert http.get("/health").status_code == 200


def test_api_function_answers_nothing_with_local_auth(
    on_lambda: pytest.MonkeyPatch, fresh_handler: None
) -> None:
    """ApiFunction creates its app on the first invocation: that fails, and so does every next one."""
    on_lambda.setenv("SHELFWISE_AUTH_MODE", "local")
    on_lambda.setenv("SHELFWISE_LOCAL_SIGNING_KEY", SIGNING_KEY)
    for _ in range(2):
        with pytest.raises(LocalAuthOnLambda, match="SHELFWISE_AUTH_MODE"):
            api._handler()


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param({"AWS_LAMBDA_FUNCTION_NAME": "ApiFunction", "AWS_SAM_LOCAL": "true"}, id="sam-local"),
        pytest.param({}, id="off-lambda"),
    ],
)
def test_local_auth_still_works_under_sam_local_and_off_lambda(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_SAM_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "unused")
        with TestClient(create_app(local_settings())) as http:
            mine = http.get("/conversations", headers=bearer("bob", local_signing_key=SIGNING_KEY))
            nobody = http.get("/conversations")
    assert nobody.status_code == 401
    assert mine.status_code == 200, mine.text
    assert mine.json()["items"] == []


def test_chat_stream_function_reports_the_refusal_as_its_init_error() -> None:
    with FakeRuntimeAPI() as runtime:
        env = loop_environment(runtime, SHELFWISE_AUTH_MODE="local", SHELFWISE_LOCAL_SIGNING_KEY=SIGNING_KEY)
        env.pop("AWS_SAM_LOCAL", None)
        with StreamProcess(env) as process:
            error = runtime.wait_error()
            assert process.wait(30) == 1, process.output()
        assert error.path == "/2018-06-01/runtime/init/error"
        assert error.body["errorType"] == "LocalAuthOnLambda"
        assert "SHELFWISE_AUTH_MODE" in error.body["errorMessage"]
        assert runtime.next_calls == 0  # it never serves an invocation


def test_chat_stream_function_starts_with_local_auth_under_sam_local() -> None:
    with FakeRuntimeAPI() as runtime:
        env = loop_environment(
            runtime,
            SHELFWISE_AUTH_MODE="local",
            SHELFWISE_LOCAL_SIGNING_KEY=SIGNING_KEY,
            AWS_SAM_LOCAL="true",
        )
        with StreamProcess(env):
            runtime.wait_next_calls(1, timeout=30)  # init done: it asks for its first invocation
        assert runtime.errors == []
