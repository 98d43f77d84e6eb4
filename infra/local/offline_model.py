"""The offline model: an OpenAI-compatible chat-completions server that needs no API key (unless asked).

`make run` uses it when OPENAI_API_KEY is unset, and the tests use it as the model: the app reaches
it through the real `openai` client over HTTP, exactly as it would reach OpenAI. It is a stand-in for
trying the system and for tests, not a language model: its answers are deterministic rules
(infra/local/offline_answers.py): inventory questions become tool calls, tool results become answers,
summaries and titles are built from what the user asked.

- `POST /v1/chat/completions`, streamed or not, in OpenAI's shapes (`chat.completion`,
  `chat.completion.chunk`, tool-call deltas, the usage chunk with `choices: []` when
  `stream_options.include_usage`, then `data: [DONE]`); `GET /v1/models`. Any model name is accepted
  and echoed. Usage: prompt tokens are `shelfwise.chat.tokens.count_messages(messages, tools)` of the
  request, completion tokens the count of what it generated; `max_completion_tokens` (or
  `max_tokens`) cuts the output with finish_reason "length".
- Streams a word (or a few characters of tool arguments) per chunk, `token_delay_ms` apart.
- Failures on demand, to prove the app's error handling: a request header
  `X-Offline-Model-Fail: <mode>`, or queued with `POST /_offline/failures` /
  `OfflineModel.fail(mode, times, task)`. Modes: FAILURE_MODES.
- API keys: any key is accepted unless `api_keys` is set (`OfflineModel(api_keys=...)`, the
  `api_keys` property, or `POST /_offline/config` {"api_keys": [...] or null}); then a request whose
  `Authorization: Bearer` key is not one of them is a 401 in OpenAI's shape (`invalid_api_key`), as a
  revoked or rotated-away key is. The key is checked once the body parses (a malformed body is a 400
  whatever the key); refused requests are logged with failure "invalid_api_key". Every log entry
  names the key it came with by its last four characters (`key_hint`), never the whole key.
- Control: `POST /_offline/config` {"token_delay_ms", "stall_seconds", "api_keys"};
  `GET|DELETE /_offline/requests` (a log of what was received); `GET|POST|DELETE /_offline/failures`.

    with OfflineModel() as model:
        client = AsyncOpenAI(base_url=model.base_url, api_key="offline")
        model.fail("rate_limit", times=1, task="chat")

Alone: `python -m infra.local.offline_model --port 8081 --token-delay-ms 20`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from infra.local.offline_answers import Plan, Task, detect_task, limit, respond, tool_names
from shelfwise.chat import tokens

FailureMode = Literal[
    "rate_limit", "server_error", "unavailable", "bad_request", "timeout", "midstream", "empty"
]
FAILURE_MODES: tuple[FailureMode, ...] = (
    "rate_limit",  # 429 with Retry-After: 2
    "server_error",  # 500
    "unavailable",  # 503
    "bad_request",  # 400
    "timeout",  # stall before the first byte for `stall_seconds` (the client's timeout ends it)
    "midstream",  # stream part of the answer, then drop the connection without [DONE]
    "empty",  # a completion whose content is ""
)
TASKS = ("chat", "summary", "title", "any")
FAIL_HEADER = "x-offline-model-fail"
MODELS = ("shelfwise-offline", "shelfwise-offline-utility")  # listed; any model name is accepted
DEFAULT_STALL_SECONDS = 30.0
RETRY_AFTER_SECONDS = "2"
REQUEST_LOG_SIZE = 1000
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


# ---------------------------------------------------------------------------------------------------
# OpenAI's wire shapes


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    tool_choice: Any
    stream: bool
    include_usage: bool
    max_tokens: int | None
    task: Task
    prompt_tokens: int


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def parse_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise BadRequest(f"invalid message at messages[{index}]", f"messages[{index}]")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise BadRequest("'tools' must be an array of objects", "tools")
    if tools == []:  # as OpenAI does: leave `tools` out instead
        raise BadRequest(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "tools",
        )
    max_tokens = next(
        (body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None), None
    )
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise BadRequest("max_completion_tokens must be a positive integer", "max_completion_tokens")
    stream_options = body.get("stream_options") or {}
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools or None,
        tool_choice=body.get("tool_choice"),
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        max_tokens=max_tokens,
        task=detect_task(messages, tools),
        prompt_tokens=tokens.count_messages(messages, tools or None),
    )


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_FAILURE_RESPONSES: dict[str, tuple[int, str, str, str]] = {
    "rate_limit": (
        429,
        "Rate limit reached for requests (offline model, injected failure). Please try again in 2s.",
        "requests",
        "rate_limit_exceeded",
    ),
    "server_error": (
        500,
        "The server had an error while processing your request (offline model, injected failure).",
        "server_error",
        "server_error",
    ),
    "unavailable": (
        503,
        "The engine is currently overloaded, please try again later (offline model, injected failure).",
        "server_error",
        "service_unavailable",
    ),
    "bad_request": (
        400,
        "Invalid request (offline model, injected failure).",
        "invalid_request_error",
        "invalid_request",
    ),
}


def bearer_key(authorization: str | None) -> str:
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def key_hint(key: str) -> str:
    """How a key is named in the request log: its last four characters."""
    return key[-4:] if len(key) > 8 else "****"


def invalid_key_response(key: str) -> JSONResponse:
    """OpenAI's answer to a key it does not know (a revoked key gets the same)."""
    shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"
    return JSONResponse(
        error_body(
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        status_code=401,
    )


def failure_response(mode: str) -> JSONResponse:
    status, message, type_, code = _FAILURE_RESPONSES[mode]
    headers = {"retry-after": RETRY_AFTER_SECONDS} if mode == "rate_limit" else None
    return JSONResponse(error_body(message, type_, code), status_code=status, headers=headers)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_json(request: ChatRequest, plan: Plan, completion_id: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": plan.content,
        "refusal": None,
        "annotations": [],
    }
    if plan.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in plan.tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}],
        "usage": _usage(request.prompt_tokens, plan.completion_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_offline",
    }


def content_pieces(text: str) -> list[str]:
    """A word (with the whitespace before it) per piece; joined, the pieces are the text."""
    return re.findall(r"\s*\S+|\s+\Z", text)


def argument_pieces(arguments: str, size: int = 8) -> list[str]:
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def stream_deltas(plan: Plan) -> list[dict[str, Any]]:
    """The deltas after the first (role) chunk, one per chunk, in order."""
    deltas: list[dict[str, Any]] = []
    if plan.tool_calls:
        for index, call in enumerate(plan.tool_calls):
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            deltas.extend(
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in argument_pieces(call.arguments)
            )
    else:
        deltas.extend({"content": piece} for piece in content_pieces(plan.content or ""))
    return deltas


# ---------------------------------------------------------------------------------------------------
# Shared state: queued failures, settings, the request log (touched by the server and by the caller)


@dataclass
class QueuedFailure:
    mode: str
    times: int
    task: str

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "times": self.times, "task": self.task}


class State:
    def __init__(
        self,
        *,
        token_delay_ms: int = 0,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        api_keys: Sequence[str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._failures: list[QueuedFailure] = []
        self._log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._ids = itertools.count(1)
        self.token_delay_ms = token_delay_ms
        self.stall_seconds = stall_seconds
        self.api_keys: tuple[str, ...] | None = None if api_keys is None else tuple(api_keys)
        self.closing = threading.Event()

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def queue_failure(self, mode: str, times: int = 1, task: str = "any") -> None:
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; one of {', '.join(FAILURE_MODES)}")
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._failures.append(QueuedFailure(mode, times, task))

    def take_failure(self, task: str) -> str | None:
        with self._lock:
            for failure in self._failures:
                if failure.task in ("any", task):
                    failure.times -= 1
                    if failure.times == 0:
                        self._failures.remove(failure)
                    return failure.mode
        return None

    def failures(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._failures]

    def clear_failures(self) -> int:
        with self._lock:
            count = len(self._failures)
            self._failures.clear()
            return count

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def clear_requests(self) -> int:
        with self._lock:
            count = len(self._log)
            self._log.clear()
            return count

    def accepts(self, key: str) -> bool:
        keys = self.api_keys
        return keys is None or key in keys

    def config(self) -> dict[str, Any]:
        return {
            "token_delay_ms": self.token_delay_ms,
            "stall_seconds": self.stall_seconds,
            "api_keys": None if self.api_keys is None else len(self.api_keys),  # how many, not which
        }


# ---------------------------------------------------------------------------------------------------
# The HTTP server


class MidstreamAbort(Exception):
    """Raised inside a response on purpose: the server drops the connection without finishing it."""


class _DropInjectedAborts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], MidstreamAbort))


_DROP_ABORTS = _DropInjectedAborts()


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    )
    return f"data: {data}\n\n".encode()


class CompletionResponse(Response):
    """Stalls (`timeout`), waits out the token delay, streams or not, and aborts (`midstream`); stops
    early when the client goes away or the server is closing."""

    def __init__(self, state: State, request: ChatRequest, plan: Plan, failure: str | None) -> None:
        super().__init__()
        self.state = state
        self.request = request
        self.plan = plan
        self.failure = failure
        self.delay = state.token_delay_ms / 1000
        number = state.next_id()
        self.completion_id = f"chatcmpl-offline{number:010d}"
        for index, call in enumerate(plan.tool_calls):
            call.id = f"call_offline{number:08d}x{index}"
        self.created = int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        aborted = False

        async def watch_disconnect(cancel: anyio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            cancel.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(watch_disconnect, group.cancel_scope)
            if self.failure == "timeout":
                await self._stall()
            if self.state.closing.is_set():  # stopping: drop the connection, say nothing
                aborted = True
            else:
                aborted = await (self._stream(send) if self.request.stream else self._complete(send))
            group.cancel_scope.cancel()
        if aborted:
            raise MidstreamAbort("injected midstream failure")

    async def _stall(self) -> None:
        # `closing` is a threading.Event, set by stop() from another thread: poll it.
        with anyio.move_on_after(self.state.stall_seconds):
            while not self.state.closing.is_set():  # noqa: ASYNC110
                await anyio.sleep(0.05)

    async def _pause(self) -> bool:
        """The delay between two chunks; False when the server is closing."""
        if self.delay > 0:
            await anyio.sleep(self.delay)
        return not self.state.closing.is_set()

    async def _complete(self, send: Send) -> bool:
        pieces = len(stream_deltas(self.plan))
        if self.delay > 0:
            await anyio.sleep(self.delay * pieces)
        body = json.dumps(
            completion_json(self.request, self.plan, self.completion_id, self.created), ensure_ascii=False
        ).encode()
        if self.failure == "midstream":
            await self._start(send, "application/json", length=len(body))
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            return True
        await self._start(send, "application/json", length=len(body))
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return False

    async def _start(self, send: Send, content_type: str, length: int | None = None) -> None:
        headers = [
            (b"content-type", content_type.encode()),
            (b"x-request-id", f"req_offline{self.completion_id[-10:]}".encode()),
            (b"openai-processing-ms", b"1"),
        ]
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        else:
            headers.append((b"cache-control", b"no-cache"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    def _chunk(self, delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.request.model,
            "service_tier": "default",
            "system_fingerprint": "fp_offline",
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.request.include_usage:
            chunk["usage"] = None
        return chunk

    async def _stream(self, send: Send) -> bool:
        await self._start(send, "text/event-stream; charset=utf-8")

        async def emit(payload: dict[str, Any] | str) -> None:
            await send({"type": "http.response.body", "body": _sse(payload), "more_body": True})

        first: dict[str, Any] = {
            "role": "assistant",
            "content": None if self.plan.tool_calls else "",
            "refusal": None,
        }
        await emit(self._chunk(first))
        deltas = stream_deltas(self.plan)
        abort_after = max(1, len(deltas) // 2) if self.failure == "midstream" else None
        for sent, delta in enumerate(deltas):
            if abort_after is not None and sent >= abort_after:
                return True
            if not await self._pause():
                return True
            await emit(self._chunk(delta))
        if abort_after is not None:  # nothing to cut in half: cut after everything but the end
            return True
        await emit(self._chunk({}, self.plan.finish_reason))
        if self.request.include_usage:
            usage_chunk = self._chunk(None)
            usage_chunk["usage"] = _usage(self.request.prompt_tokens, self.plan.completion_tokens)
            await emit(usage_chunk)
        await emit("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return False


def _openai_error(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(error_body(message, type_, code, param), status_code=status)


def create_app(state: State) -> Starlette:
    async def chat_completions(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _openai_error(400, "We could not parse the JSON body of your request.", "invalid_json")
        try:
            chat = parse_request(body)
        except BadRequest as exc:
            return _openai_error(400, exc.message, "invalid_request", exc.param)
        header = request.headers.get(FAIL_HEADER)
        if header is not None and header not in FAILURE_MODES:
            return _openai_error(400, f"unknown {FAIL_HEADER} mode {header!r}", "invalid_failure_mode")
        key = bearer_key(request.headers.get("authorization"))
        refused = not state.accepts(key)
        failure = "invalid_api_key" if refused else header or state.take_failure(chat.task)
        plan = (
            Plan(content="")
            if failure == "empty"
            else respond(chat.task, chat.messages, chat.tools, chat.tool_choice)
        )
        plan = limit(plan, chat.max_tokens)
        state.record(
            {
                "task": chat.task,
                "model": chat.model,
                "messages": len(chat.messages),
                "last_role": chat.messages[-1].get("role"),
                "prompt_tokens": chat.prompt_tokens,
                "tools": tool_names(chat.tools),
                "tool_choice": chat.tool_choice,
                "stream": chat.stream,
                "include_usage": chat.include_usage,
                "max_tokens": chat.max_tokens,
                "failure": failure,
                "key_hint": key_hint(key),
                "finish_reason": plan.finish_reason,
                "tool_calls": [c.name for c in plan.tool_calls],
                "received_at": time.time(),
            }
        )
        if refused:
            return invalid_key_response(key)
        if failure in _FAILURE_RESPONSES:
            return failure_response(failure)
        return CompletionResponse(state, chat, plan, failure)

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model(name) for name in MODELS]})

    async def model(request: Request) -> Response:
        return JSONResponse(_model(request.path_params["model"]))

    async def failures(request: Request) -> Response:
        if request.method == "DELETE":
            return JSONResponse({"cleared": state.clear_failures()})
        if request.method == "GET":
            return JSONResponse({"items": state.failures()})
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            state.queue_failure(
                str(body.get("mode")), int(body.get("times", 1)), str(body.get("task", "any"))
            )
        except (ValueError, TypeError) as exc:
            return _openai_error(400, str(exc), "invalid_failure")
        return JSONResponse({"items": state.failures()}, status_code=201)

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                if "token_delay_ms" in body:
                    state.token_delay_ms = max(0, int(body["token_delay_ms"]))
                if "stall_seconds" in body:
                    state.stall_seconds = max(0.0, float(body["stall_seconds"]))
                if "api_keys" in body:
                    keys = body["api_keys"]
                    if keys is not None and not (
                        isinstance(keys, list) and all(isinstance(k, str) and k for k in keys)
                    ):
                        raise ValueError("api_keys must be a list of non-empty strings, or null")
                    state.api_keys = None if keys is None else tuple(keys)
            except (ValueError, TypeError) as exc:
                return _openai_error(400, str(exc), "invalid_config")
        return JSONResponse(state.config())

    async def requests_log(request: Request) -> Response:
        if request.method == "DELETE":
            return JSONResponse({"cleared": state.clear_requests()})
        return JSONResponse({"items": state.requests()})

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return _openai_error(status, f"{request.method} {request.url.path}: {status}", "not_found")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/_offline/failures", failures, methods=["GET", "POST", "DELETE"]),
            Route("/_offline/config", config, methods=["GET", "POST"]),
            Route("/_offline/requests", requests_log, methods=["GET", "DELETE"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "shelfwise-offline"}


def _server_config(app: Starlette) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_DROP_ABORTS)
    return uvicorn.Config(
        app,
        http="h11",
        loop="asyncio",
        lifespan="off",
        log_config=None,  # leave the host's logging alone
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        backlog=1024,
    )


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class OfflineModel:
    """`with OfflineModel() as model: model.base_url` - the offline model on loopback, in a thread.

    `extra_hosts` are further addresses it listens on, on the same port (docker0's, say)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_delay_ms: int = 0,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        extra_hosts: tuple[str, ...] = (),
        api_keys: Sequence[str] | None = None,
    ) -> None:
        self.state = State(token_delay_ms=token_delay_ms, stall_seconds=stall_seconds, api_keys=api_keys)
        self._defaults = (token_delay_ms, stall_seconds, self.state.api_keys)
        self.app = create_app(self.state)
        self._sockets = [_bound(host, port)]
        self._socket = self._sockets[0]
        port = self._socket.getsockname()[1]
        try:  # the same port on every further address (e.g. docker0's, for Lambda containers)
            self._sockets += [_bound(extra, port) for extra in extra_hosts]
        except OSError:
            for sock in self._sockets:
                sock.close()
            raise
        self._server = uvicorn.Server(_server_config(self.app))
        self._thread = threading.Thread(target=self._serve, name="offline-model", daemon=True)
        self._failed: BaseException | None = None

    def _serve(self) -> None:
        try:
            self._server.run(sockets=self._sockets)
        except BaseException as exc:  # reported by start()
            self._failed = exc

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """What OpenAI clients take as `base_url`."""
        return f"{self.url}/v1"

    def start(self, timeout: float = 10.0) -> OfflineModel:
        tokens.encoding()  # load the vocabulary now, not inside the first request
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._failed is not None or not self._thread.is_alive():
                raise RuntimeError(f"the offline model did not start: {self._failed!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the offline model did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (idempotent): stalled and slow responses end now, open streams are cut."""
        self.state.closing.set()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> OfflineModel:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # The control endpoints, as methods.
    def fail(self, mode: FailureMode | str, times: int = 1, task: str = "any") -> None:
        """Fail the next `times` requests of `task` ("chat", "summary", "title" or "any") with `mode`."""
        self.state.queue_failure(mode, times, task)

    def failures(self) -> list[dict[str, Any]]:
        return self.state.failures()

    def clear_failures(self) -> None:
        self.state.clear_failures()

    def requests(self) -> list[dict[str, Any]]:
        """What was received, oldest first: task, model, messages (count), prompt_tokens, tools (names),
        stream, max_tokens, failure, finish_reason, tool_calls (names), ..."""
        return self.state.requests()

    def clear_requests(self) -> None:
        self.state.clear_requests()

    def reset(self) -> None:
        """No queued failures, an empty request log, the delays and keys this instance started with."""
        self.state.clear_failures()
        self.state.clear_requests()
        self.state.token_delay_ms, self.state.stall_seconds, self.state.api_keys = self._defaults

    @property
    def token_delay_ms(self) -> int:
        return self.state.token_delay_ms

    @token_delay_ms.setter
    def token_delay_ms(self, value: int) -> None:
        self.state.token_delay_ms = max(0, int(value))

    @property
    def stall_seconds(self) -> float:
        return self.state.stall_seconds

    @stall_seconds.setter
    def stall_seconds(self, value: float) -> None:
        self.state.stall_seconds = max(0.0, float(value))

    @property
    def api_keys(self) -> tuple[str, ...] | None:
        """The keys it accepts; None (the default) accepts any key. Set it to revoke or rotate keys."""
        return self.state.api_keys

    @api_keys.setter
    def api_keys(self, value: Sequence[str] | None) -> None:
        self.state.api_keys = None if value is None else tuple(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.offline_model", description="The offline OpenAI-compatible model."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token-delay-ms", type=int, default=20, help="pause between streamed chunks")
    parser.add_argument(
        "--stall-seconds", type=float, default=DEFAULT_STALL_SECONDS, help="the timeout mode's stall"
    )
    args = parser.parse_args(argv)
    model = OfflineModel(
        args.host, args.port, token_delay_ms=args.token_delay_ms, stall_seconds=args.stall_seconds
    )
    with model:
        print(f"offline model on {model.base_url} (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
