"""Typed configuration, read once from the environment (prefix SHELFWISE_).

`get_settings()` builds the one instance on first use and caches it; nothing here runs at import.
Every field is documented in README.md under "Configuration".
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shelfwise import __version__


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHELFWISE_", extra="ignore", frozen=True)

    # Storage
    table_name: str = Field(default="shelfwise", description="DynamoDB table holding everything")
    dynamodb_endpoint_url: str | None = Field(
        default=None, description="Override for DynamoDB's endpoint (moto server, DynamoDB Local)"
    )
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="Region of the table; Lambda sets AWS_REGION",
    )

    # Identity
    auth_mode: Literal["cognito", "local"] = Field(
        default="cognito",
        description="cognito: trust API Gateway's Cognito authorizer claims; local: verify dev tokens",
    )
    admin_group: str = "inventory-admins"
    local_signing_key: SecretStr | None = Field(
        default=None, description="HS256 key for local dev tokens; falls back to local_signing_key_file"
    )
    local_signing_key_file: Path = Path(".local/dev-signing-key")
    local_token_ttl_seconds: int = Field(default=12 * 3600, gt=0)

    # Stock
    stock_retry_attempts: int = Field(
        default=25, ge=1, description="Optimistic-concurrency retries for one stock adjustment"
    )

    version: str = __version__


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
