"""Typed configuration, read once from the environment (prefix SHELFWISE_).

`get_settings()` builds the one instance on first use and caches it; nothing here runs at import.
Every field is documented in README.md under "Configuration".
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shelfwise import __version__


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    prompt: Decimal = Field(ge=0)
    completion: Decimal = Field(ge=0)


# List prices (USD per million tokens) of the default models; a model not listed costs 0.
DEFAULT_PRICES = {
    "gpt-4.1-mini": ModelPrice(prompt=Decimal("0.40"), completion=Decimal("1.60")),
    "gpt-4.1-nano": ModelPrice(prompt=Decimal("0.10"), completion=Decimal("0.40")),
}


class Settings(BaseSettings):
    # An empty variable means unset: template.yaml declares every setting with "" (so that `sam local
    # --env-vars` may set it), and "" must then leave the default in place.
    model_config = SettingsConfigDict(
        env_prefix="SHELFWISE_", extra="ignore", frozen=True, env_ignore_empty=True
    )

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
    # The chat page's sign-in on AWS: Cognito's managed login (authorization code + PKCE). The page
    # reads both from GET /app/config; without a domain and a client it offers no hosted sign-in.
    cognito_domain: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$",
        description="Host of the user pool's managed login: PREFIX.auth.REGION.amazoncognito.com",
    )
    cognito_client_id: str | None = Field(
        default=None, pattern=r"^[\w+]+$", description="The page's app client (no secret)"
    )
    cognito_client_id_parameter: str | None = Field(
        default=None,
        description="SSM parameter holding the page's app client id, when cognito_client_id is unset "
        "(on AWS: the client's callback URL names the API, so the API's function cannot name the client)",
    )

    # MCP (POST /mcp): the protected-resource document (RFC 9728) names the user pool's issuer as the
    # authorization server on AWS; without a pool (local auth) it names the app itself.
    cognito_user_pool_id: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]+$",
        description="The Cognito user pool (REGION_ID) whose tokens the API takes",
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The API's public base URL (a custom domain); unset: taken from each request",
    )

    # Stock
    stock_retry_attempts: int = Field(
        default=25, ge=1, description="Optimistic-concurrency retries for one stock adjustment"
    )

    # Models: any OpenAI-compatible server. Keys: OPENAI_API_KEY locally; on AWS an SSM SecureString
    # parameter or a Secrets Manager secret, read through Powertools parameters (cached).
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SHELFWISE_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_api_key_parameter: str | None = Field(default=None, description="SSM parameter holding the key")
    openai_api_key_secret: str | None = Field(
        default=None, description="Secrets Manager secret holding the key"
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SHELFWISE_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint (Ollama, vLLM, the offline model, ...)",
    )
    main_model: str = "gpt-4.1-mini"
    utility_model: str = "gpt-4.1-nano"
    chat_max_completion_tokens: int = Field(default=1024, ge=16)
    summary_max_completion_tokens: int = Field(default=512, ge=16)
    # Room for a reasoning model's thinking before its six words (a limit, not a target: other
    # models stop after a dozen tokens).
    title_max_completion_tokens: int = Field(default=1024, ge=16)
    llm_timeout_seconds: float = Field(
        default=60.0, gt=0, description="The HTTP timeout of one model call (each read, once streaming)"
    )
    llm_max_retries: int = Field(default=2, ge=0, le=6)
    # Bounded waiting: a reasoning model may think for a while before its first token, but a user
    # is not left in silence for minutes (it was 184 s: a 60 s timeout retried twice).
    llm_first_token_timeout_seconds: float = Field(
        default=45.0, gt=0, description="The first token (text or a tool call) of a streamed call, within"
    )
    llm_retry_budget_seconds: float = Field(
        default=75.0,
        gt=0,
        description="All attempts and back-offs of one streamed call before its first token; then 504",
    )
    key_cache_seconds: int = Field(default=300, ge=0)

    # Memory
    prompt_token_budget: int = Field(default=6000, ge=500, description="Everything sent, tools included")
    history_window_messages: int = Field(
        default=40, ge=2, le=200, description="Newest messages read per turn"
    )
    summary_max_tokens: int = Field(default=600, ge=50)
    max_tool_rounds: int = Field(default=4, ge=0, le=10)
    # Spend limits of one turn's tools: the calls beyond are not run, the model is told so.
    max_tool_calls_per_round: int = Field(
        default=8, ge=1, le=128, description="Tool calls answered per round; the rest are refused"
    )
    max_tool_calls_per_turn: int = Field(
        default=16, ge=1, le=512, description="Tool calls answered per turn; then no tools are offered"
    )
    turn_lock_seconds: int = Field(
        default=900, ge=10, description="A crashed turn frees its conversation after this"
    )
    message_max_chars: int = Field(default=8000, ge=1)
    # A turn runs to its end whether anyone listens or not, bounded by its deadline: this locally,
    # and on Lambda the invocation's remaining time less the margin, whichever comes first.
    turn_max_seconds: float = Field(
        default=840.0, gt=0, description="Longest a turn may run before it ends interrupted (deadline)"
    )
    turn_deadline_margin_seconds: float = Field(
        default=10.0, ge=0, description="On Lambda, how long before the invocation's end a turn ends"
    )

    # Budgets: tokens per user per UTC day, reserved before a turn calls the model. Unset: no limit.
    budget_tokens_per_day: int | None = Field(
        default=None, ge=1, description="Every user's daily token budget (unset: no limit)"
    )
    budget_tokens_per_day_by_group: dict[str, int] = Field(
        default_factory=dict,
        description='JSON {"group": tokens}: a Cognito group\'s budget (the largest wins)',
    )
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description='JSON {"model": {"prompt": usd, "completion": usd}} per million tokens',
    )

    version: str = __version__


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
