"""The models, through the openai client against any OpenAI-compatible server.

Retries (with backoff) happen only before the first token of an answer (text or a tool call):
once anything may have reached the user, a failure ends the answer instead of silently starting it
again. Waiting is bounded: each streamed call must show its first token within
`llm_first_token_timeout_seconds`, and all attempts of one call, back-offs included, share
`llm_retry_budget_seconds`; a stalled model is a 504 after at most the budget. A stream that ends
without a token (an empty answer) is an upstream error, retried once, never an empty reply.
Upstream failures become domain errors: timeout -> UpstreamTimeout (504), rate limit ->
UpstreamRateLimited (429 with Retry-After), anything else -> UpstreamError (502).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import anyio

from shelfwise.errors import DomainError, UpstreamError, UpstreamRateLimited, UpstreamTimeout
from shelfwise.observability import logger
from shelfwise.settings import Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI


MAX_RETRY_DELAY_SECONDS = 5
EMPTY_ANSWER_RETRIES = 1  # an empty answer is asked again once (before the first token), then 502


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str = ""


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TextDelta:
    text: str


@dataclass
class RoundEnd:
    """The end of one model call: why it stopped, the tool calls it asked for, its usage."""

    finish_reason: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None


StreamEvent = TextDelta | RoundEnd


@dataclass
class _Round:
    """What the chunks of one streamed call have said so far."""

    calls: dict[int, ToolCall] = field(default_factory=dict)
    finish_reason: str = "stop"
    usage: Usage | None = None

    def absorb(self, chunk: Any) -> list[str]:
        """Take in one chunk; returns its text."""
        texts: list[str] = []
        if chunk.usage is not None:
            self.usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None and delta.content:
                texts.append(delta.content)
            for call in (delta.tool_calls if delta is not None else None) or []:
                slot = self.calls.setdefault(call.index, ToolCall(id="", name=""))
                if call.id:
                    slot.id = call.id
                if call.function is not None:
                    slot.name += call.function.name or ""
                    slot.arguments += call.function.arguments or ""
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return texts


def _has_token(chunk: Any) -> bool:
    """Whether a chunk carries part of the answer (text or a tool call), not only a role or usage."""
    return any(c.delta is not None and (c.delta.content or c.delta.tool_calls) for c in chunk.choices)


def resolve_api_key(settings: Settings) -> str:
    """The API key: from the environment, else SSM Parameter Store, else Secrets Manager (cached by
    Powertools for `key_cache_seconds`). Never logged."""
    if settings.openai_api_key is not None:
        return settings.openai_api_key.get_secret_value()
    if settings.openai_api_key_parameter:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_parameter(
            settings.openai_api_key_parameter, decrypt=True, max_age=settings.key_cache_seconds
        )
        return str(value)
    if settings.openai_api_key_secret:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(settings.openai_api_key_secret, max_age=settings.key_cache_seconds))
    if settings.openai_base_url:
        return "not-needed"  # a local OpenAI-compatible server that takes any key
    raise UpstreamError(
        "no model is configured: set OPENAI_API_KEY, or SHELFWISE_OPENAI_API_KEY_PARAMETER on AWS"
    )


def _retry_after(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    try:
        return max(1, round(float(header))) if header else None
    except ValueError:
        return None


def map_error(exc: BaseException) -> DomainError:
    import openai

    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout("the model did not answer in time")
    if isinstance(exc, openai.RateLimitError):
        return UpstreamRateLimited("the model's server is rate limiting us", retry_after=_retry_after(exc))
    if isinstance(exc, openai.APIStatusError):
        return UpstreamError(
            f"the model's server failed ({exc.status_code})", upstream_status=exc.status_code
        )
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError("the model's server could not be reached")
    return UpstreamError(f"the model's answer broke off ({type(exc).__name__})")


def _retryable(error: DomainError) -> bool:
    if isinstance(error, UpstreamTimeout | UpstreamRateLimited):
        return True
    status = error.details.get("upstream_status")
    return isinstance(error, UpstreamError) and (status is None or status >= 500 or status in (408, 409))


class ChatModel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[int, AsyncOpenAI] = {}

    def _client(self) -> AsyncOpenAI:
        """One client per event loop (its connection pool belongs to the loop that made it)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                api_key=resolve_api_key(self.settings),
                base_url=self.settings.openai_base_url,
                timeout=self.settings.llm_timeout_seconds,
                max_retries=0,  # ours: only before the first chunk
            )
            self._clients = {loop_id: client}  # the loop of a finished invocation is gone
        return client

    def _delay(self, attempt: int, error: DomainError) -> float:
        retry_after = error.details.get("retry_after")
        if retry_after and retry_after > MAX_RETRY_DELAY_SECONDS:
            raise error  # too long to hold the request: the caller gets 429 with Retry-After
        return float(retry_after) if retry_after else min(8.0, 0.5 * 2**attempt) * (0.5 + random.random())

    async def _backoff(self, attempt: int, error: DomainError, *, delay: float | None = None) -> None:
        delay = self._delay(attempt, error) if delay is None else delay
        logger.warning(
            "model call failed, retrying",
            extra={"attempt": attempt + 1, "code": error.code, "delay_s": delay},
        )
        await asyncio.sleep(delay)

    async def stream(
        self,
        *,
        model: str,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None,
        max_completion_tokens: int,
        retry: bool = True,
    ) -> AsyncGenerator[StreamEvent]:
        """One streamed model call: text deltas as they come, then a RoundEnd.

        The first token (text or tool call) must come within the first-token timeout; attempts and
        back-offs before it share the retry budget. Raises UpstreamTimeout when they run out,
        UpstreamError for an answer that ends without a token (after one more try)."""
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": max_completion_tokens,
        }
        if tools:
            kwargs["tools"] = list(tools)
        settings = self.settings
        clock = asyncio.get_running_loop().time
        deadline = clock() + settings.llm_retry_budget_seconds
        attempt = empties = 0
        while True:
            stream: Any = None
            head: list[Any] = []
            wait = min(settings.llm_first_token_timeout_seconds, max(0.0, deadline - clock()))
            try:
                with anyio.fail_after(wait):
                    stream = await self._client().chat.completions.create(**kwargs)
                    chunks = stream.__aiter__()
                    async for chunk in chunks:  # up to the first token: a role chunk is not one
                        head.append(chunk)
                        if _has_token(chunk):
                            break
                    else:
                        raise UpstreamError("the model's answer was empty", reason="empty")
                break
            except Exception as exc:
                if stream is not None:
                    with anyio.CancelScope(shield=True):
                        await stream.close()
                if isinstance(exc, TimeoutError):
                    error: DomainError = UpstreamTimeout(
                        f"the model sent nothing within {wait:g} s", reason="first_token_timeout"
                    )
                else:
                    error = map_error(exc)
                empty = error.details.get("reason") == "empty"
                if empty:
                    empties += 1
                again = (
                    empties <= EMPTY_ANSWER_RETRIES
                    if empty
                    else attempt < settings.llm_max_retries and _retryable(error)
                )
                if not retry or not again:
                    raise error from exc
                delay = self._delay(attempt, error)
                if clock() + delay >= deadline:
                    logger.warning("model call failed, retry budget spent", extra={"code": error.code})
                    raise error from exc
                await self._backoff(attempt, error, delay=delay)
                attempt += 1

        state = _Round()
        try:
            for chunk in head:
                for text in state.absorb(chunk):
                    yield TextDelta(text)
            async for chunk in chunks:
                for text in state.absorb(chunk):
                    yield TextDelta(text)
        except DomainError:
            raise
        except Exception as exc:
            error = map_error(exc)
            if isinstance(error, UpstreamError):  # e.g. a dropped connection, mid-answer
                error = UpstreamError("the model's answer broke off", reason=type(exc).__name__)
            raise error from exc
        finally:
            # Ended early (the client left, an error) or not: close the upstream response, so the
            # model's server stops generating tokens nobody will read.
            with anyio.CancelScope(shield=True):
                await stream.close()
        ordered = [state.calls[i] for i in sorted(state.calls)]
        for i, call in enumerate(ordered):
            call.id = call.id or f"call_{i}"
        yield RoundEnd(finish_reason=state.finish_reason, tool_calls=ordered, usage=state.usage)

    async def complete(
        self, *, model: str, messages: Sequence[dict[str, Any]], max_completion_tokens: int
    ) -> tuple[str, Usage]:
        """A whole (non-streamed) answer, retried with backoff on failures that may pass."""
        attempt = 0
        while True:
            try:
                response = await self._client().chat.completions.create(
                    model=model,
                    messages=cast(Any, list(messages)),
                    max_completion_tokens=max_completion_tokens,
                )
                break
            except Exception as exc:
                error = map_error(exc)
                if attempt >= self.settings.llm_max_retries or not _retryable(error):
                    raise error from exc
                await self._backoff(attempt, error)
                attempt += 1
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = response.usage
        return text, Usage(usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
