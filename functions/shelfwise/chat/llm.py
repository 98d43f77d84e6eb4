"""The models, through the openai client against any OpenAI-compatible server.

Retries (with backoff) happen only before the first token of an answer (text or a tool call):
once anything may have reached the user, a failure ends the answer instead of silently starting it
again. Waiting is bounded: each streamed call must show its first token within
`llm_first_token_timeout_seconds`, and all attempts of one call, back-offs included, share
`llm_retry_budget_seconds`; a stalled model is a 504 after at most the budget. A stream that ends
without a token (an empty answer) is an upstream error, retried once, never an empty reply.
Upstream failures become domain errors: timeout -> UpstreamTimeout (504), rate limit ->
UpstreamRateLimited (429 with Retry-After), anything else -> UpstreamError (502).

Key rotation, without a restart: a client is rebuilt when the key it was built with is older than
`key_cache_seconds` and the key resolved now differs; and on a 401 the key is fetched anew (past the
cache) and, if it changed, the client rebuilt and the call made once more (before the first token,
and only where retries are allowed). A key that is refused again, or did not change, is the usual
502: one refused key costs a call at most two requests, never a loop.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from functools import partial
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


def resolve_api_key(settings: Settings, *, force: bool = False) -> str:
    """The API key: from the environment, else SSM Parameter Store, else Secrets Manager (cached by
    Powertools for `key_cache_seconds`; `force` reads the store past the cache). Never logged."""
    if settings.openai_api_key is not None:
        return settings.openai_api_key.get_secret_value()
    if settings.openai_api_key_parameter:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_parameter(
            settings.openai_api_key_parameter,
            decrypt=True,
            max_age=settings.key_cache_seconds,
            force_fetch=force,
        )
        return str(value)
    if settings.openai_api_key_secret:
        from aws_lambda_powertools.utilities import parameters

        secret = parameters.get_secret(
            settings.openai_api_key_secret, max_age=settings.key_cache_seconds, force_fetch=force
        )
        return str(secret)
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


def _unauthorized(exc: BaseException) -> bool:
    """The model's server refused the key (401: revoked, rotated away, mistyped)."""
    import openai

    return isinstance(exc, openai.APIStatusError) and exc.status_code == 401


def _retryable(error: DomainError) -> bool:
    if isinstance(error, UpstreamTimeout | UpstreamRateLimited):
        return True
    status = error.details.get("upstream_status")
    return isinstance(error, UpstreamError) and (status is None or status >= 500 or status in (408, 409))


@dataclass
class _KeyedClient:
    """A client and the key it was built with; `checked_at` (monotonic) is when that key was last
    found current."""

    client: AsyncOpenAI
    key: str
    checked_at: float


class ChatModel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[int, _KeyedClient] = {}

    def _build(self, loop_id: int, key: str) -> _KeyedClient:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            api_key=key,
            base_url=self.settings.openai_base_url,
            timeout=self.settings.llm_timeout_seconds,
            max_retries=0,  # ours: only before the first chunk
        )
        keyed = _KeyedClient(client, key, time.monotonic())
        # Replaced, not closed: a stream still reading from the old client keeps it alive until it
        # ends. The loop of a finished invocation is gone, so its client goes too.
        self._clients = {loop_id: keyed}
        return keyed

    async def _client(self) -> _KeyedClient:
        """One client per event loop (its connection pool belongs to the loop that made it), rebuilt
        when its key has aged out of the cache and the store now holds another one."""
        loop_id = id(asyncio.get_running_loop())
        keyed = self._clients.get(loop_id)
        if keyed is None:
            return self._build(loop_id, await anyio.to_thread.run_sync(resolve_api_key, self.settings))
        if time.monotonic() - keyed.checked_at < self.settings.key_cache_seconds:
            return keyed
        key = await anyio.to_thread.run_sync(resolve_api_key, self.settings)  # cached: cheap
        current = self._clients.get(loop_id)
        if current is not None and current.key == key:
            current.checked_at = time.monotonic()
            return current
        logger.info("model key changed in the store: client rebuilt", extra={"reason": "key_aged_out"})
        return self._build(loop_id, key)

    async def _rekey(self, refused: str) -> bool:
        """After a 401 with the key `refused`: read the key past the cache and rebuild the client if
        it differs from the one the client holds. True when there is another key to try."""
        try:
            key = await anyio.to_thread.run_sync(partial(resolve_api_key, self.settings, force=True))
        except Exception:
            logger.exception("model key refused, and reading it again failed")
            return False
        if key == refused:
            logger.warning("model key refused, and the store holds no other")
            return False
        loop_id = id(asyncio.get_running_loop())
        current = self._clients.get(loop_id)
        if current is None or current.key != key:  # another call may have rebuilt it already
            logger.warning("model key refused: client rebuilt with the key read anew")
            self._build(loop_id, key)
        return True

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

    async def prepare(self) -> None:
        """Import, read the key and build this loop's client now (a cold process's first call
        otherwise does it inside its own time limit)."""
        await self._client()

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
        deadline = math.inf  # set once the first request is about to go out
        attempt = empties = 0
        rekeyed = False  # a refused key is read anew once per call
        while True:
            stream: Any = None
            head: list[Any] = []
            key: str | None = None
            try:
                # Our own work (the first call imports and builds the client) is not the model's
                # time: the first-token clock and the retry budget start at the request.
                keyed = await self._client()
                key = keyed.key
                if deadline == math.inf:
                    deadline = clock() + settings.llm_retry_budget_seconds
                wait = min(settings.llm_first_token_timeout_seconds, max(0.0, deadline - clock()))
                with anyio.fail_after(wait):
                    stream = await keyed.client.chat.completions.create(**kwargs)
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
                if key is not None and not rekeyed and _unauthorized(exc):
                    rekeyed = True
                    # The next call gets the new key either way; this one tries it only where
                    # retrying is allowed (nothing of the answer has been seen: a 401 comes before).
                    if await self._rekey(key) and retry:
                        continue
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
        rekeyed = False
        while True:
            key: str | None = None
            try:
                keyed = await self._client()
                key = keyed.key
                response = await keyed.client.chat.completions.create(
                    model=model,
                    messages=cast(Any, list(messages)),
                    max_completion_tokens=max_completion_tokens,
                )
                break
            except Exception as exc:
                if key is not None and not rekeyed and _unauthorized(exc):
                    rekeyed = True
                    if await self._rekey(key):
                        continue
                error = map_error(exc)
                if attempt >= self.settings.llm_max_retries or not _retryable(error):
                    raise error from exc
                await self._backoff(attempt, error)
                attempt += 1
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = response.usage
        return text, Usage(usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
