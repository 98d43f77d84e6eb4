"""An empty environment variable means unset: template.yaml declares every setting with "" so that
`sam local --env-vars` can set it, and on AWS those empty values must leave the defaults."""

from __future__ import annotations

import pytest

from shelfwise.settings import Settings


def test_empty_variables_leave_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SHELFWISE_DYNAMODB_ENDPOINT_URL",
        "SHELFWISE_OPENAI_BASE_URL",
        "SHELFWISE_OPENAI_API_KEY",
        "SHELFWISE_OPENAI_API_KEY_PARAMETER",
        "SHELFWISE_MAIN_MODEL",
        "SHELFWISE_PROMPT_TOKEN_BUDGET",  # an int: "" would not even parse
        "SHELFWISE_LLM_TIMEOUT_SECONDS",
        "SHELFWISE_LOCAL_SIGNING_KEY",
        "SHELFWISE_LOCAL_SIGNING_KEY_FILE",
    ):
        monkeypatch.setenv(name, "")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    settings = Settings()
    assert settings == Settings.model_validate({})
    assert settings.dynamodb_endpoint_url is None  # boto3 talks to AWS, not to ""
    assert settings.openai_base_url is None
    assert settings.openai_api_key is None
    assert settings.openai_api_key_parameter is None
    assert settings.main_model == "gpt-4.1-mini"
    assert settings.prompt_token_budget == 6000
    assert settings.local_signing_key is None
    assert str(settings.local_signing_key_file) == ".local/dev-signing-key"


def test_an_empty_shelfwise_key_gives_way_to_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELFWISE_OPENAI_API_KEY", "")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    key = Settings().openai_api_key
    assert key is not None
    assert key.get_secret_value() == "sk-local"


def test_set_variables_still_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELFWISE_DYNAMODB_ENDPOINT_URL", "http://172.17.0.1:8100")
    monkeypatch.setenv("SHELFWISE_MAIN_MODEL", "shelfwise-offline")
    settings = Settings()
    assert settings.dynamodb_endpoint_url == "http://172.17.0.1:8100"
    assert settings.main_model == "shelfwise-offline"
