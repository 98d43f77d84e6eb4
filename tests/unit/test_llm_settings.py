"""Where the model key comes from, and that it never reaches the logs."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from shelfwise.chat.llm import map_error, resolve_api_key
from shelfwise.errors import UpstreamError
from shelfwise.settings import Settings


def test_the_key_comes_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert resolve_api_key(Settings()) == "sk-from-env"
    assert "sk-from-env" not in repr(Settings())  # a SecretStr: never printed, never logged


def test_on_aws_the_key_comes_from_ssm_and_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/shelfwise/openai-api-key", Value="sk-from-ssm", Type="SecureString")
        settings = Settings(openai_api_key_parameter="/shelfwise/openai-api-key", key_cache_seconds=300)
        assert resolve_api_key(settings) == "sk-from-ssm"
        ssm.put_parameter(
            Name="/shelfwise/openai-api-key", Value="sk-rotated", Type="SecureString", Overwrite=True
        )
        assert resolve_api_key(settings) == "sk-from-ssm"  # cached for key_cache_seconds


def test_a_forced_read_goes_past_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a 401 does: the key read anew from the store, from SSM or from Secrets Manager."""
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    DEFAULT_PROVIDERS.clear()
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/shelfwise/forced", Value="sk-before", Type="SecureString")
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        secrets.create_secret(Name="shelfwise/forced", SecretString="sk-before")
        by_parameter = Settings(openai_api_key_parameter="/shelfwise/forced", key_cache_seconds=300)
        by_secret = Settings(openai_api_key_secret="shelfwise/forced", key_cache_seconds=300)
        assert resolve_api_key(by_parameter) == resolve_api_key(by_secret) == "sk-before"
        ssm.put_parameter(Name="/shelfwise/forced", Value="sk-after", Type="SecureString", Overwrite=True)
        secrets.put_secret_value(SecretId="shelfwise/forced", SecretString="sk-after")
        assert resolve_api_key(by_parameter) == resolve_api_key(by_secret) == "sk-before"
        assert resolve_api_key(by_parameter, force=True) == "sk-after"
        assert resolve_api_key(by_secret, force=True) == "sk-after"
        assert resolve_api_key(by_parameter) == "sk-after"  # and the cache holds it now
    DEFAULT_PROVIDERS.clear()


def test_or_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="shelfwise/openai", SecretString="sk-from-secret"
        )
        assert resolve_api_key(Settings(openai_api_key_secret="shelfwise/openai")) == "sk-from-secret"


def test_no_key_and_no_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UpstreamError, match="OPENAI_API_KEY"):
        resolve_api_key(Settings())


def test_unknown_failures_are_upstream_errors() -> None:
    assert map_error(RuntimeError("boom")).code == "upstream_error"
